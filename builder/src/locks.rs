//! Advisory locks (`flock`) between builds: on an output directory (the
//! directory itself is locked, no lock file is left in it) and on cache
//! entries (`<cache>/locks/<entry>.lock`, empty files). The kernel releases
//! a flock when its holder dies, however it dies, so a crashed build never
//! blocks the next one; a lock file left behind means nothing by itself.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// A held lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct Lock {
    _flock: Flock<File>,
    path: PathBuf,
}

impl Lock {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// What to do when someone else holds the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Wait for it, saying so once.
    Block,
    /// Fail at once.
    Fail,
}

fn open(path: &Path) -> Result<File> {
    if path.is_dir() {
        File::open(path).with_context(|| format!("opening {} to lock it", path.display()))
    } else {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("opening the lock file {}", path.display()))
    }
}

/// Takes `path`'s exclusive lock (a directory, or a lock file made if
/// missing). `holder` describes the other party for messages: "another
/// build is writing out/", say.
pub fn exclusive(path: &Path, wait: Wait, holder: &str) -> Result<Lock> {
    match try_exclusive(path)? {
        Some(lock) => Ok(lock),
        None if wait == Wait::Fail => bail!(
            "{holder} (lock {} held); wait for it to finish, or run without --no-wait to wait",
            path.display()
        ),
        None => {
            eprintln!("waiting: {holder} (lock {})", path.display());
            blocking(path)
        }
    }
}

/// Takes the lock, waiting without a word (cache entries: short waits).
pub fn exclusive_quiet(path: &Path) -> Result<Lock> {
    match try_exclusive(path)? {
        Some(lock) => Ok(lock),
        None => {
            tracing::info!("waiting for {}", path.display());
            blocking(path)
        }
    }
}

fn blocking(path: &Path) -> Result<Lock> {
    let started = Instant::now();
    let file = open(path)?;
    let flock = Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .with_context(|| format!("locking {}", path.display()))?;
    tracing::info!(
        "lock {} taken after {:?}",
        path.display(),
        started.elapsed()
    );
    Ok(Lock {
        _flock: flock,
        path: path.to_path_buf(),
    })
}

/// The lock if it is free now, `None` if someone holds it.
pub fn try_exclusive(path: &Path) -> Result<Option<Lock>> {
    let file = open(path)?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(flock) => Ok(Some(Lock {
            _flock: flock,
            path: path.to_path_buf(),
        })),
        Err((_, Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(e).with_context(|| format!("locking {}", path.display())),
    }
}

/// Whether someone holds the lock on an existing `path` (never creates it).
pub fn is_held(path: &Path) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    matches!(
        Flock::lock(file, FlockArg::LockExclusiveNonblock),
        Err((_, Errno::EWOULDBLOCK))
    )
}

/// `<cache>/locks/<entry>.lock`.
pub fn entry_lock_path(cache: &Path, entry: &str) -> PathBuf {
    cache.join("locks").join(format!("{entry}.lock"))
}

/// Locks one cache entry (a digest, a base root filesystem key, a build)
/// for making or replacing it; waits for another build doing the same.
pub fn entry(cache: &Path, entry: &str) -> Result<Lock> {
    exclusive_quiet(&entry_lock_path(cache, entry))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_second_holder_waits_or_fails_and_a_released_lock_is_free() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out");
        fs::create_dir(&out).expect("mkdir");
        let first = exclusive(&out, Wait::Fail, "build A").expect("first");
        assert!(is_held(&out));
        let err = exclusive(&out, Wait::Fail, "another build is writing out")
            .expect_err("second must fail");
        let msg = format!("{err:#}");
        assert!(msg.contains("another build is writing out"), "{msg}");
        assert!(msg.contains(&out.display().to_string()), "{msg}");
        // A waiting taker gets it once the first is dropped.
        let out2 = out.clone();
        let waiter = std::thread::spawn(move || exclusive(&out2, Wait::Block, "x").map(|_| ()));
        std::thread::sleep(Duration::from_millis(100));
        assert!(!waiter.is_finished());
        drop(first);
        waiter.join().expect("join").expect("waiter");
        assert!(!is_held(&out));
        // No lock file in a locked directory.
        assert_eq!(fs::read_dir(&out).expect("read").count(), 0);
    }

    #[test]
    fn entry_locks_live_under_locks_and_are_not_held_after_drop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lock = entry(dir.path(), "sha256-abc").expect("lock");
        assert_eq!(lock.path(), dir.path().join("locks/sha256-abc.lock"));
        assert!(is_held(lock.path()));
        assert!(try_exclusive(lock.path()).expect("try").is_none());
        let p = lock.path().to_path_buf();
        drop(lock);
        assert!(!is_held(&p));
        assert!(!is_held(&dir.path().join("locks/missing.lock")));
    }
}
