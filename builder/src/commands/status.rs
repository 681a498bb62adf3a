//! `kubebake status`: the VMs of a detached cluster and their stages.

use std::process::ExitCode;

use anyhow::Result;
use harness::state::ClusterStatus;

use super::vm_rows;
use crate::cli::{state_dir, GlobalArgs, StatusArgs};
use crate::output::emit;

pub fn run(global: &GlobalArgs, args: &StatusArgs) -> Result<ExitCode> {
    let dir = state_dir(&args.cluster, args.state_dir.as_ref());
    let status = harness::state::status(&dir)?;
    emit(global, &status, text)?;
    Ok(ExitCode::SUCCESS)
}

fn text(s: &ClusterStatus) -> String {
    let mut t = format!(
        "cluster {} (pid {}, {}), namespace {}, accelerator {}\n",
        s.cluster,
        s.pid,
        if s.running { "running" } else { "NOT running" },
        s.netns,
        s.accel
    );
    t.push_str(&vm_rows(&s.vms));
    t
}
