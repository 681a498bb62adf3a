//! Validated values that end up in the role marker (a systemd
//! `EnvironmentFile=`), on command lines, in DNS queries and in file names.
//!
//! Every type here can only be built through `TryFrom<&str>` (or a checked
//! constructor), so a value that exists is safe: no quotes, whitespace, `$`,
//! backslash, backtick, or shell/path metacharacter can reach a unit.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A value was rejected; the message says what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {value:?} is invalid: {reason}")]
pub struct InvalidValue {
    pub what: &'static str,
    pub value: String,
    pub reason: String,
}

fn invalid(what: &'static str, value: &str, reason: impl Into<String>) -> InvalidValue {
    // Never echo control characters back into the journal verbatim.
    let shown: String = value.chars().take(80).collect();
    InvalidValue {
        what,
        value: shown,
        reason: reason.into(),
    }
}

/// The role markers are `/etc/sysconfig/kubernetes-<role>`: defined here
/// once; `Role::marker_path`, the builder's role proof, `inspect`, the
/// script form of user-data and the VM harness all derive from it.
macro_rules! marker_stem {
    () => {
        "/etc/sysconfig/kubernetes"
    };
}

/// The marker path without `-<role>` (what the script form looks for).
pub const MARKER_STEM: &str = marker_stem!();
/// Every role marker path starts with this.
pub const MARKER_PREFIX: &str = concat!(marker_stem!(), "-");

/// The two roles a host can take (also the builder's unit roles and the VM
/// harness's).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Master,
    Minion,
}

impl Role {
    pub const ALL: [Role; 2] = [Role::Master, Role::Minion];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Minion => "minion",
        }
    }

    /// The marker path relative to the root, as units reference it.
    pub fn marker_path(self) -> &'static str {
        match self {
            Role::Master => concat!(marker_stem!(), "-master"),
            Role::Minion => concat!(marker_stem!(), "-minion"),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::try_from(s)
    }
}

impl TryFrom<&str> for Role {
    type Error = InvalidValue;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        match s {
            "master" => Ok(Role::Master),
            "minion" => Ok(Role::Minion),
            "masters" | "minions" => Err(invalid(
                "role",
                s,
                format!("must be master or minion (singular: {})", &s[..s.len() - 1]),
            )),
            _ => Err(invalid("role", s, "must be master or minion")),
        }
    }
}

/// Checks one RFC 1123 label: `[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?`.
pub fn check_label(label: &str) -> Result<(), String> {
    if label.is_empty() {
        return Err("empty label".into());
    }
    if label.len() > 63 {
        return Err(format!(
            "label is {} characters, at most 63 allowed",
            label.len()
        ));
    }
    if let Some(c) = label
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(if c.is_ascii_uppercase() {
            format!("uppercase {c:?} not allowed (use lowercase)")
        } else {
            format!("character {c:?} not allowed (only a-z, 0-9 and -)")
        });
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err("must start and end with a letter or digit".into());
    }
    Ok(())
}

/// A cluster name: one RFC 1123 DNS label, lowercase, at most 63 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClusterName(String);

impl ClusterName {
    /// The name used when user-data names a role but no cluster (script form).
    pub const DEFAULT: &'static str = "kubernetes";

    pub fn default_name() -> Self {
        ClusterName(Self::DEFAULT.to_string())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for ClusterName {
    type Error = InvalidValue;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        check_label(s).map_err(|r| {
            invalid(
                "cluster name",
                s,
                format!("{r}; a cluster name is one DNS label (RFC 1123): lowercase a-z, 0-9, '-', at most 63"),
            )
        })?;
        Ok(ClusterName(s.to_string()))
    }
}

impl fmt::Display for ClusterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a DNS name: dot-separated RFC 1123 labels, at most 253 characters.
fn check_dns_name(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("empty".into());
    }
    if s.len() > 253 {
        return Err(format!("{} characters, at most 253 allowed", s.len()));
    }
    if s.ends_with('.') {
        return Err("no trailing dot".into());
    }
    for label in s.split('.') {
        check_label(label).map_err(|r| format!("label {label:?}: {r}"))?;
    }
    Ok(())
}

