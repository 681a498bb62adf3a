//! Go builds: programs built from published Go modules, pinned by a
//! `go.mod`/`go.sum` kept beside the definition (`builds[].go`).
//!
//! The `go` command does the fetching and the checking, as it does for any
//! Go user: modules come through the module proxy (`GOPROXY`, default
//! proxy.golang.org) and every one is checked against `go.sum`
//! (`-mod=readonly`: a missing or different hash fails the build naming the
//! module); the toolchain is `GOTOOLCHAIN=go1.N.P`, itself a module the `go`
//! command fetches and verifies against the checksum database. Downloads
//! stay in `<cache>/go/mod` (`GOMODCACHE`), compiled packages in
//! `<cache>/go/build` (`GOCACHE`), so a second build downloads nothing and a
//! change of version stamps only relinks. `--offline` sets `GOPROXY=off`.
//!
//! Every binary is built alone:
//! `go build -trimpath -buildvcs=false [-tags …] -ldflags "<ldflags> -buildid= -X …" -o OUT PKG`
//! (a test binary: `go test -c -vet=off` with the same flags)
//! with `CGO_ENABLED` as declared, from a copy of go.mod and go.sum in a
//! fresh directory with a cleared environment. Version stamps expand
//! `{version}` and `{date}` (from `SOURCE_DATE_EPOCH`), so two builds give
//! byte-identical binaries. C programs of a module (Kubernetes' pause) are
//! compiled with the host's `cc` from the module's verified source; a
//! module's file (Weave Net's `weave` script) is copied from it as it is.
//!
//! The cache entry's key covers go.mod, go.sum, the toolchain, CGO, tags,
//! ldflags, the expanded stamps, the outputs and their packages, the Debian
//! toolchain packages, and `SOURCE_DATE_EPOCH` when a stamp uses `{date}`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::definition::{GoBuild, OutputFrom};
use crate::manifest::{sha256_file, GoInfo, GoOutputInfo};

use super::source_build::{entry_key, run_logged, Built, Entry, Made};

/// Bumped whenever how Go builds are run changes.
const GO_CONTRACT: &str = "kubebake-go-v1";

/// Where the host's Go usually lives when it is not on `PATH`.
const HOST_GO_FALLBACK: &str = "/usr/local/go/bin/go";

