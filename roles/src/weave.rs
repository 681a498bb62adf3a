//! `rolectl weave`: wait until `minions.<cluster>.<domain>` lists the
//! expected number of minions, then exec Weave Net's router, `weaver`, with
//! every other minion as a peer (the seed's `getent hosts minions... |
//! weave launch-router` done safely).
//!
//! The router runs on the host as Weave's own `prog/weave-kube/launch.sh`
//! runs it in the weave-kube pod, without docker: its fast-datapath bridge
//! `weave`, the HTTP API on 127.0.0.1:6784 (the `weave` script's
//! `--local` commands talk to it), no docker API, no weaveDNS (cluster DNS
//! is CoreDNS), IPAM state under `/var/lib/weave`. Minions start IP
//! allocation by consensus among the N minions of user-data
//! (`--ipalloc-init consensus=N`); masters join the pod network as
//! observers (`--ipalloc-init observer`: they take part in the network and
//! borrow address space, but N stays the minions' count).

use std::net::IpAddr;
use std::path::Path;

use contract::retry::{Backoff, GaveUp};
use contract::role::Role;
use serde::Serialize;

use crate::marker;
use crate::settings::{check_weave_arg, Settings};
use crate::wait::{secs, LookupError, Resolver};

/// Weave Net's router.
pub const WEAVER: &str = "/usr/local/bin/weaver";
/// The router's HTTP API (launch.sh's default; the `weave` script's too).
pub const HTTP_ADDR: &str = "127.0.0.1:6784";
/// The address pods get addresses from unless user-data sets
/// `weave.ipalloc_range` (Weave's default).
pub const DEFAULT_IPALLOC_RANGE: &str = "10.32.0.0/12";
/// The router's arguments before the user-data options: launch.sh's, with
/// the host's root as the host root and the metrics on loopback only.
pub const ROUTER_ARGS: &[&str] = &[
    "--port=6783",
    "--datapath=datapath",
    "--host-root=/",
    "--http-addr=127.0.0.1:6784",
    "--metrics-addr=127.0.0.1:6782",
    "--docker-api=",
    "--no-dns",
    "--db-prefix=/var/lib/weave/weave-net",
    "--conn-limit=200",
];
pub const PLAN_PATH: &str = "/run/rolectl/weave.json";
/// Where weaver persists its IPAM ring (`--db-prefix` + `data.db`).
pub const PERSISTED_RING: &str = "/var/lib/weave/weave-netdata.db";

/// Whether this node's router has run before and persisted its share of
/// the address ring: it rejoins without a new consensus, so it need not
/// wait for the minions' quorum again (after a reboot some minions may be
/// gone for good).
pub fn has_persisted_ring(root: &Path) -> bool {
    marker::under(root, PERSISTED_RING).is_file()
}

/// How this peer joins IP allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpallocInit {
    /// A minion: one of the N peers whose quorum initialises the ring.
    Consensus(u32),
    /// A master: joins the network, not the quorum.
    Observer,
}

impl IpallocInit {
    /// A minion's needs the minions' count; a master's does not.
    pub fn for_role(role: Role, minions: Option<u32>) -> Option<Self> {
        match (role, minions) {
            (Role::Minion, Some(n)) => Some(IpallocInit::Consensus(n)),
            (Role::Minion, None) => None,
            (Role::Master, _) => Some(IpallocInit::Observer),
        }
    }

    /// How many minion addresses to wait for before launching: the quorum
    /// on a minion's first launch, one peer on a master or once the ring
    /// is persisted.
    pub fn peers_to_wait_for(self, resumed: bool) -> u32 {
        match self {
            IpallocInit::Consensus(n) if !resumed => n,
            _ => 1,
        }
    }

    /// The value of `--ipalloc-init`.
    pub fn arg(self) -> String {
        match self {
            IpallocInit::Consensus(n) => format!("consensus={n}"),
            IpallocInit::Observer => "observer".to_string(),
        }
    }
}

