//! `kubebake bench DEF`: build speed and image size against the floor
//! measured in the same run. The floor is what any image build must at least
//! do: mmdebstrap of the same packages into a directory plus `mkfs.ext4 -d`
//! of that directory. Then kubebake builds cold (empty cache) and warm (cache
//! kept, one unit template changed), and the ratios are printed.
//!
//! `--runs N` rebuilds warm N times, changing the template again before
//! each, and reports min/median/max. `--warm-only` skips the floor and the
//! cold build and uses the real cache (`--cache`): one uncounted build fills
//! it (base, source builds, qcow2 clusters), then the N counted rebuilds.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::build::{build, BuildOptions, BuildReport};
use crate::check;
use crate::definition::LoadOptions;
use crate::hostcmd;
use crate::progress::Progress;
use crate::stages::rootfs;

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub definition: PathBuf,
    /// The floor and the cold build; absent with `--warm-only`.
    pub cold: Option<ColdFigures>,
    /// The warm rebuilds, each after changing `warm_changed_template`.
    pub warm: WarmFigures,
    pub warm_changed_template: String,
    pub raw_bytes: u64,
    pub raw_allocated_bytes: u64,
    pub qcow2_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ColdFigures {
    pub floor_mmdebstrap_seconds: f64,
    pub floor_mkfs_seconds: f64,
    pub floor_seconds: f64,
    pub floor_ext4_allocated_bytes: u64,
    pub cold_seconds: f64,
    /// The cold build's source-build stage (compiling from pinned sources,
    /// which the floor does not do).
    pub source_build_cold_seconds: f64,
    /// Cold build minus its source builds, over the floor.
    pub cold_over_floor: f64,
    pub qcow2_over_floor_ext4: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct WarmFigures {
    /// Wall time of each counted rebuild, in order.
    pub runs_seconds: Vec<f64>,
    pub min_seconds: f64,
    pub median_seconds: f64,
    pub max_seconds: f64,
    /// Each stage's median over the runs.
    pub stage_medians: Vec<crate::build::StageTime>,
    /// The warm builds' source-build stage (cache reuse), median.
    pub source_build_seconds: f64,
}

pub struct BenchOptions {
    pub definition: PathBuf,
    /// `--data-root` and `--allow-insecure-urls`, as for `build`.
    pub load: LoadOptions,
    pub work: PathBuf,
    pub rolectl: PathBuf,
    pub source_date_epoch: Option<i64>,
    /// Skip the floor and the cold build; use `cache` as it is.
    pub warm_only: bool,
    /// Counted warm rebuilds (at least 1).
    pub runs: usize,
    /// The cache of `--warm-only` (the cold build always starts empty).
    pub cache: PathBuf,
}

fn allocated(path: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(fs::metadata(path)
        .with_context(|| format!("stat {}", path.display()))?
        .blocks()
        * 512)
}

pub fn bench(opts: &BenchOptions) -> Result<BenchReport> {
    hostcmd::require(hostcmd::BUILD_TOOLS)?;
    let def = check::load_checked(&opts.definition, &opts.load)?.def;
    check::require_rolectl(&opts.rolectl)?;
    fs::create_dir_all(&opts.work).with_context(|| format!("creating {}", opts.work.display()))?;
    let work = tempfile::Builder::new()
        .prefix("kubebake-bench-")
        .tempdir_in(&opts.work)
        .with_context(|| format!("creating a directory in {}", opts.work.display()))?;
    let out = work.path().join("out");
    let cache = if opts.warm_only {
        opts.cache.clone()
    } else {
        work.path().join("cache")
    };
    let build_opts = |definition: &Path, load: &LoadOptions| BuildOptions {
        definition: definition.to_path_buf(),
        out_dir: out.clone(),
        cache_dir: cache.clone(),
        offline: false,
        load: load.clone(),
        rolectl: opts.rolectl.clone(),
        source_date_epoch: opts.source_date_epoch,
        progress: Progress::hidden(),
        no_wait: false,
    };

    let (cold, first) = if opts.warm_only {
        eprintln!("bench: one build to fill the cache (not counted) …");
        (None, build(&build_opts(&opts.definition, &opts.load))?)
    } else {
        let (figures, report) =
            floor_and_cold(opts, &def, work.path(), |d, l| build(&build_opts(d, l)))?;
        (Some(figures), report)
    };

    // Warm: the same definition (its recipes stay beside it) over a copy of
    // the data root, with one unit template changed anew before each rebuild.
    let data = work.path().join("data");
    for dir in ["units", "dropins"] {
        copy_dir(&def.data_root.join(dir), &data.join(dir))?;
    }
    let unit = def
        .units
        .first()
        .context("the definition has no units to change")?;
    let template = data.join("units").join(format!("{}.hbs", unit.name));
    let warm_load = LoadOptions {
        data_root: Some(data.clone()),
        ..opts.load.clone()
    };
    let runs = opts.runs.max(1);
    let mut reports = Vec::with_capacity(runs);
    for run in 1..=runs {
        let mut text = fs::read_to_string(&template)
            .with_context(|| format!("reading {}", template.display()))?;
        text.push_str(&format!(
            "# kubebake bench: changed for warm rebuild {run}\n"
        ));
        fs::write(&template, text).with_context(|| format!("writing {}", template.display()))?;
        eprintln!(
            "bench: warm rebuild {run}/{runs} after changing units/{}.hbs …",
            unit.name
        );
        let start = Instant::now();
        let report = build(&build_opts(&opts.definition, &warm_load))?;
        reports.push((start.elapsed().as_secs_f64(), report));
    }

    let raw = first.outputs.iter().find(|o| o.kind == "raw");
    let raw_alloc = match raw {
        Some(r) => allocated(&out.join(&r.file))?,
        None => 0,
    };
    Ok(BenchReport {
        definition: opts.definition.clone(),
        cold,
        warm: warm_figures(&reports),
        warm_changed_template: format!("units/{}.hbs", unit.name),
        raw_bytes: raw.map_or(0, |r| r.size),
        raw_allocated_bytes: raw_alloc,
        qcow2_bytes: first
            .outputs
            .iter()
            .find(|o| o.kind == "qcow2")
            .map_or(0, |o| o.size),
    })
}

/// The floor (mmdebstrap + mkfs.ext4 -d) and a cold build with an empty cache.
fn floor_and_cold(
    opts: &BenchOptions,
    def: &crate::definition::Definition,
    work: &Path,
    build: impl Fn(&Path, &LoadOptions) -> Result<BuildReport>,
) -> Result<(ColdFigures, BuildReport)> {
    eprintln!("bench: floor (mmdebstrap + mkfs.ext4 -d) …");
    let floor_root = work.join("floor-root");
    let start = Instant::now();
    let mut cmd = rootfs::mmdebstrap_command(def, "directory", &floor_root, opts.source_date_epoch);
    hostcmd::run(&mut cmd).context("floor: mmdebstrap")?;
    let floor_mm = start.elapsed().as_secs_f64();
    let floor_img = work.join("floor.ext4");
    let start = Instant::now();
    hostcmd::run(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-d"])
            .arg(&floor_root)
            .arg(&floor_img)
            .arg(format!("{}K", def.outputs.disk_size / 1024)),
    )
    .context("floor: mkfs.ext4 -d")?;
    let floor_mkfs = start.elapsed().as_secs_f64();
    let floor_alloc = allocated(&floor_img)?;
    fs::remove_dir_all(&floor_root).ok();
    fs::remove_file(&floor_img).ok();

    eprintln!("bench: cold kubebake build …");
    let start = Instant::now();
    let cold = build(&opts.definition, &opts.load)?;
    let cold_s = start.elapsed().as_secs_f64();
    let floor = floor_mm + floor_mkfs;
    let source_cold = stage_seconds(&cold, "source-build");
    let qcow2 = cold
        .outputs
        .iter()
        .find(|o| o.kind == "qcow2")
        .map_or(0, |o| o.size);
    Ok((
        ColdFigures {
            floor_mmdebstrap_seconds: round(floor_mm),
            floor_mkfs_seconds: round(floor_mkfs),
            floor_seconds: round(floor),
            floor_ext4_allocated_bytes: floor_alloc,
            cold_seconds: round(cold_s),
            source_build_cold_seconds: source_cold,
            cold_over_floor: round((cold_s - source_cold) / floor),
            qcow2_over_floor_ext4: round(qcow2 as f64 / floor_alloc.max(1) as f64),
        },
        cold,
    ))
}

fn stage_seconds(r: &BuildReport, stage: &str) -> f64 {
    r.stages
        .iter()
        .find(|s| s.stage == stage)
        .map_or(0.0, |s| s.seconds)
}

/// The median of `xs` (the mean of the middle two for an even count).
pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn warm_figures(reports: &[(f64, BuildReport)]) -> WarmFigures {
    let times: Vec<f64> = reports.iter().map(|(t, _)| round(*t)).collect();
    let stages = reports
        .first()
        .map(|(_, r)| r.stages.iter().map(|s| s.stage.clone()).collect::<Vec<_>>())
        .unwrap_or_default();
    let stage_medians = stages
        .into_iter()
        .map(|stage| {
            let xs: Vec<f64> = reports
                .iter()
                .map(|(_, r)| stage_seconds(r, &stage))
                .collect();
            crate::build::StageTime {
                seconds: round(median(&xs)),
                stage,
            }
        })
        .collect::<Vec<_>>();
    let source_build_seconds = stage_medians
        .iter()
        .find(|s| s.stage == "source-build")
        .map_or(0.0, |s| s.seconds);
    WarmFigures {
        min_seconds: times.iter().copied().fold(f64::INFINITY, f64::min),
        median_seconds: round(median(&times)),
        max_seconds: times.iter().copied().fold(0.0, f64::max),
        runs_seconds: times,
        stage_medians,
        source_build_seconds,
    }
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &dest)?;
        } else {
            fs::copy(entry.path(), &dest)?;
        }
    }
    Ok(())
}