pub(crate) fn ensure_built(cx: &Entry<'_>, g: &GoBuild, offline: bool) -> Result<Built> {
    let b = cx.build;
    let go_mod = g.module_dir_path.join("go.mod");
    let go_sum = g.module_dir_path.join("go.sum");
    let go_mod_sha256 = sha256_file(&go_mod)?;
    let go_sum_sha256 = sha256_file(&go_sum)?;
    let stamps = expand_stamps(g, &b.version, cx.epoch)?;
    let ldflags = ldflags(g, &stamps);
    let flags = build_flags(g, &ldflags);
    let key = entry_key(
        b,
        GO_CONTRACT,
        &cx.toolchain,
        serde_json::json!({
            "go.mod": go_mod_sha256,
            "go.sum": go_sum_sha256,
            "toolchain": g.toolchain,
            "cgo": g.cgo,
            "flags": flags,
            "outputs": b.outputs.iter().map(|o| (&o.name, &o.from)).collect::<Vec<_>>(),
            "source_date_epoch": if g.uses_date() { cx.epoch } else { None },
        }),
    );
    let host_go = host_go()?;
    let go_cache = cx.cache_dir.join("go");
    cx.cached_or_build(&key, |work, bar| {
        fs::copy(&go_mod, work.tree.join("go.mod"))
            .with_context(|| format!("copying {}", go_mod.display()))?;
        fs::copy(&go_sum, work.tree.join("go.sum"))
            .with_context(|| format!("copying {}", go_sum.display()))?;
        let go = GoCommand {
            host_go: &host_go,
            build: g,
            tree: &work.tree,
            home: &work.home,
            tmpdir: &work.tmpdir,
            mod_cache: go_cache.join("mod"),
            build_cache: go_cache.join("build"),
            offline,
            epoch: cx.epoch,
        };
        let sums = GoSum::read(&go_sum)?;

        bar.set_message(format!("{}: Go toolchain {}", b.name, g.toolchain));
        let go_version = go.output(&["env", "GOVERSION"]).map_err(|e| {
            offline_hint(e, offline, &format!("the Go toolchain {}", g.toolchain))
        })?;
        if go_version != g.toolchain {
            bail!(
                "the host's go ran {go_version}, not the pinned {}: the host Go ({}) must be 1.21 or newer to switch toolchains",
                g.toolchain,
                host_go.display()
            );
        }

        // (output, package, is a test binary)
        let packages: Vec<(&str, &str, bool)> = b
            .outputs
            .iter()
            .filter_map(|o| match &o.from {
                OutputFrom::Package(p) => Some((o.name.as_str(), p.as_str(), false)),
                OutputFrom::TestPackage(p) => Some((o.name.as_str(), p.as_str(), true)),
                _ => None,
            })
            .collect();
        bar.set_message(format!("{}: loading packages and modules", b.name));
        let listed = go
            .list(packages.iter().map(|(_, p, _)| *p))
            .map_err(|e| offline_hint(e, offline, "the modules of go.sum"))?;
        let mut origins = BTreeMap::new();
        for (name, pkg, test) in &packages {
            let l = listed
                .iter()
                .find(|l| l.import_path == *pkg)
                .with_context(|| format!("go list did not report {pkg}"))?;
            if !test && l.name != "main" {
                bail!("output {name}: {pkg} is package {}, not a main package: name a command's package (or use test-package: for its test binary)", l.name);
            }
            let module = l.module.as_ref().with_context(|| {
                format!("output {name}: {pkg} is not in a module of the build list: add it to go.mod (`tool {pkg}`) and run `go mod tidy`")
            })?;
            let (path, version) = module.effective();
            origins.insert(name.to_string(), origin(name, pkg, path, version, &sums)?);
        }
        for (name, pkg, test) in &packages {
            let out = work.out.join(name);
            let mut args: Vec<String> = if *test {
                // A package's test binary; vet is the test runner's
                // business, not a build's.
                bar.set_message(format!("{}: go test -c {pkg}", b.name));
                vec!["test".into(), "-c".into(), "-vet=off".into()]
            } else {
                bar.set_message(format!("{}: go build {pkg}", b.name));
                vec!["build".into()]
            };
            args.extend(flags.iter().cloned());
            args.push("-o".into());
            args.push(out.display().to_string());
            args.push((*pkg).to_string());
            run_logged(&mut go.command(&args), &work.log, bar)
                .with_context(|| format!("building {pkg}"))?;
        }
        for o in &b.outputs {
            let OutputFrom::ModuleFile(f) = &o.from else { continue };
            bar.set_message(format!("{}: {}/{}", b.name, f.module, f.file));
            let (src, from) = file_of_module(
                &go,
                &sums,
                offline,
                &o.name,
                &f.module,
                &f.file,
                "module-file",
            )?;
            fs::copy(&src, work.out.join(&o.name))
                .with_context(|| format!("copying {}", src.display()))?;
            origins.insert(o.name.clone(), from);
        }
        for o in &b.outputs {
            let OutputFrom::C(c) = &o.from else { continue };
            bar.set_message(format!("{}: cc {}/{}", b.name, c.module, c.file));
            let (src, from) = file_of_module(
                &go,
                &sums,
                offline,
                &o.name,
                &c.module,
                &c.file,
                "c-program",
            )?;
            let mut cc = Command::new("cc");
            cc.env_clear()
                .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
                .env("LANG", "C.UTF-8")
                .env("SOURCE_DATE_EPOCH", cx.epoch.unwrap_or(0).to_string())
                .current_dir(&work.tree)
                .args(&c.cflags)
                .arg("-o")
                .arg(work.out.join(&o.name))
                .arg(&src);
            run_logged(&mut cc, &work.log, bar)
                .with_context(|| format!("compiling {}/{}", c.module, c.file))?;
            origins.insert(o.name.clone(), from);
        }
        Ok(Made {
            go: Some(GoInfo {
                module_dir: g.module_dir.clone(),
                go_mod_sha256: go_mod_sha256.clone(),
                go_sum_sha256: go_sum_sha256.clone(),
                toolchain: g.toolchain.clone(),
                go_version,
                cgo: g.cgo,
                flags: flags.clone(),
            }),
            origins,
            source_date_epoch: if g.uses_date() { cx.epoch } else { None },
            ..Made::default()
        })
    })
}

