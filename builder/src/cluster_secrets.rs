//! Cluster secrets, made once per cluster (`kubebake cluster init NAME --dir DIR`).
//!
//! The golden image holds no key material. Everything a cluster shares is
//! made here once, kept by the operator, and handed to nodes in user-data;
//! rolectl writes it under `/etc/kubernetes` at activation. Which role gets
//! which value, under which key, and the file it becomes on the node are the
//! credential table of `contract::credentials` ([`ClusterSecrets::userdata_section`]
//! is derived from it):
//!
//! | file | what |
//! | --- | --- |
//! | `ca.crt`, `ca.key` | cluster CA, CN=kubernetes, ECDSA P-256, 10 years |
//! | `front-proxy-ca.crt`, `.key` | aggregation-layer CA, CN=front-proxy-ca, ECDSA P-256, 10 years |
//! | `sa.key`, `sa.pub` | service-account token signing key, RSA 2048 (PKCS#8 / SPKI PEM) |
//! | `bootstrap-token` | `[a-z0-9]{6}.[a-z0-9]{16}`: kubelet TLS bootstrap |
//! | `weave-password` | Weave Net's network password, 32 characters `[a-z0-9]` |
//! | `cluster.json` | name, created, token expiry, CA pin (`sha256:<hex>` over the CA's SubjectPublicKeyInfo, kubeadm's `caCertHashes` format) |
//!
//! No client certificate is made here: a credential in the minions'
//! user-data would be shared by every minion (one user-data launches them
//! all) and could not be revoked. kube-proxy runs with the node's own
//! kubelet credential from TLS bootstrapping (units/README.md,
//! "kube-proxy.service"). Directories made by earlier releases may still
//! hold `kube-proxy.crt`/`.key`: nothing reads them.
//!
//! Why these algorithms: the bootstrap prototype (on Kubernetes v1.20, and
//! the v1.36 image since: kubeadm phases, API server, CSR signer, kubectl, curl) accepted an ECDSA
//! P-256 cluster and front-proxy CA in PKCS#8 (kubeadm still makes RSA leaf
//! keys and signs them with the ECDSA CA). The service-account key is RSA
//! 2048, the algorithm the prototype validated (and kubeadm's own choice).
//!
//! Nothing is ever replaced silently: [`init`] refuses a directory that
//! already holds any of these files, naming them. [`new_token`] replaces only
//! the bootstrap token and its expiry (an expired token is deleted from the
//! cluster by the tokencleaner controller; a node that joins later needs a
//! new one). The directory is made 0700 and every file 0600.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, bail, Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
    PublicKeyData, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use contract::credentials::secrets_dir::{
    BOOTSTRAP_TOKEN, CA_CRT, CA_KEY, FRONT_PROXY_CA_CRT, FRONT_PROXY_CA_KEY, SA_KEY, SA_PUB,
};
use contract::credentials::{self as schema, Kept, Kind};
use contract::role::Role;

pub use contract::credentials::BootstrapToken;
pub use contract::values::{ClusterName, WeavePassword};

pub const CLUSTER_JSON: &str = "cluster.json";
/// Weave Net's network password (encrypts and authenticates the pod
/// network between peers). Directories made before it existed have none.
pub const WEAVE_PASSWORD: &str = "weave-password";

/// Every file [`init`] writes, in the order it writes them.
pub const FILES: [&str; 9] = [
    CA_CRT,
    CA_KEY,
    FRONT_PROXY_CA_CRT,
    FRONT_PROXY_CA_KEY,
    SA_KEY,
    SA_PUB,
    BOOTSTRAP_TOKEN,
    WEAVE_PASSWORD,
    CLUSTER_JSON,
];

/// Default lifetime of a bootstrap token (kubeadm's default too).
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);
/// The longest a bootstrap token may live: a token joins any machine as a
/// node, so it must expire (kubeadm's `--ttl 0`, never, is refused).
/// Later nodes get a fresh one from `kubebake cluster token`.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
const CA_DAYS: i64 = 3650;
/// Certificates start a little in the past: nodes' clocks may lag.
const BACKDATE: time::Duration = time::Duration::minutes(5);

#[derive(Debug, Clone)]
pub struct InitOptions {
    /// How long the bootstrap token is valid.
    pub token_ttl: Duration,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            token_ttl: DEFAULT_TOKEN_TTL,
        }
    }
}

