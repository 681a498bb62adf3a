//! Cluster credentials from user-data (`kubernetes: bootstrap_token`,
//! `bootstrap_token_expires`, `api_server` and `pki:`): validated types and
//! the files activation writes from them. Which keys each role needs, their
//! kinds and the files' paths and modes are the schema table of
//! `contract::credentials`.
//!
//! Credentials arrive in user-data, never in the image. What can be checked
//! without cryptography (token format, timestamp, PEM structure and kind,
//! pin format) is checked here, at parse time; parsing the keys, matching a
//! key with its certificate, the signature and the pin are checked at
//! activation by [`crate::pki`] with the openssl command-line tool.
//!
//! Secret values (token secret, private keys) never appear in `Debug`
//! output or error messages.

use std::fmt;

use contract::credentials::{
    file_list, keys, spec, BootstrapToken, Credential, Doc, Form, PemKind,
};
use contract::role::Role;
use contract::values::InvalidValue;

use crate::settings::{ApiServer, Settings};

/// An RFC 3339 UTC timestamp `YYYY-MM-DDTHH:MM:SS[.fraction]Z`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiry {
    text: String,
    unix: i64,
}

contract::validated_string!(Expiry, text);

impl Expiry {
    /// Seconds since the Unix epoch (fraction dropped).
    pub fn unix(&self) -> i64 {
        self.unix
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `unix` seconds as `YYYY-MM-DDTHH:MM:SSZ` (for messages).
pub fn format_utc(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

impl Expiry {
    fn parse(s: &str) -> Result<Self, InvalidValue> {
        let err = |r: &str| InvalidValue {
            what: "bootstrap_token_expires",
            value: s.chars().take(40).collect(),
            reason: format!("{r}; expected an RFC 3339 UTC time such as 2026-11-28T14:00:00Z"),
        };
        let b = s.as_bytes();
        let num = |r: std::ops::Range<usize>| -> Option<i64> {
            let part = s.get(r)?;
            if part.bytes().all(|c| c.is_ascii_digit()) {
                part.parse().ok()
            } else {
                None
            }
        };
        if b.len() < 20
            || b[4] != b'-'
            || b[7] != b'-'
            || b[10] != b'T'
            || b[13] != b':'
            || b[16] != b':'
        {
            return Err(err("not of the form YYYY-MM-DDTHH:MM:SSZ"));
        }
        // `get`: byte 19 may fall inside a multi-byte character.
        let rest = s
            .get(19..)
            .ok_or_else(|| err("not of the form YYYY-MM-DDTHH:MM:SSZ"))?;
        let rest = match rest.strip_prefix('.') {
            Some(f) => {
                let digits = f.bytes().take_while(u8::is_ascii_digit).count();
                if digits == 0 {
                    return Err(err("empty fraction of a second"));
                }
                &f[digits..]
            }
            None => rest,
        };
        if rest != "Z" {
            return Err(err("must be UTC, ending in Z (no offset)"));
        }
        let (Some(y), Some(mo), Some(d), Some(h), Some(mi), Some(se)) = (
            num(0..4),
            num(5..7),
            num(8..10),
            num(11..13),
            num(14..16),
            num(17..19),
        ) else {
            return Err(err("not of the form YYYY-MM-DDTHH:MM:SSZ"));
        };
        let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let mdays = match mo {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return Err(err("month out of range")),
        };
        if d < 1 || d > mdays || h > 23 || mi > 59 || se > 59 {
            return Err(err("date or time out of range"));
        }
        Ok(Expiry {
            text: s.to_string(),
            unix: days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se,
        })
    }
}

/// One PEM object of a known kind, normalized (trimmed lines, `\n`, one
/// trailing newline). Private keys are never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Pem {
    kind: PemKind,
    text: String,
}

impl fmt::Debug for Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pem({:?}, {} bytes)", self.kind, self.text.len())
    }
}

/// Upper bound of one PEM value (an RSA 8192 key is about 6.5 KiB).
pub const MAX_PEM: usize = 64 * 1024;