/// `file` of `module` (at the build list's version, verified against
/// go.sum by `go mod download`), for output `output` whose `field` names it,
/// and where it came from.
#[allow(clippy::too_many_arguments)]
fn file_of_module(
    go: &GoCommand<'_>,
    sums: &GoSum,
    offline: bool,
    output: &str,
    module: &str,
    file: &str,
    field: &str,
) -> Result<(PathBuf, GoOutputInfo)> {
    let dl = go
        .download(module)
        .map_err(|e| offline_hint(e, offline, module))?;
    let src = dl.dir.join(file);
    if !src.is_file() {
        bail!(
            "output {output}: {module} has no file {file} (looked in {}): fix {field}.file",
            dl.dir.display()
        );
    }
    let from = origin(
        output,
        &format!("{module}/{file}"),
        &dl.path,
        &dl.version,
        sums,
    )?;
    Ok((src, from))
}

/// The build's `-X` stamps with `{version}` and `{date}` expanded.
pub fn expand_stamps(
    g: &GoBuild,
    version: &str,
    epoch: Option<i64>,
) -> Result<BTreeMap<String, String>> {
    let date = match epoch {
        _ if !g.uses_date() => String::new(),
        None => bail!("a version stamp uses {{date}}: set SOURCE_DATE_EPOCH (reproducible builds stamp that time, never the clock)"),
        Some(e) => {
            let t = time::OffsetDateTime::from_unix_timestamp(e)
                .with_context(|| format!("SOURCE_DATE_EPOCH={e} is out of range"))?;
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )
        }
    };
    Ok(g.stamps
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.replace("{version}", version).replace("{date}", &date),
            )
        })
        .collect())
}

/// The linker flags: the declared ones, an empty build ID, the stamps.
fn ldflags(g: &GoBuild, stamps: &BTreeMap<String, String>) -> String {
    let mut parts: Vec<String> = g.ldflags.clone();
    parts.push("-buildid=".into());
    for (k, v) in stamps {
        parts.push(format!("-X={k}={v}"));
    }
    parts.join(" ")
}

/// The `go build` flags (before `-o`), the same for every output.
fn build_flags(g: &GoBuild, ldflags: &str) -> Vec<String> {
    let mut flags = vec!["-trimpath".to_string(), "-buildvcs=false".to_string()];
    if !g.tags.is_empty() {
        flags.push(format!("-tags={}", g.tags.join(",")));
    }
    flags.push(format!("-ldflags={ldflags}"));
    flags
}

/// Where one output came from: its package or C file, and the module's
/// version and go.sum hash.
fn origin(
    name: &str,
    source: &str,
    module: &str,
    version: &str,
    sums: &GoSum,
) -> Result<GoOutputInfo> {
    let sum = sums.get(module, version).with_context(|| {
        format!("output {name}: go.sum has no hash for {module} {version}: run `go mod tidy` in the build's module directory")
    })?;
    Ok(GoOutputInfo {
        source: source.to_string(),
        module: module.to_string(),
        version: version.to_string(),
        sum: sum.to_string(),
    })
}

/// The host's `go`: on `PATH`, else /usr/local/go/bin/go.
fn host_go() -> Result<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("go"))
            .find(|p| p.is_file())
    });
    on_path
        .or_else(|| Some(PathBuf::from(HOST_GO_FALLBACK)).filter(|p| p.is_file()))
        .context("no `go` command on PATH or at /usr/local/go/bin/go: install Go 1.21 or newer (it fetches the pinned toolchain itself)")
}

/// Environment variables passed through from the caller: where modules come
/// from and how to reach it, never how they are checked. go.sum is always
/// checked (`-mod=readonly`), and toolchains against the default checksum
/// database: GOSUMDB, GONOSUMDB, GOPRIVATE, GONOPROXY, GOINSECURE and
/// GOFLAGS are not taken from the caller.
const PASSED_THROUGH: [&str; 7] = [
    "GOPROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
];

struct GoCommand<'a> {
    host_go: &'a Path,
    build: &'a GoBuild,
    tree: &'a Path,
    home: &'a Path,
    tmpdir: &'a Path,
    mod_cache: PathBuf,
    build_cache: PathBuf,
    offline: bool,
    epoch: Option<i64>,
}

