//! The credential schema: which cluster credentials a node's user-data
//! carries (`kubernetes: bootstrap_token`, `bootstrap_token_expires`,
//! `api_server` and `pki:`), which role gets which, where `kubebake cluster
//! init` keeps them and which files rolectl writes from them at activation.
//!
//! It is one table, [`CREDENTIALS`]; everything else is derived from it:
//! rolectl's required and allowed keys per role, the PEM kind of each key,
//! the keys under `pki:`, the files activation writes (paths, modes, order),
//! and the builder's user-data section (`kubebake userdata`, the VM tests).
//! Keys of earlier releases that nothing reads any more are [`RETIRED`]:
//! rolectl refuses user-data that still gives one, saying what replaced it.
//!
//! Also here: [`BootstrapToken`], the one token type of the workspace, and
//! [`PemKind`]. Parsing the PEM text and everything cryptographic stay in
//! rolectl (openssl) and the builder (rcgen).

use std::fmt;

use crate::role::Role;
use crate::values::InvalidValue;

/// A bootstrap token `[a-z0-9]{6}.[a-z0-9]{16}` (id `.` secret).
#[derive(Clone, PartialEq, Eq)]
pub struct BootstrapToken {
    id: String,
    secret: String,
}

impl fmt::Debug for BootstrapToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BootstrapToken({}.***)", self.id)
    }
}

impl BootstrapToken {
    /// The public half (names the Secret `bootstrap-token-<id>`).
    pub fn id(&self) -> &str {
        &self.id
    }
    /// The secret half.
    pub fn expose_secret(&self) -> &str {
        &self.secret
    }
    /// `<id>.<secret>`, as a kubeconfig `token:` takes it: the secret; never
    /// log it.
    pub fn expose(&self) -> String {
        format!("{}.{}", self.id, self.secret)
    }
}

impl TryFrom<&str> for BootstrapToken {
    type Error = InvalidValue;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        let ok = |p: &str, n: usize| {
            p.len() == n
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        };
        match s.split_once('.') {
            Some((id, secret)) if ok(id, 6) && ok(secret, 16) => Ok(BootstrapToken {
                id: id.to_string(),
                secret: secret.to_string(),
            }),
            // Never echo the value: it is a secret.
            _ => Err(InvalidValue {
                what: "bootstrap token",
                value: "***".to_string(),
                reason: "must be 6 characters a-z0-9, a dot, then 16 characters a-z0-9; `kubeadm token generate` makes one".to_string(),
            }),
        }
    }
}

/// What a PEM value must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PemKind {
    Certificate,
    PrivateKey,
    PublicKey,
}

impl PemKind {
    /// The `-----BEGIN <label>-----` labels it may have.
    pub fn labels(self) -> &'static [&'static str] {
        match self {
            PemKind::Certificate => &["CERTIFICATE"],
            PemKind::PrivateKey => &["PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY"],
            PemKind::PublicKey => &["PUBLIC KEY"],
        }
    }
    pub fn describe(self) -> &'static str {
        match self {
            PemKind::Certificate => "a PEM certificate (-----BEGIN CERTIFICATE-----)",
            PemKind::PrivateKey => {
                "a PEM private key (-----BEGIN PRIVATE KEY----- or EC/RSA PRIVATE KEY)"
            }
            PemKind::PublicKey => "a PEM public key (-----BEGIN PUBLIC KEY-----)",
        }
    }
    pub fn is_secret(self) -> bool {
        self == PemKind::PrivateKey
    }
}

/// Full user-data key paths.
pub mod keys {
    pub const TOKEN: &str = "kubernetes.bootstrap_token";
    pub const EXPIRES: &str = "kubernetes.bootstrap_token_expires";
    pub const API_SERVER: &str = "kubernetes.api_server";
    pub const CA_CRT: &str = "kubernetes.pki.ca_crt";
    pub const CA_KEY: &str = "kubernetes.pki.ca_key";
    pub const FRONT_PROXY_CA_CRT: &str = "kubernetes.pki.front_proxy_ca_crt";
    pub const FRONT_PROXY_CA_KEY: &str = "kubernetes.pki.front_proxy_ca_key";
    pub const SA_KEY: &str = "kubernetes.pki.sa_key";
    pub const SA_PUB: &str = "kubernetes.pki.sa_pub";
    pub const CA_CERT_HASH: &str = "kubernetes.pki.ca_cert_hash";
}

