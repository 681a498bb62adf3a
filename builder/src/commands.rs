//! `kubebake build` and `kubebake inspect`: argument types and the printing
//! around [`crate::build::build`] and [`crate::inspect::inspect`].

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use crate::build::{build, BuildOptions, BuildReport};
use crate::cli::{human_size, out, print_json, DefArgs, GlobalArgs};
use crate::inspect::{inspect, InspectReport};

#[derive(Debug, Clone, Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub def: DefArgs,
    /// Output directory for the image, kernel, initrd and manifest.
    #[arg(long, value_name = "DIR", default_value = "out")]
    pub out: PathBuf,
    /// rolectl binary to bake in [default: `rolectl` beside this kubebake binary].
    #[arg(long, value_name = "PATH")]
    pub rolectl: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct InspectArgs {
    /// The image (.raw or .qcow2) written by `kubebake build`.
    #[arg(value_name = "IMAGE")]
    pub image: PathBuf,
    /// Its manifest [default: <image stem>.manifest.json beside it].
    #[arg(long, value_name = "PATH")]
    pub manifest: Option<PathBuf>,
}

/// `SOURCE_DATE_EPOCH` from the environment, checked.
pub fn source_date_epoch() -> Result<Option<i64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Err(_) => Ok(None),
        Ok(v) if v.is_empty() => Ok(None),
        Ok(v) => v.trim().parse::<i64>().map(Some).with_context(|| {
            format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds since 1970")
        }),
    }
}

fn default_rolectl() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the kubebake binary")?;
    Ok(exe.with_file_name("rolectl"))
}

pub fn build_cmd(global: &GlobalArgs, args: &BuildArgs) -> Result<ExitCode> {
    let opts = BuildOptions {
        definition: args.def.def.clone(),
        out_dir: args.out.clone(),
        cache_dir: global.cache_dir()?,
        offline: global.offline,
        allow_insecure_urls: global.allow_insecure_urls,
        rolectl: match &args.rolectl {
            Some(p) => p.clone(),
            None => default_rolectl()?,
        },
        source_date_epoch: source_date_epoch()?,
        progress: global.progress(),
    };
    let report = build(&opts)?;
    if global.json {
        print_json(&report)?;
    } else {
        out(&summary(&report))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The one-screen summary printed after a build.
pub fn summary(r: &BuildReport) -> String {
    let mut s = format!("\nbuilt {} in {:.1}s", r.image, r.total_seconds);
    if r.rootfs_reused {
        s.push_str(" (base root filesystem from cache)");
    }
    s.push_str("\n\n");
    for o in &r.outputs {
        s.push_str(&format!(
            "  {:<7} {:>10}  {}\n          sha256 {}\n",
            o.kind,
            human_size(o.size),
            r.out_dir.join(&o.file).display(),
            o.sha256
        ));
    }
    s.push_str(&format!("  manifest {}\n\n  stages:", r.manifest.display()));
    for st in &r.stages {
        s.push_str(&format!("  {} {:.1}s", st.stage, st.seconds));
    }
    s.push('\n');
    s
}

pub fn inspect_cmd(global: &GlobalArgs, args: &InspectArgs) -> Result<ExitCode> {
    let report = inspect(&args.image, args.manifest.as_deref())?;
    if global.json {
        print_json(&report)?;
    } else {
        out(&inspect_text(&report))?;
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn inspect_text(r: &InspectReport) -> String {
    let mut s = format!(
        "{} (manifest {})\n",
        r.image.display(),
        r.manifest.display()
    );
    let passed = r.checks.len() - r.failures;
    for c in r.checks.iter().filter(|c| !c.ok) {
        s.push_str(&format!("  MISMATCH {}: {}\n", c.what, c.detail));
    }
    s.push_str(&format!(
        "  {passed} of {} checks passed\n\n  units:\n",
        r.checks.len()
    ));
    for u in &r.units {
        let cond = if u.masked {
            "masked".to_string()
        } else if u.conditions.is_empty() {
            "every node".to_string()
        } else {
            format!("ConditionPathExists={}", u.conditions.join(", "))
        };
        s.push_str(&format!(
            "    {:<28} {:<7} {cond}\n",
            u.unit,
            u.role.as_deref().unwrap_or("-")
        ));
    }
    s.push_str(if r.ok() {
        "\nOK: the image matches its manifest\n"
    } else {
        "\nFAILED: the image does not match its manifest\n"
    });
    s
}

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub def: DefArgs,
    /// Scratch directory for the floor, the cold and the warm build.
    #[arg(long, value_name = "DIR", default_value = "target/bench")]
    pub work: PathBuf,
    /// rolectl binary to bake in [default: `rolectl` beside this kubebake binary].
    #[arg(long, value_name = "PATH")]
    pub rolectl: Option<PathBuf>,
}

pub fn bench_cmd(global: &GlobalArgs, args: &BenchArgs) -> Result<ExitCode> {
    let report = crate::bench::bench(&crate::bench::BenchOptions {
        definition: args.def.def.clone(),
        work: args.work.clone(),
        rolectl: match &args.rolectl {
            Some(p) => p.clone(),
            None => default_rolectl()?,
        },
        source_date_epoch: source_date_epoch()?,
    })?;
    if global.json {
        print_json(&report)?;
    } else {
        out(&crate::bench::text(&report))?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn boot_cmd(global: &GlobalArgs, args: &crate::boot::BootArgs) -> Result<ExitCode> {
    let report = crate::boot::boot(args)?;
    if global.json {
        print_json(&report)?;
    } else {
        out(&format!(
            "{}: login prompt after {:.1} s ({}, {}); golden image unchanged; serial log {}\n",
            report.image.display(),
            report.seconds_to_login,
            report.boot,
            report.accelerator,
            report.serial_log.display()
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}
