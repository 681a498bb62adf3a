//! The raw image to a zstd-compressed qcow2 (v3) and the raw image's
//! SHA-256, in one pass over the raw image.
//!
//! `qemu-img convert -c` compresses on one core (writes stay in order) and
//! the raw image was read a second time for its digest. Here the raw image is
//! read once, in batches of 16 MiB: one thread hashes every batch (holes, found
//! with `SEEK_DATA`/`SEEK_HOLE`, are hashed from a zero buffer without being
//! read), while every core takes a share of the batch's 64 KiB clusters: an
//! all-zero cluster stays unallocated, any other is keyed by its SHA-256 and
//! taken from the [`ClusterCache`] or compressed with zstd. Each cluster is
//! compressed on its own, so the bytes do not depend on how the work was
//! split, and the file is laid out in guest order:
//!
//! ```text
//! cluster 0     header (v3, compression type zstd)
//! cluster 1..   L1 table, then one L2 table per L1 entry
//! data          compressed clusters packed byte by byte; a cluster that does
//!               not shrink is stored as is, cluster-aligned
//! end           refcount blocks (16-bit), refcount table
//! ```
//!
//! The same raw image always gives the same qcow2 bytes, cache or not;
//! `qemu-img check` and `qemu-img compare` accept it (see the tests).
//!
//! Why a writer of our own: the format is QEMU's and qemu-img stays its
//! judge (check/compare in the tests), but qemu-img cannot reuse clusters
//! across builds nor compress on more than one core, and no maintained Rust
//! crate writes qcow2 (the ones on crates.io read it, or are unmaintained).
//! The writer only ever emits one simple layout; compression is the `zstd`
//! crate (libzstd), hashing `sha2`.

use std::fs::File;
use std::io::{BufWriter, Seek as _, SeekFrom, Write as _};
use std::ops::Range;
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::cluster_cache::{ClusterCache, ClusterKey, Stored};
use crate::sparse::{data_ranges, hash_zeros, ZEROS};

const CLUSTER_BITS: u32 = 16;
const CLUSTER: u64 = 1 << CLUSTER_BITS;
/// Clusters read and processed together.
const BATCH_CLUSTERS: u64 = 256;
/// zstd's default level, as qemu-img uses.
const ZSTD_LEVEL: i32 = 3;
const L2_ENTRIES: u64 = CLUSTER / 8;
/// 16-bit refcounts: clusters covered by one refcount block.
const REFCOUNT_ORDER: u32 = 4;
const REFCOUNTS_PER_BLOCK: u64 = CLUSTER / 2;
const HEADER_LEN: u32 = 112;
const INCOMPAT_COMPRESSION_TYPE: u64 = 1 << 3;
const COMPRESSION_ZSTD: u8 = 1;
const OFLAG_COPIED: u64 = 1 << 63;
const OFLAG_COMPRESSED: u64 = 1 << 62;
/// Compressed cluster descriptor: offset bits below this, sector count above.
const CSIZE_SHIFT: u32 = 62 - (CLUSTER_BITS - 8);

/// What the cache of compressed clusters must match to be used.
pub fn cache_header() -> String {
    format!(
        "kubebake-qcow2-clusters v1 zstd={} level={ZSTD_LEVEL} cluster={CLUSTER}",
        zstd::zstd_safe::version_string()
    )
}

/// How the clusters of one conversion were made.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ClusterStats {
    pub total: u64,
    /// All zero: left unallocated.
    pub zero: u64,
    /// Copied from the cluster cache.
    pub reused: u64,
    /// Compressed (or stored as is) in this build.
    pub compressed: u64,
}

/// The digests of one conversion.
#[derive(Debug, Clone)]
pub struct Converted {
    pub raw_sha256: String,
    pub qcow2_sha256: Option<String>,
    pub stats: ClusterStats,
}

/// One guest cluster's bytes in the qcow2.
enum Payload {
    Zero,
    /// Stored bytes: compressed, or the cluster as is if they are
    /// `CLUSTER` long.
    Stored {
        key: ClusterKey,
        bytes: Vec<u8>,
        /// Taken from the cluster cache.
        reused: bool,
    },
}

