//! The compressed-cluster cache: the last qcow2 of each image, kept in
//! `<cache>/qcow2-clusters/` with an index from the SHA-256 of each guest
//! cluster to where its compressed bytes lie in that file. A warm rebuild
//! compresses only the clusters whose content changed; the others are copied
//! from here. The bytes are those the compressor would make again (same zstd
//! version, level and cluster size, all in the index header; any difference
//! and the cache is not used), so a warm build writes the same qcow2 as a
//! cold one.
//!
//! The pack is a hard link to the published qcow2 (a copy across
//! filesystems); its size, mtime and inode are recorded, so a qcow2 changed
//! in place afterwards is never used.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufWriter, Read as _, Write as _};
use std::os::unix::fs::{FileExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::{children, locks, sweep};

/// SHA-256 of one uncompressed guest cluster.
pub type ClusterKey = [u8; 32];

/// Where a cluster's stored bytes lie in the pack: a length equal to the
/// cluster size means stored uncompressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub offset: u64,
    pub len: u32,
}

const RECORD: usize = 32 + 8 + 4;

/// The clusters of the last build of one image.
#[derive(Debug)]
pub struct ClusterCache {
    dir: PathBuf,
    image: String,
    /// Everything that makes stored bytes valid: format, zstd, level, size.
    header: String,
    entries: HashMap<ClusterKey, Stored>,
    pack: Option<File>,
}

impl ClusterCache {
    /// Opens the cache of `image` under `cache_dir`. A missing, stale or
    /// damaged cache is an empty one (the reason is logged): it only ever
    /// saves time.
    pub fn open(cache_dir: &Path, image: &str, header: String) -> ClusterCache {
        let mut cache = ClusterCache {
            dir: cache_dir.join("qcow2-clusters"),
            image: image.to_string(),
            header,
            entries: HashMap::new(),
            pack: None,
        };
        match cache.load() {
            Ok(()) => {}
            Err(e) => {
                tracing::info!("qcow2 cluster cache of {image} not used: {e:#}");
                cache.entries.clear();
                cache.pack = None;
            }
        }
        cache
    }

    fn index_path(&self) -> PathBuf {
        self.dir.join(format!("{}.index", self.image))
    }

