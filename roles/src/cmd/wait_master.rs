//! `rolectl wait-master`: wait until the master's name resolves
//! (`--resolve-only`) or its API server is ready for this node's credential
//! (`--kubeconfig`), and record the outcome in status.json; or until the
//! master has given the node its own credential (`--node-kubeconfig`: the
//! kubeconfig the kubelet writes after its TLS bootstrap, which kube-proxy
//! uses) ([`crate::wait`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use contract::retry::Backoff;
use lexopt::Arg::Long;

use super::{exit, unknown, Argv, Stop, Subcommand};
use crate::marker;
use crate::settings::Settings;
use crate::status::{self, WaitMasterStatus};
use crate::wait::{self, ApiWaitError, Resolver};

/// Where `wait-master --kubectl` defaults to.
pub const KUBECTL: &str = "/usr/local/bin/kubectl";

/// curl in the image (package `curl`): the cheap /readyz probe.
const CURL: &str = "/usr/bin/curl";

/// What `wait-master` waits for.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    /// `--resolve-only`: the master's DNS name resolves (what weave needs:
    /// the router talks to its peers, not to the API server).
    Resolve,
    /// `--kubeconfig` (first existing file wins): the API server's /readyz
    /// through kubectl, over TLS with the kubeconfig's CA and credential.
    Kubeconfig {
        kubeconfigs: Vec<String>,
        kubectl: PathBuf,
        /// How long a refused credential counts as "the master has not
        /// created the token yet" (default [`wait::REJECT_GRACE`]).
        reject_grace: Duration,
    },
    /// `--node-kubeconfig FILE`: FILE exists and is not empty (the
    /// kubelet's `kubelet.conf`, written once the master signed the node's
    /// client certificate). No DNS, no API server, no kubectl, nothing in
    /// status.json: its `wait_master` stays the kubelet's.
    NodeKubeconfig(String),
}

#[derive(Debug, Clone)]
pub struct Args {
    pub root: PathBuf,
    pub probe: Probe,
    /// Every probe backs off from `--initial-backoff` (hidden, for tests) to
    /// `--max-backoff`, jittered, until `--timeout`.
    pub retry: Backoff,
    pub resolver: Resolver,
}

impl Subcommand for Args {
    const NAME: &'static str = "wait-master";

    fn parse(argv: &mut Argv) -> Result<Self, Stop> {
        let mut root = PathBuf::from("/");
        let mut resolve_only = false;
        let mut kubeconfigs: Vec<String> = Vec::new();
        let mut node_kubeconfig = None;
        let mut kubectl = None;
        let mut reject_grace = None;
        let mut timeout = None;
        let mut initial_backoff = Duration::from_millis(250);
        // Minions must notice a ready master within about 2 s: every probe
        // backs off to at most 2 s (jittered).
        let mut max_backoff = Duration::from_secs(2);
        let mut resolver = Resolver::System;
        while let Some(arg) = argv.next_arg()? {
            match arg {
                Long("root") => root = argv.path()?,
                Long("resolve-only") => resolve_only = true,
                Long("kubeconfig") => kubeconfigs.push(absolute(argv, "--kubeconfig")?),
                Long("node-kubeconfig") => {
                    node_kubeconfig = Some(absolute(argv, "--node-kubeconfig")?);
                }
                Long("kubectl") => kubectl = Some(argv.path()?),
                Long("reject-grace") => reject_grace = Some(argv.secs("--reject-grace")?),
                Long("timeout") => timeout = Some(argv.secs("--timeout")?),
                Long("max-backoff") => max_backoff = argv.secs("--max-backoff")?,
                Long("initial-backoff") => initial_backoff = argv.secs("--initial-backoff")?,
                Long("dns-server") => resolver = argv.dns_server()?,
                arg => return Err(unknown(Self::NAME, arg)),
            }
        }
        argv.no_tail(Self::NAME)?;
        let kubeconfig_only = kubectl.is_some() || reject_grace.is_some();
        let usage = |m: &str| Err(Stop::Usage(format!("wait-master: {m}")));
        let probe = match (resolve_only, kubeconfigs.is_empty(), node_kubeconfig) {
            (true, false, _) => {
                return usage("--resolve-only waits for DNS alone; drop --kubeconfig")
            }
            (false, false, Some(_)) => {
                return usage("--node-kubeconfig waits for that file alone; drop --kubeconfig")
            }
            (true, true, Some(_)) => {
                return usage("give --resolve-only or --node-kubeconfig, not both")
            }
            (true, true, None) | (false, true, Some(_)) if kubeconfig_only => {
                return usage("--kubectl and --reject-grace go with --kubeconfig")
            }
            (true, true, None) => Probe::Resolve,
            (false, true, Some(file)) => Probe::NodeKubeconfig(file),
            (false, false, None) => Probe::Kubeconfig {
                kubeconfigs,
                kubectl: kubectl.unwrap_or_else(|| PathBuf::from(KUBECTL)),
                reject_grace: reject_grace.unwrap_or(wait::REJECT_GRACE),
            },
            (false, true, None) => {
                return usage(
                    "--resolve-only, --kubeconfig FILE or --node-kubeconfig FILE is required",
                )
            }
        };
        let retry = Backoff {
            initial: initial_backoff.min(max_backoff),
            max: max_backoff,
            max_attempts: None,
            timeout,
            jitter: true,
        };
        Ok(Args {
            root,
            probe,
            retry,
            resolver,
        })
    }

