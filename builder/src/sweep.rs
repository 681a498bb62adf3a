//! Removing what killed builds left behind, and nothing else.
//!
//! - In an output directory: staging directories `.kubebake-<image>-XXXXXX`
//!   (and the in-memory root tree a `memory-root` link inside one points
//!   to). Only while holding the directory's lock (locks.rs): every build
//!   writing there holds it, so a staging directory seen under the lock
//!   belongs to a build that is gone.
//! - In the cache: temporaries named `.<entry>~…` (downloads, base root
//!   filesystems, qcow2 packs and indexes, source builds in progress), each
//!   removed only when the lock of its entry is free.
//!
//! Builds sweep their output directory and the cache before they start;
//! `kubebake clean` does the same on demand.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::locks;

/// Staging directories in an output directory start with this.
pub const STAGING_PREFIX: &str = ".kubebake-";
/// The link inside a staging directory to its in-memory root tree.
pub const MEMORY_LINK: &str = "memory-root";
/// Where in-memory root trees live (memory_root.rs).
pub const MEMORY_DIR: &str = "/dev/shm";
/// Separates a cache temporary's entry name from its random part.
pub const TEMP_MARK: char = '~';

/// The name prefix of a cache temporary of `entry`: `.<entry>~`.
pub fn temp_prefix(entry: &str) -> String {
    format!(".{entry}{TEMP_MARK}")
}

/// The cache directories that hold temporaries.
const CACHE_TEMP_DIRS: &[&str] = &["tmp", "rootfs", "qcow2-clusters"];

#[derive(Debug, Clone, Default, Serialize)]
pub struct SweepReport {
    pub removed: Vec<Swept>,
    /// Staging directories or temporaries of builds still running.
    pub kept: Vec<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Swept {
    pub path: PathBuf,
    pub bytes: u64,
}

impl SweepReport {
    pub fn bytes(&self) -> u64 {
        self.removed.iter().map(|s| s.bytes).sum()
    }

    fn remove(&mut self, path: PathBuf) {
        let bytes = tree_size(&path);
        crate::children::remove_path(&path);
        tracing::info!(
            "removed {} ({bytes} bytes) left by an interrupted build",
            path.display()
        );
        self.removed.push(Swept { path, bytes });
    }

    /// Adds `other`'s removed and kept paths to this report.
    pub fn extend(&mut self, other: SweepReport) {
        self.removed.extend(other.removed);
        self.kept.extend(other.kept);
    }
}

/// Sweeps `dir`'s stale staging directories. `own_lock`: the caller holds
/// the directory's lock; otherwise it is tried, and if another build holds
/// it nothing is touched.
pub fn out_dir(dir: &Path, own_lock: bool) -> Result<SweepReport> {
    let mut report = SweepReport::default();
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(report);
    };
    let stagings: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(STAGING_PREFIX))
        .map(|e| e.path())
        .collect();
    if stagings.is_empty() {
        return Ok(report);
    }
    let _lock = if own_lock {
        None
    } else {
        match locks::try_exclusive(dir)? {
            Some(lock) => Some(lock),
            None => {
                report.kept = stagings;
                return Ok(report);
            }
        }
    };
    for staging in stagings {
        if let Some(memory) = memory_root_of(&staging) {
            report.remove(memory);
        }
        report.remove(staging);
    }
    Ok(report)
}

/// The in-memory root tree a staging directory links to, if it is one of
/// ours (under [`MEMORY_DIR`], named `kubebake-…`).
fn memory_root_of(staging: &Path) -> Option<PathBuf> {
    let target = fs::read_link(staging.join(MEMORY_LINK)).ok()?;
    let ours = target.parent() == Some(Path::new(MEMORY_DIR))
        && target
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("kubebake-"));
    (ours && target.exists()).then_some(target)
}

