//! gzip-compressed user-data (cloud-init decompresses it before anything
//! else). Decompression is bounded so a gzip bomb cannot exhaust memory.

use std::io::Read;

use flate2::read::GzDecoder;

use super::UserDataError;

/// The most user-data rolectl will read (after decompression).
pub const MAX_SIZE: u64 = 16 * 1024 * 1024;

pub fn is_gzip(data: &[u8]) -> bool {
    data.starts_with(&[0x1f, 0x8b])
}

pub fn decompress(data: &[u8], place: &str) -> Result<Vec<u8>, UserDataError> {
    let mut out = Vec::new();
    let mut r = GzDecoder::new(data).take(MAX_SIZE + 1);
    r.read_to_end(&mut out)
        .map_err(|e| UserDataError::new(place, format!("gzip data is corrupt: {e}")))?;
    if out.len() as u64 > MAX_SIZE {
        return Err(UserDataError::new(
            place,
            format!("decompressed user-data is larger than {MAX_SIZE} bytes"),
        ));
    }
    Ok(out)
}
