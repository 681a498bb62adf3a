//! Stage "source-build": artifacts built here from pinned inputs.
//!
//! Every `builds:` entry becomes a cache entry `<cache>/builds/<name>-<key>/`
//! made by this module (key, lock, reuse, staging, output check, provenance,
//! rename). A Go build fills it with `go build` (`go_build.rs`); a recipe
//! build as follows.
//!
//! For each recipe entry of the definition:
//!
//! 1. A cache key is computed over every input: the source digests and how
//!    they are unpacked, the patch files' contents (a quilt series inside a
//!    source is covered by that source's digest), the recipe's content, the
//!    pinned toolchain packages (checked against what the host has installed),
//!    the declared outputs, `SOURCE_DATE_EPOCH`, the recipe contract version,
//!    the host architecture and Debian release.
//! 2. `<cache>/builds/<name>-<key>/` holds a finished build: `out/` with the
//!    outputs and `provenance.json`. It is reused when its outputs still have
//!    the recorded digests; a damaged entry is removed and rebuilt.
//! 3. Otherwise, in a fresh directory under `<cache>/tmp/`: tarball sources
//!    are unpacked into `tree/` (GNU tar, `--strip-components`), others copied
//!    into `sources/`; the patches are applied in order with `patch -p1`
//!    (`--forward`, so a patch that does not apply fails the build); the
//!    recipe runs as `bash RECIPE` in `tree/` with a cleared environment:
//!
//!    | variable | value |
//!    | --- | --- |
//!    | `KUBEBAKE_OUT` | empty directory: write exactly the declared outputs here |
//!    | `KUBEBAKE_SOURCES` | every source file, by its URL's file name |
//!    | `KUBEBAKE_VERSION` | the build's `version` |
//!    | `KUBEBAKE_JOBS` | the number of CPUs |
//!    | `SOURCE_DATE_EPOCH` | the build's epoch (0 when unset) |
//!    | `HOME`, `TMPDIR` | fresh empty directories |
//!    | `PATH` | `/usr/sbin:/usr/bin:/sbin:/bin` |
//!    | `LANG` | `C.UTF-8` |
//!
//!    Its output goes to `build.log`, kept under `<cache>/logs/` on failure.
//! 4. The outputs must be exactly the declared ones (regular files). They are
//!    hashed, `provenance.json` is written and fsynced, and the entry is
//!    renamed into place: a cache entry is complete or absent.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use sha2::{Digest as _, Sha256};

use crate::children;
use crate::definition::{Build, BuildKind, Definition, Patch, RecipeBuild};
use crate::fetch::Fetched;
use crate::hostcmd;
use crate::locks;
use crate::manifest::{
    sha256_file, GoInfo, GoOutputInfo, OutputInfo, PatchInfo, Provenance, RecipeInfo, SourceInfo,
    ToolchainPackage,
};
use crate::progress::Progress;
use crate::sweep;

use super::go_build;

/// Bumped whenever the recipe contract (environment, layout) changes.
const RECIPE_CONTRACT: &str = "kubebake-recipe-v1";

/// A build whose outputs are ready in the cache.
#[derive(Debug, Clone)]
pub struct Built {
    pub provenance: Provenance,
    /// `<cache>/builds/<name>-<key>/out`.
    pub out_dir: PathBuf,
    /// Whether the cache entry existed before this run.
    pub reused: bool,
}

impl Built {
    /// The host path of one output.
    pub fn output_path(&self, output: &str) -> PathBuf {
        self.out_dir.join(output)
    }
}

/// Finds the built output `build/output` among `built`.
pub fn find_output(built: &[Built], build: &str, output: &str) -> Result<(PathBuf, OutputInfo)> {
    let b = built
        .iter()
        .find(|b| b.provenance.name == build)
        .with_context(|| format!("build {build} was not run"))?;
    let info = b
        .provenance
        .outputs
        .iter()
        .find(|o| o.name == output)
        .with_context(|| format!("build {build} has no output {output}"))?;
    Ok((b.output_path(output), info.clone()))
}