impl GoCommand<'_> {
    fn command<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Command {
        let go_bin = self.host_go.parent().unwrap_or(Path::new("/"));
        let mut cmd = Command::new(self.host_go);
        cmd.args(args)
            .current_dir(self.tree)
            .env_clear()
            .env(
                "PATH",
                format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", go_bin.display()),
            )
            .env("HOME", self.home)
            .env("TMPDIR", self.tmpdir)
            .env("LANG", "C.UTF-8")
            .env("GOENV", "off")
            .env("GOWORK", "off")
            .env("GOTELEMETRY", "off")
            .env("GOTOOLCHAIN", &self.build.toolchain)
            .env("GOFLAGS", "-mod=readonly -modcacherw")
            .env("GOMODCACHE", &self.mod_cache)
            .env("GOCACHE", &self.build_cache)
            .env("GOOS", "linux")
            .env("CGO_ENABLED", if self.build.cgo { "1" } else { "0" })
            .env("SOURCE_DATE_EPOCH", self.epoch.unwrap_or(0).to_string());
        for var in PASSED_THROUGH {
            if let Some(v) = std::env::var_os(var) {
                cmd.env(var, v);
            }
        }
        if self.offline {
            cmd.env("GOPROXY", "off");
        }
        cmd
    }

    /// Runs `go ARGS` and returns its trimmed stdout.
    fn output(&self, args: &[&str]) -> Result<String> {
        let out = crate::hostcmd::run(&mut self.command(args))?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// `go list -json` of the packages (downloads the modules they need).
    fn list<'p>(&self, packages: impl Iterator<Item = &'p str>) -> Result<Vec<Listed>> {
        let mut args = vec!["list", "-json=ImportPath,Name,Module"];
        args.extend(packages);
        let text = self.output(&args)?;
        serde_json::Deserializer::from_str(&text)
            .into_iter::<Listed>()
            .collect::<Result<Vec<_>, _>>()
            .context("reading the output of go list -json")
    }

    /// `go mod download -json MODULE` at the build list's version.
    fn download(&self, module: &str) -> Result<Downloaded> {
        let text = self.output(&["mod", "download", "-json", module])?;
        let d: Downloaded = serde_json::from_str(&text)
            .with_context(|| format!("reading go mod download's answer for {module}"))?;
        if let Some(e) = d.error {
            bail!("go mod download {module}: {e}");
        }
        Ok(d)
    }
}

/// Adds what to do when a module or toolchain is missing offline.
fn offline_hint(e: anyhow::Error, offline: bool, what: &str) -> anyhow::Error {
    if offline {
        e.context(format!(
            "--offline: {what} must already be in the cache's go/mod: build once without --offline (with the module proxy reachable) to fill it"
        ))
    } else {
        e
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Listed {
    import_path: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    module: Option<ListedModule>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListedModule {
    path: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    replace: Option<Box<ListedModule>>,
}

impl ListedModule {
    /// The module actually built: the replacement when go.mod replaces it.
    fn effective(&self) -> (&str, &str) {
        match &self.replace {
            Some(r) => (&r.path, &r.version),
            None => (&self.path, &self.version),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Downloaded {
    path: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    dir: PathBuf,
    #[serde(default)]
    error: Option<String>,
}

/// The `h1:` hashes of a go.sum, by module and version.
struct GoSum(BTreeMap<(String, String), String>);

impl GoSum {
    fn read(path: &Path) -> Result<Self> {
        let text =
            fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut sums = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                [] => {}
                [module, version, hash] if hash.starts_with("h1:") => {
                    if !version.ends_with("/go.mod") {
                        sums.insert((module.to_string(), version.to_string()), hash.to_string());
                    }
                }
                _ => bail!(
                    "{} line {}: not a go.sum line (`module version h1:hash`): regenerate it with `go mod tidy`",
                    path.display(),
                    n + 1
                ),
            }
        }
        Ok(GoSum(sums))
    }

    fn get(&self, module: &str, version: &str) -> Option<&str> {
        self.0
            .get(&(module.to_string(), version.to_string()))
            .map(String::as_str)
    }
}
