//! Sparse files: where their data is (`SEEK_DATA`/`SEEK_HOLE`) and a SHA-256
//! that reads only the data and feeds the holes from a static zero buffer.
//!
//! The digest is that of every byte, holes included (what `sha256sum`
//! prints): skipping holes only saves the reads, never the hashing.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt as _;
use std::path::Path;

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::unistd::{lseek, Whence};
use sha2::{Digest as _, Sha256};

/// 1 MiB of zeros: holes are hashed from here, zero clusters compared to it.
pub static ZEROS: [u8; 1 << 20] = [0; 1 << 20];

/// The byte ranges of a file that hold data, in order; the rest are holes.
/// On a filesystem without `SEEK_DATA` the whole file is one data range.
pub fn data_ranges(file: &File, len: u64) -> Result<Vec<Range<u64>>> {
    let mut ranges = Vec::new();
    let mut offset = 0u64;
    while offset < len {
        let start = match lseek(file, offset as i64, Whence::SeekData) {
            Ok(at) => at as u64,
            Err(Errno::ENXIO) => break, // only a hole up to the end
            // No SEEK_DATA on this filesystem: all of it is data.
            Err(Errno::EINVAL) if offset == 0 => {
                ranges.push(0..len);
                break;
            }
            Err(e) => return Err(e).context("finding the data of a sparse file (SEEK_DATA)"),
        };
        let end = lseek(file, start as i64, Whence::SeekHole)
            .context("finding the holes of a sparse file (SEEK_HOLE)")? as u64;
        ranges.push(start..end.min(len));
        offset = end;
    }
    Ok(ranges)
}

/// Feeds `n` zero bytes to `hasher`.
pub fn hash_zeros(hasher: &mut Sha256, mut n: u64) {
    while n > 0 {
        let step = n.min(ZEROS.len() as u64) as usize;
        hasher.update(&ZEROS[..step]);
        n -= step as u64;
    }
}

/// SHA-256 (hex) of a possibly sparse file: data ranges are read, holes are
/// hashed as zeros without reading them.
pub fn sha256_sparse(path: &Path) -> Result<String> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let len = file
        .metadata()
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    for range in data_ranges(&file, len).with_context(|| format!("reading {}", path.display()))? {
        hash_zeros(&mut hasher, range.start - at);
        let mut offset = range.start;
        while offset < range.end {
            let n = (range.end - offset).min(buf.len() as u64) as usize;
            file.read_exact_at(&mut buf[..n], offset)
                .with_context(|| format!("hashing {}", path.display()))?;
            hasher.update(&buf[..n]);
            offset += n as u64;
        }
        at = range.end;
    }
    hash_zeros(&mut hasher, len - at);
    Ok(hex::encode(hasher.finalize()))
}

/// SHA-256 (hex) of a file read from start to end.
#[cfg(test)]
pub fn sha256_plain(path: &Path) -> Result<String> {
    use std::io::Read as _;
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("hashing {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::{Seek, SeekFrom, Write};

    use super::*;

    /// A sparse file: data at the start, in the middle (not block aligned)
    /// and at the end, zeros written as data, and holes between them.
    pub(crate) fn sparse_file(dir: &Path) -> std::path::PathBuf {
        let path = dir.join("sparse.img");
        let mut f = File::create(&path).expect("create");
        f.set_len(40 << 20).expect("set_len");
        f.write_all(b"MBR at the start").expect("write");
        f.seek(SeekFrom::Start((5 << 20) + 123)).expect("seek");
        let noise: Vec<u8> = (0..300_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        f.write_all(&noise).expect("write");
        f.seek(SeekFrom::Start(12 << 20)).expect("seek");
        f.write_all(&vec![0u8; 3 << 20])
            .expect("write zeros as data");
        f.seek(SeekFrom::Start((40 << 20) - 10)).expect("seek");
        f.write_all(b"tail bytes").expect("write");
        path
    }

    #[test]
    fn sparse_digest_equals_the_plain_digest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = sparse_file(dir.path());
        let file = File::open(&path).expect("open");
        let ranges = data_ranges(&file, 40 << 20).expect("ranges");
        let data: u64 = ranges.iter().map(|r| r.end - r.start).sum();
        assert!(data < 40 << 20, "the test file must have holes: {ranges:?}");
        assert_eq!(
            sha256_sparse(&path).expect("sparse"),
            sha256_plain(&path).expect("plain")
        );
    }

    #[test]
    fn digest_of_a_file_that_is_all_hole_or_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hole = dir.path().join("hole.img");
        File::create(&hole)
            .expect("create")
            .set_len(3 << 20)
            .expect("set_len");
        assert_eq!(
            sha256_sparse(&hole).expect("sparse"),
            hex::encode(Sha256::digest(vec![0u8; 3 << 20]))
        );
        let empty = dir.path().join("empty");
        File::create(&empty).expect("create");
        assert_eq!(
            sha256_sparse(&empty).expect("sparse"),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