/// `cluster.json`: what is not secret about a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterInfo {
    pub name: String,
    /// RFC 3339, UTC.
    pub created: String,
    /// The bootstrap token's id (the public half: `system:bootstrap:<id>`).
    pub token_id: String,
    /// RFC 3339, UTC: the Secret's `expiration`.
    pub token_expiration: String,
    /// `sha256:<hex>` of the CA certificate's SubjectPublicKeyInfo (DER).
    pub ca_cert_hash: String,
}

/// A new random bootstrap token from the OS CSPRNG.
fn generate_token() -> Result<BootstrapToken> {
    let text = format!("{}.{}", random_token_chars(6)?, random_token_chars(16)?);
    Ok(BootstrapToken::try_from(text.as_str())?)
}

/// A new weave password: 32 characters of `[a-z0-9]` from the OS CSPRNG
/// (165 bits).
fn generate_weave_password() -> Result<WeavePassword> {
    Ok(WeavePassword::try_from(random_token_chars(32)?.as_str())?)
}

/// The secrets of one cluster, as kept in its directory.
#[derive(Debug, Clone)]
pub struct ClusterSecrets {
    pub dir: PathBuf,
    pub info: ClusterInfo,
    pub token: BootstrapToken,
    /// `None` for a directory made before kubebake wrote one.
    pub weave_password: Option<WeavePassword>,
}

impl ClusterSecrets {
    /// `DIR/<file>` for one of [`FILES`].
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// Reads one of the PEM files (`ca.crt`, `sa.key`, ...).
    pub fn read(&self, file: &str) -> Result<String> {
        let p = self.path(file);
        fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))
    }

    /// Whether the bootstrap token has expired at `now`.
    pub fn token_expired(&self, now: SystemTime) -> Result<bool> {
        let exp = humantime::parse_rfc3339(&self.info.token_expiration).with_context(|| {
            format!(
                "{}: token_expiration {:?} is not RFC 3339",
                self.path(CLUSTER_JSON).display(),
                self.info.token_expiration
            )
        })?;
        Ok(exp <= now)
    }
}

impl ClusterSecrets {
    /// The credential keys of a `kubernetes:` user-data section for `role`
    /// (indented two spaces, to follow `kubernetes:`), as the credential
    /// table says (`contract::credentials`, the schema rolectl validates): a
    /// master gets the CAs' keys, the service-account keys and the token
    /// with its expiry; a minion gets only the CA certificate and its pin
    /// and the token (no client certificate: its kubelet gets its own by
    /// TLS bootstrapping, and kube-proxy uses it). The keys directly under
    /// `kubernetes:` come first, then `pki:` with the PEMs (block scalars)
    /// and the pin; each in the table's order. `api_server` overrides a
    /// minion's default endpoint.
    pub fn userdata_section(&self, role: Role, api_server: Option<&str>) -> Result<String> {
        let (mut top, mut pems, mut pins) = (String::new(), String::new(), String::new());
        for c in schema::for_role(role) {
            let value = match c.kind {
                Kind::Pem(_) => {
                    let Kept::File(file) = c.kept else {
                        bail!("{}: the cluster directory keeps it in no file", c.key);
                    };
                    pems.push_str(&format!("    {}: |\n", c.name()));
                    for line in self.read(file)?.lines() {
                        pems.push_str(&format!("      {line}\n"));
                    }
                    continue;
                }
                Kind::Token => Some(self.token.expose()),
                Kind::Expiry => Some(self.info.token_expiration.clone()),
                Kind::CaCertHash => Some(self.info.ca_cert_hash.clone()),
                Kind::ApiServer => api_server.map(str::to_string),
            };
            let Some(v) = value else { continue };
            if c.in_pki() {
                pins.push_str(&format!("    {}: \"{v}\"\n", c.name()));
            } else {
                top.push_str(&format!("  {}: \"{v}\"\n", c.name()));
            }
        }
        let mut s = top;
        s.push_str("  pki:\n");
        s.push_str(&pems);
        s.push_str(&pins);
        if let Some(pw) = &self.weave_password {
            s.push_str(&format!("  weave:\n    password: \"{}\"\n", pw.expose()));
        }
        Ok(s)
    }
}

