//! cloud-init user-data in the forms cloud-init accepts: `#cloud-config`
//! YAML, shell scripts (the seed's `touch /etc/sysconfig/kubernetes-master`),
//! MIME multipart (`cloud-init devel make-mime`) and gzip of any of these.
//!
//! [`parse`] turns raw bytes into a [`Request`]: a role with settings, or
//! "unassigned" with the reason. Nothing is executed.

pub mod cloud_config;
pub mod gzip;
pub mod mime;
pub mod script;
pub mod yaml11;

use contract::role::Role;

use crate::credentials::Credentials;
use crate::settings::Settings;

/// User-data is invalid; `place` says where (part, line, key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{place}: {message}")]
pub struct UserDataError {
    pub place: String,
    pub message: String,
}

impl UserDataError {
    pub fn new(place: &str, message: impl Into<String>) -> Self {
        UserDataError {
            place: place.to_string(),
            message: message.into(),
        }
    }
}

/// What user-data asks of this host.
#[allow(clippy::large_enum_variant)] // one value per boot
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Take `role` with `settings`; `source` says which part(s) asked.
    Assign {
        role: Role,
        settings: Settings,
        /// Cluster credentials from `kubernetes:` (checked for form only;
        /// [`crate::pki`] checks the keys at activation).
        credentials: Option<Credentials>,
        source: String,
    },
    /// No part asks for a role.
    Unassigned { reason: String },
}

/// What one part contributed.
#[allow(clippy::large_enum_variant)] // a handful per boot
enum Found {
    Kubernetes(cloud_config::KubernetesSection),
    Script(Role, usize),
    Nothing(String),
}

struct Part {
    place: String,
    found: Found,
}

/// Parses user-data bytes.
pub fn parse(data: &[u8]) -> Result<Request, UserDataError> {
    let mut parts = Vec::new();
    collect(data, "user-data", 0, &mut parts)?;
    merge(parts)
}

fn collect(
    data: &[u8],
    place: &str,
    depth: usize,
    out: &mut Vec<Part>,
) -> Result<(), UserDataError> {
    if data.len() as u64 > gzip::MAX_SIZE {
        return Err(UserDataError::new(
            place,
            format!("larger than {} bytes", gzip::MAX_SIZE),
        ));
    }
    if gzip::is_gzip(data) {
        if depth >= 2 {
            return Err(UserDataError::new(place, "gzip nested inside gzip"));
        }
        let inner = gzip::decompress(data, place)?;
        return collect(&inner, &format!("{place} (gzip)"), depth + 1, out);
    }
    if depth < 2 && mime::is_mime(data) {
        for leaf in mime::leaves(data, place)? {
            let name = leaf
                .filename
                .as_deref()
                .map(|f| format!(" {f:?}"))
                .unwrap_or_default();
            let lplace = format!("{place} part {} ({}{name})", leaf.index, leaf.content_type);
            let ct = leaf.content_type.as_str();
            match ct {
                "text/cloud-config" => out.push(cloud_config_part(&leaf.body, &lplace)?),
                _ if ct.starts_with("text/x-shellscript") => {
                    out.push(script_part(&leaf.body, &lplace)?)
                }
                "application/x-gzip"
                | "application/gzip"
                | "text/plain"
                | "application/octet-stream"
                | "text/x-not-multipart" => {
                    // Type decided by content, as cloud-init does; no MIME inside MIME.
                    collect(&leaf.body, &lplace, 2, out)?;
                }
                other => out.push(Part {
                    place: lplace.clone(),
                    found: Found::Nothing(format!("{other} parts are not read by rolectl")),
                }),
            }
        }
        return Ok(());
    }
    out.push(single(data, place)?);
    Ok(())
}

/// A non-MIME document, typed by its first line like cloud-init does.
fn single(data: &[u8], place: &str) -> Result<Part, UserDataError> {
    let data = data.strip_prefix(b"\xef\xbb\xbf").unwrap_or(data);
    let starts = |p: &str| data.starts_with(p.as_bytes());
    let nothing = |why: &str| Part {
        place: place.to_string(),
        found: Found::Nothing(why.to_string()),
    };
    if starts("#cloud-config-archive") || starts("#cloud-config-jsonp") {
        return Ok(nothing("cloud-config-archive is not read by rolectl"));
    }
    if starts("#cloud-config") {
        return cloud_config_part(data, place);
    }
    if starts("## template: jinja") {
        return Ok(nothing("jinja templates are not rendered by rolectl"));
    }
    for h in [
        "#include",
        "#cloud-boothook",
        "#part-handler",
        "#upstart-job",
    ] {
        if starts(h) {
            return Ok(nothing(&format!("{h} user-data is not read by rolectl")));
        }
    }
    if data.iter().all(u8::is_ascii_whitespace) {
        return Ok(nothing("empty"));
    }
    // `#!` scripts and the seed's bare `touch ...` line.
    let p = script_part(data, place)?;
    Ok(match p.found {
        Found::Nothing(_) if !starts("#!") => nothing(
            "neither #cloud-config nor a script with `touch /etc/sysconfig/kubernetes-<role>`",
        ),
        _ => p,
    })
}