fn is_base64_line(l: &str) -> bool {
    !l.is_empty()
        && l.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
}

impl Pem {
    pub fn kind(&self) -> PemKind {
        self.kind
    }
    /// The PEM text (for private keys: the secret itself).
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// Checks the PEM structure: exactly one object of `kind` (a private key
    /// may be preceded by `EC PARAMETERS`), base64 bodies, nothing else.
    /// Messages never include the content.
    pub fn parse(kind: PemKind, s: &str) -> Result<Pem, PemError> {
        if s.len() > MAX_PEM {
            return Err(PemError::TooLong);
        }
        let s = s.replace("\r\n", "\n");
        if s.bytes()
            .any(|b| !(b == b'\n' || (b' '..=b'~').contains(&b)))
        {
            return Err(PemError::NotText(kind));
        }
        let mut out = String::new();
        let mut found: Vec<String> = Vec::new();
        let mut open: Option<String> = None;
        let mut body_lines = 0usize;
        for line in s.lines().map(str::trim) {
            if let Some(label) = line
                .strip_prefix("-----BEGIN ")
                .and_then(|l| l.strip_suffix("-----"))
            {
                if open.is_some() {
                    return Err(PemError::NestedBegin);
                }
                open = Some(label.to_string());
                body_lines = 0;
            } else if let Some(label) = line
                .strip_prefix("-----END ")
                .and_then(|l| l.strip_suffix("-----"))
            {
                match open.take() {
                    Some(o) if o == label => {}
                    _ => return Err(PemError::UnmatchedEnd),
                }
                if body_lines == 0 {
                    return Err(PemError::EmptyBlock(label.to_string()));
                }
                found.push(label.to_string());
            } else if open.is_some() {
                if line.contains(':') {
                    return Err(PemError::Headers);
                }
                if !is_base64_line(line) {
                    return Err(PemError::NotBase64);
                }
                body_lines += 1;
            } else if line.is_empty() {
                continue;
            } else {
                return Err(PemError::TextOutside(kind));
            }
            out.push_str(line);
            out.push('\n');
        }
        if open.is_some() {
            return Err(PemError::NoEnd);
        }
        let main: Vec<&String> = found
            .iter()
            .filter(|l| !(kind == PemKind::PrivateKey && *l == "EC PARAMETERS"))
            .collect();
        match main.as_slice() {
            [] if found.is_empty() => Err(PemError::NoBegin(kind)),
            [l] if kind.labels().contains(&l.as_str()) => Ok(Pem { kind, text: out }),
            [l] if l.as_str() == "ENCRYPTED PRIVATE KEY" => Err(PemError::Encrypted),
            [l] => Err(PemError::WrongKind {
                label: l.to_string(),
                kind,
            }),
            many => Err(PemError::Many {
                blocks: many.len(),
                kind,
            }),
        }
    }
}

/// Why a PEM value is refused (the user-data key is added by the caller;
/// never the content).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PemError {
    #[error("longer than {MAX_PEM} bytes")]
    TooLong,
    #[error("must be {}: it holds characters that are not PEM text", .0.describe())]
    NotText(PemKind),
    #[error("a -----BEGIN line inside a PEM block")]
    NestedBegin,
    #[error("-----END line does not close a matching -----BEGIN")]
    UnmatchedEnd,
    #[error("the {0} block is empty")]
    EmptyBlock(String),
    #[error("encrypted or headered PEM (Proc-Type/DEK-Info) is not supported: rolectl cannot ask for a passphrase at boot; give an unencrypted key")]
    Headers,
    #[error("a PEM body line is not base64")]
    NotBase64,
    #[error("must be {}: it has text outside -----BEGIN/-----END", .0.describe())]
    TextOutside(PemKind),
    #[error("a PEM block has no -----END line")]
    NoEnd,
    #[error("must be {}; no -----BEGIN line found", .0.describe())]
    NoBegin(PemKind),
    #[error("encrypted private keys are not supported: rolectl cannot ask for a passphrase at boot; give an unencrypted key")]
    Encrypted,
    #[error("is a PEM {label}, expected {}", .kind.describe())]
    WrongKind { label: String, kind: PemKind },
    #[error("holds {blocks} PEM blocks; give exactly one ({})", .kind.describe())]
    Many { blocks: usize, kind: PemKind },
}

