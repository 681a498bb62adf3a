//! The command line (lexopt: tiny, no derive machinery). One module per
//! subcommand, each with its `Args`, the small parser that fills them and
//! the `run` that does the work ([`Subcommand`]); `main.rs` picks the
//! module by name. What is shared is here: [`Argv`] (the arguments after
//! the subcommand and the value parsers every subcommand uses), the usage
//! text and the exit codes.

pub mod activate;
pub mod preflight;
pub mod status;
pub mod wait_master;
pub mod weave;

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use lexopt::Arg::{self, Long, Short, Value};

use crate::wait::Resolver;

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

pub const USAGE: &str = "\
usage: rolectl <command> [options]

commands:
  activate    [--root DIR] [--user-data FILE | --cloud-init] [--network-timeout SECS] [--imds-url URL]
  wait-master [--root DIR] --resolve-only [--timeout SECS] [--max-backoff SECS]
  wait-master [--root DIR] --kubeconfig FILE [--kubeconfig FILE...] [--kubectl PATH]
              [--reject-grace SECS] [--timeout SECS] [--max-backoff SECS]
  wait-master [--root DIR] --node-kubeconfig FILE [--timeout SECS] [--max-backoff SECS]
  weave       [--root DIR] [--dry-run] [--expected N] [--poll SECS] [--timeout SECS] [-- LAUNCH COMMAND...]
  status      [--root DIR] [--json]
  preflight   [--root DIR] [--role master|minion] [--json]

exit codes: 0 ok, 1 usage/config/user-data error, 2 timeout,
            3 credential rejected by the API server (wait-master)
";

/// A subcommand: its arguments, parsed from the command line, and what it
/// does with them.
pub trait Subcommand: Sized {
    /// Its name on the command line (for messages).
    const NAME: &'static str;
    /// Parses the arguments after the subcommand's name.
    fn parse(argv: &mut Argv) -> Result<Self, Stop>;
    /// Runs it; the exit code ([`exit`]), or an error (exit 1).
    fn run(self) -> anyhow::Result<u8>;
}

/// Why a command line runs no command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// `--help`, `-h` or `help`: the usage on stdout, exit 0.
    Help,
    /// `--version`, `-V`.
    Version,
    /// A usage error: the message and the usage on stderr, exit 1.
    Usage(String),
}

impl From<lexopt::Error> for Stop {
    fn from(e: lexopt::Error) -> Self {
        Stop::Usage(e.to_string())
    }
}

/// The command line after `rolectl`: lexopt over the subcommand and its
/// options, and the words after the first `--` (weave's launch command;
/// every other subcommand refuses them).
pub struct Argv {
    opts: lexopt::Parser,
    tail: Vec<OsString>,
}

impl Argv {
    /// `args` without argv\[0\].
    pub fn new(args: impl IntoIterator<Item = OsString>) -> Argv {
        let mut args: Vec<OsString> = args.into_iter().collect();
        let tail = match args.iter().position(|a| a == "--") {
            Some(i) => args.split_off(i).into_iter().skip(1).collect(),
            None => Vec::new(),
        };
        Argv {
            opts: lexopt::Parser::from_args(args),
            tail,
        }
    }

    /// The subcommand's name (the first argument).
    pub fn subcommand(&mut self) -> Result<String, Stop> {
        match self.opts.next()? {
            Some(Value(v)) => string(v, "command"),
            Some(Long("help") | Short('h')) => Err(Stop::Help),
            Some(Long("version") | Short('V')) => Err(Stop::Version),
            Some(other) => Err(other.unexpected().into()),
            None => Err(Stop::Usage("no command given".into())),
        }
    }

    /// The next argument (an option, or a stray value).
    pub fn next_arg(&mut self) -> Result<Option<Arg<'_>>, Stop> {
        Ok(self.opts.next()?)
    }

    /// The value of the current option, as text.
    pub fn string(&mut self, opt: &str) -> Result<String, Stop> {
        string(self.opts.value()?, opt)
    }

    /// The value of the current option, as a path.
    pub fn path(&mut self) -> Result<PathBuf, Stop> {
        Ok(PathBuf::from(self.opts.value()?))
    }

    /// The value of the current option, as seconds (fractions allowed).
    pub fn secs(&mut self, opt: &str) -> Result<Duration, Stop> {
        let v = self.opts.value()?;
        let s = v.to_string_lossy();
        let f: f64 = s
            .parse()
            .map_err(|_| Stop::Usage(format!("{opt}: {s:?} is not a number of seconds")))?;
        if !(0.0..=86_400.0 * 365.0).contains(&f) || f.is_nan() {
            return Err(Stop::Usage(format!("{opt}: {s} is out of range")));
        }
        Ok(Duration::from_secs_f64(f))
    }

    /// `--dns-server IP:PORT` (a testing option: only with the `test-dns`
    /// feature): names are looked up there instead of with getaddrinfo.
    pub fn dns_server(&mut self) -> Result<Resolver, Stop> {
        let opt = "--dns-server";
        let v = self.string(opt)?;
        if !cfg!(feature = "test-dns") {
            return Err(Stop::Usage(format!(
                "{opt} is a testing option; this rolectl was built without the test-dns feature"
            )));
        }
        let server = v
            .parse()
            .map_err(|_| Stop::Usage(format!("{opt}: {v:?} is not IP:PORT")))?;
        Ok(Resolver::Direct(server))
    }

    /// The words after `--` (weave's launch command).
    pub fn tail(&mut self) -> Result<Vec<String>, Stop> {
        std::mem::take(&mut self.tail)
            .into_iter()
            .map(|a| string(a, "launch command"))
            .collect()
    }

    /// For the subcommands that take nothing after `--`.
    pub fn no_tail(&self, sub: &str) -> Result<(), Stop> {
        if self.tail.is_empty() {
            Ok(())
        } else {
            Err(Stop::Usage(format!("{sub}: unexpected arguments after --")))
        }
    }
}

