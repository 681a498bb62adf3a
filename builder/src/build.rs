//! `kubebake build`: the whole pipeline as one flat function calling the
//! stages in order. Everything is made in a staging directory beside the
//! outputs and moved into place only at the end: a failed build leaves no
//! image behind and nothing half-written in the cache.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::check::{self, Checked};
use crate::children;
use crate::cluster_cache::ClusterCache;
use crate::definition::{Definition, LoadOptions};
use crate::fetch::{self, FetchOptions};
use crate::hostcmd;
use crate::layout::OutputNames;
use crate::locks::{self, Wait};
use crate::manifest::{
    sha256_file, BaseInfo, BootInfo, DefinitionInfo, ImageInfo, Manifest, OutputFile, UnitInfo,
    MANIFEST_FORMAT,
};
use crate::memory_root;
use crate::progress::Progress;
use crate::qcow2::{self, ClusterStats};
use crate::space;
use crate::stages::{disk, generalize, overlay, rootfs, source_build};
use crate::sweep::{self, SweepReport, STAGING_PREFIX};

#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub definition: PathBuf,
    pub out_dir: PathBuf,
    pub cache_dir: PathBuf,
    pub offline: bool,
    /// `--data-root` and `--allow-insecure-urls`.
    pub load: LoadOptions,
    /// The rolectl binary baked into the image.
    pub rolectl: PathBuf,
    pub source_date_epoch: Option<i64>,
    pub progress: Progress,
    /// Fail at once, instead of waiting, when another build is writing the
    /// same output directory.
    pub no_wait: bool,
}

/// What a build produced, for the summary and `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct BuildReport {
    pub image: String,
    pub out_dir: PathBuf,
    pub outputs: Vec<OutputFile>,
    pub manifest: PathBuf,
    pub stages: Vec<StageTime>,
    pub rootfs_reused: bool,
    /// How the qcow2's clusters were made (zero, from the cache, compressed).
    pub qcow2_clusters: Option<ClusterStats>,
    /// What interrupted builds had left and this one removed first.
    pub swept: SweepReport,
    pub total_seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct StageTime {
    pub stage: String,
    pub seconds: f64,
}

/// Times the stages and shows a spinner for the running one.
struct Stages {
    progress: Progress,
    times: Vec<StageTime>,
}

impl Stages {
    fn run<T>(&mut self, name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let bar = self.progress.stage(name);
        let start = Instant::now();
        let result = f();
        let elapsed = start.elapsed();
        bar.finish_and_clear();
        self.progress.println(&format!(
            "{} {name} ({:.1}s)",
            if result.is_ok() { "✓" } else { "✗" },
            elapsed.as_secs_f64()
        ));
        self.times.push(StageTime {
            stage: name.to_string(),
            seconds: round(elapsed),
        });
        result.with_context(|| format!("stage {name} failed"))
    }
}

fn round(d: Duration) -> f64 {
    (d.as_secs_f64() * 100.0).round() / 100.0
}

