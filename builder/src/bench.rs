//! `kubebake bench DEF`: build speed and image size against the floor
//! measured in the same run. The floor is what any image build must at least
//! do: mmdebstrap of the same packages into a directory plus `mkfs.ext4 -d`
//! of that directory. Then kubebake builds cold (empty cache) and warm (cache
//! kept, one unit template changed), and the ratios are printed.

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
    /// The warm build's source-build stage (cache reuse).
    pub source_build_warm_seconds: f64,
    pub warm_seconds: f64,
    pub warm_changed_template: String,
    pub warm_stages: Vec<crate::build::StageTime>,
    pub raw_bytes: u64,
    pub raw_allocated_bytes: u64,
    pub qcow2_bytes: u64,
    pub qcow2_over_floor_ext4: f64,
}

pub struct BenchOptions {
    pub definition: PathBuf,
    /// `--data-root` and `--allow-insecure-urls`, as for `build`.
    pub load: LoadOptions,
    pub work: PathBuf,
    pub rolectl: PathBuf,
    pub source_date_epoch: Option<i64>,
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
    fs::create_dir_all(&opts.work)?;
    let work = tempfile::Builder::new()
        .prefix("kubebake-bench-")
        .tempdir_in(&opts.work)?;

    // Floor: mmdebstrap (same packages, same options) + mkfs.ext4 -d.
    eprintln!("bench: floor (mmdebstrap + mkfs.ext4 -d) …");
    let floor_root = work.path().join("floor-root");
    let start = Instant::now();
    let mut cmd =
        rootfs::mmdebstrap_command(&def, "directory", &floor_root, opts.source_date_epoch);
    hostcmd::run(&mut cmd).context("floor: mmdebstrap")?;
    let floor_mm = start.elapsed().as_secs_f64();
    let floor_img = work.path().join("floor.ext4");
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

    // Cold: empty cache.
    eprintln!("bench: cold kubebake build …");
    let cache = work.path().join("cache");
    let out = work.path().join("out");
    let build_opts = |definition: &Path, out: &Path, load: &LoadOptions| BuildOptions {
        definition: definition.to_path_buf(),
        out_dir: out.to_path_buf(),
        cache_dir: cache.clone(),
        offline: false,
        load: load.clone(),
        rolectl: opts.rolectl.clone(),
        source_date_epoch: opts.source_date_epoch,
        progress: Progress::hidden(),
    };
    let start = Instant::now();
    let cold: BuildReport = build(&build_opts(&opts.definition, &out, &opts.load))?;
    let cold_s = start.elapsed().as_secs_f64();

    // Warm: a copy of the data root with one unit template changed.
    let data = work.path().join("data");
    for dir in ["units", "dropins"] {
        copy_dir(&def.data_root.join(dir), &data.join(dir))?;
    }
    let unit = def
        .units
        .first()
        .context("the definition has no units to change")?;
    let template = data.join("units").join(format!("{}.hbs", unit.name));
    let mut text = fs::read_to_string(&template)?;
    text.push_str("# kubebake bench: changed for the warm rebuild\n");
    fs::write(&template, text)?;
    let def_copy = data.join(
        opts.definition
            .file_name()
            .context("definition path has no file name")?,
    );
    fs::copy(&opts.definition, &def_copy)
        .with_context(|| format!("copying {}", opts.definition.display()))?;
    let warm_load = LoadOptions {
        data_root: Some(data.clone()),
        ..opts.load.clone()
    };
    eprintln!(
        "bench: warm rebuild after changing units/{}.hbs …",
        unit.name
    );
    let start = Instant::now();
    let warm = build(&build_opts(&def_copy, &out, &warm_load))?;
    let warm_s = start.elapsed().as_secs_f64();

    let raw = cold.outputs.iter().find(|o| o.kind == "raw");
    let qcow2 = cold
        .outputs
        .iter()
        .find(|o| o.kind == "qcow2")
        .map_or(0, |o| o.size);
    let raw_alloc = match raw {
        Some(r) => allocated(&out.join(&r.file))?,
        None => 0,
    };
    let floor = floor_mm + floor_mkfs;
    let stage = |r: &BuildReport| {
        r.stages
            .iter()
            .find(|s| s.stage == "source-build")
            .map_or(0.0, |s| s.seconds)
    };
    let source_cold = stage(&cold);
    Ok(BenchReport {
        definition: opts.definition.clone(),
        floor_mmdebstrap_seconds: round(floor_mm),
        floor_mkfs_seconds: round(floor_mkfs),
        floor_seconds: round(floor),
        floor_ext4_allocated_bytes: floor_alloc,
        cold_seconds: round(cold_s),
        source_build_cold_seconds: source_cold,
        cold_over_floor: round((cold_s - source_cold) / floor),
        source_build_warm_seconds: stage(&warm),
        warm_seconds: round(warm_s),
        warm_changed_template: format!("units/{}.hbs", unit.name),
        warm_stages: warm.stages,
        raw_bytes: raw.map_or(0, |r| r.size),
        raw_allocated_bytes: raw_alloc,
        qcow2_bytes: qcow2,
        qcow2_over_floor_ext4: round(qcow2 as f64 / floor_alloc.max(1) as f64),
    })
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
    format!(
        "kubebake bench {}\n\n\
         {:<44} {:>9.1} s\n{:<44} {:>9.1} s\n{:<44} {:>9.1} s\n\
         {:<44} {:>9.1} s   {:.2}× floor without source builds (target ≤ 1.3)\n\
         {:<44} {:>9.1} s\n\
         {:<44} {:>9.1} s   (target ≤ 10)\n    stages: {}\n\
         {:<44} {:>9.1} s\n\n\
         {:<44} {:>9.1} MB\n{:<44} {:>9.1} MB   ({} MB apparent)\n\
         {:<44} {:>9.1} MB   {:.2}× floor ext4 (target ≤ 350 MB)\n",
        r.definition.display(),
        "floor: mmdebstrap",
        r.floor_mmdebstrap_seconds,
        "floor: mkfs.ext4 -d",
        r.floor_mkfs_seconds,
        "floor: total",
        r.floor_seconds,
        "kubebake build, cold (empty cache)",
        r.cold_seconds,
        r.cold_over_floor,
        "  of which source builds, cold",
        r.source_build_cold_seconds,
        format!("kubebake build, warm ({} changed)", r.warm_changed_template),
        r.warm_seconds,
        r.warm_stages
            .iter()
            .map(|s| format!("{} {:.1}s", s.stage, s.seconds))
            .collect::<Vec<_>>()
            .join(", "),
        "  of which source builds, warm (cache reused)",
        r.source_build_warm_seconds,
        "floor ext4 image, allocated",
        mb(r.floor_ext4_allocated_bytes),
        "raw image, allocated",
        mb(r.raw_allocated_bytes),
        r.raw_bytes / 1_000_000,
        "qcow2 image",
        mb(r.qcow2_bytes),
        r.qcow2_over_floor_ext4,
    )
}
