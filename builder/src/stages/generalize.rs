//! Stage 3: generalize the root filesystem as virt-sysprep would, so that no
//! two machines booted from the image share an identity and nothing of the
//! build host remains: no SSH host keys, an empty machine-id, no cloud-init
//! instance state, no logs, no random seed, no root password, no apt lists,
//! and the host's hostname and resolver replaced.
//!
//! Last, every timestamp in the tree is clamped to SOURCE_DATE_EPOCH so that
//! the filesystem built from it is reproducible.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use filetime::FileTime;
use walkdir::WalkDir;

use super::overlay::{in_root, write_file};

/// Files removed outright (globs are expanded below their directory).
/// `kubebake inspect` checks each is absent from the image.
pub const REMOVE: &[&str] = &[
    "/etc/ssh/ssh_host_*",
    "/var/lib/dbus/machine-id",
    "/var/lib/systemd/random-seed",
    "/var/lib/systemd/credential.secret",
    "/var/lib/dhcp/*.leases",
    "/var/cache/debconf/*-old",
    "/var/cache/apt/*.bin",
    "/var/cache/apt/archives/*.deb",
    "/var/lib/apt/lists/*_*",
    "/var/backups/*",
    "/root/.bash_history",
    "/etc/.pwd.lock",
    "/etc/passwd-",
    "/etc/shadow-",
    "/etc/group-",
    "/etc/gshadow-",
    "/etc/subuid-",
    "/etc/subgid-",
];

/// Directories whose contents are removed (the directory itself stays).
pub const EMPTY_DIRS: &[&str] = &["/var/lib/cloud", "/tmp", "/var/tmp", "/var/log/journal"];

/// What generalize did, for the build log.
#[derive(Debug, Default)]
pub struct Report {
    pub removed: Vec<String>,
    pub logs_truncated: usize,
    pub clamped: usize,
}

pub fn generalize(root: &Path, source_date_epoch: i64) -> Result<Report> {
    let mut report = Report::default();
    for pattern in REMOVE {
        for path in expand(root, pattern)? {
            remove(&path)?;
            report.removed.push(display(root, &path));
        }
    }
    for dir in EMPTY_DIRS {
        let dir = in_root(root, dir)?;
        if dir.is_dir() {
            for entry in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
                let path = entry?.path();
                remove(&path)?;
                report.removed.push(display(root, &path));
            }
        }
    }
    // Logs: keep the files (some daemons expect them), drop their contents.
    let log = in_root(root, "/var/log")?;
    for entry in WalkDir::new(&log).into_iter().filter_map(|e| e.ok()) {
        if entry.file_type().is_file() && entry.metadata().map(|m| m.len() > 0).unwrap_or(false) {
            // Replace rather than truncate in place: the file may be shared.
            let mode = std::os::unix::fs::PermissionsExt::mode(&entry.metadata()?.permissions());
            let image_path = format!("/{}", display(root, entry.path()));
            write_file(root, &image_path, b"", mode & 0o7777)?;
            report.logs_truncated += 1;
        }
    }
    // Identity: an empty machine-id means "first boot" to systemd.
    write_file(root, "/etc/machine-id", b"", 0o444)?;
    write_file(root, "/etc/hostname", b"localhost\n", 0o644)?;
    write_file(
        root,
        "/etc/resolv.conf",
        b"# Filled at boot from DHCP or the cloud's network configuration.\n",
        0o644,
    )?;
    lock_root_password(root)?;
    report.clamped = clamp_mtimes(root, source_date_epoch)?;
    Ok(report)
}

fn display(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

fn remove(path: &Path) -> Result<()> {
    let meta = path
        .symlink_metadata()
        .with_context(|| format!("reading {}", path.display()))?;
    if meta.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
    .with_context(|| format!("removing {}", path.display()))
}

/// Expands a pattern whose last component may hold `*`.
fn expand(root: &Path, pattern: &str) -> Result<Vec<std::path::PathBuf>> {
    let full = in_root(root, pattern)?;
    let (Some(dir), Some(name)) = (full.parent(), full.file_name()) else {
        return Ok(vec![]);
    };
    let name = name.to_string_lossy();
    if !name.contains('*') {
        return Ok(if full.symlink_metadata().is_ok() {
            vec![full]
        } else {
            vec![]
        });
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(vec![]);
    };
    let (prefix, suffix) = name.split_once('*').unwrap_or((&name, ""));
    let mut found: Vec<_> = entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.len() >= prefix.len() + suffix.len() && n.starts_with(prefix) && n.ends_with(suffix)
        })
        .map(|e| e.path())
        .collect();
    found.sort();
    Ok(found)
}

/// Sets root's password field to `*` (no password login) in /etc/shadow.
fn lock_root_password(root: &Path) -> Result<()> {
    let shadow = in_root(root, "/etc/shadow")?;
    let text =
        fs::read_to_string(&shadow).with_context(|| format!("reading {}", shadow.display()))?;
    let locked: Vec<String> = text
        .lines()
        .map(|line| match line.split_once(':') {
            Some(("root", rest)) => {
                let rest = rest.split_once(':').map_or("", |(_, r)| r);
                format!("root:*:{rest}")
            }
            _ => line.to_string(),
        })
        .collect();
    write_file(
        root,
        "/etc/shadow",
        format!("{}\n", locked.join("\n")).as_bytes(),
        0o640,
    )?;
    // /etc/shadow is root:shadow in Debian.
    let gid = group_id(root, "shadow").unwrap_or(0);
    std::os::unix::fs::lchown(&shadow, Some(0), Some(gid))
        .with_context(|| format!("chown {}", shadow.display()))?;
    Ok(())
}

fn group_id(root: &Path, name: &str) -> Option<u32> {
    let text = fs::read_to_string(root.join("etc/group")).ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then_some(())?;
        f.nth(1)?.parse().ok()
    })
}

/// Clamps every timestamp newer than `epoch` to `epoch`, as mmdebstrap does
/// for the files it installs. Returns how many entries changed.
pub fn clamp_mtimes(root: &Path, epoch: i64) -> Result<usize> {
    let when = FileTime::from_unix_time(epoch, 0);
    let mut changed = 0;
    // Children before parents: setting a child's time doesn't touch the
    // parent's, but creating files does, and we are done creating.
    for entry in WalkDir::new(root).contents_first(true) {
        let entry = entry.context("walking the staging root")?;
        let meta = entry.path().symlink_metadata()?;
        if FileTime::from_last_modification_time(&meta).unix_seconds() > epoch {
            filetime::set_symlink_file_times(entry.path(), when, when)
                .with_context(|| format!("setting the time of {}", entry.path().display()))?;
            changed += 1;
        }
    }
    Ok(changed)
}