/// Hashes `raw` and, with `qcow2`, writes it as compressed qcow2, reusing
/// and then refreshing `cache`.
pub fn convert(
    raw: &Path,
    qcow2: Option<&Path>,
    cache: Option<&ClusterCache>,
) -> Result<Converted> {
    let file = File::open(raw).with_context(|| format!("opening {}", raw.display()))?;
    let len = file
        .metadata()
        .with_context(|| format!("reading {}", raw.display()))?
        .len();
    let data = data_ranges(&file, len).with_context(|| format!("reading {}", raw.display()))?;
    let mut writer = match qcow2 {
        Some(path) => Some(Writer::create(path, len)?),
        None => None,
    };
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let batch_bytes = BATCH_CLUSTERS * CLUSTER;
    let mut stats = ClusterStats::default();

    let raw_sha256 = std::thread::scope(|s| -> Result<String> {
        let (tx, rx) = mpsc::sync_channel::<Chunk>(2);
        let hasher = s.spawn(move || {
            let mut h = Sha256::new();
            for chunk in rx {
                match chunk {
                    Chunk::Data(buf, n) => h.update(&buf[..n]),
                    Chunk::Zeros(n) => hash_zeros(&mut h, n),
                }
            }
            hex::encode(h.finalize())
        });
        let mut pool: Vec<Arc<Vec<u8>>> = Vec::new();
        let mut start = 0u64;
        while start < len {
            let n = (len - start).min(batch_bytes);
            let clusters = n.div_ceil(CLUSTER);
            stats.total += clusters;
            if !overlaps(&data, start..start + n) {
                tx.send(Chunk::Zeros(n))
                    .context("the hashing thread stopped")?;
                stats.zero += clusters;
                if let Some(w) = writer.as_mut() {
                    w.skip(clusters);
                }
                start += n;
                continue;
            }
            let mut buf = take_buffer(&mut pool, batch_bytes as usize);
            let slot = Arc::get_mut(&mut buf).context("batch buffer still shared")?;
            file.read_exact_at(&mut slot[..n as usize], start)
                .with_context(|| format!("reading {}", raw.display()))?;
            // A last partial cluster is compressed padded with zeros.
            let padded = (clusters * CLUSTER) as usize;
            slot[n as usize..padded].copy_from_slice(&ZEROS[..padded - n as usize]);
            tx.send(Chunk::Data(Arc::clone(&buf), n as usize))
                .context("the hashing thread stopped")?;
            if let Some(w) = writer.as_mut() {
                for payload in clusters_of(&buf[..padded], cache, workers)? {
                    match &payload {
                        Payload::Zero => stats.zero += 1,
                        Payload::Stored { reused: true, .. } => stats.reused += 1,
                        Payload::Stored { reused: false, .. } => stats.compressed += 1,
                    }
                    w.push(payload)?;
                }
            }
            pool.push(buf);
            start += n;
        }
        drop(tx);
        hasher
            .join()
            .map_err(|_| anyhow::anyhow!("the hashing thread panicked"))
    })?;

    let qcow2_sha256 = match (writer, qcow2) {
        (Some(w), Some(path)) => {
            let entries = w.finish()?;
            let sha = crate::sparse::sha256_sparse(path)?;
            // The cache only saves time: failing to refresh it fails nothing.
            if let Some(Err(e)) = cache.map(|c| c.store(path, &sha, &entries)) {
                tracing::warn!("storing the qcow2 clusters in the cache: {e:#}");
            }
            Some(sha)
        }
        _ => None,
    };
    Ok(Converted {
        raw_sha256,
        qcow2_sha256,
        stats,
    })
}

enum Chunk {
    Data(Arc<Vec<u8>>, usize),
    Zeros(u64),
}

fn take_buffer(pool: &mut Vec<Arc<Vec<u8>>>, size: usize) -> Arc<Vec<u8>> {
    match pool.iter().position(|b| Arc::strong_count(b) == 1) {
        Some(i) => pool.swap_remove(i),
        None => Arc::new(vec![0u8; size]),
    }
}

fn overlaps(data: &[Range<u64>], r: Range<u64>) -> bool {
    data.iter().any(|d| d.start < r.end && r.start < d.end)
}

