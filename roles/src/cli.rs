//! Command-line parsing (lexopt: tiny, no derive machinery).

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use contract::role::Role;
use lexopt::prelude::*;

/// Exit codes (documented in README.md).
pub mod exit {
    /// Success (also: host left unassigned because user-data names no role).
    pub const OK: u8 = 0;
    /// Usage, configuration or user-data error, conflict, failed preflight.
    pub const ERROR: u8 = 1;
    /// Timed out waiting (wait-master, weave): systemd may retry.
    pub const TIMEOUT: u8 = 2;
    /// wait-master: the API server rejected this node's credential (wrong or
    /// expired bootstrap token). Retrying cannot help: new user-data can.
    pub const REJECTED: u8 = 3;
}

/// Where `wait-master --kubectl` defaults to.
pub const KUBECTL: &str = "/usr/local/bin/kubectl";

pub const USAGE: &str = "\
usage: rolectl <command> [options]

commands:
  activate    [--root DIR] [--user-data FILE | --cloud-init] [--network-timeout SECS] [--imds-url URL]
  wait-master [--root DIR] --resolve-only [--timeout SECS] [--max-backoff SECS]
  wait-master [--root DIR] --health-url URL [--timeout SECS] [--max-backoff SECS]
  wait-master [--root DIR] --kubeconfig FILE [--kubeconfig FILE...] [--kubectl PATH]
              [--reject-grace SECS] [--timeout SECS] [--max-backoff SECS]
  weave       [--root DIR] [--dry-run] [--expected N] [--poll SECS] [--timeout SECS] [-- LAUNCH COMMAND...]
  status      [--root DIR] [--json]
  preflight   [--root DIR] [--role master|minion] [--json]

exit codes: 0 ok, 1 usage/config/user-data error, 2 timeout,
            3 credential rejected by the API server (wait-master)
";

/// What `wait-master` waits for.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    /// `--resolve-only`: the master's DNS name resolves (what weave needs:
    /// the router talks to its peers, not to the API server).
    Resolve,
    /// `--health-url`: a plain-HTTP 2xx from `{master}`.
    HealthUrl(String),
    /// `--kubeconfig` (first existing file wins): the API server's /readyz
    /// through kubectl, over TLS with the kubeconfig's CA and credential.
    Kubeconfig {
        kubeconfigs: Vec<String>,
        kubectl: PathBuf,
        /// How long a refused credential counts as "the master has not
        /// created the token yet" (default 120 s).
        reject_grace: Duration,
    },
}

