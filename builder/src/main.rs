//! `kubebake` binary: parse the command line, dispatch to the library.

use std::process::ExitCode;

use clap::Parser;
use kubebake::cli::{self, Cli, Command};
use kubebake::vm::cli as vm;

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_tracing();
    let result = match &cli.command {
        Command::Validate(args) => cli::validate(&cli.global, args),
        Command::Fetch(args) => cli::fetch(&cli.global, args),
        Command::Build(args) => kubebake::commands::build_cmd(&cli.global, args),
        Command::Inspect(args) => kubebake::commands::inspect_cmd(&cli.global, args),
        Command::Boot(args) => kubebake::commands::boot_cmd(&cli.global, args),
        Command::Bench(args) => kubebake::commands::bench_cmd(&cli.global, args),
        Command::Up(args) => vm::run_up(args.clone()).map(|()| ExitCode::SUCCESS),
        Command::Down(args) => vm::run_down(args.clone()).map(|()| ExitCode::SUCCESS),
        Command::Status(args) => {
            vm::run_status(args.clone(), cli.global.json).map(|()| ExitCode::SUCCESS)
        }
        Command::Userdata(args) => vm::run_userdata(args.clone()).map(|()| ExitCode::SUCCESS),
        Command::BenchVm(args) => vm::run_bench_vm(args.clone()).map(|()| ExitCode::SUCCESS),
        Command::Cluster(cmd) => cli::cluster(&cli.global, cmd),
    };
    result.unwrap_or_else(|e| cli::report_error(&cli.global, &e))
}