pub fn build(opts: &BuildOptions) -> Result<BuildReport> {
    let started = Instant::now();
    let mut stages = Stages {
        progress: opts.progress.clone(),
        times: Vec::new(),
    };

    // Inputs first: host tools, the definition, the templates, the role
    // proof. Nothing is downloaded or written before all of them pass.
    let (def, rendered) = stages.run("validate", || {
        hostcmd::require(hostcmd::BUILD_TOOLS)?;
        let Checked { def, rendered } = check::load_checked(&opts.definition, &opts.load)?;
        check::require_rolectl(&opts.rolectl)?;
        Ok((def, rendered))
    })?;
    let epoch = opts.source_date_epoch;
    let clamp_to = epoch.unwrap_or_else(now_epoch);
    if epoch.is_none() {
        opts.progress.println(
            "note: SOURCE_DATE_EPOCH is not set: timestamps use the current time and the image is not reproducible",
        );
    }

    // The output directory belongs to this build until it ends (the lock
    // dies with the process); what killed builds left there and in the
    // cache goes first.
    fs::create_dir_all(&opts.out_dir)
        .with_context(|| format!("creating the output directory {}", opts.out_dir.display()))?;
    let _out_lock = locks::exclusive(
        &opts.out_dir,
        if opts.no_wait {
            Wait::Fail
        } else {
            Wait::Block
        },
        &format!(
            "another kubebake build is writing {}",
            opts.out_dir.display()
        ),
    )?;
    let mut swept = sweep::out_dir(&opts.out_dir, true)?;
    swept.extend(sweep::cache(&opts.cache_dir)?);
    if !swept.removed.is_empty() {
        opts.progress.println(&format!(
            "note: removed {} left by interrupted builds ({})",
            crate::output::human_size(swept.bytes()),
            swept
                .removed
                .iter()
                .map(|r| r.path.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }

    let fetched = stages.run("fetch", || {
        let mut fo = FetchOptions::new(opts.cache_dir.clone());
        fo.offline = opts.offline;
        fo.progress = opts.progress.clone();
        Ok(fetch::fetch_artifacts_blocking(&def, &fo)?)
    })?;

    let built = stages.run("source-build", || {
        source_build::build_all(
            &def,
            &fetched,
            &opts.cache_dir,
            epoch,
            opts.offline,
            &opts.progress,
        )
    })?;

    let staging = tempfile::Builder::new()
        .prefix(&format!("{STAGING_PREFIX}{}-", def.name))
        .tempdir_in(&opts.out_dir)
        .with_context(|| format!("creating a staging directory in {}", opts.out_dir.display()))?;
    let _staging_interrupted = children::temporary(staging.path());
    // The root tree lives in memory when there is room (memory_root.rs).
    let root_dir = memory_root::root_dir(staging.path(), &def.name)?;
    let root = root_dir.path().to_path_buf();
    let work = staging.path().join("work");
    fs::create_dir_all(&work)?;

    let base = stages.run("rootfs", || {
        let base = rootfs::ensure_base(&def, &opts.cache_dir, epoch, opts.offline)?;
        let tree_dir = root.parent().unwrap_or(&root);
        let tree_bytes = fs::metadata(&base.path).map_or(0, |m| m.len());
        space::require(
            tree_dir,
            tree_bytes,
            "the root tree",
            "free some space or use another --out",
        )?;
        rootfs::unpack(&base.path, &root)
            .map_err(|e| space::explain(e, tree_dir, "the root tree", Some(tree_bytes)))?;
        Ok(base)
    })?;
    let packages = rootfs::installed_packages(&root)?;
    rootfs::check_pins(&def, &packages)?;

    let identity = disk::Identity::derive(&def.name, &def.version);
    let (artifacts, builds, container_images, files) = stages.run("overlay", || {
        let artifacts = overlay::install_artifacts(&root, &def, &fetched)?;
        let builds = overlay::install_built(&root, &def, &built)?;
        let images = overlay::bake_container_images(&root, &def, &built, clamp_to)?;
        let mut files = overlay::write_rendered(&root, &rendered)?;
        overlay::make_links(&root, &def)?;
        files.push(overlay::install_rolectl(&root, &opts.rolectl)?);
        files.push(overlay::write_fstab(&root, &identity.root_uuid)?);
        overlay::enable_units(&root, &def)?;
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok((artifacts, builds, images, files))
    })?;

    stages.run("generalize", || {
        let report = generalize::generalize(&root, clamp_to)?;
        tracing::info!(
            "generalize: removed {} entries, emptied {} logs, clamped {} timestamps",
            report.removed.len(),
            report.logs_truncated,
            report.clamped
        );
        Ok(())
    })?;

    let names = OutputNames::new(&def.name);
    let boot = disk::find_kernel(&root)?;
    let raw = staging.path().join(&names.raw);
    // The images are written beside the outputs: check for room first (the
    // raw image holds about the tree; the qcow2 about half of it).
    let tree_bytes = sweep::tree_size(&root);
    let raw_bytes = tree_bytes + tree_bytes / 10 + (64 << 20);
    let image_bytes = raw_bytes + if def.outputs.qcow2 { tree_bytes / 2 } else { 0 };
    space::require(
        &opts.out_dir,
        image_bytes,
        &format!(
            "the raw{} image",
            if def.outputs.qcow2 { " and qcow2" } else { "" }
        ),
        "free some space or use another --out",
    )?;
    stages
        .run("disk", || {
            disk::build_raw(
                &root,
                &boot,
                &identity,
                def.outputs.disk_size,
                clamp_to,
                &work,
                &raw,
            )?;
            disk::export_boot_files(
                &boot,
                &staging.path().join(&names.kernel),
                &staging.path().join(&names.initrd),
            )
        })
        .map_err(|e| space::explain(e, staging.path(), "the raw image", Some(raw_bytes)))?;
    // The root tree is no longer needed; free its space before qcow2.
    fs::remove_dir_all(&root).ok();
    drop(root_dir);

    let qcow2 = staging.path().join(&names.qcow2);
    let mut clusters = None;
    let mut outputs = stages.run("qcow2+hash", || {
        // One pass over the raw image: its digest and the compressed qcow2,
        // with unchanged clusters taken from the cache (see qcow2.rs).
        let cache = ClusterCache::open(&opts.cache_dir, &def.name, qcow2::cache_header());
        let converted = qcow2::convert(
            &raw,
            def.outputs.qcow2.then_some(qcow2.as_path()),
            Some(&cache),
        )
        .map_err(|e| space::explain(e, staging.path(), "the qcow2 image", Some(tree_bytes / 2)))?;
        let s = converted.stats;
        opts.progress.println(&format!(
            "  qcow2: {} clusters: {} zero, {} from the cache, {} compressed",
            s.total, s.zero, s.reused, s.compressed
        ));
        clusters = Some(s);
        let mut outputs = Vec::new();
        if def.outputs.raw {
            outputs.push(output("raw", &names.raw, &raw, Some(converted.raw_sha256))?);
        }
        if def.outputs.qcow2 {
            outputs.push(output(
                "qcow2",
                &names.qcow2,
                &qcow2,
                converted.qcow2_sha256,
            )?);
        }
        outputs.push(output(
            "kernel",
            &names.kernel,
            &staging.path().join(&names.kernel),
            None,
        )?);
        outputs.push(output(
            "initrd",
            &names.initrd,
            &staging.path().join(&names.initrd),
            None,
        )?);
        Ok(outputs)
    })?;
    if !def.outputs.raw {
        fs::remove_file(&raw).ok();
    }

    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        kubebake_version: env!("CARGO_PKG_VERSION").to_string(),
        image: ImageInfo {
            name: def.name.clone(),
            version: def.version.clone(),
        },
        build_time: humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + Duration::from_secs(clamp_to.max(0) as u64),
        )
        .to_string(),
        source_date_epoch: epoch,
        definition: DefinitionInfo {
            path: def.source.display().to_string(),
            sha256: sha256_file(&def.source)?,
        },
        base: BaseInfo {
            suite: def.base.suite.clone(),
            mirror: def.base.mirror.to_string(),
            rootfs_cache_key: base.key.clone(),
        },
        boot: BootInfo {
            kernel_version: boot.version.clone(),
            cmdline: disk::kernel_cmdline(&identity),
            root_uuid: identity.root_uuid.clone(),
        },
        outputs: outputs.clone(),
        artifacts,
        builds,
        container_images,
        packages,
        files,
        units: unit_infos(&def, &rendered),
    };
    manifest.write(&staging.path().join(&names.manifest))?;

    // Move the finished outputs into place. The old manifest goes first and
    // the new one last, so a manifest always describes the images beside it
    // (a build killed in between leaves images without a manifest: not
    // complete). SIGINT/SIGTERM wait for this to finish (children.rs).
    {
        let _publishing = children::publishing();
        let old_manifest = opts.out_dir.join(&names.manifest);
        match fs::remove_file(&old_manifest) {
            Ok(()) => sync_dir(&opts.out_dir)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| format!("removing {}", old_manifest.display()))
            }
        }
        for o in &outputs {
            publish(staging.path(), &opts.out_dir, &o.file)?;
        }
        sync_dir(&opts.out_dir)?;
        publish(staging.path(), &opts.out_dir, &names.manifest)?;
        sync_dir(&opts.out_dir)?;
    }
    outputs.sort_by(|a, b| a.kind.cmp(&b.kind));
    Ok(BuildReport {
        image: def.name.clone(),
        out_dir: opts.out_dir.clone(),
        outputs,
        manifest: opts.out_dir.join(&names.manifest),
        stages: stages.times,
        rootfs_reused: base.reused,
        qcow2_clusters: clusters,
        swept,
        total_seconds: round(started.elapsed()),
    })
}