/// Where `activate` gets the user-data.
#[derive(Debug, Clone, PartialEq)]
pub enum ActivateFrom {
    /// `--user-data FILE`.
    File(String),
    /// `--cloud-init`: cloud-init's copy, checked against the marker.
    CloudInit,
    /// The image's datasources ([`crate::datasource`]), then cloud-init's copy.
    Datasources {
        network_timeout: Duration,
        imds_url: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Cmd {
    Help,
    Version,
    Activate {
        root: PathBuf,
        /// `--user-data FILE` (then it must exist), `--cloud-init` (cloud-init's
        /// copy, after cloud-init ran), or the datasources.
        from: ActivateFrom,
    },
    WaitMaster {
        root: PathBuf,
        probe: Probe,
        timeout: Option<Duration>,
        initial_backoff: Duration,
        max_backoff: Duration,
        dns_server: Option<SocketAddr>,
    },
    Weave {
        root: PathBuf,
        dry_run: bool,
        expected: Option<u32>,
        poll: Duration,
        timeout: Option<Duration>,
        dns_server: Option<SocketAddr>,
        own_addrs: Option<Vec<IpAddr>>,
        launch: Vec<String>,
    },
    Status {
        root: PathBuf,
        json: bool,
    },
    Preflight {
        root: PathBuf,
        role: Option<Role>,
        json: bool,
    },
}

fn secs(v: OsString, opt: &str) -> Result<Duration, String> {
    let s = v.to_string_lossy();
    let f: f64 = s
        .parse()
        .map_err(|_| format!("{opt}: {s:?} is not a number of seconds"))?;
    if !(0.0..=86_400.0 * 365.0).contains(&f) || f.is_nan() {
        return Err(format!("{opt}: {s} is out of range"));
    }
    Ok(Duration::from_secs_f64(f))
}

fn string(v: OsString, opt: &str) -> Result<String, String> {
    v.into_string()
        .map_err(|_| format!("{opt}: value is not valid UTF-8"))
}

/// Parses `args` (without argv[0]).
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Cmd, String> {
    // Everything after the first `--` is the weave launch command.
    let mut args: Vec<OsString> = args.into_iter().collect();
    let tail: Vec<OsString> = match args.iter().position(|a| a == "--") {
        Some(i) => {
            let t = args.split_off(i);
            t.into_iter().skip(1).collect()
        }
        None => Vec::new(),
    };
    let mut p = lexopt::Parser::from_args(args);
    let e = |err: lexopt::Error| err.to_string();
    let sub = match p.next().map_err(e)? {
        Some(Value(v)) => string(v, "command")?,
        Some(Long("help")) | Some(Short('h')) => return Ok(Cmd::Help),
        Some(Long("version")) | Some(Short('V')) => return Ok(Cmd::Version),
        Some(other) => return Err(other.unexpected().to_string()),
        None => return Err("no command given".into()),
    };
    let mut root = PathBuf::from("/");
    let mut user_data: Option<String> = None;
    let mut health_url: Option<String> = None;
    let mut timeout: Option<Duration> = None;
    let mut initial_backoff = Duration::from_millis(250);
    let mut max_backoff: Option<Duration> = None;
    let mut kubeconfigs: Vec<String> = Vec::new();
    let mut kubectl: Option<PathBuf> = None;
    let mut reject_grace: Option<Duration> = None;
    let mut dns_server: Option<SocketAddr> = None;
    let mut dry_run = false;
    let mut expected: Option<u32> = None;
    let mut poll = Duration::from_secs(5);
    let mut own_addrs: Option<Vec<IpAddr>> = None;
    let mut launch: Vec<String> = Vec::new();
    let mut json = false;
    let mut role: Option<Role> = None;
    let mut cloud_init = false;
    let mut resolve_only = false;
    let mut network_timeout: Option<Duration> = None;
    let mut imds_url: Option<String> = None;
    let allowed: &[&str] = match sub.as_str() {
        "activate" => &[
            "root",
            "user-data",
            "cloud-init",
            "network-timeout",
            "imds-url",
        ],
        "wait-master" => &[
            "root",
            "resolve-only",
            "health-url",
            "kubeconfig",
            "kubectl",
            "reject-grace",
            "timeout",
            "max-backoff",
            "initial-backoff",
            "dns-server",
        ],
        "weave" => &[
            "root",
            "dry-run",
            "expected",
            "poll",
            "timeout",
            "dns-server",
            "own-addr",
        ],
        "status" => &["root", "json"],
        "preflight" => &["root", "role", "json"],
        "help" => return Ok(Cmd::Help),
        other => return Err(format!("unknown command {other:?}")),
    };
    while let Some(arg) = p.next().map_err(e)? {
        let name = match &arg {
            Long(l) => l.to_string(),
            Short('h') => return Ok(Cmd::Help),
            Value(v) => return Err(format!("unexpected argument {:?}", v.to_string_lossy())),
            other => return Err(other.clone().unexpected().to_string()),
        };
        if name == "help" {
            return Ok(Cmd::Help);
        }
        if !allowed.contains(&name.as_str()) {
            return Err(format!("{sub}: unknown option --{name}"));
        }
        let opt = format!("--{name}");
        match name.as_str() {
            "root" => root = PathBuf::from(p.value().map_err(e)?),
            "user-data" => user_data = Some(string(p.value().map_err(e)?, &opt)?),
            "cloud-init" => cloud_init = true,
            "resolve-only" => resolve_only = true,
            "network-timeout" => network_timeout = Some(secs(p.value().map_err(e)?, &opt)?),
            "imds-url" => {
                let v = string(p.value().map_err(e)?, &opt)?;
                if !(v.starts_with("http://") || v.starts_with("https://")) || v.ends_with('/') {
                    return Err(format!(
                        "{opt}: {v:?} must be an http(s) URL without a trailing slash, e.g. http://169.254.169.254"
                    ));
                }
                imds_url = Some(v);
            }
            "health-url" => health_url = Some(string(p.value().map_err(e)?, &opt)?),
            "timeout" => timeout = Some(secs(p.value().map_err(e)?, &opt)?),
            "max-backoff" => max_backoff = Some(secs(p.value().map_err(e)?, &opt)?),
            "kubeconfig" => {
                let v = string(p.value().map_err(e)?, &opt)?;
                if !v.starts_with('/') {
                    return Err(format!("{opt}: {v:?} must be an absolute path"));
                }
                kubeconfigs.push(v);
            }
            "kubectl" => kubectl = Some(PathBuf::from(p.value().map_err(e)?)),
            "reject-grace" => reject_grace = Some(secs(p.value().map_err(e)?, &opt)?),
            "initial-backoff" => initial_backoff = secs(p.value().map_err(e)?, &opt)?,
            "poll" => poll = secs(p.value().map_err(e)?, &opt)?,
            "dns-server" => {
                let v = string(p.value().map_err(e)?, &opt)?;
                if !cfg!(feature = "test-dns") {
                    return Err(format!(
                        "{opt} is a testing option; this rolectl was built without the test-dns feature"
                    ));
                }
                dns_server = Some(
                    v.parse()
                        .map_err(|_| format!("{opt}: {v:?} is not IP:PORT"))?,
                );
            }
            "own-addr" => {
                let v = string(p.value().map_err(e)?, &opt)?;
                let ip: IpAddr = v
                    .parse()
                    .map_err(|_| format!("{opt}: {v:?} is not an IP address"))?;
                own_addrs.get_or_insert_with(Vec::new).push(ip);
            }
            "expected" => {
                let v = string(p.value().map_err(e)?, &opt)?;
                let n = crate::settings::ExpectedMinions::try_from(v.as_str())
                    .map_err(|err| format!("{opt}: {err}"))?;
                expected = Some(n.get());
            }
            "dry-run" => dry_run = true,
            "json" => json = true,
            "role" => {
                let v = string(p.value().map_err(e)?, &opt)?;
                role = Some(Role::try_from(v.as_str()).map_err(|err| format!("{opt}: {err}"))?);
            }
            _ => return Err(format!("{sub}: unknown option {opt}")),
        }
    }
    if !tail.is_empty() {
        if sub != "weave" {
            return Err(format!("{sub}: unexpected arguments after --"));
        }
        for a in tail {
            launch.push(string(a, "launch command")?);
        }
    }
    match sub.as_str() {
        "activate" => {
            let network_only = network_timeout.is_some() || imds_url.is_some();
            let from = match (user_data, cloud_init) {
                (Some(_), true) => {
                    return Err("activate: give --user-data FILE or --cloud-init, not both".into())
                }
                (Some(f), false) => ActivateFrom::File(f),
                (None, true) => ActivateFrom::CloudInit,
                (None, false) => ActivateFrom::Datasources {
                    network_timeout: network_timeout.unwrap_or(crate::datasource::NETWORK_TIMEOUT),
                    imds_url: imds_url.unwrap_or_else(|| crate::datasource::EC2_IMDS.into()),
                },
            };
            if network_only && !matches!(from, ActivateFrom::Datasources { .. }) {
                return Err(
                    "activate: --network-timeout and --imds-url go with the datasources, not with --user-data or --cloud-init"
                        .into(),
                );
            }
            Ok(Cmd::Activate { root, from })
        }
        "wait-master" => {
            // Minions must notice a ready master within about 2 s: every
            // probe backs off to at most 2 s (jittered).
            let default_max = Duration::from_secs(2);
            if resolve_only && (health_url.is_some() || !kubeconfigs.is_empty()) {
                return Err(
                    "wait-master: --resolve-only waits for DNS alone; drop --health-url/--kubeconfig"
                        .into(),
                );
            }
            let probe = match (health_url, kubeconfigs.is_empty()) {
                _ if resolve_only => {
                    if kubectl.is_some() || reject_grace.is_some() {
                        return Err(
                            "wait-master: --kubectl and --reject-grace go with --kubeconfig".into(),
                        );
                    }
                    Probe::Resolve
                }
                (Some(_), false) => {
                    return Err(
                        "wait-master: give either --health-url or --kubeconfig, not both".into(),
                    )
                }
                (Some(u), true) => {
                    if kubectl.is_some() || reject_grace.is_some() {
                        return Err(
                            "wait-master: --kubectl and --reject-grace go with --kubeconfig".into(),
                        );
                    }
                    Probe::HealthUrl(u)
                }
                (None, false) => Probe::Kubeconfig {
                    kubeconfigs,
                    kubectl: kubectl.unwrap_or_else(|| PathBuf::from(KUBECTL)),
                    reject_grace: reject_grace.unwrap_or(crate::wait::REJECT_GRACE),
                },
                (None, true) => {
                    return Err(
                        "wait-master: --resolve-only, --health-url URL or --kubeconfig FILE is required".into(),
                    )
                }
            };
            let max_backoff = max_backoff.unwrap_or(default_max);
            if max_backoff < initial_backoff {
                initial_backoff = max_backoff;
            }
            Ok(Cmd::WaitMaster {
                root,
                probe,
                timeout,
                initial_backoff,
                max_backoff,
                dns_server,
            })
        }
        "weave" => Ok(Cmd::Weave {
            root,
            dry_run,
            expected,
            poll,
            timeout,
            dns_server,
            own_addrs,
            launch,
        }),
        "status" => Ok(Cmd::Status { root, json }),
        "preflight" => Ok(Cmd::Preflight { root, role, json }),
        _ => Err(format!("unknown command {sub:?}")),
    }
}