/// Refusal to overwrite: the directory already holds cluster secrets.
#[derive(Debug, thiserror::Error)]
#[error(
    "{} already holds cluster secrets ({}): nothing was written. \
     Keep using them (a new bootstrap token for an expired one: `kubebake cluster token --dir {}`), \
     or give a new, empty directory; replacing the CA would cut off every node made with it",
    dir.display(),
    files.join(", "),
    dir.display()
)]
pub struct AlreadyInitialized {
    pub dir: PathBuf,
    pub files: Vec<String>,
}

/// Makes the secrets of a new cluster in `dir` (created 0700 if missing).
/// Refuses, writing nothing, if `dir` holds any of [`FILES`] or is
/// accessible to group or others.
pub fn init(name: &ClusterName, dir: &Path, opts: &InitOptions) -> Result<ClusterSecrets> {
    check_token_ttl(opts.token_ttl)?;
    prepare_dir(dir)?;
    let existing: Vec<String> = FILES
        .iter()
        .filter(|f| dir.join(f).symlink_metadata().is_ok())
        .map(|f| f.to_string())
        .collect();
    if !existing.is_empty() {
        return Err(AlreadyInitialized {
            dir: dir.to_path_buf(),
            files: existing,
        }
        .into());
    }

    let now = SystemTime::now();
    let now_t = time::OffsetDateTime::now_utc();

    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).context("CA key")?;
    let ca_cert = ca_params("kubernetes", now_t)?
        .self_signed(&ca_key)
        .context("CA certificate")?;

    let fp_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).context("front-proxy CA key")?;
    let fp_cert = ca_params("front-proxy-ca", now_t)?
        .self_signed(&fp_key)
        .context("front-proxy CA certificate")?;

    let (sa_key, sa_pub) = service_account_keys()?;

    let token = generate_token()?;
    let weave_password = generate_weave_password()?;
    let info = ClusterInfo {
        name: name.as_str().to_string(),
        created: rfc3339(now),
        token_id: token.id().to_string(),
        token_expiration: rfc3339(now + opts.token_ttl),
        ca_cert_hash: ca_cert_hash_of_spki(&ca_key.subject_public_key_info()),
    };

    let contents: [(&str, Vec<u8>); 9] = [
        (CA_CRT, ca_cert.pem().into_bytes()),
        (CA_KEY, ca_key.serialize_pem().into_bytes()),
        (FRONT_PROXY_CA_CRT, fp_cert.pem().into_bytes()),
        (FRONT_PROXY_CA_KEY, fp_key.serialize_pem().into_bytes()),
        (SA_KEY, sa_key.into_bytes()),
        (SA_PUB, sa_pub.into_bytes()),
        (
            BOOTSTRAP_TOKEN,
            format!("{}\n", token.expose()).into_bytes(),
        ),
        (
            WEAVE_PASSWORD,
            format!("{}\n", weave_password.expose()).into_bytes(),
        ),
        (CLUSTER_JSON, cluster_json(&info)?),
    ];
    let mut written: Vec<PathBuf> = Vec::new();
    for (file, bytes) in &contents {
        let p = dir.join(file);
        if let Err(e) = write_new(&p, bytes) {
            // Leave the directory as it was: no half-made cluster.
            for w in &written {
                let _ = fs::remove_file(w);
            }
            return Err(e);
        }
        written.push(p);
    }
    Ok(ClusterSecrets {
        dir: dir.to_path_buf(),
        info,
        token,
        weave_password: Some(weave_password),
    })
}

