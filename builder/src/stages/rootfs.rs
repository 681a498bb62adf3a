//! Stage 1: the Debian base root filesystem, made by mmdebstrap from the
//! definition's suite, mirror and (pinned) packages.
//!
//! The tarball is cached under `<cache>/rootfs/<key>.tar`, where the key hashes
//! every input that changes its bytes (suite, mirror, packages, variant,
//! SOURCE_DATE_EPOCH, the mmdebstrap version). A warm rebuild that only changed
//! a unit template therefore skips mmdebstrap and only unpacks the tarball.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use sha2::{Digest as _, Sha256};

use crate::definition::Definition;
use crate::hostcmd;
use crate::manifest::InstalledPackage;
use crate::{children, locks, space, sweep};

/// Bumped whenever the way this stage calls mmdebstrap changes.
const STAGE_FORMAT: &str = "rootfs-v2";
/// dpkg path filters, as in Debian's slim container images: no manual pages,
/// info pages, translations or documentation besides the copyright files
/// (licences stay). They stay in the image (/etc/dpkg/dpkg.cfg.d/), so
/// packages installed later on a node follow the same policy. About 75 MB
/// less root filesystem and 20 MB less qcow2 for the source-built image.
const DPKG_FILTERS: &[&str] = &[
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
];
/// The mmdebstrap variant: Essential plus apt; everything else is listed.
const VARIANT: &str = "apt";

/// The cached base tarball and whether it was made now or reused.
pub struct BaseTarball {
    pub path: PathBuf,
    pub key: String,
    pub reused: bool,
}

/// The cache key: a hash of every input of mmdebstrap.
pub fn cache_key(def: &Definition, source_date_epoch: Option<i64>) -> Result<String> {
    let include: Vec<String> = def.base.packages.iter().map(|p| p.spec()).collect();
    Ok(Mmdebstrap {
        variant: VARIANT,
        suite: &def.base.suite,
        mirror: def.base.mirror.as_str(),
        include: &include,
        options: &[],
    }
    .cache_key(STAGE_FORMAT, source_date_epoch))
}

/// Returns the cached base tarball for `def`, running mmdebstrap if needed.
/// A failed run leaves nothing under the final name.
pub fn ensure_base(
    def: &Definition,
    cache: &Path,
    source_date_epoch: Option<i64>,
    offline: bool,
) -> Result<BaseTarball> {
    let key = cache_key(def, source_date_epoch)?;
    let dir = cache.join("rootfs");
    let path = dir.join(format!("{key}.tar"));
    // Two builds needing the same base: the second waits, then reuses it.
    let entry = format!("rootfs-{key}");
    let _lock = locks::entry(cache, &entry)?;
    if path.is_file() {
        return Ok(BaseTarball {
            path,
            key,
            reused: true,
        });
    }
    if offline {
        bail!(
            "the base root filesystem for {} (suite {}, {} packages) is not in the cache {} and \
             --offline forbids running mmdebstrap against {}; build once on a connected machine \
             with the same --cache",
            def.name,
            def.base.suite,
            def.base.packages.len(),
            dir.display(),
            def.base.mirror
        );
    }
    let include: Vec<String> = def.base.packages.iter().map(|p| p.spec()).collect();
    Mmdebstrap {
        variant: VARIANT,
        suite: &def.base.suite,
        mirror: def.base.mirror.as_str(),
        include: &include,
        options: &[],
    }
    .write_tar(
        &path,
        &entry,
        source_date_epoch,
        "the base root filesystem tarball",
    )
    .with_context(|| {
        format!(
            "building the Debian {} base with mmdebstrap; check base.packages in {} \
             (a pinned version that the mirror no longer carries fails here)",
            def.base.suite,
            def.source.display()
        )
    })?;
    Ok(BaseTarball {
        path,
        key,
        reused: false,
    })
}

/// The mmdebstrap call for `def`, writing `format` (tar or directory) to `target`.
pub fn mmdebstrap_command(
    def: &Definition,
    format: &str,
    target: &Path,
    source_date_epoch: Option<i64>,
) -> Command {
    let include: Vec<String> = def.base.packages.iter().map(|p| p.spec()).collect();
    mmdebstrap(
        &Mmdebstrap {
            variant: VARIANT,
            suite: &def.base.suite,
            mirror: def.base.mirror.as_str(),
            include: &include,
            options: &[],
        },
        format,
        target,
        source_date_epoch,
    )
}

/// One mmdebstrap run: what differs between the node's root and other
/// Debian roots (the conformance suite's test images).
pub struct Mmdebstrap<'a> {
    pub variant: &'a str,
    pub suite: &'a str,
    pub mirror: &'a str,
    /// Packages, each `name=version`.
    pub include: &'a [String],
    /// Further mmdebstrap options (hooks, skips).
    pub options: &'a [String],
}

