//! Validated values that end up in the role marker (a systemd
//! `EnvironmentFile=`), on command lines, in DNS queries and in file names.
//!
//! Every type here can only be built through `TryFrom<&str>` (or a checked
//! constructor), so a value that exists is safe: no quotes, whitespace, `$`,
//! backslash, backtick, or shell/path metacharacter can reach a unit. The
//! values the builder and the VM harness check too (role, cluster name,
//! domain, weave password) are in the `kubebake-contract` crate.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use contract::values::{check_dns_name, ClusterName, Domain, InvalidValue, WeavePassword};

/// A master endpoint override: `host`, `host:port`, `1.2.3.4[:port]` or `[v6][:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterEndpoint {
    text: String,
    host: String,
    port: Option<u16>,
}

contract::validated_string!(MasterEndpoint, text);

impl MasterEndpoint {
    /// The host part (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }
    pub fn port(&self) -> Option<u16> {
        self.port
    }
}

/// A port 1-65535 in decimal digits only.
fn parse_port(p: &str) -> Option<u16> {
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.len() > 5 {
        return None;
    }
    p.parse::<u16>().ok().filter(|n| *n != 0)
}

impl MasterEndpoint {
    fn parse(s: &str) -> Result<Self, InvalidValue> {
        let err = |r: String| {
            InvalidValue::new(
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
                p => {
                    let p = p
                        .strip_prefix(':')
                        .ok_or_else(|| err("expected ':' after ']'".into()))?;
                    Some(parse_port(p).ok_or_else(|| err(bad_port(p)))?)
                }
            };
            (h.to_string(), port)
        } else {
            let (h, port) = match s.split_once(':') {
                Some((h, p)) => (h, Some(parse_port(p).ok_or_else(|| err(bad_port(p)))?)),
                None => (s, None),
            };
            if h.parse::<Ipv4Addr>().is_err() {
                check_dns_name(h).map_err(|e| err(e.to_string()))?;
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

fn bad_port(p: &str) -> String {
    format!("port {p:?} is not a number 1-65535")
}

/// An http(s) URL restricted to characters that are inert in an
/// EnvironmentFile, a systemd command line and a shell word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddonsUrl(String);

contract::validated_string!(AddonsUrl, 0);

impl AddonsUrl {
    fn parse(s: &str) -> Result<Self, InvalidValue> {
        let rest = s
            .strip_prefix("https://")
            .or_else(|| s.strip_prefix("http://"))
            .ok_or_else(|| {
                InvalidValue::new("addons_url", s, "must start with http:// or https://")
            })?;
        if s.len() > 2048 {
            return Err(InvalidValue::new(
                "addons_url",
                s,
                "longer than 2048 characters",
            ));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "-._~:/?=%@+,".contains(*c)))
        {
            return Err(InvalidValue::new(
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
            return Err(InvalidValue::new("addons_url", s, "has no host"));
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
    /// The host part (IPv6 without brackets): the name wait-master resolves.
    pub fn host(&self) -> &str {
        self.endpoint.host()
    }
    /// The port (443, https's, when the URL names none).
    pub fn port(&self) -> u16 {
        self.endpoint.port.unwrap_or(443)
    }
}

contract::validated_string!(ApiServer, text);

impl ApiServer {
    fn parse(s: &str) -> Result<Self, InvalidValue> {
        let authority = s.strip_prefix("https://").ok_or_else(|| {
            InvalidValue::new(
                "api_server",
                s,
                "must start with https:// (e.g. https://masters.demo.k8s:6443)",
            )
        })?;
        let endpoint = MasterEndpoint::try_from(authority).map_err(|e| {
            InvalidValue::new(
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
            return Err(InvalidValue::new(
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
            return Err(InvalidValue::new(
                "expected_minions",
                s,
                "must be a decimal number without leading zeros",
            ));
        }
        let n: u64 = s
            .parse()
            .map_err(|_| InvalidValue::new("expected_minions", s, "number too large"))?;
        Self::new(n)
    }
}

/// An IPv4 CIDR such as `10.32.0.0/12` (weave allocates IPv4 only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cidr(String);

contract::validated_string!(Cidr, 0);

impl Cidr {
    fn parse(s: &str) -> Result<Self, InvalidValue> {
        let err = || {
            InvalidValue::new(
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
            return Err(InvalidValue::new(
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
    let bad = |r: &str| InvalidValue::new("WEAVE_EXTRA_ARGS word", arg, r.to_string());
    if arg == "--no-fastdp" {
        return Ok(());
    }
    if let Some(v) = arg.strip_prefix("--ipalloc-range=") {
        return Cidr::try_from(v).map(|_| ());
    }
    if let Some(v) = arg.strip_prefix("--mtu=") {
        return parse_mtu(v).map(|_| ()).map_err(|e| bad(&e.to_string()));
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

/// Why a weave MTU is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MtuError {
    #[error("mtu {0:?} must be a decimal number")]
    NotDecimal(String),
    #[error("mtu {0} must be between 576 and 65535")]
    OutOfRange(String),
}

/// MTU for weave: 576..=65535.
pub fn parse_mtu(s: &str) -> Result<u16, MtuError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || s.starts_with('0') {
        return Err(MtuError::NotDecimal(s.to_string()));
    }
    match s.parse::<u32>() {
        Ok(n) if (576..=65535).contains(&n) => Ok(n as u16),
        _ => Err(MtuError::OutOfRange(s.to_string())),
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
    fn numbers_and_cidrs() {
        assert_eq!(ExpectedMinions::try_from("3").unwrap().get(), 3);
        for bad in ["0", "0600", "1_000", "-1", "x", "10001", ""] {
            assert!(ExpectedMinions::try_from(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Cidr::try_from("10.32.0.0/12").is_ok());
        assert!(Cidr::try_from("10.32.0.1/12").is_err());
        assert!(Cidr::try_from("10.32.0.0/33").is_err());
        assert!(check_weave_arg("--mtu=1376").is_ok());
        assert!(check_weave_arg("--mtu=1").is_err());
        assert!(check_weave_arg("--foo").is_err());
    }
}
