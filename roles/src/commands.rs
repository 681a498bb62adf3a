//! One function per subcommand; each returns the process exit code.

use std::net::IpAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use contract::console;
use contract::retry::Backoff;
use contract::role::Role;

use crate::cli::{exit, ActivateFrom, Probe};
use crate::role::{self, ActivateOptions, Activated, Input, Record};
use crate::settings::{ExpectedMinions, Settings};
use crate::wait::{self, ApiWaitError, Resolver};
use crate::{datasource, preflight, status, weave};

fn resolver(dns: Option<std::net::SocketAddr>) -> Resolver {
    dns.map_or(Resolver::System, Resolver::Direct)
}

/// `rolectl activate`.
pub fn activate(root: &Path, from: &ActivateFrom) -> Result<u8> {
    let started = Instant::now();
    let cloud_init_copy = || Input::File {
        path: role::DEFAULT_USER_DATA.to_string(),
        must_exist: false,
    };
    let (input, tried, record) = match from {
        ActivateFrom::File(f) => (
            Input::File {
                path: f.clone(),
                must_exist: true,
            },
            Vec::new(),
            Record::Main,
        ),
        ActivateFrom::CloudInit => (cloud_init_copy(), Vec::new(), Record::CloudInit),
        ActivateFrom::Datasources {
            network_timeout,
            imds_url,
        } => {
            let mut platform = datasource::Platform::new(root);
            platform.network_timeout = *network_timeout;
            platform.imds = imds_url.clone();
            let d = datasource::discover(&platform);
            let input = match d.found {
                Some(f) => Input::Fetched(f),
                // A reboot where the seed is gone, or a datasource only
                // cloud-init knows: its copy from an earlier run.
                None if crate::marker::under(root, role::DEFAULT_USER_DATA).is_file() => {
                    cloud_init_copy()
                }
                None => Input::Missing {
                    reason: format!("no datasource gave user-data: {}", d.tried.join("; ")),
                },
            };
            (input, d.tried, Record::Main)
        }
    };
    let origin = input.origin();
    let opts = ActivateOptions {
        root: root.to_path_buf(),
        input,
        tried,
        record,
        openssl: crate::pki::Openssl::default(),
    };
    match role::run(&opts) {
        Ok(Activated::Written {
            role,
            settings,
            files,
            ..
        }) => {
            let creds = if files.is_empty() {
                String::new()
            } else {
                format!(" after {} credential files", files.len())
            };
            eprintln!(
                "{} {role} of cluster {} (domain {}) from {origin}: wrote {}{creds} in {:.2} ms",
                console::ACTIVATED_AS,
                settings.cluster,
                settings.domain,
                role.marker_path(),
                started.elapsed().as_secs_f64() * 1000.0
            );
            if record == Record::CloudInit && root == Path::new("/") {
                // The role units' start jobs ran (and were skipped) after the
                // early activation found nothing: queue them again.
                start_role_units(root);
            }
            Ok(exit::OK)
        }
        Ok(Activated::Unchanged {
            role, note, files, ..
        }) => {
            let creds = if files.is_empty() {
                String::new()
            } else {
                format!("; {} credential files in place", files.len())
            };
            eprintln!(
                "{} {role}; {note} ({origin}); {} untouched{creds}",
                console::ALREADY_A,
                role.marker_path()
            );
            Ok(exit::OK)
        }
        Ok(Activated::Unassigned { reason }) => {
            eprintln!("{}: {reason}", console::UNASSIGNED);
            Ok(exit::OK)
        }
        Err(e) => Err(anyhow!(e).context(console::NO_MARKER)),
    }
}

/// `systemctl start --no-block` for the role units whose marker condition
/// now holds and that are not running.
fn start_role_units(root: &Path) {
    let units: Vec<String> = status::report(root)
        .units
        .into_iter()
        .filter(|u| u.condition_met && u.active_state != "active")
        .map(|u| u.unit)
        .collect();
    if units.is_empty() {
        return;
    }
    match Command::new("systemctl")
        .args(["start", "--no-block"])
        .args(&units)
        .status()
    {
        Ok(s) if s.success() => eprintln!("rolectl: queued {}", units.join(" ")),
        Ok(s) => eprintln!(
            "rolectl: warning: systemctl start {} exited {s}",
            units.join(" ")
        ),
        Err(e) => eprintln!("rolectl: warning: running systemctl: {e}"),
    }
}