/// A CA pin `sha256:<64 hex>`: SHA-256 of the CA certificate's
/// SubjectPublicKeyInfo (DER), as `kubeadm join --discovery-token-ca-cert-hash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaCertHash(String);

contract::validated_string!(CaCertHash, 0);

impl CaCertHash {
    /// The hex digits (lowercase) of `as_str`'s `sha256:<hex>`.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }
}

impl CaCertHash {
    fn parse(s: &str) -> Result<Self, InvalidValue> {
        match s.strip_prefix("sha256:") {
            Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Ok(CaCertHash(format!("sha256:{}", h.to_ascii_lowercase())))
            }
            _ => Err(InvalidValue {
                what: "ca_cert_hash",
                value: s.chars().take(80).collect(),
                reason: "expected sha256: followed by 64 hex digits (the SHA-256 of the CA certificate's SubjectPublicKeyInfo)".to_string(),
            }),
        }
    }
}

/// The PEM values of one role's credentials by key path, in the order
/// user-data gave them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pems(Vec<(&'static str, Pem)>);

impl Pems {
    pub fn get(&self, key: &str) -> Option<&Pem> {
        self.0.iter().find(|(k, _)| *k == key).map(|(_, p)| p)
    }
    /// Sets (or replaces) the value of `key`.
    pub fn set(&mut self, key: &'static str, pem: Pem) {
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some((_, p)) => *p = pem,
            None => self.0.push((key, pem)),
        }
    }
}

impl FromIterator<(&'static str, Pem)> for Pems {
    fn from_iter<I: IntoIterator<Item = (&'static str, Pem)>>(iter: I) -> Self {
        Pems(iter.into_iter().collect())
    }
}

/// Credentials of a master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterCredentials {
    pub token: BootstrapToken,
    pub expires: Expiry,
    /// The CAs, their keys and the service-account key pair.
    pub pems: Pems,
}

/// Credentials of a minion (never the CA key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MinionCredentials {
    pub token: BootstrapToken,
    pub api_server: ApiServer,
    pub ca_cert_hash: Option<CaCertHash>,
    /// The CA certificate (kube-proxy uses the kubelet's own credential:
    /// no client certificate comes in user-data).
    pub pems: Pems,
}

#[allow(clippy::large_enum_variant)] // one value per boot
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleCredentials {
    Master(MasterCredentials),
    Minion(MinionCredentials),
}

impl RoleCredentials {
    pub fn pems(&self) -> &Pems {
        match self {
            RoleCredentials::Master(m) => &m.pems,
            RoleCredentials::Minion(n) => &n.pems,
        }
    }
}

/// Validated credentials plus where each key was given (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub role: RoleCredentials,
    /// (`kubernetes.pki.ca_key`, `user-data line 9`).
    pub places: Vec<(String, String)>,
}

impl Credentials {
    /// "`<place>`, key `<path>`", the same form as parse errors.
    pub fn place(&self, path: &str) -> String {
        match self.places.iter().find(|(k, _)| k == path) {
            Some((_, p)) => format!("{p}, key {path}"),
            None => format!("key {path}"),
        }
    }
}

/// Why `path` is not allowed for `role` (it belongs to the other role).
pub fn not_allowed_reason(role: Role, path: &str) -> String {
    let private = spec(path).is_some_and(|c| c.pem_kind() == Some(PemKind::PrivateKey));
    match role {
        Role::Minion if private => format!(
            "is a master's private key: a minion must never receive it; remove {path} from this minion's user-data"
        ),
        Role::Minion => {
            format!("is for masters only; remove {path} from this minion's user-data")
        }
        Role::Master if path == keys::API_SERVER => {
            "is for minions only; a master's API server is https://masters.<cluster>.<domain>:6443"
                .to_string()
        }
        Role::Master => {
            format!("is for minions only; remove {path} from this master's user-data")
        }
    }
}