/// The key path of the `pki:` mapping, with the dot its keys follow.
pub const PKI_PREFIX: &str = "kubernetes.pki.";

/// Files of a `kubebake cluster init` directory that hold a credential
/// (each 0600 in a 0700 directory).
pub mod secrets_dir {
    pub const BOOTSTRAP_TOKEN: &str = "bootstrap-token";
    pub const CA_CRT: &str = "ca.crt";
    pub const CA_KEY: &str = "ca.key";
    pub const FRONT_PROXY_CA_CRT: &str = "front-proxy-ca.crt";
    pub const FRONT_PROXY_CA_KEY: &str = "front-proxy-ca.key";
    pub const SA_KEY: &str = "sa.key";
    pub const SA_PUB: &str = "sa.pub";
}

/// A file on the node (absolute; rolectl takes it under `--root`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeFile {
    pub path: &'static str,
    pub mode: u32,
    pub form: Form,
}

/// What a [`NodeFile`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// One PEM value as given (normalized).
    Value,
    /// A document made from several values.
    Made(Doc),
}

/// The documents activation makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Doc {
    /// The `bootstrap.kubernetes.io/token` Secret a master applies (token
    /// and expiry).
    TokenSecret,
    /// The kubelet's TLS bootstrap kubeconfig (CA, API server, token).
    BootstrapKubeconfig,
}

/// The credential files on a node.
pub mod node {
    use super::{Doc, Form, NodeFile};

    const fn value(path: &'static str, mode: u32) -> NodeFile {
        NodeFile {
            path,
            mode,
            form: Form::Value,
        }
    }
    const fn made(path: &'static str, mode: u32, doc: Doc) -> NodeFile {
        NodeFile {
            path,
            mode,
            form: Form::Made(doc),
        }
    }

    pub const CA_CRT: NodeFile = value("/etc/kubernetes/pki/ca.crt", 0o644);
    pub const CA_KEY: NodeFile = value("/etc/kubernetes/pki/ca.key", 0o600);
    pub const FRONT_PROXY_CA_CRT: NodeFile = value("/etc/kubernetes/pki/front-proxy-ca.crt", 0o644);
    pub const FRONT_PROXY_CA_KEY: NodeFile = value("/etc/kubernetes/pki/front-proxy-ca.key", 0o600);
    pub const SA_KEY: NodeFile = value("/etc/kubernetes/pki/sa.key", 0o600);
    pub const SA_PUB: NodeFile = value("/etc/kubernetes/pki/sa.pub", 0o644);
    pub const TOKEN_SECRET: NodeFile = made(
        "/etc/kubernetes/bootstrap/bootstrap-token.yaml",
        0o600,
        Doc::TokenSecret,
    );
    pub const BOOTSTRAP_KUBELET_CONF: NodeFile = made(
        "/etc/kubernetes/bootstrap-kubelet.conf",
        0o600,
        Doc::BootstrapKubeconfig,
    );
    /// The kubelet's own kubeconfig after TLS bootstrap (0600): the kubelet
    /// makes it, activation does not. kube-proxy uses it too: the node's
    /// own identity (`system:node:<name>`), never a shared credential.
    pub const KUBELET_CONF: &str = "/etc/kubernetes/kubelet.conf";
}

/// What a credential's value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A [`BootstrapToken`].
    Token,
    /// An RFC 3339 UTC time (the token's expiry).
    Expiry,
    /// `https://HOST[:PORT]`, no path.
    ApiServer,
    /// `sha256:<64 hex>` over the CA certificate's SubjectPublicKeyInfo.
    CaCertHash,
    /// One PEM object of this kind.
    Pem(PemKind),
}

/// Whether a role gets a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Part of the role's set: user-data with any credential needs it.
    Required,
    /// The role may be given it.
    Optional,
    /// Not for this role: user-data that gives it is refused.
    Refused,
}