/// Runs (or reuses) every build of the definition, in order.
pub fn build_all(
    def: &Definition,
    fetched: &[Fetched],
    cache_dir: &Path,
    epoch: Option<i64>,
    offline: bool,
    progress: &Progress,
) -> Result<Vec<Built>> {
    def.builds
        .iter()
        .map(|b| build_one(b, fetched, cache_dir, epoch, offline, progress))
        .collect()
}

/// Runs (or reuses) one build; `fetched` holds a recipe build's sources (a
/// Go build needs none: `go` fetches its modules). Tools that are not part
/// of any image (`kube_bench`) are built this way from a [`Build`] they
/// make themselves.
pub fn build_one(
    b: &Build,
    fetched: &[Fetched],
    cache_dir: &Path,
    epoch: Option<i64>,
    offline: bool,
    progress: &Progress,
) -> Result<Built> {
    let cx = Entry {
        build: b,
        toolchain: check_toolchain(b)?,
        cache_dir,
        epoch,
        progress,
    };
    match &b.kind {
        BuildKind::Recipe(r) => ensure_recipe_built(&cx, r, fetched),
        BuildKind::Go(g) => go_build::ensure_built(&cx, g, offline),
    }
    .with_context(|| format!("build {} {}", b.name, b.version))
}

/// What every kind of build shares: the build, its checked Debian
/// toolchain, the cache and the epoch.
pub(crate) struct Entry<'a> {
    pub build: &'a Build,
    pub toolchain: Vec<ToolchainPackage>,
    pub cache_dir: &'a Path,
    pub epoch: Option<i64>,
    pub progress: &'a Progress,
}

/// The directories of one build run, under `<cache>/tmp/`.
pub(crate) struct Workdir {
    pub root: PathBuf,
    pub tree: PathBuf,
    pub out: PathBuf,
    pub home: PathBuf,
    pub tmpdir: PathBuf,
    pub log: PathBuf,
    staged: PathBuf,
}

/// What a build run reports besides the output files: the kind's own
/// provenance. The entry adds name, version, toolchain, cache key, time and
/// the checked outputs.
#[derive(Debug, Default)]
pub(crate) struct Made {
    pub recipe: Option<RecipeInfo>,
    pub sources: Vec<SourceInfo>,
    pub patches: Vec<PatchInfo>,
    pub go: Option<GoInfo>,
    /// Go builds: where each output came from, by output name.
    pub origins: BTreeMap<String, GoOutputInfo>,
    pub source_date_epoch: Option<i64>,
}