/// A file activation writes (path absolute, under `--root`).
#[derive(Clone, PartialEq, Eq)]
pub struct OutFile {
    pub path: &'static str,
    pub mode: u32,
    pub content: String,
}

impl fmt::Debug for OutFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OutFile({} {:o})", self.path, self.mode)
    }
}

/// The `bootstrap.kubernetes.io/token` Secret a master applies.
pub fn bootstrap_token_secret(token: &BootstrapToken, expires: &Expiry) -> String {
    format!(
        "# Written by rolectl activate from cloud-init user-data. Do not edit.
apiVersion: v1
kind: Secret
metadata:
  name: bootstrap-token-{id}
  namespace: kube-system
type: bootstrap.kubernetes.io/token
stringData:
  token-id: \"{id}\"
  token-secret: \"{secret}\"
  expiration: \"{exp}\"
  usage-bootstrap-authentication: \"true\"
  auth-extra-groups: \"system:bootstrappers:kubebake:default-node-token\"
",
        id = token.id(),
        secret = token.expose_secret(),
        exp = expires.as_str(),
    )
}

fn b64(s: &str) -> String {
    data_encoding::BASE64.encode(s.as_bytes())
}

/// A kubeconfig for `cluster` at `server` with one user. Every value is
/// validated (cluster name, URL, token) or base64, so nothing needs quoting
/// beyond the double quotes used.
fn kubeconfig(cluster: &str, server: &ApiServer, ca: &Pem, user: &str, creds: &str) -> String {
    format!(
        "# Written by rolectl activate from cloud-init user-data. Do not edit.
apiVersion: v1
kind: Config
clusters:
- name: \"{cluster}\"
  cluster:
    certificate-authority-data: \"{ca}\"
    server: \"{server}\"
contexts:
- name: \"{user}@{cluster}\"
  context:
    cluster: \"{cluster}\"
    user: \"{user}\"
current-context: \"{user}@{cluster}\"
users:
- name: \"{user}\"
  user:
{creds}",
        ca = b64(ca.expose()),
        server = server.as_str(),
    )
}

impl Credentials {
    pub fn role(&self) -> Role {
        match self.role {
            RoleCredentials::Master(_) => Role::Master,
            RoleCredentials::Minion(_) => Role::Minion,
        }
    }

    /// The files to write, in [`file_list`] order.
    pub fn files(&self, settings: &Settings) -> Vec<OutFile> {
        file_list(self.role())
            .into_iter()
            .map(|(c, f)| OutFile {
                path: f.path,
                mode: f.mode,
                content: self.content(c, f.form, settings).unwrap_or_default(),
            })
            .collect()
    }