/// Reads a cluster directory made by [`init`]: every file must be there
/// (the weave password may be missing from an older directory),
/// `bootstrap-token` well-formed and matching `cluster.json`, and the CA pin
/// in `cluster.json` must be the pin of `ca.crt`.
pub fn load(dir: &Path) -> Result<ClusterSecrets> {
    let missing: Vec<&str> = FILES
        .iter()
        .copied()
        .filter(|f| *f != WEAVE_PASSWORD && !dir.join(f).is_file())
        .collect();
    if !missing.is_empty() {
        bail!(
            "{} is not a complete cluster directory: missing {} (make one with `kubebake cluster init NAME --dir DIR`)",
            dir.display(),
            missing.join(", ")
        );
    }
    let json_path = dir.join(CLUSTER_JSON);
    let text = fs::read_to_string(&json_path)
        .with_context(|| format!("reading {}", json_path.display()))?;
    let info: ClusterInfo = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a kubebake cluster.json", json_path.display()))?;
    ClusterName::try_from(info.name.as_str())
        .map_err(|e| anyhow!("{}: name {:?}: {e}", json_path.display(), info.name))?;
    let token_path = dir.join(BOOTSTRAP_TOKEN);
    let token = BootstrapToken::try_from(
        fs::read_to_string(&token_path)
            .with_context(|| format!("reading {}", token_path.display()))?
            .trim(),
    )
    .with_context(|| format!("{}", token_path.display()))?;
    if token.id() != info.token_id {
        bail!(
            "{}: token id {} does not match token_id {} in {}: make a new token with `kubebake cluster token --dir {}`",
            token_path.display(),
            token.id(),
            info.token_id,
            json_path.display(),
            dir.display()
        );
    }
    let ca_path = dir.join(CA_CRT);
    let ca_pem =
        fs::read_to_string(&ca_path).with_context(|| format!("reading {}", ca_path.display()))?;
    let pin = ca_cert_hash_of_pem(&ca_pem).with_context(|| format!("{}", ca_path.display()))?;
    if pin != info.ca_cert_hash {
        bail!(
            "{}: ca_cert_hash {} is not the pin of {} ({pin}): the CA was replaced; restore the original ca.crt",
            json_path.display(),
            info.ca_cert_hash,
            ca_path.display()
        );
    }
    let weave_path = dir.join(WEAVE_PASSWORD);
    let weave_password = match fs::read_to_string(&weave_path) {
        Ok(text) => Some(
            WeavePassword::try_from(text.trim())
                .map_err(|e| anyhow!("{}: {e}", weave_path.display()))?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", weave_path.display())),
    };
    Ok(ClusterSecrets {
        dir: dir.to_path_buf(),
        info,
        token,
        weave_password,
    })
}

/// A bootstrap token's lifetime must be above zero and at most
/// [`MAX_TOKEN_TTL`].
fn check_token_ttl(ttl: Duration) -> Result<()> {
    if ttl.is_zero() || ttl > MAX_TOKEN_TTL {
        bail!(
            "--token-ttl {}: a bootstrap token must expire, at most {} after it is made (it joins any machine as a node); give nodes that join later a new token with `kubebake cluster token --dir DIR`",
            humantime::format_duration(ttl),
            humantime::format_duration(MAX_TOKEN_TTL)
        );
    }
    Ok(())
}

/// Replaces the bootstrap token (and only it, plus its id and expiry in
/// `cluster.json`) with a new one valid for `ttl`. Certificates and keys are
/// not touched.
pub fn new_token(dir: &Path, ttl: Duration) -> Result<ClusterSecrets> {
    check_token_ttl(ttl)?;
    let mut s = load(dir)?;
    let token = generate_token()?;
    s.info.token_id = token.id().to_string();
    s.info.token_expiration = rfc3339(SystemTime::now() + ttl);
    // Both files are written beside their final names, then renamed.
    let tmp_token = dir.join(format!(".{BOOTSTRAP_TOKEN}.new"));
    let tmp_json = dir.join(format!(".{CLUSTER_JSON}.new"));
    for t in [&tmp_token, &tmp_json] {
        let _ = fs::remove_file(t);
    }
    let result = (|| {
        write_new(&tmp_token, format!("{}\n", token.expose()).as_bytes())?;
        write_new(&tmp_json, &cluster_json(&s.info)?)?;
        rename(&tmp_token, &dir.join(BOOTSTRAP_TOKEN))?;
        rename(&tmp_json, &dir.join(CLUSTER_JSON))
    })();
    if result.is_err() {
        for t in [&tmp_token, &tmp_json] {
            let _ = fs::remove_file(t);
        }
    }
    result?;
    s.token = token;
    Ok(s)
}

/// `sha256:<hex>` over a SubjectPublicKeyInfo (DER).
pub fn ca_cert_hash_of_spki(spki_der: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(spki_der)))
}