/// The payloads of the clusters in `batch`, in order, made on `workers`
/// threads, each taking a contiguous share.
fn clusters_of(batch: &[u8], cache: Option<&ClusterCache>, workers: usize) -> Result<Vec<Payload>> {
    let clusters: Vec<&[u8]> = batch.chunks(CLUSTER as usize).collect();
    let share = clusters.len().div_ceil(workers.max(1)).max(1);
    let parts: Vec<Result<Vec<Payload>>> = std::thread::scope(|s| {
        let handles: Vec<_> = clusters
            .chunks(share)
            .map(|part| s.spawn(move || payloads(part, cache)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("a compression thread panicked"))?
            })
            .collect()
    });
    let mut out = Vec::with_capacity(clusters.len());
    for part in parts {
        out.extend(part?);
    }
    Ok(out)
}

fn payloads(clusters: &[&[u8]], cache: Option<&ClusterCache>) -> Result<Vec<Payload>> {
    let mut compressor =
        zstd::bulk::Compressor::new(ZSTD_LEVEL).context("starting the zstd compressor")?;
    let mut out = Vec::with_capacity(clusters.len());
    for &cluster in clusters {
        if cluster == &ZEROS[..cluster.len()] {
            out.push(Payload::Zero);
            continue;
        }
        let key: ClusterKey = Sha256::digest(cluster).into();
        let (bytes, reused) = match cache.map(|c| c.get(&key)).transpose()?.flatten() {
            Some(bytes) => (bytes, true),
            None => {
                let compressed = compressor
                    .compress(cluster)
                    .context("compressing a qcow2 cluster")?;
                if compressed.len() < cluster.len() {
                    (compressed, false)
                } else {
                    (cluster.to_vec(), false)
                }
            }
        };
        out.push(Payload::Stored { key, bytes, reused });
    }
    Ok(out)
}

/// Writes the data area while it streams in, then the tables.
struct Writer {
    out: BufWriter<File>,
    /// Next byte of the data area.
    pos: u64,
    virtual_size: u64,
    l1_size: u64,
    l2_start: u64,
    /// One entry per guest cluster.
    l2: Vec<u64>,
    /// Per host cluster.
    refcounts: Vec<u16>,
    entries: Vec<(ClusterKey, Stored)>,
}