    fn load(&mut self) -> Result<()> {
        let index = self.index_path();
        let mut bytes = Vec::new();
        match File::open(&index) {
            Ok(mut f) => f
                .read_to_end(&mut bytes)
                .with_context(|| format!("reading {}", index.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("opening {}", index.display())),
        };
        let (header, rest) = split_line(&bytes).context("no header line")?;
        if header != self.header.as_bytes() {
            bail!(
                "made by another compressor ({:?})",
                String::from_utf8_lossy(header)
            );
        }
        let (pack_line, records) = split_line(rest).context("no pack line")?;
        let pack_line = std::str::from_utf8(pack_line).context("pack line is not UTF-8")?;
        let mut fields = pack_line.split(' ');
        let (Some(name), Some(size), Some(mtime), Some(ino), None) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            bail!("bad pack line {pack_line:?}");
        };
        if name.contains('/') || records.len() % RECORD != 0 {
            bail!("damaged index");
        }
        let pack_path = self.dir.join(name);
        let pack =
            File::open(&pack_path).with_context(|| format!("opening {}", pack_path.display()))?;
        if pack_identity(&pack)? != format!("{size} {mtime} {ino}") {
            bail!("{} changed after it was cached", pack_path.display());
        }
        for r in records.chunks_exact(RECORD) {
            let mut key = [0u8; 32];
            key.copy_from_slice(&r[..32]);
            let offset = u64::from_be_bytes(r[32..40].try_into().context("record")?);
            let len = u32::from_be_bytes(r[40..44].try_into().context("record")?);
            self.entries.insert(key, Stored { offset, len });
        }
        self.pack = Some(pack);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The stored bytes of the cluster with this content, if cached.
    pub fn get(&self, key: &ClusterKey) -> Result<Option<Vec<u8>>> {
        let (Some(stored), Some(pack)) = (self.entries.get(key), &self.pack) else {
            return Ok(None);
        };
        let mut bytes = vec![0u8; stored.len as usize];
        pack.read_exact_at(&mut bytes, stored.offset)
            .context("reading a cached qcow2 cluster")?;
        Ok(Some(bytes))
    }

    /// Makes `qcow2` (just written, with its clusters at `entries`) the
    /// cache of this image, replacing the previous one.
    pub fn store(
        &self,
        qcow2: &Path,
        sha256: &str,
        entries: &[(ClusterKey, Stored)],
    ) -> Result<()> {
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        // One store of an image's cache at a time (pack, index, old packs).
        let entry = format!("clusters-{}", self.image);
        let cache_dir = self.dir.parent().unwrap_or(&self.dir);
        let _lock = locks::entry(cache_dir, &entry)?;
        let temp = sweep::temp_prefix(&entry);
        let name = format!("{}-{}.qcow2", self.image, &sha256[..16.min(sha256.len())]);
        let pack = self.dir.join(&name);
        let tmp = self.dir.join(format!("{temp}pack-{}", std::process::id()));
        let _interrupted = children::temporary(&tmp);
        let _ = fs::remove_file(&tmp);
        // A failed copy's partial file goes with `_interrupted`.
        if fs::hard_link(qcow2, &tmp).is_err() {
            fs::copy(qcow2, &tmp)
                .with_context(|| format!("copying {} into the cache", qcow2.display()))?;
        }
        fs::rename(&tmp, &pack).with_context(|| format!("storing {}", pack.display()))?;
        let identity = pack_identity(
            &File::open(&pack).with_context(|| format!("opening {}", pack.display()))?,
        )?;

        let index = self.index_path();
        let tmp_index = tempfile::Builder::new()
            .prefix(&format!("{temp}index-"))
            .tempfile_in(&self.dir)
            .with_context(|| format!("creating a temporary file in {}", self.dir.display()))?;
        {
            let mut w = BufWriter::new(tmp_index.as_file());
            w.write_all(self.header.as_bytes())?;
            writeln!(w)?;
            writeln!(w, "{name} {identity}")?;
            for (key, stored) in entries {
                w.write_all(key)?;
                w.write_all(&stored.offset.to_be_bytes())?;
                w.write_all(&stored.len.to_be_bytes())?;
            }
            w.flush()
                .with_context(|| format!("writing {}", index.display()))?;
        }
        tmp_index
            .persist(&index)
            .with_context(|| format!("storing {}", index.display()))?;
        // Older packs of this image are no longer referenced.
        let prefix = format!("{}-", self.image);
        for entry in fs::read_dir(&self.dir)?.filter_map(|e| e.ok()) {
            let file = entry.file_name().to_string_lossy().into_owned();
            if file != name && file.starts_with(&prefix) && file.ends_with(".qcow2") {
                let rest = &file[prefix.len()..file.len() - ".qcow2".len()];
                if rest.len() == 16 && rest.bytes().all(|b| b.is_ascii_hexdigit()) {
                    fs::remove_file(entry.path()).ok();
                }
            }
        }
        Ok(())
    }
}

fn split_line(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = bytes.iter().position(|&b| b == b'\n')?;
    Some((&bytes[..at], &bytes[at + 1..]))
}

/// Size, mtime (ns) and inode: any in-place change shows in one of them.
fn pack_identity(pack: &File) -> Result<String> {
    let m = pack.metadata().context("reading the cached qcow2")?;
    Ok(format!(
        "{} {} {}",
        m.len(),
        m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
        m.ino()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_clusters_are_found_again_and_a_changed_pack_is_not_used() {
        let dir = tempfile::tempdir().expect("tempdir");
        let qcow2 = dir.path().join("img.qcow2");
        fs::write(&qcow2, b"0123456789abcdef").expect("write");
        let cache = ClusterCache::open(dir.path(), "img", "h1".into());
        assert!(cache.is_empty());
        let key = [7u8; 32];
        cache
            .store(
                &qcow2,
                "00112233445566778899",
                &[(key, Stored { offset: 4, len: 3 })],
            )
            .expect("store");

        let cache = ClusterCache::open(dir.path(), "img", "h1".into());
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.get(&key).expect("get"), Some(b"456".to_vec()));
        assert_eq!(cache.get(&[8u8; 32]).expect("get"), None);

        // Another compressor: not used.
        assert!(ClusterCache::open(dir.path(), "img", "h2".into()).is_empty());
        // The published qcow2 (the same inode) rewritten: not used.
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::OpenOptions::new()
            .write(true)
            .open(&qcow2)
            .expect("open")
            .write_all_at(b"X", 5)
            .expect("write");
        assert!(ClusterCache::open(dir.path(), "img", "h1".into()).is_empty());
    }
}