    fn run(self) -> Result<u8> {
        let settings = || -> Result<Settings> {
            let (_, s) = marker::read_role(&self.root).context("reading the role marker")?;
            Ok(s)
        };
        match &self.probe {
            Probe::Resolve => self.resolve(&settings()?),
            Probe::Kubeconfig {
                kubeconfigs,
                kubectl,
                reject_grace,
            } => self.kubeconfig(&settings()?, kubeconfigs, kubectl, *reject_grace),
            Probe::NodeKubeconfig(file) => Ok(self.node_kubeconfig(file)),
        }
    }
}

/// The value of `opt`, which must be an absolute path (it is taken under
/// `--root`).
fn absolute(argv: &mut Argv, opt: &str) -> Result<String, Stop> {
    let v = argv.string(opt)?;
    if v.starts_with('/') {
        Ok(v)
    } else {
        Err(Stop::Usage(format!(
            "{opt}: {v:?} must be an absolute path"
        )))
    }
}

impl Args {
    /// Records the outcome in status.json (a failure to is a warning).
    fn record(&self, w: WaitMasterStatus) {
        if let Err(e) = status::write_wait_master(&self.root, &w) {
            eprintln!("rolectl: warning: {e}");
        }
    }

    /// `--resolve-only`: exit 0 once the master's name resolves, 2 when the
    /// wait times out.
    fn resolve(&self, settings: &Settings) -> Result<u8> {
        let host = wait::master_host(settings);
        let rec = |outcome: &str, attempts: u32, message: String| WaitMasterStatus {
            outcome: outcome.to_string(),
            mode: "resolve".to_string(),
            host: host.clone(),
            kubeconfig: None,
            attempts,
            message,
            time_unix: status::now_unix(),
        };
        match wait::wait_resolve(&host, self.resolver, self.retry) {
            Ok((addrs, attempts)) => {
                let list: Vec<String> = addrs.iter().map(ToString::to_string).collect();
                let msg = format!("master {host} resolves to {}", list.join(", "));
                eprintln!("{msg}");
                self.record(rec("ready", attempts, msg));
                Ok(exit::OK)
            }
            Err(t) => {
                let msg = format!(
                    "timed out after {} waiting for master {host} to resolve ({} attempts): {}",
                    wait::secs(t.waited),
                    t.attempts,
                    t.last_error
                );
                eprintln!("rolectl: {msg}");
                self.record(rec("timeout", t.attempts, msg));
                Ok(exit::TIMEOUT)
            }
        }
    }