/// What an argument that is none of subcommand `sub`'s options means: help,
/// or a usage error naming it.
pub fn unknown(sub: &str, arg: Arg<'_>) -> Stop {
    match arg {
        Long("help") | Short('h') => Stop::Help,
        Long(name) => Stop::Usage(format!("{sub}: unknown option --{name}")),
        Value(v) => Stop::Usage(format!("unexpected argument {:?}", v.to_string_lossy())),
        other => other.unexpected().into(),
    }
}

fn string(v: OsString, opt: &str) -> Result<String, Stop> {
    v.into_string()
        .map_err(|_| Stop::Usage(format!("{opt}: value is not valid UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<A: Subcommand>(args: &[&str]) -> Result<A, Stop> {
        let mut argv = Argv::new(args.iter().map(OsString::from));
        argv.subcommand()?;
        A::parse(&mut argv)
    }

    fn usage<A: Subcommand + std::fmt::Debug>(args: &[&str]) -> String {
        match parse::<A>(args) {
            Err(Stop::Usage(m)) => m,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn each_subcommand_parses_its_own_options() {
        let w: weave::Args = parse(&[
            "weave",
            "--dry-run",
            "--expected",
            "3",
            "--poll",
            "0.5",
            "--",
            "/bin/echo",
            "--x",
        ])
        .unwrap();
        assert!(w.dry_run);
        assert_eq!((w.expected, w.poll), (Some(3), Duration::from_millis(500)));
        assert_eq!(w.launch, ["/bin/echo", "--x"]);

        let m: wait_master::Args =
            parse(&["wait-master", "--kubeconfig", "/k", "--max-backoff", "0.1"]).unwrap();
        assert_eq!(m.retry.initial, Duration::from_millis(100), "capped");
        assert!(m.retry.jitter);
        assert!(matches!(m.probe, wait_master::Probe::Kubeconfig { .. }));
        let m: wait_master::Args = parse(&[
            "wait-master",
            "--node-kubeconfig",
            "/etc/kubernetes/kubelet.conf",
            "--timeout",
            "900",
        ])
        .unwrap();
        assert_eq!(
            m.probe,
            wait_master::Probe::NodeKubeconfig("/etc/kubernetes/kubelet.conf".into())
        );
        assert_eq!(m.retry.timeout, Some(Duration::from_secs(900)));

        let a: activate::Args = parse(&["activate", "--root", "/r", "--cloud-init"]).unwrap();
        assert_eq!(a.source, activate::Source::CloudInit);
        assert_eq!(a.root, PathBuf::from("/r"));
        assert!(parse::<preflight::Args>(&["preflight", "--json", "-h"]) == Err(Stop::Help));
    }

    #[test]
    fn usage_errors_name_the_subcommand_and_the_option() {
        assert_eq!(
            usage::<status::Args>(&["status", "--timeout", "1"]),
            "status: unknown option --timeout"
        );
        assert_eq!(
            usage::<activate::Args>(&["activate", "--", "x"]),
            "activate: unexpected arguments after --"
        );
        assert_eq!(
            usage::<activate::Args>(&["activate", "stray"]),
            "unexpected argument \"stray\""
        );
        assert_eq!(
            usage::<wait_master::Args>(&["wait-master", "--kubeconfig", "k"]),
            "--kubeconfig: \"k\" must be an absolute path"
        );
        for (args, want) in [
            (
                &["wait-master", "--node-kubeconfig", "kubelet.conf"][..],
                "--node-kubeconfig: \"kubelet.conf\" must be an absolute path",
            ),
            (
                &[
                    "wait-master",
                    "--node-kubeconfig",
                    "/k",
                    "--kubeconfig",
                    "/b",
                ],
                "wait-master: --node-kubeconfig waits for that file alone; drop --kubeconfig",
            ),
            (
                &["wait-master", "--node-kubeconfig", "/k", "--resolve-only"],
                "wait-master: give --resolve-only or --node-kubeconfig, not both",
            ),
            (
                &["wait-master", "--node-kubeconfig", "/k", "--kubectl", "/x"],
                "wait-master: --kubectl and --reject-grace go with --kubeconfig",
            ),
        ] {
            assert_eq!(usage::<wait_master::Args>(args), want, "{args:?}");
        }
        assert_eq!(
            usage::<weave::Args>(&["weave", "--poll", "soon"]),
            "--poll: \"soon\" is not a number of seconds"
        );
        assert_eq!(
            usage::<activate::Args>(&["activate", "--user-data", "/u", "--cloud-init"]),
            "activate: give --user-data FILE or --cloud-init, not both"
        );
        assert_eq!(
            usage::<status::Args>(&["status", "--root"]),
            "missing argument for option '--root'"
        );
    }
}