/// A DNS domain such as `k8s` or `example.internal`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Domain(String);

impl Domain {
    pub const DEFAULT: &'static str = "k8s";
    pub fn default_domain() -> Self {
        Domain(Self::DEFAULT.to_string())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for Domain {
    type Error = InvalidValue;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        check_dns_name(s).map_err(|r| {
            invalid(
                "domain",
                s,
                format!("{r}; a domain is dot-separated lowercase DNS labels"),
            )
        })?;
        Ok(Domain(s.to_string()))
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A master endpoint override: `host`, `host:port`, `1.2.3.4[:port]` or `[v6][:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterEndpoint {
    text: String,
    host: String,
    port: Option<u16>,
}

impl MasterEndpoint {
    pub fn as_str(&self) -> &str {
        &self.text
    }
    /// The host part (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }
    pub fn port(&self) -> Option<u16> {
        self.port
    }
}

fn parse_port(p: &str) -> Result<u16, String> {
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.len() > 5 {
        return Err(format!("port {p:?} is not a number 1-65535"));
    }
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("port {p:?} is not a number 1-65535")),
        Ok(n) => Ok(n),
    }
}

impl TryFrom<&str> for MasterEndpoint {
    type Error = InvalidValue;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        let err = |r: String| {
            invalid(
                "master endpoint",
                s,
                format!("{r}; expected host, host:port, IPv4[:port] or [IPv6][:port]"),
            )
        };
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (h, after) = rest
                .split_once(']')
                .ok_or_else(|| err("missing ']'".into()))?;
            h.parse::<Ipv6Addr>()
                .map_err(|_| err(format!("{h:?} is not an IPv6 address")))?;
            let port = match after {
                "" => None,
                p => Some(
                    parse_port(
                        p.strip_prefix(':')
                            .ok_or_else(|| err("expected ':' after ']'".into()))?,
                    )
                    .map_err(err)?,
                ),
            };
            (h.to_string(), port)
        } else {
            let (h, port) = match s.split_once(':') {
                Some((h, p)) => (h, Some(parse_port(p).map_err(err)?)),
                None => (s, None),
            };
            if h.parse::<Ipv4Addr>().is_err() {
                check_dns_name(h).map_err(err)?;
                if h.split('.').all(|l| l.bytes().all(|b| b.is_ascii_digit())) {
                    return Err(err(format!(
                        "{h:?} is neither an IPv4 address nor a host name"
                    )));
                }
            }
            (h.to_string(), port)
        };
        Ok(MasterEndpoint {
            text: s.to_string(),
            host,
            port,
        })
    }
}

/// An http(s) URL restricted to characters that are inert in an
/// EnvironmentFile, a systemd command line and a shell word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddonsUrl(String);

impl AddonsUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for AddonsUrl {
    type Error = InvalidValue;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        let rest = s
            .strip_prefix("https://")
            .or_else(|| s.strip_prefix("http://"))
            .ok_or_else(|| invalid("addons_url", s, "must start with http:// or https://"))?;
        if s.len() > 2048 {
            return Err(invalid("addons_url", s, "longer than 2048 characters"));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "-._~:/?=%@+,".contains(*c)))
        {
            return Err(invalid(
                "addons_url",
                s,
                format!(
                    "character {c:?} not allowed (allowed: A-Z a-z 0-9 - . _ ~ : / ? = % @ + ,; percent-encode others)"
                ),
            ));
        }
        let authority = rest.split(['/', '?']).next().unwrap_or_default();
        let host = authority.rsplit('@').next().unwrap_or_default();
        if host.is_empty() || host.starts_with(':') {
            return Err(invalid("addons_url", s, "has no host"));
        }
        Ok(AddonsUrl(s.to_string()))
    }
}

/// The Kubernetes API server URL: `https://` + host, host:port, IPv4[:port]
/// or [IPv6][:port], no path. It reaches the marker (`API_SERVER=`) and
/// kubeconfigs, so only the characters of a host and port are allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiServer {
    text: String,
    endpoint: MasterEndpoint,
}

impl ApiServer {
    /// The API server port masters listen on (kubeadm's default).
    pub const PORT: u16 = 6443;

    /// `https://masters.<cluster>.<domain>:6443`: a master's own API server,
    /// and a minion's when user-data names none.
    pub fn for_cluster(cluster: &ClusterName, domain: &Domain) -> Self {
        let authority = format!("masters.{cluster}.{domain}:{}", Self::PORT);
        ApiServer {
            text: format!("https://{authority}"),
            endpoint: MasterEndpoint {
                text: authority,
                host: format!("masters.{cluster}.{domain}"),
                port: Some(Self::PORT),
            },
        }
    }
    pub fn as_str(&self) -> &str {
        &self.text
    }
    /// The host part (IPv6 without brackets): the name wait-master resolves.
    pub fn host(&self) -> &str {
        self.endpoint.host()
    }
    /// The port (443, https's, when the URL names none).
    pub fn port(&self) -> u16 {
        self.endpoint.port.unwrap_or(443)
    }
}

impl TryFrom<&str> for ApiServer {
    type Error = InvalidValue;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        let authority = s.strip_prefix("https://").ok_or_else(|| {
            invalid(
                "api_server",
                s,
                "must start with https:// (e.g. https://masters.demo.k8s:6443)",
            )
        })?;
        let endpoint = MasterEndpoint::try_from(authority).map_err(|e| {
            invalid(
                "api_server",
                s,
                format!("{}; expected https://HOST[:PORT] without a path", e.reason),
            )
        })?;
        Ok(ApiServer {
            text: s.to_string(),
            endpoint,
        })
    }
}

impl fmt::Display for ApiServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Number of minions weave waits for before consensus IP allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpectedMinions(u32);

impl ExpectedMinions {
    pub const MAX: u32 = 10_000;
    pub fn get(self) -> u32 {
        self.0
    }
    pub fn new(n: u64) -> Result<Self, InvalidValue> {
        if n == 0 || n > u64::from(Self::MAX) {
            return Err(invalid(
                "expected_minions",
                &n.to_string(),
                format!("must be between 1 and {}", Self::MAX),
            ));
        }
        Ok(ExpectedMinions(n as u32))
    }
}

impl TryFrom<&str> for ExpectedMinions {
    type Error = InvalidValue;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        if s.is_empty()
            || !s.bytes().all(|b| b.is_ascii_digit())
            || (s.len() > 1 && s.starts_with('0'))
        {
            return Err(invalid(
                "expected_minions",
                s,
                "must be a decimal number without leading zeros",
            ));
        }
        let n: u64 = s
            .parse()
            .map_err(|_| invalid("expected_minions", s, "number too large"))?;
        Self::new(n)
    }
}