impl Writer {
    fn create(path: &Path, virtual_size: u64) -> Result<Writer> {
        let guest_clusters = virtual_size.div_ceil(CLUSTER);
        let l1_size = guest_clusters.div_ceil(L2_ENTRIES);
        let l1_clusters = (l1_size * 8).div_ceil(CLUSTER).max(1);
        let l2_start = (1 + l1_clusters) * CLUSTER;
        let data_start = l2_start + l1_size * CLUSTER;
        // A new inode, never a truncated one: an earlier qcow2 at this path
        // may be the cluster cache's pack (a hard link).
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("replacing {}", path.display()))
            }
            _ => {}
        }
        let mut file =
            File::create_new(path).with_context(|| format!("creating {}", path.display()))?;
        // The data area streams in after the tables, written last.
        file.seek(SeekFrom::Start(data_start))
            .with_context(|| format!("writing {}", path.display()))?;
        let mut refcounts = vec![0u16; (data_start / CLUSTER) as usize];
        refcounts.fill(1);
        Ok(Writer {
            out: BufWriter::with_capacity(1 << 20, file),
            pos: data_start,
            virtual_size,
            l1_size,
            l2_start,
            l2: Vec::with_capacity(guest_clusters as usize),
            refcounts,
            entries: Vec::new(),
        })
    }

    fn skip(&mut self, clusters: u64) {
        self.l2.extend((0..clusters).map(|_| 0u64));
    }

    fn reference(&mut self, from: u64, to: u64) {
        let last = ((to - 1) / CLUSTER) as usize;
        if self.refcounts.len() <= last {
            self.refcounts.resize(last + 1, 0);
        }
        for c in (from / CLUSTER) as usize..=last {
            self.refcounts[c] = self.refcounts[c].saturating_add(1);
        }
    }

    fn push(&mut self, payload: Payload) -> Result<()> {
        let Payload::Stored { key, bytes, .. } = payload else {
            self.l2.push(0);
            return Ok(());
        };
        if bytes.len() as u64 == CLUSTER {
            self.pad_to_cluster()?;
            self.l2.push(self.pos | OFLAG_COPIED);
            self.reference(self.pos, self.pos + CLUSTER);
        } else {
            let first = self.pos & !511;
            let extra = (self.pos + bytes.len() as u64 - 1) / 512 - self.pos / 512;
            self.l2
                .push(OFLAG_COMPRESSED | (extra << CSIZE_SHIFT) | self.pos);
            self.reference(first, first + (extra + 1) * 512);
        }
        self.entries.push((
            key,
            Stored {
                offset: self.pos,
                len: bytes.len() as u32,
            },
        ));
        self.out.write_all(&bytes).context("writing the qcow2")?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    fn pad_to_cluster(&mut self) -> Result<()> {
        let pad = self.pos.next_multiple_of(CLUSTER) - self.pos;
        self.out
            .write_all(&ZEROS[..pad as usize])
            .context("writing the qcow2")?;
        self.pos += pad;
        Ok(())
    }

    /// Writes the refcounts, the tables and the header; returns where each
    /// cluster's bytes are, for the cache.
    fn finish(mut self) -> Result<Vec<(ClusterKey, Stored)>> {
        if self.l2.len() as u64 != self.virtual_size.div_ceil(CLUSTER) {
            bail!(
                "qcow2 writer: {} clusters written, expected {}",
                self.l2.len(),
                self.virtual_size.div_ceil(CLUSTER)
            );
        }
        self.pad_to_cluster()?;
        let used = self.pos / CLUSTER;
        // The refcount blocks and table count themselves too.
        let (mut blocks, mut table) = (1u64, 1u64);
        loop {
            let total = used + blocks + table;
            let b = total.div_ceil(REFCOUNTS_PER_BLOCK);
            let t = (b * 8).div_ceil(CLUSTER);
            if (b, t) == (blocks, table) {
                break;
            }
            (blocks, table) = (b, t);
        }
        let blocks_at = used;
        let table_at = used + blocks;
        self.refcounts.resize((used + blocks + table) as usize, 0);
        for c in blocks_at..table_at + table {
            self.refcounts[c as usize] = 1;
        }
        self.refcounts
            .resize((blocks * REFCOUNTS_PER_BLOCK) as usize, 0);
        let mut rb = Vec::with_capacity(self.refcounts.len() * 2);
        for r in &self.refcounts {
            rb.extend_from_slice(&r.to_be_bytes());
        }
        self.out
            .write_all(&rb)
            .context("writing the qcow2 refcounts")?;
        let mut rt = vec![0u8; (table * CLUSTER) as usize];
        for b in 0..blocks {
            let at = (b * 8) as usize;
            rt[at..at + 8].copy_from_slice(&((blocks_at + b) * CLUSTER).to_be_bytes());
        }
        self.out
            .write_all(&rt)
            .context("writing the qcow2 refcounts")?;
        let file = self
            .out
            .into_inner()
            .map_err(|e| e.into_error())
            .context("writing the qcow2")?;

        let mut l1 = vec![0u8; (self.l1_size * 8) as usize];
        for i in 0..self.l1_size {
            let l2_offset = self.l2_start + i * CLUSTER;
            l1[(i * 8) as usize..(i * 8 + 8) as usize]
                .copy_from_slice(&(l2_offset | OFLAG_COPIED).to_be_bytes());
        }
        let mut l2 = vec![0u8; (self.l1_size * CLUSTER) as usize];
        for (i, e) in self.l2.iter().enumerate() {
            l2[i * 8..i * 8 + 8].copy_from_slice(&e.to_be_bytes());
        }
        let header = header(self.virtual_size, self.l1_size, table_at * CLUSTER, table);
        file.write_all_at(&header, 0)
            .and_then(|()| file.write_all_at(&l1, CLUSTER))
            .and_then(|()| file.write_all_at(&l2, self.l2_start))
            .context("writing the qcow2 tables")?;
        Ok(self.entries)
    }
}

