//! Free space: checked before the big writes, and named in the error when
//! a write runs out of it anyway ("No space left on device" alone says
//! neither where nor how much).

use std::path::Path;

use anyhow::{bail, Result};
use nix::sys::statvfs::statvfs;

use crate::output::human_size;

/// Bytes available to an unprivileged writer in the filesystem of `dir`
/// (or of its nearest existing ancestor).
pub fn free_bytes(dir: &Path) -> Option<u64> {
    let mut p = Some(dir);
    while let Some(d) = p {
        if let Ok(s) = statvfs(d) {
            return Some(s.blocks_available() * s.fragment_size());
        }
        p = d.parent();
    }
    None
}

/// Fails unless `dir` has `needed` bytes free for `what`.
pub fn require(dir: &Path, needed: u64, what: &str, hint: &str) -> Result<()> {
    let Some(free) = free_bytes(dir) else {
        return Ok(());
    };
    if free < needed {
        bail!(
            "not enough space in {} for {what}: needs {} ({needed} bytes), {} free; {hint}",
            dir.display(),
            human_size(needed),
            human_size(free)
        );
    }
    Ok(())
}

/// Whether `err` (anywhere in its chain, or in a host tool's output it
/// quotes) is a full filesystem or quota.
pub fn is_full(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        if cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(io_is_full)
        {
            return true;
        }
        let text = cause.to_string();
        text.contains("No space left on device") || text.contains("Disk quota exceeded")
    })
}

/// Whether an I/O error is a full filesystem or quota.
pub fn io_is_full(io: &std::io::Error) -> bool {
    let code = io.raw_os_error();
    code == Some(nix::libc::ENOSPC)
        || code == Some(nix::libc::EDQUOT)
        || io.kind() == std::io::ErrorKind::StorageFull
}

/// `err` with the place and the need spelled out if it is a full disk.
pub fn explain(err: anyhow::Error, dir: &Path, what: &str, needed: Option<u64>) -> anyhow::Error {
    if !is_full(&err) {
        return err;
    }
    let free = free_bytes(dir).map_or("unknown".to_string(), human_size);
    let need = needed.map_or("more".to_string(), |n| format!("about {}", human_size(n)));
    err.context(format!(
        "{} ran out of space while writing {what}: it needs {need} and has {free} free; \
         free some space or point the build elsewhere (--out, --cache); nothing was kept",
        dir.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_recognised_in_io_errors_and_tool_output() {
        let io = anyhow::Error::from(std::io::Error::from_raw_os_error(nix::libc::ENOSPC));
        assert!(is_full(&io));
        let tool = anyhow::anyhow!("`mkfs.ext4 x` failed: No space left on device");
        assert!(is_full(&tool.context("stage disk failed")));
        assert!(!is_full(&anyhow::anyhow!("permission denied")));
        let e = explain(io, Path::new("/tmp"), "the raw image", Some(3 << 30));
        let msg = format!("{e:#}");
        assert!(
            msg.contains("/tmp ran out of space while writing the raw image"),
            "{msg}"
        );
        assert!(msg.contains("3.00 GiB"), "{msg}");
    }

    #[test]
    fn require_names_the_directory_and_both_sizes() {
        let dir = tempfile::tempdir().expect("tempdir");
        require(dir.path(), 1, "one byte", "h").expect("one byte fits");
        let err = require(dir.path(), u64::MAX / 2, "the image", "use --out").expect_err("too big");
        let msg = err.to_string();
        assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
        assert!(
            msg.contains("the image") && msg.contains("free") && msg.contains("use --out"),
            "{msg}"
        );
    }
}