impl Entry<'_> {
    /// Reuses the cache entry for `key`, or runs `make` in a fresh
    /// [`Workdir`] and moves the result into place. `make` writes the
    /// outputs into `Workdir::out` and reports its provenance ([`Made`]);
    /// the outputs are checked and hashed here.
    pub fn cached_or_build(
        &self,
        key: &str,
        make: impl FnOnce(&Workdir, &indicatif::ProgressBar) -> Result<Made>,
    ) -> Result<Built> {
        let b = self.build;
        let entry_name = format!("{}-{}", b.name, &key[..32]);
        let entry = self.cache_dir.join("builds").join(&entry_name);
        // One build of an entry at a time; a second build waits, then reuses it.
        let lock_name = format!("builds-{entry_name}");
        let _lock = locks::entry(self.cache_dir, &lock_name)?;
        if let Some(built) = reuse(&entry, key)? {
            self.progress.println(&format!(
                "  {} {}: cached build reused ({})",
                b.name,
                b.version,
                entry.display()
            ));
            return Ok(built);
        }

        let tmp_root = self.cache_dir.join("tmp");
        fs::create_dir_all(&tmp_root)
            .with_context(|| format!("creating {}", tmp_root.display()))?;
        let tmp = tempfile::Builder::new()
            .prefix(&sweep::temp_prefix(&lock_name))
            .tempdir_in(&tmp_root)
            .with_context(|| format!("creating a build directory in {}", tmp_root.display()))?;
        let _interrupted = children::temporary(tmp.path());
        let staged = tmp.path().join("entry");
        let work = Workdir {
            root: tmp.path().to_path_buf(),
            tree: tmp.path().join("tree"),
            out: staged.join("out"),
            home: tmp.path().join("home"),
            tmpdir: tmp.path().join("tmp"),
            log: tmp.path().join("build.log"),
            staged,
        };
        for d in [&work.tree, &work.out, &work.home, &work.tmpdir] {
            fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }

        let started = Instant::now();
        let bar = self
            .progress
            .stage(&format!("source-build {} {}", b.name, b.version));
        let result = make(&work, &bar);
        bar.finish_and_clear();
        let made = match result {
            Ok(m) => m,
            Err(e) => {
                let kept = keep_log(self.cache_dir, &b.name, key, &work.log);
                return Err(e.context(format!("its full log is {}", kept.display())));
            }
        };
        let build_seconds = (started.elapsed().as_secs_f64() * 10.0).round() / 10.0;
        let mut outputs = check_outputs(b, &work.out)?;
        for o in &mut outputs {
            o.go = made.origins.get(&o.name).cloned();
        }
        let provenance = Provenance {
            name: b.name.clone(),
            version: b.version.clone(),
            cache_key: key.to_string(),
            recipe: made.recipe,
            sources: made.sources,
            patches: made.patches,
            go: made.go,
            toolchain: self.toolchain.clone(),
            source_date_epoch: made.source_date_epoch,
            outputs,
            build_seconds,
        };
        write_durable(
            &work.staged.join("provenance.json"),
            serde_json::to_string_pretty(&provenance)?.as_bytes(),
        )?;
        for o in &provenance.outputs {
            fs::File::open(work.out.join(&o.name))
                .and_then(|f| f.sync_all())
                .with_context(|| format!("syncing output {}", o.name))?;
        }
        fs::create_dir_all(entry.parent().unwrap_or(self.cache_dir))?;
        match fs::rename(&work.staged, &entry) {
            Ok(()) => {}
            // Another build finished the same entry first: keep that one.
            Err(_) if entry.join("provenance.json").is_file() => {}
            Err(e) => {
                return Err(e).with_context(|| format!("moving the build into {}", entry.display()))
            }
        }
        sync_dir(entry.parent().unwrap_or(self.cache_dir));
        self.progress.println(&format!(
            "  {} {}: built in {:.0}s, cached as {}",
            b.name,
            b.version,
            build_seconds,
            entry.display()
        ));
        Ok(Built {
            provenance,
            out_dir: entry.join("out"),
            reused: false,
        })
    }
}

/// The cache key over `inputs` (a JSON document of every input) plus what
/// every build shares: the kind's contract, host architecture and Debian
/// release, name, version, declared outputs and Debian toolchain.
pub(crate) fn entry_key(
    b: &Build,
    contract: &str,
    toolchain: &[ToolchainPackage],
    inputs: serde_json::Value,
) -> String {
    let os_release = fs::read_to_string("/etc/debian_version").unwrap_or_default();
    let doc = serde_json::json!({
        "contract": contract,
        "arch": std::env::consts::ARCH,
        "debian": os_release.trim(),
        "name": b.name,
        "version": b.version,
        "toolchain": toolchain,
        "outputs": b.outputs.iter().map(|o| o.name.clone()).collect::<Vec<_>>(),
        "inputs": inputs,
    });
    hex::encode(Sha256::digest(doc.to_string().as_bytes()))
}