    /// `--node-kubeconfig`: exit 0 once `file` exists and is not empty, 2
    /// when the wait times out. Nothing goes to status.json: its
    /// `wait_master` is the kubelet's wait, the one `rolectl status`
    /// explains (a rejected token, say), and must not be overwritten.
    fn node_kubeconfig(&self, file: &str) -> u8 {
        let path = marker::under(&self.root, file);
        let started = Instant::now();
        match wait::wait_written(&path, self.retry) {
            Ok(attempts) => {
                eprintln!(
                    "the node's kubeconfig {} is there (attempt {attempts}, after {})",
                    path.display(),
                    wait::secs(started.elapsed())
                );
                exit::OK
            }
            Err(t) => {
                eprintln!(
                    "rolectl: timed out after {} waiting for the node's kubeconfig ({} attempts): {}",
                    wait::secs(t.waited),
                    t.attempts,
                    t.last_error
                );
                exit::TIMEOUT
            }
        }
    }

    /// `--kubeconfig`: exit 0 once the API server is ready for the first
    /// existing kubeconfig's credential, 3 when it rejects it, 2 when the
    /// wait times out.
    fn kubeconfig(
        &self,
        settings: &Settings,
        kubeconfigs: &[String],
        kubectl: &Path,
        reject_grace: Duration,
    ) -> Result<u8> {
        let root = &self.root;
        let host = wait::api_server_host(settings);
        let files: Vec<PathBuf> = kubeconfigs.iter().map(|k| marker::under(root, k)).collect();
        let rec =
            |outcome: &str, kc: Option<&Path>, attempts: u32, message: String| WaitMasterStatus {
                outcome: outcome.to_string(),
                mode: "kubeconfig".to_string(),
                host: host.clone(),
                kubeconfig: kc.map(|p| p.display().to_string()),
                attempts,
                message,
                time_unix: status::now_unix(),
            };
        let started = Instant::now();
        // curl and the cluster CA (written by activate) make the cheap probe;
        // without either, kubectl alone polls.
        let curl = PathBuf::from(CURL);
        let ca = marker::under(root, contract::credentials::node::CA_CRT.path);
        let anon = match &settings.api_server {
            Some(a) if curl.is_file() && ca.is_file() => Some(wait::AnonProbe {
                curl,
                ca,
                server: a.as_str().to_string(),
            }),
            _ => None,
        };
        let target = wait::ApiTarget {
            host: &host,
            port: wait::api_server_port(settings),
            anon: anon.as_ref(),
            kubeconfigs: &files,
            kubectl,
            grace: reject_grace,
        };
        match wait::wait_api_server(&target, self.resolver, self.retry) {
            Ok(ready) => {
                let kc = ready.kubeconfig;
                let msg = format!(
                    "the API server at {host} is ready (kubeconfig {}) after {}",
                    kc.display(),
                    wait::secs(started.elapsed())
                );
                eprintln!("{msg}");
                self.record(rec("ready", Some(&kc), ready.attempts, msg));
                Ok(exit::OK)
            }
            Err(ApiWaitError::Rejected {
                kubeconfig,
                message,
                attempts,
            }) => {
                let bootstrap = kubeconfig.ends_with("bootstrap-kubelet.conf")
                    || kubeconfig
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().contains("bootstrap"));
                let msg = if bootstrap {
                    format!(
                        "bootstrap token rejected by the API server: wrong or expired token; give this node fresh user-data with a valid kubernetes.bootstrap_token and reboot it (kubeconfig {}; kubectl: {message})",
                        kubeconfig.display()
                    )
                } else {
                    format!(
                        "the credential in {} was rejected by the API server (expired or revoked?); remove that file to fall back to the bootstrap kubeconfig, or give this node fresh user-data (kubectl: {message})",
                        kubeconfig.display()
                    )
                };
                eprintln!("rolectl: {msg}");
                self.record(rec("rejected", Some(&kubeconfig), attempts, msg));
                Ok(exit::REJECTED)
            }
            Err(ApiWaitError::GaveUp(t)) => {
                let msg = format!(
                    "timed out after {} waiting for the API server at {host} ({} attempts): {}",
                    wait::secs(t.waited),
                    t.attempts,
                    t.last_error
                );
                eprintln!("rolectl: {msg}");
                self.record(rec("timeout", None, t.attempts, msg));
                Ok(exit::TIMEOUT)
            }
            Err(ApiWaitError::Config(e)) => {
                self.record(rec("error", None, 0, e.to_string()));
                Err(e.into())
            }
        }
    }
}