/// The weave network password (a secret: masked in `status`, passed to weave
/// only through the environment).
#[derive(Clone, PartialEq, Eq)]
pub struct WeavePassword(String);

impl fmt::Debug for WeavePassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WeavePassword(***)")
    }
}

impl WeavePassword {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for WeavePassword {
    type Error = InvalidValue;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        // Do not echo the secret in errors.
        let err = |r: &str| invalid("weave password", "***", r.to_string());
        if s.len() < 8 || s.len() > 256 {
            return Err(err("must be 8 to 256 characters"));
        }
        if s.chars()
            .any(|c| !c.is_ascii_graphic() || "\"'\\$`".contains(c))
        {
            return Err(err(
                "only printable ASCII without spaces, quotes, backslash, '$' or '`' is allowed",
            ));
        }
        Ok(WeavePassword(s.to_string()))
    }
}

/// An IPv4 CIDR such as `10.32.0.0/12` (weave allocates IPv4 only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cidr(String);

impl Cidr {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for Cidr {
    type Error = InvalidValue;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        let err = || {
            invalid(
                "CIDR",
                s,
                "expected IPv4 address/prefix such as 10.32.0.0/12",
            )
        };
        let (a, p) = s.split_once('/').ok_or_else(err)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| err())?;
        if p.is_empty() || p.len() > 2 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        let prefix: u32 = p.parse().map_err(|_| err())?;
        if prefix > 32 {
            return Err(err());
        }
        let mask = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - prefix)
        };
        if u32::from(addr) & !mask != 0 {
            return Err(invalid(
                "CIDR",
                s,
                format!(
                    "host bits set; the network is {}/{prefix}",
                    Ipv4Addr::from(u32::from(addr) & mask)
                ),
            ));
        }
        Ok(Cidr(s.to_string()))
    }
}

