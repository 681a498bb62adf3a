//! A cluster's files are root's alone: its state directory, each VM's
//! directory (seed disk with the user-data and its credentials, the
//! copy-on-write overlay, QEMU's sockets) and the SSH key pair. The
//! directories are 0700, so nothing in them is reachable by other users
//! whatever a tool's umask gave the file; the seed disk is 0600 as well.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result};

/// Mode of every directory a cluster keeps files in.
pub const DIR_MODE: u32 = 0o700;
/// Mode of a file holding a secret (the seed disk).
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` (and its parents) and makes it root's alone, also when it
/// existed with a wider mode.
pub fn dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    set(dir, DIR_MODE)
}

/// Makes `file` readable and writable by its owner only.
pub fn file(file: &Path) -> Result<()> {
    set(file, FILE_MODE)
}

fn set(path: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("making {} mode {mode:o}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wide_directory_is_narrowed_and_files_are_owner_only() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = tmp.path().join("state/vms");
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        dir(&d).expect("private dir");
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&d), 0o700);
        let f = d.join("seed.img");
        std::fs::write(&f, b"user-data").expect("write");
        file(&f).expect("private file");
        assert_eq!(mode(&f), 0o600);
    }
}
