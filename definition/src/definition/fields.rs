//! The field helpers every section's validation shares: [`Ctx`], which
//! collects the [`FieldError`]s, and the checks of values that recur across
//! sections (names, versions, modes, image paths, URLs, digests, package
//! specs, paths beside the definition) and of who writes each image path.

use std::collections::HashMap;
use std::path::{Component, Path};

use url::Url;

use super::raw::Scalar;
use super::{FieldError, ImagePath, LoadOptions, Package};
use crate::digest::{Algorithm, Digest};

/// Image directories nothing may be installed into: they are mounted over
/// (or emptied) at boot.
const FORBIDDEN_ROOTS: [&str; 5] = ["/proc", "/sys", "/dev", "/run", "/tmp"];

/// The validation context: the definition file and every error found so
/// far (validation reports them all, in the order found).
pub(super) struct Ctx<'a> {
    pub(super) file: &'a Path,
    pub(super) errors: Vec<FieldError>,
}

impl Ctx<'_> {
    pub(super) fn err(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            file: self.file.to_path_buf(),
            field: field.into(),
            message: message.into(),
        });
    }
}

/// Records that `field` writes `path`; two writers of one path is an error.
pub(super) fn claim(
    cx: &mut Ctx<'_>,
    owners: &mut HashMap<String, String>,
    path: &ImagePath,
    field: String,
) {
    if let Some(prev) = owners.get(path.as_str()) {
        cx.err(
            &field,
            format!(
                "{} is already installed by {prev}: each image path may have one source",
                path
            ),
        );
    } else {
        owners.insert(path.as_str().to_string(), field);
    }
}

/// A non-empty string (a version): YAML numbers are refused, not converted.
pub(super) fn string_scalar(cx: &mut Ctx<'_>, field: &str, v: &Scalar) -> Option<String> {
    match v {
        Scalar::Str(s) if !s.trim().is_empty() => Some(s.clone()),
        Scalar::Str(_) | Scalar::Null => {
            cx.err(field, "empty: set a version string, e.g. \"1.0.0\"");
            None
        }
        other => {
            cx.err(
                field,
                format!(
                    "must be a string, got {} (YAML may have changed it): quote it, e.g. \"1.10\"",
                    other.describe()
                ),
            );
            None
        }
    }
}

/// A file mode: a quoted string of 3 or 4 octal digits.
pub(super) fn parse_mode(cx: &mut Ctx<'_>, field: &str, v: &Scalar) -> Option<u32> {
    match v {
        Scalar::Str(s) => {
            let ok = (3..=4).contains(&s.len()) && s.chars().all(|c| ('0'..='7').contains(&c));
            match (ok, u32::from_str_radix(s, 8)) {
                (true, Ok(m)) => Some(m),
                _ => {
                    cx.err(
                        field,
                        format!(
                            "invalid mode {s:?}: use 3 or 4 octal digits in quotes, e.g. \"0755\""
                        ),
                    );
                    None
                }
            }
        }
        other => {
            cx.err(
                field,
                format!(
                    "mode must be a quoted octal string like \"0755\", got {} (YAML 1.1 and 1.2 disagree on unquoted 0755): quote it",
                    other.describe()
                ),
            );
            None
        }
    }
}

/// An image path ([`check_image_path`]), the error recorded at `field`.
pub(super) fn image_path(cx: &mut Ctx<'_>, field: &str, p: &str) -> Option<ImagePath> {
    match check_image_path(p) {
        Ok(()) => Some(ImagePath(p.to_string())),
        Err(msg) => {
            cx.err(field, msg);
            None
        }
    }
}

/// An absolute, normalized path to a file, not under [`FORBIDDEN_ROOTS`].
pub(super) fn check_image_path(p: &str) -> Result<(), String> {
    if !p.starts_with('/') {
        return Err(format!("path {p:?} must be absolute (start with '/')"));
    }
    if p == "/" || p.contains(['\n', '\r', '\0']) {
        return Err(format!(
            "path {p:?} must name a file below '/', on one line"
        ));
    }
    if p.ends_with('/') {
        return Err(format!("path {p:?} must not end with '/': name the file"));
    }
    for comp in p[1..].split('/') {
        match comp {
            "" => return Err(format!("path {p:?} is not normalized: remove the '//'")),
            "." => {
                return Err(format!(
                    "path {p:?} is not normalized: remove the '.' component"
                ))
            }
            ".." => {
                return Err(format!(
                    "path {p:?} contains '..': write the normalized absolute path"
                ))
            }
            _ => {}
        }
    }
    for root in FORBIDDEN_ROOTS {
        if p == root || p.starts_with(&format!("{root}/")) {
            return Err(format!(
                "path {p:?} is under {root}, which is not part of the image at runtime (mounted or emptied at boot): install elsewhere, e.g. /usr/local or /etc"
            ));
        }
    }
    Ok(())
}

