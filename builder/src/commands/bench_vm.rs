//! `kubebake bench-vm`: boot 1 master + 2 minions with fresh cluster
//! secrets and time the stages up to every minion Ready.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use harness::bench::BenchResult;
use harness::cluster::Sizing;

use crate::cli::{BenchVmArgs, GlobalArgs};
use crate::layout::boot_spec;
use crate::output::emit;

pub fn run(global: &GlobalArgs, args: &BenchVmArgs) -> Result<ExitCode> {
    let dir = tempfile::tempdir().context("a directory for the bench cluster's secrets")?;
    let credentials = super::up::credentials("bench", &dir.path().join("secrets"))?;
    let r = harness::bench::bench(
        &boot_spec(&args.image)?,
        args.memory,
        Sizing {
            memory_mib: args.master_memory,
            cpus: args.master_cpus,
        },
        &credentials,
        Duration::from_secs(args.timeout),
    )?;
    emit(global, &r, text)?;
    Ok(ExitCode::SUCCESS)
}

fn text(r: &BenchResult) -> String {
    let mut t = format!(
        "VM benchmark (accelerator {}; master {} vCPU(s), {} MiB; minions 1 vCPU, {} MiB; 3 VMs in parallel):\n\
         \x20 master: start -> role marker written   {:>7.1} s\n\
         \x20 master: start -> API server ready      {:>7.1} s\n\
         \x20 minion: start -> role marker written   {:>7.1} s\n",
        r.accel,
        r.master.cpus,
        r.master.memory_mib,
        r.memory_mib,
        r.master_marker_s,
        r.api_ready_s,
        r.minion_marker_s,
    );
    for (m, s) in &r.minions_ready_s {
        t.push_str(&format!("  {m}: start -> node Ready       {s:>7.1} s\n"));
    }
    t.push_str(&format!(
        "  weave launched on both minions         {:>7.1} s\n  master memory in use once all Ready   {:>7} MiB\n",
        r.weave_launched_s, r.master_used_mib
    ));
    t
}
