//! `kubebake kube-bench`: the CIS Kubernetes Benchmark on a cluster started
//! with `up --detach`, measured by kube-bench (see [`crate::kube_bench`]).
//! Exits non-zero only when kube-bench could not run: FAILs are the
//! measurement.

use std::process::ExitCode;

use anyhow::{Context, Result};
use harness::state::State;

use crate::cli::{state_dir, GlobalArgs, KubeBenchArgs};
use crate::kube_bench::{self, Node, Report};
use crate::output::emit;

pub fn run(global: &GlobalArgs, args: &KubeBenchArgs) -> Result<ExitCode> {
    let progress = global.progress();
    let tool = kube_bench::build(
        &args.images,
        &global.cache_dir()?,
        global.offline,
        &progress,
    )?;
    let dir = state_dir(&args.cluster, args.state_dir.as_ref());
    let state = State::read(&dir)?;
    let nodes: Vec<Node> = state
        .vms
        .iter()
        .filter_map(|v| {
            Some(Node {
                name: v.name.clone(),
                role: v.role?,
                ip: v.ip.clone(),
            })
        })
        .collect();
    if nodes.is_empty() {
        anyhow::bail!(
            "cluster {} has no VM with a role: nothing to measure",
            state.cluster
        );
    }
    let report_dir = args
        .report_dir
        .clone()
        .unwrap_or_else(|| dir.join("kube-bench"));
    eprintln!(
        "kube-bench v{} ({}), benchmark {}, on cluster {} (namespace {}): {} node(s); reports in {}",
        tool.version,
        if tool.reused { "cached" } else { "built" },
        tool.benchmark,
        state.cluster,
        state.netns,
        nodes.len(),
        report_dir.display()
    );
    let report = kube_bench::run(
        &state.netns,
        &state.ssh_key,
        &nodes,
        &tool,
        &report_dir,
        &progress,
    )
    .context("measuring the cluster with kube-bench")?;
    emit(global, &report, Report::text)?;
    Ok(ExitCode::SUCCESS)
}
