//! `kubebake bench-vm`: boot VMs of the golden image with fresh cluster
//! secrets, several runs of each scenario, and print min/median/max.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use harness::bench::{BenchResult, BootTimes, Spread, WeaveTimes};
use harness::cluster::Sizing;
use serde::Serialize;

use crate::cli::{BenchVmArgs, GlobalArgs, Scenario};
use crate::layout::boot_spec;
use crate::output::emit;

/// Every run of every scenario asked for, and the figures over the runs.
#[derive(Debug, Serialize)]
pub struct BenchVmReport {
    pub accel: String,
    pub memory_mib: u32,
    pub master: Sizing,
    pub runs: u32,
    /// One minion alone: each run's times.
    pub single: Vec<Vec<BootTimes>>,
    /// Three minions at once: each run's times.
    pub parallel: Vec<Vec<BootTimes>>,
    /// 1 master + 2 minions up to weave on both minions.
    pub weave: Vec<WeaveTimes>,
    /// 1 master + 2 minions up to both nodes Ready.
    pub kubernetes: Vec<BenchResult>,
    /// (figure, min/median/max over the runs).
    pub figures: Vec<(String, Spread)>,
}

pub fn run(global: &GlobalArgs, args: &BenchVmArgs) -> Result<ExitCode> {
    let dir = tempfile::tempdir().context("a directory for the bench cluster's secrets")?;
    let credentials = super::up::credentials("bench", &dir.path().join("secrets"))?;
    let image = boot_spec(&args.image)?;
    let timeout = Duration::from_secs(args.timeout);
    let master = Sizing {
        memory_mib: args.master_memory,
        cpus: args.master_cpus,
    };
    let mut r = BenchVmReport {
        accel: harness::accel::detect(image.kernel()).accel.to_string(),
        memory_mib: args.memory,
        master,
        runs: args.runs,
        single: Vec::new(),
        parallel: Vec::new(),
        weave: Vec::new(),
        kubernetes: Vec::new(),
        figures: Vec::new(),
    };
    for scenario in &args.scenarios {
        for run in 1..=args.runs {
            eprintln!("bench-vm: {scenario:?} run {run}/{}", args.runs);
            match scenario {
                Scenario::Single => r.single.push(harness::bench::boot_run(
                    &image,
                    args.memory,
                    1,
                    &credentials,
                    timeout,
                )?),
                Scenario::Parallel => r.parallel.push(harness::bench::boot_run(
                    &image,
                    args.memory,
                    3,
                    &credentials,
                    timeout,
                )?),
                Scenario::Weave => r.weave.push(harness::bench::weave_run(
                    &image,
                    args.memory,
                    master,
                    &credentials,
                    timeout,
                )?),
                Scenario::Kubernetes => r.kubernetes.push(harness::bench::bench(
                    &image,
                    args.memory,
                    master,
                    &credentials,
                    timeout,
                )?),
            }
        }
    }
    r.figures = figures(&r);
    emit(global, &r, text)?;
    Ok(ExitCode::SUCCESS)
}

/// The slowest VM of a run.
fn slowest(run: &[BootTimes], f: impl Fn(&BootTimes) -> f64) -> f64 {
    run.iter().map(f).fold(0.0, f64::max)
}

fn figures(r: &BenchVmReport) -> Vec<(String, Spread)> {
    let mut out = Vec::new();
    let mut add = |name: &str, values: Vec<f64>| {
        if let Some(s) = Spread::of(&values) {
            out.push((name.to_string(), s));
        }
    };
    let boot = |runs: &[Vec<BootTimes>], f: fn(&BootTimes) -> f64| -> Vec<f64> {
        runs.iter().map(|run| slowest(run, f)).collect()
    };
    add(
        "one VM alone: start -> role marker",
        boot(&r.single, |t| t.marker_s),
    );
    add(
        "one VM alone: start -> role units active",
        boot(&r.single, |t| t.units_active_s),
    );
    add(
        "3 VMs in parallel: start -> role marker (slowest)",
        boot(&r.parallel, |t| t.marker_s),
    );
    add(
        "3 VMs in parallel: start -> role units active (slowest)",
        boot(&r.parallel, |t| t.units_active_s),
    );
    add(
        "1 master + 2 minions: weave launched on both minions",
        r.weave.iter().map(WeaveTimes::both_s).collect(),
    );
    let k = &r.kubernetes;
    add(
        "1 master + 2 minions: master start -> API server ready",
        k.iter().map(|b| b.api_ready_s).collect(),
    );
    add(
        "1 master + 2 minions: both minions Ready",
        k.iter()
            .map(|b| b.minions_ready_s.iter().map(|m| m.1).fold(0.0, f64::max))
            .collect(),
    );
    add(
        "master memory in use once all Ready (MiB)",
        k.iter().map(|b| b.master_used_mib as f64).collect(),
    );
    out
}

fn text(r: &BenchVmReport) -> String {
    let mut t = format!(
        "VM benchmark (accelerator {}; minions 1 vCPU, {} MiB; master {} vCPU(s), {} MiB; SeaBIOS boot, NoCloud seed; seconds from each VM's start)\n",
        r.accel, r.memory_mib, r.master.cpus, r.master.memory_mib
    );
    t.push_str(&format!(
        "  {:<58} {:>8} {:>8} {:>8} {:>5}\n",
        "", "min", "median", "max", "runs"
    ));
    for (name, s) in &r.figures {
        t.push_str(&format!(
            "  {:<58} {:>8.1} {:>8.1} {:>8.1} {:>5}\n",
            name, s.min, s.median, s.max, s.runs
        ));
    }
    t
}