/// `rolectl wait-master`.
pub fn wait_master(
    root: &Path,
    probe: &Probe,
    timeout: Option<Duration>,
    initial_backoff: Duration,
    max_backoff: Duration,
    dns: Option<std::net::SocketAddr>,
) -> Result<u8> {
    if let Probe::HealthUrl(url) = probe {
        wait::check_health_url(url).map_err(|e| anyhow!(e))?;
    }
    let (_, settings) = wait::marker_settings(root)
        .map_err(|e| anyhow!(e))
        .context("reading the role marker")?;
    let retry = Backoff {
        initial: initial_backoff,
        max: max_backoff,
        max_attempts: None,
        timeout,
        jitter: false,
    };
    match probe {
        Probe::Resolve => wait_resolve(root, &settings, retry.with_jitter(), dns),
        Probe::HealthUrl(url) => wait_health(root, &settings, url, retry.with_jitter(), dns),
        Probe::Kubeconfig {
            kubeconfigs,
            kubectl,
            reject_grace,
        } => wait_kubeconfig(
            root,
            &settings,
            kubeconfigs,
            kubectl,
            retry.with_jitter(),
            *reject_grace,
            dns,
        ),
    }
}

fn record(root: &Path, w: status::WaitMasterStatus) {
    if let Err(e) = status::write_wait_master(root, &w) {
        eprintln!("rolectl: warning: {e}");
    }
}

fn wait_resolve(
    root: &Path,
    settings: &Settings,
    retry: Backoff,
    dns: Option<std::net::SocketAddr>,
) -> Result<u8> {
    let host = wait::master_host(settings);
    let res = wait::wait_resolve(&host, resolver(dns), retry).map(|(addrs, attempts)| {
        let list: Vec<String> = addrs.iter().map(ToString::to_string).collect();
        (
            format!("master {host} resolves to {}", list.join(", ")),
            attempts,
        )
    });
    wait_outcome(
        root,
        "resolve",
        &host,
        &format!("master {host} to resolve"),
        res,
    )
}

fn wait_health(
    root: &Path,
    settings: &Settings,
    health_url: &str,
    retry: Backoff,
    dns: Option<std::net::SocketAddr>,
) -> Result<u8> {
    let host = wait::master_host(settings);
    let res =
        wait::wait_master(&host, health_url, resolver(dns), retry).map(|(addr, code, attempts)| {
            let msg = format!(
                "master {host} is up: {} answered HTTP {code}",
                wait::expand_url(health_url, addr)
            );
            (msg, attempts)
        });
    wait_outcome(root, "health-url", &host, &format!("master {host}"), res)
}

/// Reports and records how a DNS or health-URL wait ended: exit 0 when it
/// succeeded (`message`, attempts), 2 when it timed out.
fn wait_outcome(
    root: &Path,
    mode: &str,
    host: &str,
    waiting_for: &str,
    res: Result<(String, u32), contract::retry::GaveUp<String>>,
) -> Result<u8> {
    let rec = |outcome: &str, attempts: u32, message: String| status::WaitMasterStatus {
        outcome: outcome.to_string(),
        mode: mode.to_string(),
        host: host.to_string(),
        kubeconfig: None,
        attempts,
        message,
        time_unix: status::now_unix(),
    };
    match res {
        Ok((msg, attempts)) => {
            eprintln!("{msg}");
            record(root, rec("ready", attempts, msg));
            Ok(exit::OK)
        }
        Err(t) => {
            let msg = format!(
                "timed out after {} waiting for {waiting_for} ({} attempts): {}",
                wait::secs(t.waited),
                t.attempts,
                t.last_error
            );
            eprintln!("rolectl: {msg}");
            record(root, rec("timeout", t.attempts, msg));
            Ok(exit::TIMEOUT)
        }
    }
}

/// curl in the image (package `curl`): the cheap /readyz probe.
const CURL: &str = "/usr/bin/curl";

fn wait_kubeconfig(
    root: &Path,
    settings: &Settings,
    kubeconfigs: &[String],
    kubectl: &Path,
    retry: Backoff,
    reject_grace: Duration,
    dns: Option<std::net::SocketAddr>,
) -> Result<u8> {
    let host = wait::api_server_host(settings);
    let files: Vec<PathBuf> = kubeconfigs
        .iter()
        .map(|k| crate::marker::under(root, k))
        .collect();
    let rec = |outcome: &str, kc: Option<&Path>, attempts: u32, message: String| {
        status::WaitMasterStatus {
            outcome: outcome.to_string(),
            mode: "kubeconfig".to_string(),
            host: host.clone(),
            kubeconfig: kc.map(|p| p.display().to_string()),
            attempts,
            message,
            time_unix: status::now_unix(),
        }
    };
    let started = Instant::now();
    // curl and the cluster CA (written by activate) make the cheap probe;
    // without either, kubectl alone polls.
    let curl = PathBuf::from(CURL);
    let ca = crate::marker::under(root, contract::credentials::node::CA_CRT.path);
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
    match wait::wait_api_server(&target, resolver(dns), retry) {
        Ok(ready) => {
            let kc = ready.kubeconfig;
            let msg = format!(
                "the API server at {host} is ready (kubeconfig {}) after {}",
                kc.display(),
                wait::secs(started.elapsed())
            );
            eprintln!("{msg}");
            record(root, rec("ready", Some(&kc), ready.attempts, msg));
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
            record(root, rec("rejected", Some(&kubeconfig), attempts, msg));
            Ok(exit::REJECTED)
        }
        Err(ApiWaitError::Config(m)) => {
            record(root, rec("error", None, 0, m.clone()));
            Err(anyhow!(m))
        }
        Err(ApiWaitError::GaveUp(t)) => {
            let msg = format!(
                "timed out after {} waiting for the API server at {host} ({} attempts): {}",
                wait::secs(t.waited),
                t.attempts,
                t.last_error
            );
            eprintln!("rolectl: {msg}");
            record(root, rec("timeout", None, t.attempts, msg));
            Ok(exit::TIMEOUT)
        }
    }
}

