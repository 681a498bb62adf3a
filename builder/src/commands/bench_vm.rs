//! `kubebake bench-vm`: boot 1 master + 2 minions and time the stages.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use harness::bench::BenchResult;

use crate::cli::{BenchVmArgs, GlobalArgs};
use crate::layout::boot_spec;
use crate::output::emit;

pub fn run(global: &GlobalArgs, args: &BenchVmArgs) -> Result<ExitCode> {
    let r = harness::bench::bench(
        &boot_spec(&args.image)?,
        args.memory,
        Duration::from_secs(args.timeout),
    )?;
    emit(global, &r, text)?;
    Ok(ExitCode::SUCCESS)
}

fn text(r: &BenchResult) -> String {
    format!(
        "VM benchmark (accelerator {}, 1 vCPU, {} MiB per VM, 3 VMs in parallel):\n\
         \x20 master: start -> role marker written   {:>7.1} s\n\
         \x20 master: start -> etcd active           {:>7.1} s\n\
         \x20 minion: start -> role marker written   {:>7.1} s\n\
         \x20 minion: start -> docker active         {:>7.1} s\n\
         \x20 1 master + 2 minions: start -> weave launched on both minions {:>7.1} s\n",
        r.accel,
        r.memory_mib,
        r.master_marker_s,
        r.master_units_s,
        r.minion_marker_s,
        r.minion_units_s,
        r.weave_launched_s
    )
}