/// Where `kubebake cluster init` keeps a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// This file of the directory ([`secrets_dir`]).
    File(&'static str),
    /// In the directory's `cluster.json`.
    ClusterJson,
    /// Not kept: given when the user-data is made (`--api-server`).
    Given,
}

/// One row of [`CREDENTIALS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credential {
    /// The user-data key path ([`keys`]).
    pub key: &'static str,
    pub kind: Kind,
    pub master: Need,
    pub minion: Need,
    pub kept: Kept,
    /// The file activation writes for it on a master: its copy, or the
    /// document made for it; `None` where the value only goes into another
    /// key's document (the expiry, the API server) or is only checked (the
    /// pin).
    pub on_master: Option<NodeFile>,
    /// Likewise on a minion.
    pub on_minion: Option<NodeFile>,
}

const fn row(
    key: &'static str,
    kind: Kind,
    master: Need,
    minion: Need,
    kept: Kept,
    on_master: Option<NodeFile>,
    on_minion: Option<NodeFile>,
) -> Credential {
    Credential {
        key,
        kind,
        master,
        minion,
        kept,
        on_master,
        on_minion,
    }
}

/// The credential schema. Row order is the order of user-data (the
/// builder's, and the "missing …" and "known keys" lists of rolectl's
/// messages); a role's files are written in it too, each key's own file
/// first, then the made ones (the marker after all of them).
#[rustfmt::skip]
pub const CREDENTIALS: &[Credential] = {
    use Kind::{ApiServer, CaCertHash, Expiry, Pem, Token};
    use Need::{Optional as OPTIONAL, Refused as REFUSED, Required as REQUIRED};
    use PemKind::{Certificate as CERT, PrivateKey as PRIVATE, PublicKey as PUBLIC};
    use Kept::{ClusterJson, File, Given};
    use secrets_dir as dir;
    &[
        //  user-data key             kind          master    minion    cluster init directory         file on a master                file on a minion
        row(keys::TOKEN,              Token,        REQUIRED, REQUIRED, File(dir::BOOTSTRAP_TOKEN),    Some(node::TOKEN_SECRET),       Some(node::BOOTSTRAP_KUBELET_CONF)),
        row(keys::EXPIRES,            Expiry,       REQUIRED, REFUSED,  ClusterJson,                   None,                           None),
        row(keys::API_SERVER,         ApiServer,    REFUSED,  OPTIONAL, Given,                         None,                           None),
        row(keys::CA_CRT,             Pem(CERT),    REQUIRED, REQUIRED, File(dir::CA_CRT),             Some(node::CA_CRT),             Some(node::CA_CRT)),
        row(keys::CA_KEY,             Pem(PRIVATE), REQUIRED, REFUSED,  File(dir::CA_KEY),             Some(node::CA_KEY),             None),
        row(keys::FRONT_PROXY_CA_CRT, Pem(CERT),    REQUIRED, REFUSED,  File(dir::FRONT_PROXY_CA_CRT), Some(node::FRONT_PROXY_CA_CRT), None),
        row(keys::FRONT_PROXY_CA_KEY, Pem(PRIVATE), REQUIRED, REFUSED,  File(dir::FRONT_PROXY_CA_KEY), Some(node::FRONT_PROXY_CA_KEY), None),
        row(keys::SA_KEY,             Pem(PRIVATE), REQUIRED, REFUSED,  File(dir::SA_KEY),             Some(node::SA_KEY),             None),
        row(keys::SA_PUB,             Pem(PUBLIC),  REQUIRED, REFUSED,  File(dir::SA_PUB),             Some(node::SA_PUB),             None),
        row(keys::CA_CERT_HASH,       CaCertHash,   REFUSED,  OPTIONAL, ClusterJson,                   None,                           None),
    ]
};

/// A user-data key that earlier kubebake releases wrote and that nothing
/// reads any more. User-data that still gives one is refused, naming the
/// key and saying what replaced it: a credential nothing uses must not
/// travel to nodes unnoticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retired {
    /// The full user-data key path.
    pub key: &'static str,
    /// What does its job now.
    pub instead: &'static str,
}