/// `rolectl weave`.
#[allow(clippy::too_many_arguments)]
pub fn weave(
    root: &Path,
    dry_run: bool,
    expected: Option<u32>,
    poll: Duration,
    timeout: Option<Duration>,
    dns: Option<std::net::SocketAddr>,
    own: Option<Vec<IpAddr>>,
    launch: Vec<String>,
) -> Result<u8> {
    let (role, settings) = wait::marker_settings(root)
        .map_err(|e| anyhow!(e))
        .context("reading the role marker")?;
    let count = expected.or(settings.expected_minions.map(ExpectedMinions::get));
    let Some(init) = weave::IpallocInit::for_role(role, count) else {
        bail!(
            "number of minions unknown: set kubernetes.expected_minions in user-data (EXPECTED_MINIONS in the marker) or pass --expected N"
        );
    };
    let name = settings.minions_name();
    let resumed = weave::has_persisted_ring(root);
    let n = init.peers_to_wait_for(resumed);
    if resumed {
        eprintln!(
            "rolectl: weave has run here before ({} exists): rejoining without waiting for the minions' quorum",
            weave::PERSISTED_RING
        );
    }
    let minions = match weave::wait_minions(
        &name,
        n,
        resolver(dns),
        Backoff::every(poll).timeout(timeout),
    ) {
        Ok(m) => m,
        Err(t) => {
            eprintln!(
                "rolectl: timed out after {} waiting for {n} minions at {name}: {}",
                wait::secs(t.waited),
                t.last_error
            );
            return Ok(exit::TIMEOUT);
        }
    };
    let own = own.unwrap_or_else(weave::own_addresses);
    let peers = weave::peers(&minions, &own);
    let launch = if launch.is_empty() {
        weave::default_launch()
    } else {
        launch
    };
    let command = weave::build_command(&launch, &settings, init, &peers);
    let password = settings.weave.password.clone();
    let plan = weave::Plan {
        role: role.as_str().to_string(),
        command: command.clone(),
        peers,
        ipalloc_init: init.arg(),
        consensus: count,
        minions_seen: minions.len(),
        minions,
        dry_run,
        resumed,
        password_in_env: password.is_some(),
    };
    weave::write_plan(root, &plan).context("writing weave.json")?;
    // One line in both modes (weave.service copies it to the console):
    // operators and `kubebake bench-vm` see the launch without logging in.
    eprintln!(
        "{} with {} peer(s), ipalloc-init {}{}",
        console::WEAVE_LAUNCH,
        plan.peers.len(),
        plan.ipalloc_init,
        if dry_run { " (dry run)" } else { "" }
    );
    if dry_run {
        println!("{}", weave::shell_quote(&command));
        if password.is_some() {
            eprintln!("(WEAVE_PASSWORD is passed in the environment, not on the command line)");
        }
        return Ok(exit::OK);
    }
    eprintln!("rolectl: exec {}", weave::shell_quote(&command));
    let mut cmd = Command::new(&command[0]);
    cmd.args(&command[1..]);
    if let Some(p) = password {
        cmd.env("WEAVE_PASSWORD", p.expose());
    }
    let err = cmd.exec();
    Err(anyhow!(err).context(format!("executing {}", command[0])))
}

/// `rolectl status`.
pub fn status(root: &Path, json: bool) -> Result<u8> {
    let r = status::report(root);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&r).context("encoding status")?
        );
    } else {
        print!("{}", status::render(&r));
    }
    Ok(if r.problems.is_empty() {
        exit::OK
    } else {
        exit::ERROR
    })
}

/// `rolectl preflight`.
pub fn preflight(root: &Path, role: Option<Role>, json: bool) -> Result<u8> {
    let role = role.or_else(|| {
        Role::ALL
            .into_iter()
            .find(|r| crate::marker::path(root, *r).exists())
    });
    let r = preflight::run(root, role);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&r).context("encoding report")?
        );
    } else {
        print!("{}", preflight::render(&r));
    }
    Ok(if r.ok { exit::OK } else { exit::ERROR })
}