fn now_epoch() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn output(kind: &str, file: &str, path: &Path, sha256: Option<String>) -> Result<OutputFile> {
    Ok(OutputFile {
        kind: kind.to_string(),
        file: file.to_string(),
        size: fs::metadata(path)
            .with_context(|| format!("reading {}", path.display()))?
            .len(),
        sha256: match sha256 {
            Some(s) => s,
            None => sha256_file(path)?,
        },
    })
}

fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}

fn publish(staging: &Path, out_dir: &Path, file: &str) -> Result<()> {
    let dest = out_dir.join(file);
    fs::rename(staging.join(file), &dest)
        .with_context(|| format!("moving {} into place", dest.display()))
}

fn unit_infos(def: &Definition, rendered: &[crate::render::RenderedFile]) -> Vec<UnitInfo> {
    let mut units: Vec<UnitInfo> = def
        .units
        .iter()
        .map(|u| UnitInfo {
            name: u.name.clone(),
            role: u.role.map(|r| r.as_str().to_string()),
            conditions: crate::render::unit_marker_conditions(&u.name, rendered),
            masked: false,
        })
        .collect();
    units.extend(def.mask.iter().map(|m| UnitInfo {
        name: m.clone(),
        role: None,
        conditions: Vec::new(),
        masked: true,
    }));
    units
}
