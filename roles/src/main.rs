//! rolectl: dispatch only; see the library for everything else.

use std::process::ExitCode;

use rolectl::cli::{self, exit, Cmd};
use rolectl::commands;

fn main() -> ExitCode {
    let cmd = match cli::parse(std::env::args_os().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rolectl: {e}\n\n{}", cli::USAGE);
            return ExitCode::from(exit::ERROR);
        }
    };
    let result = match cmd {
        Cmd::Help => {
            print!("{}", cli::USAGE);
            Ok(exit::OK)
        }
        Cmd::Version => {
            println!("rolectl {}", env!("CARGO_PKG_VERSION"));
            Ok(exit::OK)
        }
        Cmd::Activate { root, from } => commands::activate(&root, &from),
        Cmd::WaitMaster {
            root,
            probe,
            timeout,
            initial_backoff,
            max_backoff,
            dns_server,
        } => commands::wait_master(
            &root,
            &probe,
            timeout,
            initial_backoff,
            max_backoff,
            dns_server,
        ),
        Cmd::Weave {
            root,
            dry_run,
            expected,
            poll,
            timeout,
            dns_server,
            own_addrs,
            launch,
        } => commands::weave(
            &root, dry_run, expected, poll, timeout, dns_server, own_addrs, launch,
        ),
        Cmd::Status { root, json } => commands::status(&root, json),
        Cmd::Preflight { root, role, json } => commands::preflight(&root, role, json),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("rolectl: {e:#}");
            ExitCode::from(exit::ERROR)
        }
    }
}
