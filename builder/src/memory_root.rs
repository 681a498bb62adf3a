//! Where the staging root tree is made: in memory (`/dev/shm`, a tmpfs)
//! when it has room, else in the staging directory beside the outputs.
//!
//! Unpacking the cached base (18,000 files, 720 MB) onto the output disk
//! competed with the writeback of the previous image: 2.6 s on a quiet
//! machine, up to 20 s while other builds wrote. In memory it only costs the
//! copy. Only the tree moves; the images are still written beside the
//! outputs, and the tree is deleted when the build ends, failed or not.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nix::sys::statfs::{statfs, TMPFS_MAGIC};

use crate::children::{self, Temporary};
use crate::space;
use crate::sweep::{MEMORY_DIR, MEMORY_LINK};

/// Room the tmpfs must have free: the source-built image's tree is 1.3 GB.
const ROOM: u64 = 4 << 30;

/// The directory holding the staging root tree. An in-memory one is a
/// [`Temporary`]: removed on drop, and by the reaper on interruption
/// (children.rs). A killed build's tree is found again through the
/// `memory-root` link in its staging directory (sweep.rs).
pub struct RootDir {
    path: PathBuf,
    memory: Option<Temporary>,
}

impl RootDir {
    /// The root tree's path (not yet created).
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn in_memory(&self) -> bool {
        self.memory.is_some()
    }
}

/// A place for the root tree of image `name`: in `/dev/shm` if it is a
/// tmpfs with room, else `<staging>/root`.
pub fn root_dir(staging: &Path, name: &str) -> Result<RootDir> {
    if !has_room(Path::new(MEMORY_DIR)) {
        return Ok(RootDir {
            path: staging.join("root"),
            memory: None,
        });
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = Path::new(MEMORY_DIR).join(format!(
        "kubebake-{name}-root-{}-{nanos}",
        std::process::id()
    ));
    // The link first: a build killed right after the mkdir still points
    // to its tree, so the next build finds and removes it.
    let link = staging.join(MEMORY_LINK);
    std::os::unix::fs::symlink(&dir, &link)
        .with_context(|| format!("creating {}", link.display()))?;
    let temporary = children::temporary(&dir);
    std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(RootDir {
        path: dir.join("root"),
        memory: Some(temporary),
    })
}

fn has_room(dir: &Path) -> bool {
    let is_tmpfs = statfs(dir).is_ok_and(|s| s.filesystem_type() == TMPFS_MAGIC);
    is_tmpfs && space::free_bytes(dir).unwrap_or(0) >= ROOM
}