/// What `rolectl weave` runs (or would run, with `--dry-run`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Plan {
    pub role: String,
    pub command: Vec<String>,
    pub peers: Vec<IpAddr>,
    /// `--ipalloc-init`: `consensus=N` (minion) or `observer` (master).
    pub ipalloc_init: String,
    /// N: the minions' count from user-data (a master may not know it).
    pub consensus: Option<u32>,
    pub minions_seen: usize,
    pub minions: Vec<IpAddr>,
    pub dry_run: bool,
    /// The router had persisted its ring: it waited for one minion
    /// address, not for the quorum.
    pub resumed: bool,
    /// WEAVE_PASSWORD is set in the command's environment (never argv).
    pub password_in_env: bool,
}

/// The default launch command: `weaver` and [`ROUTER_ARGS`].
pub fn default_launch() -> Vec<String> {
    std::iter::once(WEAVER)
        .chain(ROUTER_ARGS.iter().copied())
        .map(str::to_string)
        .collect()
}

/// Builds the command line: launch command, validated extra args (with
/// Weave's default allocation range unless one is set),
/// `--ipalloc-init <init>`, then the sorted peers.
pub fn build_command(
    launch: &[String],
    settings: &Settings,
    init: IpallocInit,
    peers: &[IpAddr],
) -> Vec<String> {
    let mut cmd: Vec<String> = launch.to_vec();
    if settings.weave.ipalloc_range.is_none() {
        cmd.push(format!("--ipalloc-range={DEFAULT_IPALLOC_RANGE}"));
    }
    for a in settings.weave.extra_args() {
        debug_assert!(check_weave_arg(&a).is_ok());
        cmd.push(a);
    }
    cmd.push("--ipalloc-init".to_string());
    cmd.push(init.arg());
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

/// Fewer minion addresses than the quorum (the lookup's error when there
/// are none).
#[derive(Debug, thiserror::Error)]
pub enum TooFew {
    #[error("0 of {expected} addresses ({lookup})")]
    None { expected: u32, lookup: LookupError },
    #[error("{seen} of {expected} addresses")]
    Some { seen: usize, expected: u32 },
}

/// Waits until the minions name resolves to at least `expected` addresses.
pub fn wait_minions(
    name: &str,
    expected: u32,
    resolver: Resolver,
    retry: Backoff,
) -> Result<Vec<IpAddr>, GaveUp<TooFew>> {
    retry.run(
        |_| {
            let addrs = resolver
                .lookup(name)
                .map_err(|lookup| TooFew::None { expected, lookup })?;
            if addrs.len() as u64 >= u64::from(expected) {
                Ok(addrs)
            } else {
                Err(TooFew::Some {
                    seen: addrs.len(),
                    expected,
                })
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
        let launch = vec!["weaver".to_string()];
        let init = IpallocInit::for_role(Role::Minion, Some(3)).unwrap();
        let cmd = build_command(&launch, &s, init, &p);
        assert_eq!(
            shell_quote(&cmd),
            "weaver --ipalloc-range=10.32.0.0/12 --mtu=1400 --ipalloc-init consensus=3 10.0.0.3 10.0.0.10"
        );
        // A master observes; without a range in user-data, Weave's default.
        let master = build_command(
            &launch,
            &Settings::default(),
            IpallocInit::for_role(Role::Master, None).unwrap(),
            &p,
        );
        assert_eq!(
            shell_quote(&master),
            "weaver --ipalloc-range=10.32.0.0/12 --ipalloc-init observer 10.0.0.3 10.0.0.10"
        );
        assert_eq!(IpallocInit::for_role(Role::Minion, None), None);
        assert_eq!(init.peers_to_wait_for(false), 3);
        assert_eq!(init.peers_to_wait_for(true), 1);
        assert_eq!(IpallocInit::Observer.peers_to_wait_for(false), 1);
        let full = default_launch();
        assert_eq!(full[0], WEAVER);
        assert!(full.contains(&"--docker-api=".to_string()));
        assert!(full.contains(&format!("--http-addr={HTTP_ADDR}")));
        assert_eq!(
            shell_quote(&["a b".into(), "it's".into()]),
            "'a b' 'it'\\''s'"
        );
    }
}