    /// What `form` holds for the row `c` (`None` for a value the role does
    /// not have: user-data parsing guarantees the role's set).
    fn content(&self, c: &Credential, form: Form, settings: &Settings) -> Option<String> {
        let cluster = settings.cluster.as_str();
        Some(match (&self.role, form) {
            (role, Form::Value) => role.pems().get(c.key)?.expose().to_string(),
            (RoleCredentials::Master(m), Form::Made(Doc::TokenSecret)) => {
                bootstrap_token_secret(&m.token, &m.expires)
            }
            (RoleCredentials::Minion(n), Form::Made(Doc::BootstrapKubeconfig)) => kubeconfig(
                cluster,
                &n.api_server,
                n.pems.get(keys::CA_CRT)?,
                "kubelet-bootstrap",
                &format!("    token: \"{}\"\n", n.token.expose()),
            ),
            (_, Form::Made(_)) => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\nAAAA==\n-----END CERTIFICATE-----\n";

    #[test]
    fn expiry() {
        let e = Expiry::try_from("2026-11-28T14:00:00Z").unwrap();
        assert_eq!(e.unix(), 1_795_874_400);
        assert_eq!(format_utc(e.unix()), "2026-11-28T14:00:00Z");
        assert_eq!(Expiry::try_from("1970-01-01T00:00:00Z").unwrap().unix(), 0);
        assert_eq!(
            Expiry::try_from("2024-02-29T23:59:59.5Z").unwrap().unix(),
            1_709_251_199
        );
        assert_eq!(format_utc(1_709_251_199), "2024-02-29T23:59:59Z");
        for bad in [
            "2026-11-28",
            "2026-11-28T14:00:00",
            "2026-11-28T14:00:00+01:00",
            "2026-11-28 14:00:00Z",
            "2026-13-28T14:00:00Z",
            "2023-02-29T14:00:00Z",
            "2026-11-28T24:00:00Z",
            "2026-11-28T14:00:00.Z",
            "2026-11-28t14:00:00z",
            "2026-1a-28T14:00:00Z",
            "2026-11-28T14:00:\u{20ac}Z",
            "2026-11-28T14:00:0\u{e9}Z",
        ] {
            assert!(Expiry::try_from(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn pem_structure() {
        let p = Pem::parse(PemKind::Certificate, &format!("  \n{CERT}\n")).unwrap();
        assert_eq!(p.expose(), CERT);
        assert!(Pem::parse(PemKind::Certificate, &CERT.replace('\n', "\r\n")).is_ok());
        let key = CERT.replace("CERTIFICATE", "EC PRIVATE KEY");
        let params = "-----BEGIN EC PARAMETERS-----\nBggq\n-----END EC PARAMETERS-----\n";
        assert!(Pem::parse(PemKind::PrivateKey, &format!("{params}{key}")).is_ok());
        let e = Pem::parse(PemKind::Certificate, &key)
            .unwrap_err()
            .to_string();
        assert!(e.contains("is a PEM EC PRIVATE KEY"), "{e}");
        assert!(!e.contains("MIIB"), "{e}");
        let e = Pem::parse(PemKind::Certificate, &format!("{CERT}{CERT}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("2 PEM blocks"), "{e}");
        for (bad, want) in [
            ("", "no -----BEGIN"),
            ("hello", "outside"),
            ("-----BEGIN CERTIFICATE-----\nMIIB\n", "no -----END"),
            (
                "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
                "empty",
            ),
            (
                "-----BEGIN CERTIFICATE-----\nMI IB\n-----END CERTIFICATE-----\n",
                "base64",
            ),
            (
                "-----BEGIN CERTIFICATE-----\nMIIB\n-----END PUBLIC KEY-----\n",
                "matching",
            ),
        ] {
            let e = Pem::parse(PemKind::Certificate, bad)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{bad:?}: {e}");
        }
        let enc = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nMIIB\n-----END RSA PRIVATE KEY-----\n";
        assert!(Pem::parse(PemKind::PrivateKey, enc)
            .unwrap_err()
            .to_string()
            .contains("encrypted"));
        let enc = CERT.replace("CERTIFICATE", "ENCRYPTED PRIVATE KEY");
        assert!(Pem::parse(PemKind::PrivateKey, &enc)
            .unwrap_err()
            .to_string()
            .contains("encrypted"));
        let k = Pem::parse(PemKind::PrivateKey, &key).unwrap();
        assert!(!format!("{k:?}").contains("MIIB"));
    }

    #[test]
    fn pins() {
        let h = CaCertHash::try_from(&*format!("sha256:{}", "AB".repeat(32))).unwrap();
        assert_eq!(h.hex(), "ab".repeat(32));
        for bad in [
            "sha256:abc".to_string(),
            "ab".repeat(32),
            format!("sha1:{}", "ab".repeat(32)),
            format!("sha256:{}", "zz".repeat(32)),
        ] {
            assert!(CaCertHash::try_from(bad.as_str()).is_err(), "{bad:?}");
        }
    }
}