/// `sha256:<hex>` of the SubjectPublicKeyInfo of a PEM certificate: what
/// `kubeadm join --discovery-token-ca-cert-hash` checks.
pub fn ca_cert_hash_of_pem(cert_pem: &str) -> Result<String> {
    let block = pem::parse(cert_pem).map_err(|e| anyhow!("not a PEM certificate: {e}"))?;
    if block.tag() != "CERTIFICATE" {
        bail!("PEM block is {:?}, not CERTIFICATE", block.tag());
    }
    let spki = der::spki_of_certificate(block.contents())?;
    Ok(ca_cert_hash_of_spki(spki))
}

fn ca_params(cn: &str, now: time::OffsetDateTime) -> Result<CertificateParams> {
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    p.not_before = now - BACKDATE;
    p.not_after = now + time::Duration::days(CA_DAYS);
    p.serial_number = Some(random_serial()?);
    Ok(p)
}

fn dn(cn: &str) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::CommonName, cn);
    d
}

/// RSA 2048: PKCS#8 private key PEM and SubjectPublicKeyInfo PEM (what
/// `openssl pkey -pubout` writes).
fn service_account_keys() -> Result<(String, String)> {
    let mut rng = rsa::rand_core::OsRng;
    let key = rsa::RsaPrivateKey::new(&mut rng, 2048).context("service-account RSA key")?;
    let private = key
        .to_pkcs8_pem(LineEnding::LF)
        .context("encoding sa.key")?
        .to_string();
    let public = key
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .context("encoding sa.pub")?;
    Ok((private, public))
}

/// A positive 128-bit serial from the OS CSPRNG.
fn random_serial() -> Result<SerialNumber> {
    let mut b = [0u8; 16];
    getrandom::getrandom(&mut b).map_err(|e| anyhow!("OS random number generator: {e}"))?;
    b[0] &= 0x7f;
    b[0] |= 0x01;
    Ok(SerialNumber::from_slice(&b))
}

/// `n` characters of `[a-z0-9]`, uniformly (rejection sampling).
fn random_token_chars(n: usize) -> Result<String> {
    const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(n);
    let mut buf = [0u8; 32];
    while out.len() < n {
        getrandom::getrandom(&mut buf).map_err(|e| anyhow!("OS random number generator: {e}"))?;
        // 252 = 7 * 36: bytes above it would bias the first characters.
        for b in buf.iter().filter(|b| **b < 252) {
            if out.len() == n {
                break;
            }
            out.push(char::from(ALPHABET[usize::from(*b % 36)]));
        }
    }
    Ok(out)
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn cluster_json(info: &ClusterInfo) -> Result<Vec<u8>> {
    let mut v = serde_json::to_vec_pretty(info).context("encoding cluster.json")?;
    v.push(b'\n');
    Ok(v)
}

/// Creates `dir` 0700 if missing; an existing one must be a directory no one
/// but its owner can enter.
fn prepare_dir(dir: &Path) -> Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => {
            let mode = m.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                bail!(
                    "{} is accessible to group or others (mode {mode:04o}): cluster secrets need a private directory; \
                     give a new path (it is created 0700) or `chmod 700 {}`",
                    dir.display(),
                    dir.display()
                );
            }
            Ok(())
        }
        Ok(_) => bail!(
            "{} exists and is not a directory: give a directory for the cluster secrets",
            dir.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .and_then(|()| fs::set_permissions(dir, fs::Permissions::from_mode(0o700)))
            .with_context(|| format!("creating {}", dir.display())),
        Err(e) => Err(e).with_context(|| format!("checking {}", dir.display())),
    }
}

/// Writes a new file 0600; fails if it exists (never replaces anything).
fn write_new(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    fs::rename(from, to).with_context(|| format!("renaming {} to {}", from.display(), to.display()))
}

/// Just enough DER to find a certificate's SubjectPublicKeyInfo.
mod der {
    use anyhow::{bail, Result};

