//! `rolectl weave`: wait until `minions.<cluster>.<domain>` lists the
//! expected number of minions, then launch the weave router with
//! `--ipalloc-init consensus=N` and every other minion as a peer (the seed's
//! `getent hosts minions... | weave launch-router` done safely).

use std::net::IpAddr;
use std::path::Path;

use serde::Serialize;

use crate::marker;
use crate::retry::{Backoff, GaveUp};
use crate::settings::{check_weave_arg, Settings};
use crate::wait::{secs, Resolver};

pub const DEFAULT_LAUNCH: &[&str] = &["/usr/local/bin/weave", "launch-router"];
pub const PLAN_PATH: &str = "/run/rolectl/weave.json";

/// What `rolectl weave` runs (or would run, with `--dry-run`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Plan {
    pub command: Vec<String>,
    pub peers: Vec<IpAddr>,
    pub consensus: u32,
    pub minions_seen: usize,
    pub minions: Vec<IpAddr>,
    pub dry_run: bool,
    /// WEAVE_PASSWORD is set in the command's environment (never argv).
    pub password_in_env: bool,
}

/// Builds the command line: launch command, validated extra args,
/// `--ipalloc-init consensus=N`, then the sorted peers.
pub fn build_command(
    launch: &[String],
    settings: &Settings,
    consensus: u32,
    peers: &[IpAddr],
) -> Vec<String> {
    let mut cmd: Vec<String> = launch.to_vec();
    for a in settings.weave.extra_args() {
        debug_assert!(check_weave_arg(&a).is_ok());
        cmd.push(a);
    }
    cmd.push("--ipalloc-init".to_string());
    cmd.push(format!("consensus={consensus}"));
    cmd.extend(peers.iter().map(IpAddr::to_string));
    cmd
}

/// Peers: the minions minus this host's own addresses, sorted.
pub fn peers(minions: &[IpAddr], own: &[IpAddr]) -> Vec<IpAddr> {
    let mut p: Vec<IpAddr> = minions
        .iter()
        .filter(|a| !own.contains(a))
        .copied()
        .collect();
    p.sort();
    p.dedup();
    p
}

/// This host's addresses (getifaddrs).
pub fn own_addresses() -> Vec<IpAddr> {
    if_addrs::get_if_addrs()
        .map(|v| v.into_iter().map(|i| i.ip()).collect())
        .unwrap_or_default()
}

/// Waits until the minions name resolves to at least `expected` addresses.
pub fn wait_minions(
    name: &str,
    expected: u32,
    resolver: Resolver,
    retry: Backoff,
) -> Result<Vec<IpAddr>, GaveUp<String>> {
    retry.run(
        |_| {
            let addrs = match resolver.lookup(name) {
                Ok(a) => a,
                Err(e) => return Err(format!("0 of {expected} addresses ({e})")),
            };
            if addrs.len() as u64 >= u64::from(expected) {
                Ok(addrs)
            } else {
                Err(format!("{} of {expected} addresses", addrs.len()))
            }
        },
        |n, reason, next| match next {
            Some(d) => eprintln!(
                "{name}: {reason}, waiting (attempt {n}, next in {})",
                secs(d)
            ),
            None => eprintln!("{name}: {reason}, giving up (attempt {n})"),
        },
    )
}

/// Writes `/run/rolectl/weave.json`.
pub fn write_plan(root: &Path, plan: &Plan) -> Result<(), marker::MarkerError> {
    let mut json = serde_json::to_vec_pretty(plan).unwrap_or_default();
    json.push(b'\n');
    marker::write_atomic(&marker::under(root, PLAN_PATH), &json, 0o644)
}

/// POSIX shell quoting for display.
pub fn shell_quote(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Cidr;

    #[test]
    fn command_shape() {
        let mut s = Settings::default();
        s.weave.mtu = Some(1400);
        s.weave.ipalloc_range = Some(Cidr::try_from("10.32.0.0/12").unwrap());
        let own: Vec<IpAddr> = vec!["10.0.0.2".parse().unwrap()];
        let minions: Vec<IpAddr> = ["10.0.0.3", "10.0.0.2", "10.0.0.10"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let p = peers(&minions, &own);
        assert_eq!(p.len(), 2);
        let launch: Vec<String> = DEFAULT_LAUNCH.iter().map(|s| s.to_string()).collect();
        let cmd = build_command(&launch, &s, 3, &p);
        assert_eq!(
            shell_quote(&cmd),
            "/usr/local/bin/weave launch-router --ipalloc-range=10.32.0.0/12 --mtu=1400 --ipalloc-init consensus=3 10.0.0.3 10.0.0.10"
        );
        assert_eq!(
            shell_quote(&["a b".into(), "it's".into()]),
            "'a b' 'it'\\''s'"
        );
    }
}
