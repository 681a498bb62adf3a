//! `kubebake conformance`: Kubernetes' conformance suite against a cluster
//! started with `up --detach` (see [`crate::conformance`]).

use std::process::ExitCode;

use anyhow::{Context, Result};
use harness::state::State;

use super::source_date_epoch;
use crate::cli::{state_dir, ConformanceArgs, GlobalArgs};
use crate::conformance::{images, tools, Outcome, Run, Selection};
use crate::definition::{self, LoadOptions};
use crate::output::emit;

pub fn run(global: &GlobalArgs, args: &ConformanceArgs) -> Result<ExitCode> {
    let def = definition::load(
        &args.definition,
        &LoadOptions {
            data_root: None,
            allow_insecure_urls: global.allow_insecure_urls,
        },
    )?;
    let progress = global.progress();
    // The suite's version stamps need a date: SOURCE_DATE_EPOCH, or the
    // epoch itself (the stamp is informational).
    let epoch = source_date_epoch()?.unwrap_or(0);
    let tools = tools::build(
        &def,
        &global.cache_dir()?,
        Some(epoch),
        global.offline,
        &progress,
    )?;
    // The cluster is looked for once the suite is built (a first build
    // takes minutes; the cluster may boot meanwhile).
    let dir = state_dir(&args.cluster, args.state_dir.as_ref());
    let state = State::read(&dir)?;
    let kubeconfig = dir.join("admin.conf");
    if !kubeconfig.is_file() {
        anyhow::bail!(
            "{} is missing: start the cluster with `kubebake up --detach --wait 30m` (it writes the admin kubeconfig once every minion is Ready)",
            kubeconfig.display()
        );
    }
    let mut selection = if args.serial {
        Selection::serial()
    } else {
        Selection::parallel(args.nodes)
    };
    if let Some(f) = &args.focus {
        selection.focus = f.clone();
    }
    if let Some(s) = &args.skip {
        selection.skip = Some(s.clone()).filter(|s| !s.is_empty());
    }
    let report_dir = args
        .report_dir
        .clone()
        .unwrap_or_else(|| dir.join("conformance"));
    eprintln!(
        "conformance: Kubernetes v{} suite ({}), focus {:?}{}, {} process(es), against cluster {} (namespace {}); report in {}",
        tools.version,
        if tools.reused { "cached" } else { "built" },
        selection.focus,
        selection
            .skip
            .as_ref()
            .map_or(String::new(), |s| format!(", skip {s:?}")),
        selection.nodes,
        state.cluster,
        state.netns,
        report_dir.display()
    );
    // The test images, on every node that runs pods.
    let made = images::make(
        &def,
        &global.cache_dir()?,
        &tools,
        &report_dir.join("images"),
        epoch,
        global.offline,
    )
    .context("making the suite's test images")?;
    for vm in state
        .vms
        .iter()
        .filter(|v| v.role == Some(harness::Role::Minion))
    {
        let n = images::import(&state.netns, &state.ssh_key, &vm.ip, &made)
            .with_context(|| format!("importing the test images into {}", vm.name))?;
        eprintln!(
            "conformance: {} ({}): {n} of {} test images were missing and imported",
            vm.name,
            vm.ip,
            made.len()
        );
    }
    let run = Run {
        tools: &tools,
        netns: &state.netns,
        kubeconfig: &kubeconfig,
        selection: &selection,
        timeout: &args.timeout,
        dry_run: args.dry_run,
        report_dir: &report_dir,
    };
    // With --json, the suite's own output goes to stderr; stdout carries
    // the one JSON document.
    let outcome = if global.json {
        run.execute(&mut std::io::stderr())
    } else {
        run.execute(&mut std::io::stdout())
    }
    .context("running the conformance suite")?;
    emit(global, &outcome, text)?;
    let passed = outcome.summary.failed == 0 && outcome.exit_code == Some(0);
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn text(o: &Outcome) -> String {
    let s = &o.summary;
    let mut t = format!(
        "\nconformance (Kubernetes v{}, focus {:?}): {} passed, {} failed, {} skipped in {:.0} s\n",
        o.kubernetes_version, o.selection.focus, s.passed, s.failed, s.skipped, o.seconds
    );
    for f in &s.failures {
        t.push_str(&format!("  FAILED {}\n         {}\n", f.name, f.reason));
    }
    t.push_str(&format!(
        "JUnit report {}\nlog {}\n",
        o.junit.display(),
        o.log.display()
    ));
    t
}
