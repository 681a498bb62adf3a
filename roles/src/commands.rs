//! One function per subcommand; each returns the process exit code.

use std::net::IpAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::cli::exit;
use crate::retry::Backoff;
use crate::role::{self, ActivateOptions, Activated};
use crate::settings::{ExpectedMinions, Role};
use crate::wait::{self, Resolver};
use crate::{preflight, status, weave};

fn resolver(dns: Option<std::net::SocketAddr>) -> Resolver {
    dns.map_or(Resolver::System, Resolver::Direct)
}

/// `rolectl activate`.
/// `user_data`: `--user-data FILE` if given (then it must exist).
pub fn activate(root: &Path, user_data: Option<&str>) -> Result<u8> {
    let started = Instant::now();
    let opts = ActivateOptions {
        root: root.to_path_buf(),
        user_data: user_data.unwrap_or(role::DEFAULT_USER_DATA).to_string(),
        must_exist: user_data.is_some(),
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
                "rolectl: activated as {role} of cluster {} (domain {}): wrote {}{creds} in {:.2} ms",
                settings.cluster,
                settings.domain,
                role.marker_path(),
                started.elapsed().as_secs_f64() * 1000.0
            );
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
                "rolectl: already a {role}; {note}; {} untouched{creds}",
                role.marker_path()
            );
            Ok(exit::OK)
        }
        Ok(Activated::Unassigned { reason }) => {
            eprintln!("rolectl: host stays unassigned: {reason}");
            Ok(exit::OK)
        }
        Err(e) => Err(anyhow!(e).context("activation failed; no marker written")),
    }
}

/// `rolectl wait-master`.
pub fn wait_master(
    root: &Path,
    health_url: &str,
    timeout: Option<Duration>,
    initial_backoff: Duration,
    max_backoff: Duration,
    dns: Option<std::net::SocketAddr>,
) -> Result<u8> {
    wait::check_health_url(health_url).map_err(|e| anyhow!(e))?;
    let (_, settings) = wait::marker_settings(root)
        .map_err(|e| anyhow!(e))
        .context("reading the role marker")?;
    let host = wait::master_host(&settings);
    let retry = Backoff {
        initial: initial_backoff,
        max: max_backoff,
        max_attempts: None,
        timeout,
    };
    match wait::wait_master(&host, health_url, resolver(dns), retry) {
        Ok((addr, code)) => {
            eprintln!(
                "master {host} is up: {} answered HTTP {code}",
                wait::expand_url(health_url, addr)
            );
            Ok(exit::OK)
        }
        Err(t) => {
            eprintln!(
                "rolectl: timed out after {} waiting for master {host} ({} attempts): {}",
                wait::secs(t.waited),
                t.attempts,
                t.last_error
            );
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
    let (_, settings) = wait::marker_settings(root)
        .map_err(|e| anyhow!(e))
        .context("reading the role marker")?;
    let n = match expected.or(settings.expected_minions.map(ExpectedMinions::get)) {
        Some(n) => n,
        None => bail!(
            "number of minions unknown: set kubernetes.expected_minions in user-data (EXPECTED_MINIONS in the marker) or pass --expected N"
        ),
    };
    let name = settings.minions_name();
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
        weave::DEFAULT_LAUNCH
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        launch
    };
    let command = weave::build_command(&launch, &settings, n, &peers);
    let password = settings.weave.password.clone();
    let plan = weave::Plan {
        command: command.clone(),
        peers,
        consensus: n,
        minions_seen: minions.len(),
        minions,
        dry_run,
        password_in_env: password.is_some(),
    };
    weave::write_plan(root, &plan).context("writing weave.json")?;
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
