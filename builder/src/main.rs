//! `kubebake` binary: parse the command line, dispatch to the library.

use std::process::ExitCode;

use clap::Parser;
use kubebake::cli::{self, Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_tracing();
    let result = match &cli.command {
        Command::Validate(args) => cli::validate(&cli.global, args),
        Command::Fetch(args) => cli::fetch(&cli.global, args),
        Command::Build(args) => kubebake::commands::build_cmd(&cli.global, args),
        Command::Inspect(args) => kubebake::commands::inspect_cmd(&cli.global, args),
    };
    result.unwrap_or_else(|e| cli::report_error(&cli.global, &e))
}