impl Mmdebstrap<'_> {
    /// Runs mmdebstrap into a tar at `dest`, through a temporary file in
    /// its directory (named for the cache `entry`): a failed or interrupted
    /// run leaves nothing under `dest`. `what` names it in a full disk's
    /// error.
    pub fn write_tar(
        &self,
        dest: &Path,
        entry: &str,
        source_date_epoch: Option<i64>,
        what: &str,
    ) -> Result<()> {
        let dir = dest.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let tmp = tempfile::Builder::new()
            .prefix(&sweep::temp_prefix(entry))
            .suffix(".tar")
            .tempfile_in(dir)
            .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
        let _interrupted = children::temporary(tmp.path());
        let mut cmd = mmdebstrap(self, "tar", tmp.path(), source_date_epoch);
        hostcmd::run(&mut cmd).map_err(|e| space::explain(e, dir, what, None))?;
        tmp.persist(dest)
            .with_context(|| format!("storing {}", dest.display()))?;
        Ok(())
    }

    /// A hash of every input of the run (and `stage`, the caller's format
    /// version), for a cache of its output.
    pub fn cache_key(&self, stage: &str, source_date_epoch: Option<i64>) -> String {
        let mut packages = self.include.to_vec();
        packages.sort();
        let filters = DPKG_FILTERS.join(",");
        let options = self.options.join(",");
        let epoch = source_date_epoch.map_or("unset".into(), |e| e.to_string());
        let version = mmdebstrap_version();
        let mut parts = vec![stage, self.variant, &filters];
        // Keys of runs without options stay what they were before options.
        if !self.options.is_empty() {
            parts.push(&options);
        }
        let packages = packages.join(",");
        parts.extend([self.suite, self.mirror, &packages, &epoch, &version]);
        let mut h = Sha256::new();
        for part in parts {
            h.update(part.as_bytes());
            h.update([0]);
        }
        hex::encode(h.finalize())
    }
}

/// The mmdebstrap call for `m`, with the slim-image dpkg filters, writing
/// `format` (tar or directory) to `target`.
pub fn mmdebstrap(
    m: &Mmdebstrap,
    format: &str,
    target: &Path,
    source_date_epoch: Option<i64>,
) -> Command {
    let mut cmd = Command::new("mmdebstrap");
    cmd.arg(format!("--variant={}", m.variant))
        .arg(format!("--format={format}"))
        .arg("--quiet")
        .args(DPKG_FILTERS.iter().map(|f| format!("--dpkgopt={f}")))
        .args(m.options)
        .arg(format!("--include={}", m.include.join(",")))
        .arg(m.suite)
        .arg(target)
        .arg(m.mirror);
    match source_date_epoch {
        Some(epoch) => cmd.env("SOURCE_DATE_EPOCH", epoch.to_string()),
        None => cmd.env_remove("SOURCE_DATE_EPOCH"),
    };
    cmd
}

/// The mmdebstrap version, for cache keys.
pub fn mmdebstrap_version() -> String {
    hostcmd::stdout(Command::new("mmdebstrap").arg("--version"))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Unpacks the base tarball into an empty staging root, keeping owners,
/// modes and extended attributes (file capabilities).
pub fn unpack(tarball: &Path, root: &Path) -> Result<()> {
    fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    hostcmd::run(
        Command::new("tar")
            .arg("--numeric-owner")
            .arg("--xattrs")
            .arg("--xattrs-include=*")
            .arg("-xpf")
            .arg(tarball)
            .arg("-C")
            .arg(root),
    )
    .with_context(|| format!("unpacking {}", tarball.display()))?;
    Ok(())
}

/// Lists the Debian packages installed in `root` from its dpkg database.
pub fn installed_packages(root: &Path) -> Result<Vec<InstalledPackage>> {
    let out = hostcmd::stdout(
        Command::new("dpkg-query")
            .arg(format!(
                "--admindir={}",
                root.join("var/lib/dpkg").display()
            ))
            .arg("-W")
            .arg("-f=${Package}\\t${Version}\\t${Architecture}\\n"),
    )?;
    let mut packages: Vec<InstalledPackage> = out
        .lines()
        .filter_map(|line| {
            let mut f = line.split('\t');
            Some(InstalledPackage {
                name: f.next()?.to_string(),
                version: f.next()?.to_string(),
                architecture: f.next()?.to_string(),
            })
        })
        .collect();
    packages.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(packages)
}

/// Proves every package of the definition is installed, at its pinned version.
pub fn check_pins(def: &Definition, installed: &[InstalledPackage]) -> Result<()> {
    let mut problems = Vec::new();
    for (i, want) in def.base.packages.iter().enumerate() {
        match installed.iter().find(|p| p.name == want.name) {
            None => problems.push(format!(
                "base.packages[{i}] {} is not installed in the image",
                want.name
            )),
            Some(got) => {
                if let Some(v) = &want.version {
                    if &got.version != v {
                        problems.push(format!(
                            "base.packages[{i}] {} is pinned to {v} but {} got installed",
                            want.name, got.version
                        ));
                    }
                }
            }
        }
    }
    if !problems.is_empty() {
        bail!("{}: {}", def.source.display(), problems.join("; "));
    }
    Ok(())
}