/// The figures as a table.
pub fn text(r: &BenchReport) -> String {
    let mb = |b: u64| b as f64 / 1e6;
    let mut s = format!("kubebake bench {}\n\n", r.definition.display());
    if let Some(c) = &r.cold {
        s.push_str(&format!(
            "{:<44} {:>9.1} s\n{:<44} {:>9.1} s\n{:<44} {:>9.1} s\n\
             {:<44} {:>9.1} s   {:.2}× floor without source builds (target ≤ 1.3)\n\
             {:<44} {:>9.1} s\n",
            "floor: mmdebstrap",
            c.floor_mmdebstrap_seconds,
            "floor: mkfs.ext4 -d",
            c.floor_mkfs_seconds,
            "floor: total",
            c.floor_seconds,
            "kubebake build, cold (empty cache)",
            c.cold_seconds,
            c.cold_over_floor,
            "  of which source builds, cold",
            c.source_build_cold_seconds,
        ));
    }
    let w = &r.warm;
    s.push_str(&format!(
        "{:<44} {:>9.1} s   median of {} (min {:.1}, max {:.1}; target ≤ 10)\n\
         \x20   runs: {}\n    stage medians: {}\n\
         {:<44} {:>9.1} s\n\n",
        format!("kubebake build, warm ({} changed)", r.warm_changed_template),
        w.median_seconds,
        w.runs_seconds.len(),
        w.min_seconds,
        w.max_seconds,
        w.runs_seconds
            .iter()
            .map(|t| format!("{t:.1}s"))
            .collect::<Vec<_>>()
            .join(", "),
        w.stage_medians
            .iter()
            .map(|s| format!("{} {:.1}s", s.stage, s.seconds))
            .collect::<Vec<_>>()
            .join(", "),
        "  of which source builds, warm (cache reused)",
        w.source_build_seconds,
    ));
    if let Some(c) = &r.cold {
        s.push_str(&format!(
            "{:<44} {:>9.1} MB\n",
            "floor ext4 image, allocated",
            mb(c.floor_ext4_allocated_bytes)
        ));
    }
    s.push_str(&format!(
        "{:<44} {:>9.1} MB   ({} MB apparent)\n{:<44} {:>9.1} MB",
        "raw image, allocated",
        mb(r.raw_allocated_bytes),
        r.raw_bytes / 1_000_000,
        "qcow2 image",
        mb(r.qcow2_bytes),
    ));
    match &r.cold {
        Some(c) => s.push_str(&format!(
            "   {:.2}× floor ext4 (target ≤ 350 MB)\n",
            c.qcow2_over_floor_ext4
        )),
        None => s.push_str("   (target ≤ 350 MB)\n"),
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }
}