    /// One TLV: (tag, whole TLV, contents, rest after it).
    type Tlv<'a> = (u8, &'a [u8], &'a [u8], &'a [u8]);

    fn tlv(b: &[u8]) -> Result<Tlv<'_>> {
        let (&tag, rest) = b
            .split_first()
            .ok_or_else(|| anyhow::anyhow!("truncated DER"))?;
        let (&l0, rest) = rest
            .split_first()
            .ok_or_else(|| anyhow::anyhow!("truncated DER"))?;
        let (len, rest) = if l0 < 0x80 {
            (usize::from(l0), rest)
        } else {
            let n = usize::from(l0 & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                bail!("unsupported DER length");
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            (len, &rest[n..])
        };
        if rest.len() < len {
            bail!("truncated DER");
        }
        let header = b.len() - rest.len();
        Ok((tag, &b[..header + len], &rest[..len], &rest[len..]))
    }

    /// Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version?,
    /// serial, signature, issuer, validity, subject, subjectPublicKeyInfo, ...
    pub fn spki_of_certificate(cert: &[u8]) -> Result<&[u8]> {
        let (tag, _, body, _) = tlv(cert)?;
        if tag != 0x30 {
            bail!("not a DER certificate");
        }
        let (tag, _, mut tbs, _) = tlv(body)?;
        if tag != 0x30 {
            bail!("not a DER certificate (tbsCertificate)");
        }
        if tbs.first() == Some(&0xa0) {
            tbs = tlv(tbs)?.3;
        }
        // serial, signature, issuer, validity, subject
        for _ in 0..5 {
            tbs = tlv(tbs)?.3;
        }
        let (tag, whole, _, _) = tlv(tbs)?;
        if tag != 0x30 {
            bail!("not a DER certificate (subjectPublicKeyInfo)");
        }
        Ok(whole)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn userdata_sections_parse_in_rolectl_with_the_right_keys() {
        use rolectl::userdata::{parse, Request};
        let dir = tempfile::tempdir().expect("tempdir");
        let secrets = init(&name(), &dir.path().join("s"), &InitOptions::default()).expect("init");
        for role in [Role::Master, Role::Minion] {
            let text = format!(
                "#cloud-config\nkubernetes:\n  role: {role}\n  cluster: demo\n{}",
                secrets.userdata_section(role, None).expect("section")
            );
            match parse(text.as_bytes()) {
                Ok(Request::Assign {
                    role: got,
                    credentials,
                    settings,
                    ..
                }) => {
                    assert_eq!(got, role);
                    assert!(credentials.is_some(), "{role}: credentials parsed");
                    let pw = settings.weave.password.expect("weave password parsed");
                    assert_eq!(
                        Some(pw.expose()),
                        secrets.weave_password.as_ref().map(WeavePassword::expose),
                        "{role}: the cluster's weave password"
                    );
                }
                other => panic!("{role}: {other:?}\n{text}"),
            }
            let has_ca_key = text.contains("ca_key:");
            assert_eq!(
                has_ca_key,
                role == Role::Master,
                "only a master gets ca_key"
            );
            // No client certificate for any role: kube-proxy runs with the
            // node's own kubelet credential.
            assert!(!text.contains("kube_proxy"), "{role}: {text}");
            let (certs, keys) = (
                text.matches("-----BEGIN CERTIFICATE-----").count(),
                text.matches("PRIVATE KEY-----").count() / 2,
            );
            let want = match role {
                Role::Master => (2, 3),
                Role::Minion => (1, 0),
            };
            assert_eq!((certs, keys), want, "{role}: certificates, private keys");
        }
    }

    #[test]
    fn a_directory_without_a_weave_password_still_loads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().join("s");
        let made = init(&name(), &d, &InitOptions::default()).expect("init");
        let pw = made.weave_password.expect("init makes a weave password");
        assert_eq!(pw.expose().len(), 32);
        assert!(!format!("{pw:?}").contains(pw.expose()));
        assert_eq!(
            load(&d)
                .expect("load")
                .weave_password
                .as_ref()
                .map(WeavePassword::expose),
            Some(pw.expose())
        );
        fs::remove_file(d.join(WEAVE_PASSWORD)).expect("rm");
        let old = load(&d).expect("an older directory loads");
        assert!(old.weave_password.is_none());
        assert!(!old
            .userdata_section(Role::Minion, None)
            .expect("section")
            .contains("weave:"));
    }

    fn name() -> ClusterName {
        ClusterName::try_from("demo").expect("valid name")
    }

    fn sh(script: &str, dir: &Path) -> String {
        let out = Command::new("sh")
            .args(["-ec", script])
            .current_dir(dir)
            .output()
            .expect("run sh");
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    #[test]
    fn init_writes_every_file_private() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("demo");
        let s = init(&name(), &dir, &InitOptions::default()).expect("init");
        let dmode = fs::metadata(&dir).expect("dir").permissions().mode() & 0o777;
        assert_eq!(dmode, 0o700);
        for f in FILES {
            let m = fs::metadata(dir.join(f)).expect(f).permissions().mode() & 0o777;
            assert_eq!(m, 0o600, "{f}");
        }
        // Exactly these files: no client certificate shared by the minions.
        assert_eq!(fs::read_dir(&dir).expect("ls").count(), FILES.len());
        assert!(!dir.join("kube-proxy.crt").exists() && !dir.join("kube-proxy.key").exists());
        assert_eq!(s.info.name, "demo");
        assert_eq!(s.info.token_id, s.token.id());
        let tok = fs::read_to_string(dir.join(BOOTSTRAP_TOKEN)).expect("token");
        let parsed = BootstrapToken::try_from(tok.trim()).expect("token format");
        assert_eq!(parsed, s.token);
        // default expiry: 24 h after creation
        let created = humantime::parse_rfc3339(&s.info.created).expect("created");
        let exp = humantime::parse_rfc3339(&s.info.token_expiration).expect("expiry");
        assert_eq!(
            exp.duration_since(created).expect("later"),
            DEFAULT_TOKEN_TTL
        );
        assert!(!s.token_expired(SystemTime::now()).expect("expiry"));
        assert!(!format!("{s:?}").contains(s.token.expose_secret()));
        let loaded = load(&dir).expect("load");
        assert_eq!(loaded.info, s.info);
        assert_eq!(loaded.token, s.token);
    }

    #[test]
    fn pin_and_certificates_check_out_with_openssl() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("c");
        let s = init(&name(), &dir, &InitOptions::default()).expect("init");
        let pin = sh(
            "openssl x509 -pubkey -noout -in ca.crt | openssl pkey -pubin -outform DER | sha256sum | cut -d' ' -f1",
            &dir,
        );
        assert_eq!(s.info.ca_cert_hash, format!("sha256:{pin}"));
        assert_eq!(
            ca_cert_hash_of_pem(&s.read(CA_CRT).expect("ca")).expect("pin"),
            s.info.ca_cert_hash
        );

        let ca_text = sh("openssl x509 -noout -text -in ca.crt", &dir);
        assert!(ca_text.contains("CA:TRUE"), "{ca_text}");
        assert!(ca_text.contains("Subject: CN = kubernetes"), "{ca_text}");
        let fp_text = sh("openssl x509 -noout -text -in front-proxy-ca.crt", &dir);
        assert!(fp_text.contains("CA:TRUE"), "{fp_text}");

        // keys match their certificates / public keys
        for (cert, key) in [
            ("ca.crt", "ca.key"),
            ("front-proxy-ca.crt", "front-proxy-ca.key"),
        ] {
            let a = sh(&format!("openssl x509 -noout -pubkey -in {cert}"), &dir);
            let b = sh(&format!("openssl pkey -pubout -in {key}"), &dir);
            assert_eq!(a, b, "{key} does not match {cert}");
        }
        let a = sh("openssl pkey -pubin -in sa.pub -pubout", &dir);
        let b = sh("openssl pkey -in sa.key -pubout", &dir);
        assert_eq!(a, b, "sa.key does not match sa.pub");
        assert!(sh("openssl pkey -in sa.key -noout -text", &dir).contains("2048 bit"));
        assert_eq!(
            s.read(SA_PUB).expect("sa.pub").trim(),
            a,
            "sa.pub is what openssl pkey -pubout writes"
        );
    }

    #[test]
    fn second_init_refuses_and_changes_nothing() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("c");
        init(&name(), &dir, &InitOptions::default()).expect("init");
        let before = fs::read(dir.join(CA_KEY)).expect("ca.key");
        let err = init(&name(), &dir, &InitOptions::default()).expect_err("second init");
        let msg = format!("{err:#}");
        assert!(err.downcast_ref::<AlreadyInitialized>().is_some(), "{msg}");
        for f in FILES {
            assert!(msg.contains(f), "{msg} should name {f}");
        }
        assert!(msg.contains("cluster token"), "{msg}");
        assert_eq!(fs::read(dir.join(CA_KEY)).expect("ca.key"), before);

        // one leftover file is enough to refuse
        let dir2 = tmp.path().join("d");
        fs::create_dir(&dir2).expect("mkdir");
        fs::set_permissions(&dir2, fs::Permissions::from_mode(0o700)).expect("chmod");
        fs::write(dir2.join(SA_KEY), "x").expect("write");
        let err = init(&name(), &dir2, &InitOptions::default()).expect_err("refuse");
        assert!(format!("{err}").contains("sa.key"), "{err}");
        assert_eq!(
            fs::read_dir(&dir2).expect("ls").count(),
            1,
            "nothing else written"
        );
    }

    #[test]
    fn init_refuses_a_shared_directory() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("open");
        fs::create_dir(&dir).expect("mkdir");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
        let err = init(&name(), &dir, &InitOptions::default()).expect_err("refuse");
        assert!(format!("{err}").contains("chmod 700"), "{err}");
        assert_eq!(fs::read_dir(&dir).expect("ls").count(), 0);
    }

    #[test]
    fn new_token_replaces_only_the_token() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("c");
        let opts = InitOptions {
            token_ttl: Duration::from_secs(3600),
        };
        let s = init(&name(), &dir, &opts).expect("init");
        let keep: Vec<(&str, Vec<u8>)> = FILES
            .iter()
            .filter(|f| **f != BOOTSTRAP_TOKEN && **f != CLUSTER_JSON)
            .map(|f| (*f, fs::read(dir.join(f)).expect("read")))
            .collect();
        let t = new_token(&dir, Duration::from_secs(48 * 3600)).expect("new token");
        assert_ne!(t.token, s.token);
        assert_eq!(t.info.ca_cert_hash, s.info.ca_cert_hash);
        assert_eq!(t.info.created, s.info.created);
        for (f, bytes) in keep {
            assert_eq!(fs::read(dir.join(f)).expect("read"), bytes, "{f} changed");
        }
        let loaded = load(&dir).expect("load");
        assert_eq!(loaded.token, t.token);
        assert_eq!(loaded.info.token_expiration, t.info.token_expiration);
        for f in [BOOTSTRAP_TOKEN, CLUSTER_JSON] {
            let m = fs::metadata(dir.join(f)).expect(f).permissions().mode() & 0o777;
            assert_eq!(m, 0o600, "{f}");
        }
        assert_eq!(fs::read_dir(&dir).expect("ls").count(), FILES.len());
    }

    #[test]
    fn a_token_must_expire_within_a_week() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("c");
        for ttl in [Duration::ZERO, MAX_TOKEN_TTL + Duration::from_secs(1)] {
            let err = init(&name(), &dir, &InitOptions { token_ttl: ttl }).expect_err("refused");
            assert!(
                format!("{err}").contains("must expire, at most 7days"),
                "{err}"
            );
            assert!(!dir.exists(), "nothing written for a refused ttl");
        }
        init(
            &name(),
            &dir,
            &InitOptions {
                token_ttl: MAX_TOKEN_TTL,
            },
        )
        .expect("a week is allowed");
        let err = new_token(&dir, Duration::from_secs(30 * 24 * 3600)).expect_err("refused");
        assert!(format!("{err}").contains("kubebake cluster token"), "{err}");
        new_token(&dir, Duration::from_secs(3600)).expect("an hour is allowed");
    }

    #[test]
    fn load_rejects_a_replaced_ca() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let a = tmp.path().join("a");
        let b = tmp.path().join("b");
        init(&name(), &a, &InitOptions::default()).expect("init a");
        init(&name(), &b, &InitOptions::default()).expect("init b");
        fs::copy(b.join(CA_CRT), a.join(CA_CRT)).expect("copy");
        let err = load(&a).expect_err("mismatch");
        assert!(format!("{err}").contains("ca_cert_hash"), "{err}");
        fs::remove_file(a.join(SA_PUB)).expect("rm");
        let err = load(&a).expect_err("missing");
        assert!(format!("{err}").contains("missing sa.pub"), "{err}");
    }

    #[test]
    fn tokens_have_the_bootstrap_format() {
        for _ in 0..50 {
            let t = generate_token().expect("token");
            BootstrapToken::try_from(t.expose().as_str()).expect("format");
        }
    }
}