/// Validated weave options (from `kubernetes: weave:`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WeaveOptions {
    pub password: Option<WeavePassword>,
    pub ipalloc_range: Option<Cidr>,
    pub mtu: Option<u16>,
    pub no_fastdp: bool,
    pub trusted_subnets: Vec<Cidr>,
}

impl WeaveOptions {
    /// Extra `weave launch-router` arguments (the password is not one of them).
    pub fn extra_args(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(r) = &self.ipalloc_range {
            v.push(format!("--ipalloc-range={}", r.as_str()));
        }
        if let Some(m) = self.mtu {
            v.push(format!("--mtu={m}"));
        }
        if self.no_fastdp {
            v.push("--no-fastdp".to_string());
        }
        if !self.trusted_subnets.is_empty() {
            let s: Vec<&str> = self.trusted_subnets.iter().map(Cidr::as_str).collect();
            v.push(format!("--trusted-subnets={}", s.join(",")));
        }
        v
    }
}

/// Validates a WEAVE_EXTRA_ARGS word read back from a marker: only the
/// forms [`WeaveOptions::extra_args`] produces are accepted.
pub fn check_weave_arg(arg: &str) -> Result<(), InvalidValue> {
    let bad = |r: &str| invalid("WEAVE_EXTRA_ARGS word", arg, r.to_string());
    if arg == "--no-fastdp" {
        return Ok(());
    }
    if let Some(v) = arg.strip_prefix("--ipalloc-range=") {
        return Cidr::try_from(v).map(|_| ());
    }
    if let Some(v) = arg.strip_prefix("--mtu=") {
        return parse_mtu(v).map(|_| ()).map_err(|r| bad(&r));
    }
    if let Some(v) = arg.strip_prefix("--trusted-subnets=") {
        for c in v.split(',') {
            Cidr::try_from(c)?;
        }
        return Ok(());
    }
    Err(bad(
        "unknown weave argument (allowed: --ipalloc-range=, --mtu=, --no-fastdp, --trusted-subnets=)",
    ))
}

/// MTU for weave: 576..=65535.
pub fn parse_mtu(s: &str) -> Result<u16, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || s.starts_with('0') {
        return Err(format!("mtu {s:?} must be a decimal number"));
    }
    match s.parse::<u32>() {
        Ok(n) if (576..=65535).contains(&n) => Ok(n as u16),
        _ => Err(format!("mtu {s} must be between 576 and 65535")),
    }
}

/// Everything a role marker holds besides the role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub cluster: ClusterName,
    pub domain: Domain,
    pub master_endpoint: Option<MasterEndpoint>,
    pub addons_url: Option<AddonsUrl>,
    pub expected_minions: Option<ExpectedMinions>,
    pub weave: WeaveOptions,
    /// `API_SERVER=`: set when user-data carries cluster credentials.
    pub api_server: Option<ApiServer>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            cluster: ClusterName::default_name(),
            domain: Domain::default_domain(),
            master_endpoint: None,
            addons_url: None,
            expected_minions: None,
            weave: WeaveOptions::default(),
            api_server: None,
        }
    }
}

impl Settings {
    /// `masters.<cluster>.<domain>` (the seed's naming convention).
    pub fn masters_name(&self) -> String {
        format!("masters.{}.{}", self.cluster, self.domain)
    }
    /// `minions.<cluster>.<domain>`.
    pub fn minions_name(&self) -> String {
        format!("minions.{}.{}", self.cluster, self.domain)
    }
}