/// What replaced kube-proxy's client certificate.
const KUBE_PROXY_INSTEAD: &str = "kube-proxy runs with the node's own kubelet credential \
     (/etc/kubernetes/kubelet.conf, from TLS bootstrapping), not with a certificate shared by \
     every minion";

/// The retired keys: kube-proxy's client certificate and key, once shared
/// by every minion of a cluster.
pub const RETIRED: &[Retired] = &[
    Retired {
        key: "kubernetes.pki.kube_proxy_crt",
        instead: KUBE_PROXY_INSTEAD,
    },
    Retired {
        key: "kubernetes.pki.kube_proxy_key",
        instead: KUBE_PROXY_INSTEAD,
    },
];

impl Retired {
    /// The key under its mapping (`kube_proxy_crt`).
    pub fn name(&self) -> &'static str {
        self.key.rsplit('.').next().unwrap_or(self.key)
    }

    /// Why user-data that gives it is refused (after "key <path>: ").
    pub fn reason(&self) -> String {
        format!(
            "is no longer used: {}; remove {} from this user-data (`kubebake userdata` no longer writes it)",
            self.instead, self.key
        )
    }
}

/// The retired key at a user-data key path.
pub fn retired(key: &str) -> Option<&'static Retired> {
    RETIRED.iter().find(|r| r.key == key)
}

impl Credential {
    pub fn need(&self, role: Role) -> Need {
        match role {
            Role::Master => self.master,
            Role::Minion => self.minion,
        }
    }

    /// Whether `role` may be given it.
    pub fn allowed(&self, role: Role) -> bool {
        self.need(role) != Need::Refused
    }

    /// The file activation writes for it on a `role` node.
    pub fn node_file(&self, role: Role) -> Option<NodeFile> {
        match role {
            Role::Master => self.on_master,
            Role::Minion => self.on_minion,
        }
    }

    /// The key under its mapping (`ca_crt`, `bootstrap_token`).
    pub fn name(&self) -> &'static str {
        self.key.rsplit('.').next().unwrap_or(self.key)
    }

    /// Under `kubernetes: pki:` (else directly under `kubernetes:`).
    pub fn in_pki(&self) -> bool {
        self.key.starts_with(PKI_PREFIX)
    }

    pub fn pem_kind(&self) -> Option<PemKind> {
        match self.kind {
            Kind::Pem(k) => Some(k),
            _ => None,
        }
    }
}

/// The row of a user-data key path.
pub fn spec(key: &str) -> Option<&'static Credential> {
    CREDENTIALS.iter().find(|c| c.key == key)
}

/// The rows a role may be given, in table order.
pub fn for_role(role: Role) -> impl Iterator<Item = &'static Credential> + Clone {
    CREDENTIALS.iter().filter(move |c| c.allowed(role))
}

/// The key paths a role must have (when it has any credential).
pub fn required(role: Role) -> Vec<&'static str> {
    CREDENTIALS
        .iter()
        .filter(|c| c.need(role) == Need::Required)
        .map(|c| c.key)
        .collect()
}

/// The keys allowed under `kubernetes: pki:` (either role's).
pub fn pki_keys() -> Vec<&'static str> {
    CREDENTIALS
        .iter()
        .filter(|c| c.in_pki())
        .map(Credential::name)
        .collect()
}

/// The credential keys directly under `kubernetes:` (`pki` aside).
pub fn top_level_keys() -> Vec<&'static str> {
    CREDENTIALS
        .iter()
        .filter(|c| !c.in_pki())
        .map(Credential::name)
        .collect()
}