/// An artifact or source URL: https, or http/file with
/// `--allow-insecure-urls` (the digest still protects the content).
pub(super) fn parse_url(
    cx: &mut Ctx<'_>,
    field: &str,
    raw: &str,
    opts: &LoadOptions,
) -> Option<Url> {
    match Url::parse(raw) {
        Err(e) => {
            cx.err(field, format!("invalid URL {raw:?}: {e}"));
            None
        }
        Ok(u) => match u.scheme() {
            "https" if u.host().is_some() => Some(u),
            "http" | "file" if opts.allow_insecure_urls => Some(u),
            "http" | "file" => {
                cx.err(
                    field,
                    format!(
                        "{} URLs are refused: use https://, or pass --allow-insecure-urls (the digest still protects the content)",
                        u.scheme()
                    ),
                );
                None
            }
            other => {
                cx.err(
                    field,
                    format!("unsupported URL scheme {other:?} in {raw:?}: use https://"),
                );
                None
            }
        },
    }
}

/// Exactly one of `sha256:` / `sha512:` under the entry at `p`.
pub(super) fn one_digest(
    cx: &mut Ctx<'_>,
    p: &str,
    sha256: Option<&str>,
    sha512: Option<&str>,
) -> Option<Digest> {
    match (sha256, sha512) {
        (Some(_), Some(_)) => {
            cx.err(
                format!("{p}.sha512"),
                "both sha256 and sha512 are set: keep exactly one (the one upstream publishes)",
            );
            None
        }
        (None, None) => {
            cx.err(
                p.to_string(),
                "no digest: add `sha256: <64 hex>` or `sha512: <128 hex>` from the upstream release",
            );
            None
        }
        (Some(h), None) => parse_digest(cx, &format!("{p}.sha256"), Algorithm::Sha256, h),
        (None, Some(h)) => parse_digest(cx, &format!("{p}.sha512"), Algorithm::Sha512, h),
    }
}

/// A digest of `alg` in hex.
pub(super) fn parse_digest(
    cx: &mut Ctx<'_>,
    field: &str,
    alg: Algorithm,
    hex: &str,
) -> Option<Digest> {
    match Digest::parse_hex(alg, hex.trim()) {
        Ok(d) => Some(d),
        Err(e) => {
            cx.err(field, format!("malformed {alg} digest: {e}"));
            None
        }
    }
}

/// A Debian package `name` or `name=version`.
pub(super) fn parse_package(spec: &str) -> Result<Package, String> {
    let (name, version) = match spec.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (spec, None),
    };
    let name_ok = name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| matches!(c, 'a'..='z' | '0'..='9' | '+' | '.' | '-'));
    if !name_ok {
        return Err(format!(
            "invalid package {spec:?}: write `name` or `name=version`; Debian package names are [a-z0-9][a-z0-9+.-]+"
        ));
    }
    if let Some(v) = version {
        let version_ok = v.starts_with(|c: char| c.is_ascii_digit())
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-' | '~' | ':'));
        if !version_ok {
            return Err(format!(
                "invalid version pin in {spec:?}: a Debian version starts with a digit and uses only [A-Za-z0-9.+~:-] (no spaces), e.g. docker.io=20.10.24+dfsg1-1+deb12u1+b6"
            ));
        }
    }
    Ok(Package {
        name: name.to_string(),
        version: version.map(str::to_string),
    })
}

/// A path relative to the definition's directory, without `..`.
pub(super) fn relative_file(p: &str) -> Result<(), String> {
    let path = Path::new(p);
    if p.is_empty() || path.is_absolute() {
        return Err(format!(
            "{p:?} must be a path relative to the definition's directory, e.g. recipes/kubernetes.sh"
        ));
    }
    if path
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err(format!(
            "{p:?} must stay below the definition's directory: no '..' or '.' components"
        ));
    }
    Ok(())
}

/// Lowercase letters, digits and '-', starting with a letter or digit (image,
/// artifact and build names).
pub(super) fn is_image_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// One file name component of [0-9A-Za-z._-], not `.` or `..`.
pub(super) fn is_file_name(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}
