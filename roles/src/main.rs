//! rolectl: the one dispatch from a subcommand's name to its module; see
//! the library (`cmd/` for the command line) for everything else.

use std::process::ExitCode;

use rolectl::cmd::{self, exit, Argv, Stop, Subcommand};

fn main() -> ExitCode {
    let mut argv = Argv::new(std::env::args_os().skip(1));
    let sub = argv.subcommand();
    let code = match sub.as_deref() {
        Ok("activate") => run::<cmd::activate::Args>(argv),
        Ok("wait-master") => run::<cmd::wait_master::Args>(argv),
        Ok("weave") => run::<cmd::weave::Args>(argv),
        Ok("status") => run::<cmd::status::Args>(argv),
        Ok("preflight") => run::<cmd::preflight::Args>(argv),
        Ok("help") => stop(Stop::Help),
        Ok(other) => stop(Stop::Usage(format!("unknown command {other:?}"))),
        Err(s) => stop(s.clone()),
    };
    ExitCode::from(code)
}

/// Parses the subcommand's arguments and runs it.
fn run<A: Subcommand>(mut argv: Argv) -> u8 {
    match A::parse(&mut argv) {
        Err(s) => stop(s),
        Ok(args) => args.run().unwrap_or_else(|e| {
            eprintln!("rolectl: {e:#}");
            exit::ERROR
        }),
    }
}

/// Help, version or a usage error.
fn stop(s: Stop) -> u8 {
    match s {
        Stop::Help => {
            print!("{}", cmd::USAGE);
            exit::OK
        }
        Stop::Version => {
            println!("rolectl {}", env!("CARGO_PKG_VERSION"));
            exit::OK
        }
        Stop::Usage(e) => {
            eprintln!("rolectl: {e}\n\n{}", cmd::USAGE);
            exit::ERROR
        }
    }
}
