//! MIME multipart user-data as `cloud-init devel make-mime` writes it,
//! parsed with `mailparse` (no hand-written MIME parsing).

use mailparse::{parse_mail, ParsedMail};

use super::UserDataError;

/// One leaf part: its 1-based number, content type, file name and body.
pub struct Leaf {
    pub index: usize,
    pub content_type: String,
    pub filename: Option<String>,
    pub body: Vec<u8>,
}

/// cloud-init's test: "mime-version:" in the first 4096 bytes.
pub fn is_mime(data: &[u8]) -> bool {
    let head = &data[..data.len().min(4096)];
    head.windows(13)
        .any(|w| w.eq_ignore_ascii_case(b"mime-version:"))
}

pub fn leaves(data: &[u8], place: &str) -> Result<Vec<Leaf>, UserDataError> {
    let mail = parse_mail(data)
        .map_err(|e| UserDataError::new(place, format!("invalid MIME message: {e}")))?;
    let mut out = Vec::new();
    collect(&mail, &mut out, place, 0)?;
    Ok(out)
}

fn collect(
    m: &ParsedMail<'_>,
    out: &mut Vec<Leaf>,
    place: &str,
    depth: usize,
) -> Result<(), UserDataError> {
    if depth > 8 {
        return Err(UserDataError::new(
            place,
            "MIME parts nested more than 8 deep",
        ));
    }
    let ct = m.ctype.mimetype.to_ascii_lowercase();
    if ct.starts_with("multipart/") {
        for p in &m.subparts {
            collect(p, out, place, depth + 1)?;
        }
        return Ok(());
    }
    let index = out.len() + 1;
    let body = m.get_body_raw().map_err(|e| {
        UserDataError::new(
            &format!("{place} part {index}"),
            format!("cannot decode body: {e}"),
        )
    })?;
    let filename = m
        .get_content_disposition()
        .params
        .get("filename")
        .cloned()
        .or_else(|| m.ctype.params.get("name").cloned());
    out.push(Leaf {
        index,
        content_type: ct,
        filename,
        body,
    });
    Ok(())
}