/// Every cache temporary, with whether its entry is locked (its build is
/// running).
pub fn cache_temporaries(cache_dir: &Path) -> Vec<(PathBuf, bool)> {
    let mut found = Vec::new();
    for sub in CACHE_TEMP_DIRS {
        let Ok(entries) = fs::read_dir(cache_dir.join(sub)) else {
            continue;
        };
        for e in entries.filter_map(|e| e.ok()) {
            let name = e.file_name().to_string_lossy().into_owned();
            let entry = name
                .strip_prefix('.')
                .and_then(|n| n.split_once(TEMP_MARK))
                .map(|(entry, _)| entry);
            if let Some(entry) = entry.filter(|e| !e.is_empty()) {
                let held = locks::is_held(&locks::entry_lock_path(cache_dir, entry));
                found.push((e.path(), held));
            }
        }
    }
    found
}

/// Sweeps the cache's temporaries whose entry lock is free.
pub fn cache(cache_dir: &Path) -> Result<SweepReport> {
    let mut report = SweepReport::default();
    for (path, held) in cache_temporaries(cache_dir) {
        if held {
            report.kept.push(path);
        } else {
            report.remove(path);
        }
    }
    Ok(report)
}

/// `kubebake clean`: the output directories and the cache.
pub fn clean(out_dirs: &[PathBuf], cache_dir: &Path) -> Result<SweepReport> {
    let mut report = SweepReport::default();
    for dir in out_dirs {
        report.extend(out_dir(dir, false).with_context(|| format!("cleaning {}", dir.display()))?);
    }
    report.extend(cache(cache_dir).with_context(|| format!("cleaning {}", cache_dir.display()))?);
    Ok(report)
}

/// Bytes used by a file or tree (allocated blocks; a sparse image counts
/// what it holds).
pub fn tree_size(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    walkdir::WalkDir::new(path)
        .follow_links(false)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.blocks() * 512)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_staging_directories_go_and_outputs_stay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path();
        fs::create_dir_all(out.join(".kubebake-img-abc123/work")).expect("mkdir");
        fs::write(out.join(".kubebake-img-abc123/work/img.raw"), b"x").expect("write");
        fs::write(out.join("img.qcow2"), b"image").expect("write");
        let report = out_dir(out, false).expect("sweep");
        assert_eq!(report.removed.len(), 1);
        assert!(!out.join(".kubebake-img-abc123").exists());
        assert!(out.join("img.qcow2").exists());
    }

    #[test]
    fn nothing_is_swept_while_another_build_holds_the_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path();
        fs::create_dir_all(out.join(".kubebake-img-live")).expect("mkdir");
        let _held = locks::exclusive(out, locks::Wait::Fail, "test").expect("lock");
        // flock locks are per open file: this sweep's own open is refused.
        let report = out_dir(out, false).expect("sweep");
        assert!(report.removed.is_empty());
        assert_eq!(report.kept.len(), 1);
        assert!(out.join(".kubebake-img-live").exists());
    }

    #[test]
    fn cache_temporaries_go_only_when_their_entry_is_unlocked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache_dir = dir.path();
        fs::create_dir_all(cache_dir.join("tmp")).expect("mkdir");
        fs::create_dir_all(cache_dir.join("rootfs")).expect("mkdir");
        let stale = cache_dir
            .join("tmp")
            .join(format!("{}x1.part", temp_prefix("sha256-aa")));
        let live = cache_dir
            .join("rootfs")
            .join(format!("{}x2.tar", temp_prefix("rootfs-bb")));
        let entry = cache_dir.join("rootfs/bb.tar");
        for p in [&stale, &live, &entry] {
            fs::write(p, b"data").expect("write");
        }
        let _held = locks::entry(cache_dir, "rootfs-bb").expect("lock");
        let report = cache(cache_dir).expect("sweep");
        assert!(!stale.exists());
        assert!(live.exists(), "a temporary of a running build was removed");
        assert!(entry.exists(), "a finished entry was removed");
        assert_eq!(report.removed.len(), 1);
        assert_eq!(report.kept, vec![live]);
    }
}
