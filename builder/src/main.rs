//! `kubebake` binary: parse the command line and dispatch, nothing else.

use std::process::ExitCode;

use clap::Parser;
use kubebake::cli::{self, Cli, Command};
use kubebake::commands::*;
use kubebake::output::report_error;

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_tracing();
    let g = &cli.global;
    let result = match &cli.command {
        Command::Validate(args) => validate::run(g, args),
        Command::Fetch(args) => fetch::run(g, args),
        Command::Build(args) => build::run(g, args),
        Command::Inspect(args) => inspect::run(g, args),
        Command::Boot(args) => boot::run(g, args),
        Command::Bench(args) => bench::run(g, args),
        Command::Up(args) => up::run(g, args),
        Command::Down(args) => down::run(g, args),
        Command::Status(args) => status::run(g, args),
        Command::Userdata(args) => userdata::run(g, args),
        Command::BenchVm(args) => bench_vm::run(g, args),
        Command::Cluster(cmd) => cluster::run(g, cmd),
    };
    result.unwrap_or_else(|e| report_error(g, &e))
}