/// True if `s` parses as an IP address (used to skip DNS for literals).
pub fn ip_literal(s: &str) -> Option<IpAddr> {
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_names() {
        assert!(ClusterName::try_from("demo").is_ok());
        assert!(ClusterName::try_from("a").is_ok());
        assert!(ClusterName::try_from("0a-9").is_ok());
        assert!(ClusterName::try_from(&*"a".repeat(63)).is_ok());
        for bad in [
            "",
            "Demo",
            "-a",
            "a-",
            "a.b",
            "a_b",
            "a b",
            "a;b",
            "$x",
            "../x",
            "a/b",
            "a\nb",
            &"a".repeat(64),
        ] {
            assert!(ClusterName::try_from(bad).is_err(), "{bad:?} accepted");
        }
        let e = ClusterName::try_from("Demo").unwrap_err().to_string();
        assert!(e.contains("uppercase"), "{e}");
    }

    #[test]
    fn domains() {
        assert!(Domain::try_from("k8s").is_ok());
        assert!(Domain::try_from("a.example.internal").is_ok());
        for bad in [
            "",
            "k8s.",
            ".k8s",
            "a..b",
            "A.b",
            "a_b.c",
            &"a.".repeat(130),
        ] {
            assert!(Domain::try_from(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn endpoints() {
        let e = MasterEndpoint::try_from("10.0.0.1:8080").unwrap();
        assert_eq!((e.host(), e.port()), ("10.0.0.1", Some(8080)));
        let e = MasterEndpoint::try_from("[fd00::1]:6443").unwrap();
        assert_eq!((e.host(), e.port()), ("fd00::1", Some(6443)));
        assert_eq!(
            MasterEndpoint::try_from("api.demo.k8s").unwrap().port(),
            None
        );
        for bad in [
            "", "a:0", "a:65536", "a:", "[::1", "[zz]:1", "a b", "a;b", "1.2.3", "h:1:2",
        ] {
            assert!(MasterEndpoint::try_from(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn api_servers() {
        let a = ApiServer::try_from("https://masters.demo.k8s:6443").unwrap();
        assert_eq!(a.host(), "masters.demo.k8s");
        assert_eq!(
            ApiServer::try_from("https://[fd00::1]:6443")
                .unwrap()
                .host(),
            "fd00::1"
        );
        let d = ApiServer::for_cluster(
            &ClusterName::try_from("demo").unwrap(),
            &Domain::default_domain(),
        );
        assert_eq!(d, a);
        for bad in [
            "http://a:6443",
            "https://",
            "https://a:6443/",
            "https://a/x",
            "https://a b",
            "https://a:0",
            "https://$x",
        ] {
            assert!(ApiServer::try_from(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn urls() {
        assert!(AddonsUrl::try_from("https://example.com/addons?v=1").is_ok());
        for bad in [
            "ftp://x",
            "https://",
            "https://a/$x",
            "https://a/'",
            "https://a b",
            "http://a/`x`",
            "https://a/;rm",
        ] {
            assert!(AddonsUrl::try_from(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn numbers_and_secrets() {
        assert_eq!(ExpectedMinions::try_from("3").unwrap().get(), 3);
        for bad in ["0", "0600", "1_000", "-1", "x", "10001", ""] {
            assert!(ExpectedMinions::try_from(bad).is_err(), "{bad:?} accepted");
        }
        assert!(WeavePassword::try_from("s3cret-pass").is_ok());
        let e = WeavePassword::try_from("has space in it")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("space in it"), "secret echoed: {e}");
        assert!(WeavePassword::try_from("short").is_err());
        assert!(WeavePassword::try_from("abc$defgh").is_err());
        assert!(Cidr::try_from("10.32.0.0/12").is_ok());
        assert!(Cidr::try_from("10.32.0.1/12").is_err());
        assert!(Cidr::try_from("10.32.0.0/33").is_err());
        assert!(check_weave_arg("--mtu=1376").is_ok());
        assert!(check_weave_arg("--mtu=1").is_err());
        assert!(check_weave_arg("--foo").is_err());
    }
}
