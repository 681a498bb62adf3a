//! `kubebake bench-vm`: boot VMs of the golden image with fresh cluster
//! secrets, several runs of each scenario, and print min/median/max; with
//! `--baseline`, the same for a baseline image in the same run (its runs
//! interleaved with the image's) and the ratios of the medians.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use harness::bench::{BenchResult, BootTimes, Spread, WeaveTimes};
use harness::cluster::Sizing;
use harness::BootSpec;
use serde::Serialize;

use crate::cli::{BenchVmArgs, GlobalArgs, Scenario};
use crate::layout::boot_spec;
use crate::output::emit;
use harness::up::RoleSections;

/// Every run of every scenario of one image, and its figures.
#[derive(Debug, Default, Serialize)]
pub struct Measured {
    pub image: String,
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

#[derive(Debug, Serialize)]
pub struct BenchVmReport {
    pub accel: String,
    pub memory_mib: u32,
    pub master: Sizing,
    pub runs: u32,
    pub image: Measured,
    pub baseline: Option<Measured>,
    /// (figure, image median / baseline median).
    pub ratios: Vec<(String, f64)>,
}

struct Setup<'a> {
    args: &'a BenchVmArgs,
    credentials: &'a RoleSections,
    master: Sizing,
    timeout: Duration,
}

impl Setup<'_> {
    fn run(&self, scenario: Scenario, image: &BootSpec, into: &mut Measured) -> Result<()> {
        let (a, c, t) = (self.args, self.credentials, self.timeout);
        match scenario {
            Scenario::Single => into
                .single
                .push(harness::bench::boot_run(image, a.memory, 1, c, t)?),
            Scenario::Parallel => into
                .parallel
                .push(harness::bench::boot_run(image, a.memory, 3, c, t)?),
            Scenario::Weave => into.weave.push(harness::bench::weave_run(
                image,
                a.memory,
                self.master,
                c,
                t,
            )?),
            Scenario::Kubernetes => {
                into.kubernetes
                    .push(harness::bench::bench(image, a.memory, self.master, c, t)?)
            }
        }
        Ok(())
    }
}

pub fn run(global: &GlobalArgs, args: &BenchVmArgs) -> Result<ExitCode> {
    let dir = tempfile::tempdir().context("a directory for the bench cluster's secrets")?;
    let credentials = super::up::credentials("bench", &dir.path().join("secrets"))?;
    let image = boot_spec(&args.image)?;
    let baseline = args.baseline.as_deref().map(boot_spec).transpose()?;
    let setup = Setup {
        args,
        credentials: &credentials,
        master: Sizing {
            memory_mib: args.master_memory,
            cpus: args.master_cpus,
        },
        timeout: Duration::from_secs(args.timeout),
    };
    let mut mine = Measured {
        image: args.image.display().to_string(),
        ..Measured::default()
    };
    let mut base = args.baseline.as_ref().map(|b| Measured {
        image: b.display().to_string(),
        ..Measured::default()
    });
    for scenario in &args.scenarios {
        for run in 1..=args.runs {
            if let (Some(b), Some(m)) = (&baseline, base.as_mut()) {
                eprintln!("bench-vm: {scenario:?} run {run}/{} (baseline)", args.runs);
                setup.run(*scenario, b, m)?;
            }
            eprintln!("bench-vm: {scenario:?} run {run}/{}", args.runs);
            setup.run(*scenario, &image, &mut mine)?;
        }
    }
    mine.figures = figures(&mine);
    let mut ratios = Vec::new();
    if let Some(b) = base.as_mut() {
        b.figures = figures(b);
        for (name, s) in &mine.figures {
            if let Some((_, bs)) = b.figures.iter().find(|(n, _)| n == name) {
                if bs.median > 0.0 {
                    ratios.push((name.clone(), s.median / bs.median));
                }
            }
        }
    }
    let r = BenchVmReport {
        accel: harness::accel::detect(image.kernel()).accel.to_string(),
        memory_mib: args.memory,
        master: setup.master,
        runs: args.runs,
        image: mine,
        baseline: base,
        ratios,
    };
    emit(global, &r, text)?;
    Ok(ExitCode::SUCCESS)
}

/// The slowest VM of a run.
fn slowest(run: &[BootTimes], f: impl Fn(&BootTimes) -> f64) -> f64 {
    run.iter().map(f).fold(0.0, f64::max)
}

fn figures(r: &Measured) -> Vec<(String, Spread)> {
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

fn table(t: &mut String, title: &str, m: &Measured) {
    t.push_str(&format!("{title}: {}\n", m.image));
    t.push_str(&format!(
        "  {:<58} {:>8} {:>8} {:>8} {:>5}\n",
        "", "min", "median", "max", "runs"
    ));
    for (name, s) in &m.figures {
        t.push_str(&format!(
            "  {:<58} {:>8.1} {:>8.1} {:>8.1} {:>5}\n",
            name, s.min, s.median, s.max, s.runs
        ));
    }
}

fn text(r: &BenchVmReport) -> String {
    let mut t = format!(
        "VM benchmark (accelerator {}; minions 1 vCPU, {} MiB; master {} vCPU(s), {} MiB; SeaBIOS boot, NoCloud seed; seconds from each VM's start)\n",
        r.accel, r.memory_mib, r.master.cpus, r.master.memory_mib
    );
    table(&mut t, "image", &r.image);
    if let Some(b) = &r.baseline {
        table(&mut t, "baseline", b);
        t.push_str("image median / baseline median:\n");
        for (name, ratio) in &r.ratios {
            t.push_str(&format!("  {name:<58} {ratio:>8.2}\n"));
        }
    }
    t
}
