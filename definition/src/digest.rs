//! Typed content digests.
//!
//! A [`Digest`] can only be built from a well-formed hex string of the right
//! length (or from a finished hasher), so an invalid digest cannot exist past
//! definition loading. [`DualHasher`] computes the declared digest and SHA-256
//! in one pass: the manifest records SHA-256 for every artifact even when
//! upstream only publishes SHA-512.

use std::fmt;
use std::io::{self, Read};
use std::str::FromStr;

use serde::{Serialize, Serializer};
use sha2::{Digest as _, Sha256, Sha512};

/// Which hash function a [`Digest`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    /// The definition field name and cache directory name: `sha256` / `sha512`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Length of the hex form.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A SHA-256 or SHA-512 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum Digest {
    Sha256([u8; 32]),
    Sha512([u8; 64]),
}

/// Why a digest string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("expected {expected} hex characters for {algorithm}, got {got}")]
    Length {
        algorithm: Algorithm,
        expected: usize,
        got: usize,
    },
    #[error("expected only hex characters [0-9a-f] for {algorithm}, found {found:?} at position {position}")]
    NotHex {
        algorithm: Algorithm,
        found: char,
        position: usize,
    },
    #[error("expected \"sha256:<64 hex>\" or \"sha512:<128 hex>\"")]
    UnknownAlgorithm,
}

impl Digest {
    /// Parses the hex form of a digest of a known algorithm (case-insensitive).
    pub fn parse_hex(algorithm: Algorithm, s: &str) -> Result<Self, DigestError> {
        if let Some((position, found)) = s.char_indices().find(|(_, c)| !c.is_ascii_hexdigit()) {
            return Err(DigestError::NotHex {
                algorithm,
                found,
                position,
            });
        }
        if s.len() != algorithm.hex_len() {
            return Err(DigestError::Length {
                algorithm,
                expected: algorithm.hex_len(),
                got: s.len(),
            });
        }
        let lower = s.to_ascii_lowercase();
        Ok(match algorithm {
            Algorithm::Sha256 => {
                let mut out = [0u8; 32];
                hex::decode_to_slice(&lower, &mut out).map_err(|_| DigestError::Length {
                    algorithm,
                    expected: 64,
                    got: s.len(),
                })?;
                Digest::Sha256(out)
            }
            Algorithm::Sha512 => {
                let mut out = [0u8; 64];
                hex::decode_to_slice(&lower, &mut out).map_err(|_| DigestError::Length {
                    algorithm,
                    expected: 128,
                    got: s.len(),
                })?;
                Digest::Sha512(out)
            }
        })
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            Digest::Sha256(_) => Algorithm::Sha256,
            Digest::Sha512(_) => Algorithm::Sha512,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Digest::Sha256(b) => b,
            Digest::Sha512(b) => b,
        }
    }

    /// Lowercase hex, without the algorithm prefix.
    pub fn hex(&self) -> String {
        hex::encode(self.as_bytes())
    }

    /// Digest of an in-memory buffer.
    pub fn of_bytes(algorithm: Algorithm, data: &[u8]) -> Self {
        let mut h = DualHasher::new(algorithm);
        h.update(data);
        h.finish().declared
    }
}

/// `sha256:<hex>` / `sha512:<hex>`.
impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm(), self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Parses `sha256:<hex>` / `sha512:<hex>`; a bare hex string is accepted when
/// its length identifies the algorithm (64 or 128).
impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some(("sha256", hex)) => Digest::parse_hex(Algorithm::Sha256, hex),
            Some(("sha512", hex)) => Digest::parse_hex(Algorithm::Sha512, hex),
            Some(_) => Err(DigestError::UnknownAlgorithm),
            None if s.len() == 128 => Digest::parse_hex(Algorithm::Sha512, s),
            None if s.len() == 64 => Digest::parse_hex(Algorithm::Sha256, s),
            None => Err(DigestError::UnknownAlgorithm),
        }
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The result of a [`DualHasher`]: the declared digest and SHA-256 (equal
/// when the declared algorithm is SHA-256) plus the byte count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hashed {
    pub declared: Digest,
    pub sha256: Digest,
    pub size: u64,
}

/// Streaming hasher computing the declared digest and SHA-256 at once.
#[derive(Clone)]
pub struct DualHasher {
    sha256: Sha256,
    sha512: Option<Sha512>,
    size: u64,
}

impl DualHasher {
    pub fn new(declared: Algorithm) -> Self {
        DualHasher {
            sha256: Sha256::new(),
            sha512: (declared == Algorithm::Sha512).then(Sha512::new),
            size: 0,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        self.sha256.update(data);
        if let Some(h) = &mut self.sha512 {
            h.update(data);
        }
        self.size += data.len() as u64;
    }

    /// Bytes hashed so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn finish(self) -> Hashed {
        let sha256 = Digest::Sha256(self.sha256.finalize().into());
        let declared = match self.sha512 {
            Some(h) => Digest::Sha512(h.finalize().into()),
            None => sha256,
        };
        Hashed {
            declared,
            sha256,
            size: self.size,
        }
    }

    /// Hashes everything `reader` yields.
    pub fn hash_reader<R: Read>(declared: Algorithm, mut reader: R) -> io::Result<Hashed> {
        let mut h = DualHasher::new(declared);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Ok(h.finish())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const EMPTY256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn sha256_of_empty() {
        let d = Digest::of_bytes(Algorithm::Sha256, b"");
        assert_eq!(d.hex(), EMPTY256);
        assert_eq!(d.to_string(), format!("sha256:{EMPTY256}"));
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
    }

    #[test]
    fn uppercase_is_accepted_and_displayed_lowercase() {
        let d = Digest::parse_hex(Algorithm::Sha256, &EMPTY256.to_uppercase()).unwrap();
        assert_eq!(d.hex(), EMPTY256);
    }

    #[test]
    fn short_and_nonhex_are_rejected() {
        let e = Digest::parse_hex(Algorithm::Sha256, "abcd").unwrap_err();
        assert!(e.to_string().contains("expected 64 hex characters"), "{e}");
        let bad = format!("{}z", &EMPTY256[..63]);
        let e = Digest::parse_hex(Algorithm::Sha256, &bad).unwrap_err();
        assert!(e.to_string().contains("hex"), "{e}");
        let e = Digest::parse_hex(Algorithm::Sha512, EMPTY256).unwrap_err();
        assert!(e.to_string().contains("128"), "{e}");
    }

    #[test]
    fn dual_hasher_computes_both() {
        let mut h = DualHasher::new(Algorithm::Sha512);
        h.update(b"hello ");
        h.update(b"world");
        let out = h.finish();
        assert_eq!(out.size, 11);
        assert_eq!(out.declared.algorithm(), Algorithm::Sha512);
        assert_eq!(
            out.declared,
            Digest::of_bytes(Algorithm::Sha512, b"hello world")
        );
        assert_eq!(
            out.sha256,
            Digest::of_bytes(Algorithm::Sha256, b"hello world")
        );
        assert_eq!(
            out.sha256.hex(),
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
    }
}