fn ensure_recipe_built(cx: &Entry<'_>, r: &RecipeBuild, fetched: &[Fetched]) -> Result<Built> {
    let (b, epoch) = (cx.build, cx.epoch);
    let sources = r
        .sources
        .iter()
        .map(|s| {
            let name = format!("{}/{}", b.name, s.file_name);
            let f = fetched
                .iter()
                .find(|f| f.name == name)
                .with_context(|| format!("source {} was not fetched", s.file_name))?;
            Ok((s, f))
        })
        .collect::<Result<Vec<_>>>()?;
    let recipe_sha = sha256_file(&r.recipe_path)?;
    let mut patch_files = Vec::new();
    for p in &r.patches {
        if let Patch::File { file, path } = p {
            patch_files.push((file.clone(), sha256_file(path)?));
        }
    }
    let key = recipe_key(
        b,
        r,
        &sources,
        &recipe_sha,
        &patch_files,
        &cx.toolchain,
        epoch,
    );
    cx.cached_or_build(&key, |work, bar| {
        let src_dir = work.root.join("sources");
        fs::create_dir_all(&src_dir).with_context(|| format!("creating {}", src_dir.display()))?;
        let mut source_infos = Vec::new();
        for (s, f) in &sources {
            let dest = src_dir.join(&s.file_name);
            fs::copy(&f.path, &dest)
                .with_context(|| format!("copying {} to {}", f.path.display(), dest.display()))?;
            if let Some(u) = s.unpack {
                hostcmd::run(
                    Command::new("tar")
                        .arg("-xf")
                        .arg(&dest)
                        .arg("-C")
                        .arg(&work.tree)
                        .arg(format!("--strip-components={}", u.strip_components))
                        .arg("--no-same-owner"),
                )
                .with_context(|| format!("unpacking source {}", s.file_name))?;
            }
            source_infos.push(SourceInfo {
                url: s.url.to_string(),
                digest: s.digest.to_string(),
                sha256: f.sha256.hex(),
            });
        }
        let patches = apply_patches(r, &work.tree)?;
        run_recipe(b, r, work, &src_dir, epoch, bar)
            .with_context(|| format!("the recipe {} failed", r.recipe_path.display()))?;
        Ok(Made {
            recipe: Some(RecipeInfo {
                path: r.recipe.clone(),
                sha256: recipe_sha.clone(),
            }),
            sources: source_infos,
            patches,
            source_date_epoch: epoch,
            ..Made::default()
        })
    })
}