fn header(virtual_size: u64, l1_size: u64, refcount_table: u64, refcount_clusters: u64) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_LEN as usize);
    h.extend_from_slice(b"QFI\xfb");
    h.extend_from_slice(&3u32.to_be_bytes()); // version
    h.extend_from_slice(&0u64.to_be_bytes()); // backing file offset
    h.extend_from_slice(&0u32.to_be_bytes()); // backing file size
    h.extend_from_slice(&CLUSTER_BITS.to_be_bytes());
    h.extend_from_slice(&virtual_size.to_be_bytes());
    h.extend_from_slice(&0u32.to_be_bytes()); // no encryption
    h.extend_from_slice(&(l1_size as u32).to_be_bytes());
    h.extend_from_slice(&CLUSTER.to_be_bytes()); // L1 table offset
    h.extend_from_slice(&refcount_table.to_be_bytes());
    h.extend_from_slice(&(refcount_clusters as u32).to_be_bytes());
    h.extend_from_slice(&0u32.to_be_bytes()); // snapshots
    h.extend_from_slice(&0u64.to_be_bytes()); // snapshots offset
    h.extend_from_slice(&INCOMPAT_COMPRESSION_TYPE.to_be_bytes());
    h.extend_from_slice(&0u64.to_be_bytes()); // compatible features
    h.extend_from_slice(&0u64.to_be_bytes()); // autoclear features
    h.extend_from_slice(&REFCOUNT_ORDER.to_be_bytes());
    h.extend_from_slice(&HEADER_LEN.to_be_bytes());
    h.push(COMPRESSION_ZSTD);
    h.resize(HEADER_LEN as usize, 0);
    // Then the end of the header extensions: 8 zero bytes (the cluster is
    // zero past the header).
    h
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;
    use crate::sparse::{sha256_plain, tests::sparse_file};

    fn have_qemu_img() -> bool {
        Command::new("qemu-img").arg("--version").output().is_ok()
    }

    fn qemu_img(args: &[&str]) {
        let out = Command::new("qemu-img")
            .args(args)
            .output()
            .expect("qemu-img");
        assert!(
            out.status.success(),
            "qemu-img {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn qcow2_holds_the_raw_image_and_is_the_same_with_the_cache() {
        let dir = tempfile::tempdir().expect("tempdir");
        let raw = sparse_file(dir.path());
        let cache_dir = dir.path().join("cache");
        let a = dir.path().join("a.qcow2");
        let cache = ClusterCache::open(&cache_dir, "img", cache_header());
        let cold = convert(&raw, Some(&a), Some(&cache)).expect("convert");
        assert_eq!(cold.raw_sha256, sha256_plain(&raw).expect("sha"));
        assert_eq!(cold.stats.reused, 0);
        assert!(
            cold.stats.compressed > 0 && cold.stats.zero > 0,
            "{:?}",
            cold.stats
        );
        assert_eq!(cold.stats.total, (40 << 20) / CLUSTER);

        // Every cluster again from the cache: the same bytes.
        let b = dir.path().join("b.qcow2");
        let cache = ClusterCache::open(&cache_dir, "img", cache_header());
        assert!(!cache.is_empty());
        let warm = convert(&raw, Some(&b), Some(&cache)).expect("convert");
        assert_eq!(warm.stats.compressed, 0, "{:?}", warm.stats);
        assert_eq!(warm.stats.reused, cold.stats.compressed);
        assert_eq!(warm.qcow2_sha256, cold.qcow2_sha256);
        assert_eq!(std::fs::read(&a).expect("a"), std::fs::read(&b).expect("b"));

        // Without a cache, on one core or many: the same bytes too.
        let c = dir.path().join("c.qcow2");
        let plain = convert(&raw, Some(&c), None).expect("convert");
        assert_eq!(plain.qcow2_sha256, cold.qcow2_sha256);

        if have_qemu_img() {
            let a = a.to_str().expect("utf-8");
            let raw = raw.to_str().expect("utf-8");
            qemu_img(&["check", "-f", "qcow2", a]);
            qemu_img(&["compare", "-f", "raw", "-F", "qcow2", raw, a]);
        }
    }

    #[test]
    fn incompressible_clusters_are_stored_as_is() {
        let dir = tempfile::tempdir().expect("tempdir");
        let raw = dir.path().join("noise.img");
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..(3 * CLUSTER + 1024))
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        std::fs::write(&raw, &noise).expect("write");
        let q = dir.path().join("noise.qcow2");
        let out = convert(&raw, Some(&q), None).expect("convert");
        assert_eq!(out.stats.total, 4);
        assert_eq!(out.raw_sha256, hex::encode(Sha256::digest(&noise)));
        if have_qemu_img() {
            let q = q.to_str().expect("utf-8");
            qemu_img(&["check", "-f", "qcow2", q]);
            // qemu-img compare needs equal sizes: compare through a convert.
            let back = dir.path().join("back.raw");
            let back_s = back.to_str().expect("utf-8");
            qemu_img(&["convert", "-f", "qcow2", "-O", "raw", q, back_s]);
            assert!(
                std::fs::read(&back).expect("back") == noise,
                "round trip differs"
            );
        }
    }
}