fn cloud_config_part(data: &[u8], place: &str) -> Result<Part, UserDataError> {
    let text = std::str::from_utf8(data)
        .map_err(|e| UserDataError::new(place, format!("cloud-config is not UTF-8: {e}")))?;
    let found = match cloud_config::parse(text, place)? {
        Some(k) => Found::Kubernetes(k),
        None => Found::Nothing("cloud-config without a kubernetes: key".to_string()),
    };
    Ok(Part {
        place: place.to_string(),
        found,
    })
}

fn script_part(data: &[u8], place: &str) -> Result<Part, UserDataError> {
    let text = String::from_utf8_lossy(data);
    let found = match script::parse(&text, place)? {
        Some((role, line)) => Found::Script(role, line),
        None => Found::Nothing("script without a role marker".to_string()),
    };
    Ok(Part {
        place: place.to_string(),
        found,
    })
}

fn merge(parts: Vec<Part>) -> Result<Request, UserDataError> {
    let mut role: Option<(Role, String)> = None;
    let mut section: Option<(Settings, Option<Credentials>, String)> = None;
    let mut reasons = Vec::new();
    for p in parts {
        let (r, at) = match p.found {
            Found::Kubernetes(k) => {
                let at = format!("{} line {}", p.place, k.line);
                if let Some((_, _, first)) = &section {
                    return Err(UserDataError::new(
                        &at,
                        format!("kubernetes: is also given in {first}; give it in one part only"),
                    ));
                }
                section = Some((k.settings, k.credentials, at.clone()));
                (k.role, at)
            }
            Found::Script(r, line) => (r, format!("{} line {line}", p.place)),
            Found::Nothing(why) => {
                reasons.push(format!("{}: {why}", p.place));
                continue;
            }
        };
        match &role {
            Some((first, first_at)) if *first != r => {
                return Err(UserDataError::new(
                    &at,
                    format!(
                    "asks for role {r}, but {first_at} asks for role {first}; a host has one role"
                ),
                ))
            }
            Some(_) => {}
            None => role = Some((r, at)),
        }
    }
    Ok(match role {
        Some((role, at)) => {
            let (settings, credentials, source) = match section {
                Some((s, c, sat)) => (s, c, sat),
                None => (Settings::default(), None, at),
            };
            Request::Assign {
                role,
                settings,
                credentials,
                source,
            }
        }
        None => Request::Unassigned {
            reason: if reasons.is_empty() {
                "user-data has no parts".to_string()
            } else {
                format!("no part asks for a role ({})", reasons.join("; "))
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn role(r: Result<Request, UserDataError>) -> Role {
        match r.unwrap() {
            Request::Assign { role, .. } => role,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn forms() {
        assert_eq!(
            role(parse(b"touch /etc/sysconfig/kubernetes-master\n")),
            Role::Master
        );
        assert_eq!(
            role(parse(
                b"#!/bin/sh\ntouch /etc/sysconfig/kubernetes-minion\n"
            )),
            Role::Minion
        );
        assert_eq!(
            role(parse(b"#cloud-config\nkubernetes:\n  role: master\n")),
            Role::Master
        );
        assert_eq!(
            role(parse(&gz(b"touch /etc/sysconfig/kubernetes-minion"))),
            Role::Minion
        );
        assert_eq!(
            role(parse(&gz(b"#cloud-config\nkubernetes: {role: minion}\n"))),
            Role::Minion
        );
    }

    #[test]
    fn unassigned() {
        for d in [
            &b""[..],
            b"#cloud-config\nusers: []\n",
            b"#!/bin/sh\necho hi\n",
            b"hello",
        ] {
            assert!(
                matches!(parse(d).unwrap(), Request::Unassigned { .. }),
                "{d:?}"
            );
        }
    }

    const MIME: &str = "Content-Type: multipart/mixed; boundary=\"XX\"\nMIME-Version: 1.0\n\n--XX\nContent-Type: text/cloud-config; charset=\"us-ascii\"\nMIME-Version: 1.0\nContent-Transfer-Encoding: 7bit\nContent-Disposition: attachment; filename=\"a.yaml\"\n\n#cloud-config\nkubernetes:\n  role: minion\n  cluster: demo\n\n--XX\nContent-Type: text/x-shellscript; charset=\"us-ascii\"\nMIME-Version: 1.0\nContent-Transfer-Encoding: base64\nContent-Disposition: attachment; filename=\"b.sh\"\n\nIyEvYmluL3NoCnRvdWNoIC9ldGMvc3lzY29uZmlnL2t1YmVybmV0ZXMtbWFzdGVyCg==\n--XX--\n";

    #[test]
    fn mime_conflict_names_both_parts() {
        let e = parse(MIME.as_bytes()).unwrap_err().to_string();
        assert!(
            e.contains("part 2") && e.contains("part 1") && e.contains("b.sh"),
            "{e}"
        );
        let ok = MIME.replace("role: minion", "role: master");
        match parse(ok.as_bytes()).unwrap() {
            Request::Assign {
                role,
                settings,
                source,
                ..
            } => {
                assert_eq!(role, Role::Master);
                assert_eq!(settings.cluster.as_str(), "demo");
                assert!(source.contains("a.yaml"), "{source}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(role(parse(&gz(ok.as_bytes()))), Role::Master);
    }

    #[test]
    fn corrupt_gzip() {
        let mut g = gz(b"#cloud-config\nkubernetes: {role: minion}\n");
        g.truncate(12);
        assert!(parse(&g).unwrap_err().to_string().contains("gzip"));
    }
}