/// The files activation writes on a `role` node, in write order (each
/// key's own file first, then the made ones), each with the first row that
/// names it.
pub fn file_list(role: Role) -> Vec<(&'static Credential, NodeFile)> {
    let mut out: Vec<(&'static Credential, NodeFile)> = Vec::new();
    for made in [false, true] {
        for c in CREDENTIALS {
            match c.node_file(role) {
                Some(f)
                    if matches!(f.form, Form::Made(_)) == made
                        && !out.iter().any(|(_, o)| o.path == f.path) =>
                {
                    out.push((c, f));
                }
                _ => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        let t = BootstrapToken::try_from("abcdef.0123456789abcdef").unwrap();
        assert_eq!(t.id(), "abcdef");
        assert_eq!(t.expose(), "abcdef.0123456789abcdef");
        assert!(!format!("{t:?}").contains("0123456789abcdef"));
        for bad in [
            "",
            "abcdef",
            "abcdef.0123456789abcde",
            "abcdef.0123456789abcdefg",
            "ABCDEF.0123456789abcdef",
            "abcde.0123456789abcdeff",
            "abcdef:0123456789abcdef",
            "abcdef.0123456789abcde-",
        ] {
            let e = BootstrapToken::try_from(bad);
            assert!(e.is_err(), "{bad:?} accepted");
            if !bad.is_empty() {
                assert!(!e.unwrap_err().to_string().contains(bad), "secret echoed");
            }
        }
    }

    #[test]
    fn the_table_is_consistent() {
        for (i, c) in CREDENTIALS.iter().enumerate() {
            assert!(c.key.starts_with("kubernetes."), "{}", c.key);
            assert_eq!(spec(c.key), Some(c), "{} twice", c.key);
            assert!(
                c.allowed(Role::Master) || c.allowed(Role::Minion),
                "{}",
                c.key
            );
            // The cluster directory keeps every PEM in a file of its own.
            if c.pem_kind().is_some() {
                assert!(matches!(c.kept, Kept::File(_)), "{}", c.key);
            }
            for role in Role::ALL {
                if let Some(f) = c.node_file(role) {
                    assert!(c.allowed(role), "{} {role}", c.key);
                    assert!(f.path.starts_with("/etc/kubernetes/"), "{}", f.path);
                    // A copy is one PEM, and no other row writes it.
                    if f.form == Form::Value {
                        assert!(c.pem_kind().is_some(), "{}", c.key);
                        assert!(CREDENTIALS[..i]
                            .iter()
                            .chain(&CREDENTIALS[i + 1..])
                            .all(|o| o.node_file(role) != Some(f)));
                    }
                }
            }
            // A private key is never world-readable.
            if c.pem_kind() == Some(PemKind::PrivateKey) {
                for role in Role::ALL {
                    assert!(c.node_file(role).is_none_or(|f| f.mode == 0o600));
                }
            }
        }
    }

    #[test]
    fn derived_lists() {
        assert_eq!(required(Role::Minion), [keys::TOKEN, keys::CA_CRT]);
        assert_eq!(required(Role::Master).len(), 8);
        assert_eq!(pki_keys().len(), 7);
        assert_eq!(
            top_level_keys(),
            ["bootstrap_token", "bootstrap_token_expires", "api_server"]
        );
        let paths = |r| -> Vec<&str> { file_list(r).iter().map(|(_, f)| f.path).collect() };
        assert_eq!(
            paths(Role::Minion),
            [node::CA_CRT.path, node::BOOTSTRAP_KUBELET_CONF.path]
        );
        let master = paths(Role::Master);
        assert_eq!(master.len(), 7);
        assert_eq!(master.last(), Some(&node::TOKEN_SECRET.path));
        assert!(for_role(Role::Minion).all(|c| c.key != keys::CA_KEY));
    }

    #[test]
    fn retired_keys_are_no_credentials() {
        for r in RETIRED {
            assert_eq!(spec(r.key), None, "{} is in the table", r.key);
            assert!(r.key.starts_with(PKI_PREFIX), "{}", r.key);
            assert!(!pki_keys().contains(&r.name()), "{}", r.key);
            let why = r.reason();
            assert!(
                why.contains(r.key) && why.contains(node::KUBELET_CONF),
                "{why}"
            );
        }
        assert_eq!(
            retired("kubernetes.pki.kube_proxy_key").map(Retired::name),
            Some("kube_proxy_key")
        );
        assert!(retired(keys::CA_CRT).is_none());
    }
}
