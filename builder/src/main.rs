//! `kubebake` binary: parse the command line and dispatch, nothing else.

use std::process::ExitCode;

use clap::Parser;
use kubebake::children;
use kubebake::cli::{self, Cli, Command};
use kubebake::commands::*;
use kubebake::output::report_error;

fn main() -> ExitCode {
    // The reaper of a build's child processes is this binary started again.
    if std::env::var_os(children::REAPER_ENV).is_some() {
        return children::reaper_main();
    }
    let cli = Cli::parse();
    cli::init_tracing();
    let g = &cli.global;
    // Commands that run host tools or write the cache: interrupted, they
    // stop their children and remove their temporaries (children.rs).
    if matches!(
        cli.command,
        Command::Build(_) | Command::Fetch(_) | Command::Bench(_)
    ) {
        if let Err(e) = children::handle_signals() {
            return report_error(g, &e);
        }
        children::start_reaper();
    }
    let result = match &cli.command {
        Command::Validate(args) => validate::run(g, args),
        Command::Fetch(args) => fetch::run(g, args),
        Command::Build(args) => build::run(g, args),
        Command::Clean(args) => clean::run(g, args),
        Command::Inspect(args) => inspect::run(g, args),
        Command::Boot(args) => boot::run(g, args),
        Command::Bench(args) => bench::run(g, args),
        Command::Up(args) => up::run(g, args),
        Command::Down(args) => down::run(g, args),
        Command::Status(args) => status::run(g, args),
        Command::Userdata(args) => userdata::run(g, args),
        Command::BenchVm(args) => bench_vm::run(g, args),
        Command::Conformance(args) => conformance::run(g, args),
        Command::KubeBench(args) => kube_bench::run(g, args),
        Command::Cluster(cmd) => cluster::run(g, cmd),
    };
    result.unwrap_or_else(|e| {
        // A failure caused by SIGINT/SIGTERM: the handler exits 130/143.
        children::wait_if_interrupted();
        report_error(g, &e)
    })
}
