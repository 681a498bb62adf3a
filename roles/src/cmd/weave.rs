//! `rolectl weave`: wait for the minions' quorum, then exec Weave Net's
//! router with them as peers ([`crate::weave`]).

use std::net::IpAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use contract::console;
use contract::retry::Backoff;
use lexopt::Arg::Long;

use super::{exit, unknown, Argv, Stop, Subcommand};
use crate::settings::ExpectedMinions;
use crate::wait::{self, Resolver};
use crate::{marker, weave};

#[derive(Debug, Clone)]
pub struct Args {
    pub root: PathBuf,
    /// Print the command instead of executing it.
    pub dry_run: bool,
    /// `--expected N`: the minions' count, over the marker's.
    pub expected: Option<u32>,
    /// How often the minions' name is looked up.
    pub poll: Duration,
    pub timeout: Option<Duration>,
    pub resolver: Resolver,
    /// `--own-addr` (hidden, for tests): this host's addresses, instead of
    /// getifaddrs.
    pub own_addrs: Option<Vec<IpAddr>>,
    /// The words after `--`; empty: [`weave::default_launch`].
    pub launch: Vec<String>,
}

impl Subcommand for Args {
    const NAME: &'static str = "weave";

    fn parse(argv: &mut Argv) -> Result<Self, Stop> {
        let mut args = Args {
            root: PathBuf::from("/"),
            dry_run: false,
            expected: None,
            poll: Duration::from_secs(5),
            timeout: None,
            resolver: Resolver::System,
            own_addrs: None,
            launch: Vec::new(),
        };
        while let Some(arg) = argv.next_arg()? {
            match arg {
                Long("root") => args.root = argv.path()?,
                Long("dry-run") => args.dry_run = true,
                Long("expected") => {
                    let v = argv.string("--expected")?;
                    let n = ExpectedMinions::try_from(v.as_str())
                        .map_err(|e| Stop::Usage(format!("--expected: {e}")))?;
                    args.expected = Some(n.get());
                }
                Long("poll") => args.poll = argv.secs("--poll")?,
                Long("timeout") => args.timeout = Some(argv.secs("--timeout")?),
                Long("dns-server") => args.resolver = argv.dns_server()?,
                Long("own-addr") => {
                    let v = argv.string("--own-addr")?;
                    let ip: IpAddr = v.parse().map_err(|_| {
                        Stop::Usage(format!("--own-addr: {v:?} is not an IP address"))
                    })?;
                    args.own_addrs.get_or_insert_with(Vec::new).push(ip);
                }
                arg => return Err(unknown(Self::NAME, arg)),
            }
        }
        args.launch = argv.tail()?;
        Ok(args)
    }

    fn run(self) -> Result<u8> {
        let root = &self.root;
        let (role, settings) = marker::read_role(root).context("reading the role marker")?;
        let count = self
            .expected
            .or(settings.expected_minions.map(ExpectedMinions::get));
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
        let retry = Backoff::every(self.poll).timeout(self.timeout);
        let minions = match weave::wait_minions(&name, n, self.resolver, retry) {
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
        let own = self.own_addrs.unwrap_or_else(weave::own_addresses);
        let peers = weave::peers(&minions, &own);
        let launch = if self.launch.is_empty() {
            weave::default_launch()
        } else {
            self.launch
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
            dry_run: self.dry_run,
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
            if self.dry_run { " (dry run)" } else { "" }
        );
        if self.dry_run {
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
        Err(err).with_context(|| format!("executing {}", command[0]))
    }
}