/// Checks every pinned toolchain package against the host's dpkg database.
fn check_toolchain(b: &Build) -> Result<Vec<ToolchainPackage>> {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for p in &b.toolchain {
        let pinned = p.version.clone().unwrap_or_default();
        let installed = Command::new("dpkg-query")
            .args(["-W", "-f", "${db:Status-Abbrev}${Version}"])
            .arg(&p.name)
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .and_then(|s| s.strip_prefix("ii ").map(|v| v.trim().to_string()));
        match installed {
            Some(v) if v == pinned => out.push(ToolchainPackage {
                package: p.name.clone(),
                version: v,
            }),
            Some(v) => problems.push(format!(
                "{} is installed at {v}, the definition pins {pinned}",
                p.name
            )),
            None => problems.push(format!("{} is not installed", p.name)),
        }
    }
    if !problems.is_empty() {
        bail!(
            "toolchain of build {}: {}; install the pinned versions with `apt-get install {}` (scripts/setup-host.sh does)",
            b.name,
            problems.join("; "),
            b.toolchain
                .iter()
                .map(|p| p.spec())
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    Ok(out)
}

fn recipe_key(
    b: &Build,
    r: &RecipeBuild,
    sources: &[(&crate::definition::Source, &Fetched)],
    recipe_sha: &str,
    patch_files: &[(String, String)],
    toolchain: &[ToolchainPackage],
    epoch: Option<i64>,
) -> String {
    entry_key(
        b,
        RECIPE_CONTRACT,
        toolchain,
        serde_json::json!({
            "sources": sources.iter().map(|(s, _)| serde_json::json!({
                "file": s.file_name,
                "digest": s.digest.to_string(),
                "unpack": s.unpack.map(|u| u.strip_components),
            })).collect::<Vec<_>>(),
            "patches": r.patches.iter().map(|p| match p {
                Patch::File { file, .. } => serde_json::json!({
                    "file": file,
                    "sha256": patch_files.iter().find(|(f, _)| f == file).map(|(_, h)| h.clone()),
                }),
                Patch::Series { series } => serde_json::json!({ "series": series }),
            }).collect::<Vec<_>>(),
            "recipe": recipe_sha,
            "source_date_epoch": epoch,
        }),
    )
}

/// A complete cache entry whose outputs still match, or `None` (a damaged
/// entry is removed).
fn reuse(entry: &Path, key: &str) -> Result<Option<Built>> {
    let prov_path = entry.join("provenance.json");
    let Ok(text) = fs::read_to_string(&prov_path) else {
        if entry.exists() {
            fs::remove_dir_all(entry).ok();
        }
        return Ok(None);
    };
    let damaged = |why: String| -> Result<Option<Built>> {
        tracing::warn!(
            "cached build {} is damaged ({why}); rebuilding",
            entry.display()
        );
        fs::remove_dir_all(entry)
            .with_context(|| format!("removing the damaged cache entry {}", entry.display()))?;
        Ok(None)
    };
    let provenance: Provenance = match serde_json::from_str(&text) {
        Ok(p) => p,
        Err(e) => return damaged(format!("unreadable provenance.json: {e}")),
    };
    if provenance.cache_key != key {
        return damaged("cache key differs".to_string());
    }
    let out_dir = entry.join("out");
    for o in &provenance.outputs {
        match sha256_file(&out_dir.join(&o.name)) {
            Ok(h) if h == o.sha256 => {}
            Ok(h) => return damaged(format!("output {} is {h}, recorded {}", o.name, o.sha256)),
            Err(e) => return damaged(format!("output {}: {e:#}", o.name)),
        }
    }
    Ok(Some(Built {
        provenance,
        out_dir,
        reused: true,
    }))
}

/// Applies the patches in order and returns what was applied.
fn apply_patches(r: &RecipeBuild, tree: &Path) -> Result<Vec<PatchInfo>> {
    let mut applied = Vec::new();
    for p in &r.patches {
        match p {
            Patch::File { file, path } => {
                apply_patch(tree, path, 1).with_context(|| format!("applying patch {file}"))?;
                applied.push(PatchInfo {
                    path: file.clone(),
                    sha256: sha256_file(path)?,
                });
            }
            Patch::Series { series } => {
                let series_path = tree.join(series);
                let text = fs::read_to_string(&series_path).with_context(|| {
                    format!(
                        "reading the patch series {series}: is it in one of the unpacked sources?"
                    )
                })?;
                let dir = series_path.parent().unwrap_or(tree);
                for (n, line) in text.lines().enumerate() {
                    let line = line.split('#').next().unwrap_or("").trim();
                    let mut words = line.split_whitespace();
                    let Some(name) = words.next() else { continue };
                    let mut strip = 1;
                    for opt in words {
                        match opt.strip_prefix("-p").and_then(|n| n.parse().ok()) {
                            Some(n) => strip = n,
                            None => bail!(
                                "{series} line {}: unsupported option {opt:?} (only -pN)",
                                n + 1
                            ),
                        }
                    }
                    let patch = dir.join(name);
                    apply_patch(tree, &patch, strip)
                        .with_context(|| format!("applying {name} from the series {series}"))?;
                    let rel = patch
                        .strip_prefix(tree)
                        .unwrap_or(&patch)
                        .display()
                        .to_string();
                    applied.push(PatchInfo {
                        path: rel,
                        sha256: sha256_file(&patch)?,
                    });
                }
            }
        }
    }
    Ok(applied)
}

fn apply_patch(tree: &Path, patch: &Path, strip: u32) -> Result<()> {
    hostcmd::run(
        Command::new("patch")
            .current_dir(tree)
            .arg(format!("-p{strip}"))
            .args([
                "--forward",
                "--batch",
                "--no-backup-if-mismatch",
                "--quiet",
                "-i",
            ])
            .arg(patch),
    )?;
    Ok(())
}

fn run_recipe(
    b: &Build,
    r: &RecipeBuild,
    work: &Workdir,
    sources: &Path,
    epoch: Option<i64>,
    bar: &indicatif::ProgressBar,
) -> Result<()> {
    let jobs = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut recipe = Command::new("bash");
    recipe
        .arg(&r.recipe_path)
        .current_dir(&work.tree)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", &work.home)
        .env("TMPDIR", &work.tmpdir)
        .env("LANG", "C.UTF-8")
        .env("SOURCE_DATE_EPOCH", epoch.unwrap_or(0).to_string())
        .env("KUBEBAKE_OUT", &work.out)
        .env("KUBEBAKE_SOURCES", sources)
        .env("KUBEBAKE_VERSION", &b.version)
        .env("KUBEBAKE_JOBS", jobs.to_string());
    run_logged(&mut recipe, &work.log, bar)
}

/// Runs a build command, its stdout and stderr appended to `log` (stdout
/// lines also shown on the spinner); on failure the error carries the log's
/// last lines. The command runs in its own process group, stopped with the
/// build when it is interrupted (children.rs).
pub(crate) fn run_logged(
    cmd: &mut Command,
    log_path: &Path,
    bar: &indicatif::ProgressBar,
) -> Result<()> {
    use std::io::Write as _;
    let line = hostcmd::display(cmd);
    let mut log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let _ = writeln!(log, "+ {line}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log.try_clone()?);
    let mut child = children::spawn(cmd).with_context(|| format!("starting `{line}`"))?;
    if let Some(stdout) = child.child().stdout.take() {
        for l in BufReader::new(stdout).lines() {
            let l = l.unwrap_or_default();
            let _ = writeln!(log, "{l}");
            bar.set_message(l.chars().take(100).collect::<String>());
        }
    }
    let status = child
        .wait()
        .with_context(|| format!("waiting for `{line}`"))?;
    if !status.success() {
        let text = fs::read_to_string(log_path).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(25).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "`{line}` exited with {status}; last lines:\n{}",
            tail.join("\n")
        );
    }
    Ok(())
}

/// The outputs must be exactly the declared ones, as regular files.
fn check_outputs(b: &Build, out: &Path) -> Result<Vec<OutputInfo>> {
    let what = match &b.kind {
        BuildKind::Recipe(r) => format!("the recipe {}", r.recipe),
        BuildKind::Go(g) => format!("the Go build of {}", g.module_dir),
    };
    let mut found = BTreeMap::new();
    for entry in fs::read_dir(out).with_context(|| format!("reading {}", out.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        found.insert(name, entry.file_type()?.is_file());
    }
    let missing: Vec<&str> = b
        .outputs
        .iter()
        .filter(|o| found.get(&o.name) != Some(&true))
        .map(|o| o.name.as_str())
        .collect();
    let extra: Vec<&String> = found.keys().filter(|n| b.output(n).is_none()).collect();
    if !missing.is_empty() {
        bail!(
            "{what} did not produce the declared output(s) {} as regular files in $KUBEBAKE_OUT: fix the recipe or the outputs list of build {}",
            missing.join(", "),
            b.name
        );
    }
    if !extra.is_empty() {
        bail!(
            "{what} wrote undeclared file(s) {:?} into $KUBEBAKE_OUT: declare them under builds[{}].outputs or stop writing them",
            extra,
            b.name
        );
    }
    b.outputs
        .iter()
        .map(|o| {
            let path = out.join(&o.name);
            Ok(OutputInfo {
                name: o.name.clone(),
                sha256: sha256_file(&path)?,
                size: fs::metadata(&path)?.len(),
                go: None,
            })
        })
        .collect()
}

pub(crate) fn keep_log(cache_dir: &Path, name: &str, key: &str, log: &Path) -> PathBuf {
    let dir = cache_dir.join("logs");
    let dest = dir.join(format!("{name}-{}.log", &key[..16]));
    if fs::create_dir_all(&dir).is_ok() && fs::copy(log, &dest).is_ok() {
        dest
    } else {
        log.to_path_buf()
    }
}

fn write_durable(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    let mut f = fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}
