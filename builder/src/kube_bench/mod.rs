//! The CIS Kubernetes Benchmark on a running cluster, measured by
//! kube-bench (`kubebake kube-bench`, and the VM tests through [`run`]).
//!
//! kube-bench is built from its Go module (`images/go/kube-bench/`: go.mod
//! and go.sum pin it and everything it links) through the builder's cached
//! Go build ([`crate::stages::go_build`]), as a [`Build`] made here: it is
//! no part of any node image. Its checks are the module's own `cfg/` files
//! of one benchmark ([`BENCHMARK`]), taken from the module unchanged
//! (module-file outputs). Where a kubebake node keeps its files is told to
//! kube-bench the way it provides: `images/kube-bench/config.yaml` becomes
//! the benchmark's version-specific `cfg/<benchmark>/config.yaml`, whose
//! values override `cfg/config.yaml`'s candidate paths. No check changes.
//!
//! Each node gets the program and the configuration over ssh in the
//! cluster's network namespace (a fresh `mktemp -d` under /tmp, removed
//! afterwards) and runs `sudo kube-bench run --benchmark <b> --targets …
//! --json`: masters the master, etcd, controlplane and policies targets
//! (kubectl with the admin kubeconfig for the policies), minions the node
//! target. kube-bench only reads: `ps`, `stat`, the files, and kubectl
//! get/auth can-i. Each node's JSON report is kept; [`report`] tallies it.

pub mod explained;
pub mod layout;
pub mod report;

use std::io::{Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::definition::{Build, BuildKind, BuildOutput, GoBuild, ModuleFile, OutputFrom};
use crate::progress::Progress;
use crate::stages::source_build::build_one;

pub use report::{Counts, Failed, Tally};

/// kube-bench's module; its main package is the module root.
pub const MODULE: &str = "github.com/aquasecurity/kube-bench";
/// The version images/go/kube-bench/go.mod requires (checked at build).
pub const VERSION: &str = "0.16.0";
/// The Go of kube-bench's release build (its Dockerfile: golang:1.26.5).
pub const TOOLCHAIN: &str = "go1.26.5";
/// The wrapper module (go.mod, go.sum), under the images directory.
pub const MODULE_DIR: &str = "go/kube-bench";
/// kubebake's node layout for kube-bench, under the images directory.
pub const CONFIG: &str = "kube-bench/config.yaml";
/// The benchmark run: CIS Kubernetes Benchmark v1.12, the newest kube-bench
/// v0.16.0 has. Its version_mapping names it for Kubernetes 1.32 to 1.34
/// and maps nothing later; for 1.36 kube-bench's own rule (step the minor
/// version down until a mapping is found) selects it too ([`benchmark_for`]).
pub const BENCHMARK: &str = "cis-1.12";
/// The benchmark's files (`cfg/<benchmark>/`): its targets and its
/// (upstream: empty) version-specific config, which kubebake's replaces.
pub const BENCHMARK_FILES: &[&str] = &[
    "config.yaml",
    "master.yaml",
    "etcd.yaml",
    "controlplane.yaml",
    "policies.yaml",
    "node.yaml",
];
/// kube-bench's targets on a master.
pub const MASTER_TARGETS: &str = "master,etcd,controlplane,policies";
/// kube-bench's targets on a minion.
pub const MINION_TARGETS: &str = "node";
/// kubectl's kubeconfig on a master for the policies target (made by
/// kube-pki.service; root's ~/.kube/config links to it).
pub const MASTER_KUBECONFIG: &str = "/etc/kubernetes/admin.conf";

/// The built tool and the files it is run with.
#[derive(Debug, Clone, Serialize)]
pub struct Tool {
    pub version: String,
    pub binary: PathBuf,
    /// The module's files under `cfg/`, by their path there.
    pub cfg: Vec<(String, PathBuf)>,
    /// kubebake's version-specific config (images/kube-bench/config.yaml).
    pub config: PathBuf,
    pub benchmark: String,
    /// The cache entry was reused (nothing compiled).
    pub reused: bool,
}

/// The module's `cfg/` files kube-bench needs: the global config and the
/// benchmark's files.
pub fn cfg_paths() -> Vec<String> {
    std::iter::once("config.yaml".to_string())
        .chain(BENCHMARK_FILES.iter().map(|f| format!("{BENCHMARK}/{f}")))
        .collect()
}

/// The build output a `cfg/` file is copied to (outputs are flat names).
fn output_name(cfg_path: &str) -> String {
    format!("cfg-{}", cfg_path.replace('/', "-"))
}

/// kube-bench as a Go build of the wrapper module in `images_dir`, with
/// upstream's release flags (makefile: CGO_ENABLED=0, the version stamp).
pub fn build_spec(images_dir: &Path) -> Build {
    let mut stamps = std::collections::BTreeMap::new();
    stamps.insert(
        format!("{MODULE}/cmd.KubeBenchVersion"),
        "v{version}".to_string(),
    );
    Build {
        name: "kube-bench".to_string(),
        version: VERSION.to_string(),
        toolchain: Vec::new(),
        kind: BuildKind::Go(GoBuild {
            module_dir: MODULE_DIR.to_string(),
            module_dir_path: images_dir.join(MODULE_DIR),
            toolchain: TOOLCHAIN.to_string(),
            cgo: false,
            tags: Vec::new(),
            ldflags: vec!["-s".to_string(), "-w".to_string()],
            stamps,
        }),
        outputs: std::iter::once(BuildOutput {
            name: "kube-bench".to_string(),
            from: OutputFrom::Package(MODULE.to_string()),
            install: None,
        })
        .chain(cfg_paths().iter().map(|p| BuildOutput {
            name: output_name(p),
            from: OutputFrom::ModuleFile(ModuleFile {
                module: MODULE.to_string(),
                file: format!("cfg/{p}"),
            }),
            install: None,
        }))
        .collect(),
    }
}

/// Builds (or reuses) kube-bench from `images_dir`'s wrapper module and
/// checks what is shipped with it.
pub fn build(
    images_dir: &Path,
    cache_dir: &Path,
    offline: bool,
    progress: &Progress,
) -> Result<Tool> {
    let go_mod = images_dir.join(MODULE_DIR).join("go.mod");
    let text = std::fs::read_to_string(&go_mod)
        .with_context(|| format!("reading {} (kube-bench's wrapper module)", go_mod.display()))?;
    if !requires(&text, MODULE, &format!("v{VERSION}")) {
        bail!(
            "{} does not require {MODULE} v{VERSION}: update kube_bench::VERSION with the module",
            go_mod.display()
        );
    }
    let config = images_dir.join(CONFIG);
    if !config.is_file() {
        bail!(
            "{} is missing: kubebake's paths for kube-bench",
            config.display()
        );
    }
    let spec = build_spec(images_dir);
    let built = build_one(&spec, &[], cache_dir, None, offline, progress)
        .context("building kube-bench from its Go module")?;
    let cfg: Vec<(String, PathBuf)> = cfg_paths()
        .into_iter()
        .map(|p| {
            let path = built.output_path(&output_name(&p));
            (p, path)
        })
        .collect();
    // kubebake's file replaces the benchmark's own config.yaml: only while
    // that holds no setting of its own.
    let upstream = format!("{BENCHMARK}/config.yaml");
    if let Some((_, path)) = cfg.iter().find(|(p, _)| *p == upstream) {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        if has_settings(&text) {
            bail!(
                "kube-bench v{VERSION}'s cfg/{upstream} has settings of its own: merge them into {} (it replaces that file)",
                config.display()
            );
        }
    }
    let global = cfg
        .iter()
        .find(|(p, _)| p == "config.yaml")
        .map(|(_, path)| path)
        .context("kube-bench's cfg/config.yaml is not among the build's outputs")?;
    let global =
        std::fs::read_to_string(global).with_context(|| format!("reading {}", global.display()))?;
    layout::read(&config, &global)?;
    Ok(Tool {
        version: VERSION.to_string(),
        binary: built.output_path("kube-bench"),
        cfg,
        config,
        benchmark: BENCHMARK.to_string(),
        reused: built.reused,
    })
}

/// Whether go.mod `text` requires `module` at `version`.
fn requires(text: &str, module: &str, version: &str) -> bool {
    text.lines().any(|l| {
        let mut w = l.trim().trim_start_matches("require").split_whitespace();
        w.next() == Some(module) && w.next() == Some(version)
    })
}

/// Whether a YAML file holds anything besides comments and `---`.
fn has_settings(yaml: &str) -> bool {
    yaml.lines().any(|l| {
        let l = l.split('#').next().unwrap_or("").trim();
        !l.is_empty() && l != "---"
    })
}

/// The benchmark kube-bench's `version_mapping` (its cfg/config.yaml)
/// selects for Kubernetes `version` (`1.36` or `v1.36.4`): the mapping of
/// that minor version, else of the nearest lower one (kube-bench's
/// mapToBenchmarkVersion).
pub fn benchmark_for(config_yaml: &str, version: &str) -> Option<String> {
    /// The one part of cfg/config.yaml read here; the rest is ignored.
    #[derive(serde::Deserialize)]
    struct Mappings {
        #[serde(default)]
        version_mapping: std::collections::BTreeMap<String, String>,
    }
    let mapping = serde_saphyr::from_str::<Mappings>(config_yaml)
        .ok()?
        .version_mapping;
    let v = version.trim().trim_start_matches('v');
    let mut parts = v.split('.');
    let major = parts.next()?;
    let mut minor: u32 = parts.next()?.parse().ok()?;
    while minor > 0 {
        if let Some(b) = mapping.get(&format!("{major}.{minor}")) {
            return Some(b.clone());
        }
        minor -= 1;
    }
    None
}

/// A node to measure.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub role: harness::Role,
    pub ip: String,
}

/// One node's measurement.
#[derive(Debug, Clone, Serialize)]
pub struct NodeReport {
    pub name: String,
    pub role: harness::Role,
    pub ip: String,
    pub targets: String,
    /// What the node's kubelet says (`kubelet --version`), if it answered.
    pub kubernetes_version: Option<String>,
    /// kube-bench's JSON report.
    pub json: PathBuf,
    pub tally: Tally,
}

/// The measurement of a cluster.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub kube_bench_version: String,
    pub benchmark: String,
    /// What kube-bench's version_mapping selects for the nodes' Kubernetes
    /// version (None when the nodes did not say).
    pub mapped_benchmark: Option<String>,
    pub report_dir: PathBuf,
    pub nodes: Vec<NodeReport>,
    /// Seconds the whole measurement took.
    pub seconds: f64,
}

impl Report {
    /// What `kubebake kube-bench` prints: counts per node and target, and
    /// every FAIL with its reason.
    pub fn text(&self) -> String {
        let version = self
            .nodes
            .iter()
            .find_map(|n| n.kubernetes_version.as_deref())
            .unwrap_or("?");
        let mut t = format!(
            "kube-bench v{}, CIS benchmark {}{}\n",
            self.kube_bench_version,
            self.benchmark,
            match &self.mapped_benchmark {
                Some(m) if *m == self.benchmark => {
                    format!(" (kube-bench's version_mapping selects it for Kubernetes {version})")
                }
                Some(m) => format!(
                    " (note: kube-bench's version_mapping selects {m} for Kubernetes {version})"
                ),
                None => String::new(),
            }
        );
        for n in &self.nodes {
            let c = &n.tally.counts;
            t.push_str(&format!(
                "\n{} ({}, {}, Kubernetes {}) --targets {}: {} PASS, {} FAIL, {} WARN, {} INFO\n",
                n.name,
                n.role,
                n.ip,
                n.kubernetes_version.as_deref().unwrap_or("?"),
                n.targets,
                c.pass,
                c.fail,
                c.warn,
                c.info
            ));
            for s in &n.tally.sections {
                t.push_str(&format!(
                    "  {} {} ({}): {} PASS, {} FAIL, {} WARN, {} INFO\n",
                    s.id,
                    s.text,
                    s.target,
                    s.counts.pass,
                    s.counts.fail,
                    s.counts.warn,
                    s.counts.info
                ));
            }
            for f in &n.tally.failed {
                t.push_str(&format!(
                    "  FAIL {} {}{}\n       {}\n       {}\n",
                    f.id,
                    f.text,
                    if f.scored { "" } else { " [not scored]" },
                    f.reason,
                    match explained::reason(&f.id) {
                        Some(why) => format!("known: {why}"),
                        None => "NOT EXPLAINED: not in kube_bench::explained (nor in README.md)"
                            .to_string(),
                    }
                ));
            }
        }
        t.push_str(&format!(
            "\nreports in {} ({:.0} s)\n",
            self.report_dir.display(),
            self.seconds
        ));
        t
    }
}

impl Report {
    /// Every FAIL that [`explained::EXPLAINED`] does not list: (node, check).
    pub fn unexplained(&self) -> Vec<(&str, &Failed)> {
        self.nodes
            .iter()
            .flat_map(|n| {
                n.tally
                    .failed
                    .iter()
                    .filter(|f| explained::reason(&f.id).is_none())
                    .map(move |f| (n.name.as_str(), f))
            })
            .collect()
    }
}

/// The targets kube-bench runs on a node of `role`.
pub fn targets(role: harness::Role) -> &'static str {
    match role {
        harness::Role::Master => MASTER_TARGETS,
        harness::Role::Minion => MINION_TARGETS,
    }
}

/// The shell command run on a node: the archive on stdin unpacked into a
/// fresh directory, kube-bench run as root, the directory removed; the
/// command's exit code is kube-bench's.
pub fn remote_command(role: harness::Role, benchmark: &str) -> String {
    let kubeconfig = match role {
        harness::Role::Master => format!(" KUBECONFIG={MASTER_KUBECONFIG}"),
        harness::Role::Minion => String::new(),
    };
    format!(
        "set -u; d=$(mktemp -d /tmp/kube-bench.XXXXXX) || exit 97; \
         if tar -x -C \"$d\"; then \
         sudo -n env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin{kubeconfig} \
         \"$d/kube-bench\" run --config-dir \"$d/cfg\" --config \"$d/cfg/config.yaml\" \
         --benchmark {benchmark} --targets {targets} --json; rc=$?; \
         else rc=98; fi; rm -rf \"$d\"; exit $rc",
        targets = targets(role),
    )
}

/// The archive sent to each node: `kube-bench` and `cfg/` as kube-bench
/// reads it, kubebake's config as the benchmark's version-specific one.
fn archive(tool: &Tool) -> Result<std::fs::File> {
    let mut file = tempfile::tempfile().context("creating the kube-bench archive")?;
    {
        let mut tar = tar::Builder::new(&mut file);
        let mut add = |name: &str, path: &Path, mode: u32| -> Result<()> {
            let data =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(mode);
            h.set_mtime(0);
            h.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut h, name, data.as_slice())
                .with_context(|| format!("adding {name} to the kube-bench archive"))
        };
        add("kube-bench", &tool.binary, 0o755)?;
        let own = format!("{}/config.yaml", tool.benchmark);
        for (p, path) in &tool.cfg {
            let from = if *p == own { &tool.config } else { path };
            add(&format!("cfg/{p}"), from, 0o644)?;
        }
        tar.finish().context("writing the kube-bench archive")?;
    }
    file.flush().context("writing the kube-bench archive")?;
    Ok(file)
}

/// Runs kube-bench on every node of the cluster in network namespace
/// `netns` (ssh as `debian` with `key`), one after the other; each node's
/// JSON report goes to `report_dir/<name>.json`. Errors only when
/// kube-bench could not run or its report cannot be read: FAILs are the
/// measurement.
pub fn run(
    netns: &str,
    key: &Path,
    nodes: &[Node],
    tool: &Tool,
    report_dir: &Path,
    progress: &Progress,
) -> Result<Report> {
    std::fs::create_dir_all(report_dir)
        .with_context(|| format!("creating {}", report_dir.display()))?;
    let started = std::time::Instant::now();
    let mut file = archive(tool)?;
    let global_config = tool
        .cfg
        .iter()
        .find(|(p, _)| p == "config.yaml")
        .map(|(_, path)| path.clone())
        .context("kube-bench's cfg/config.yaml is not among the tool's files")?;
    let global_config = std::fs::read_to_string(&global_config)
        .with_context(|| format!("reading {}", global_config.display()))?;
    let mut reports = Vec::new();
    let mut mapped = None;
    for node in nodes {
        let bar = progress.stage(&format!(
            "kube-bench {} ({}) on {} {}",
            targets(node.role),
            tool.benchmark,
            node.name,
            node.ip
        ));
        let version = kubelet_version(netns, key, &node.ip);
        if mapped.is_none() {
            mapped = version
                .as_deref()
                .and_then(|v| benchmark_for(&global_config, v));
        }
        file.rewind().context("rewinding the kube-bench archive")?;
        let input = file
            .try_clone()
            .context("reopening the kube-bench archive")?;
        let out = harness::ssh::run_with_input(
            netns,
            key,
            &node.ip,
            &remote_command(node.role, &tool.benchmark),
            input,
        )
        .with_context(|| format!("running kube-bench on {} ({})", node.name, node.ip))?;
        bar.finish_and_clear();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            bail!(
                "kube-bench on {} ({}) exited {}: {}{}",
                node.name,
                node.ip,
                out.status,
                stderr.trim(),
                if harness::ssh::connection_failed(&out) {
                    " (ssh could not connect: is the cluster up? `kubebake status`)"
                } else {
                    ""
                }
            );
        }
        let json = report_dir.join(format!("{}.json", node.name));
        std::fs::write(&json, stdout.as_bytes())
            .with_context(|| format!("writing {}", json.display()))?;
        let tally = report::parse(&stdout).with_context(|| {
            format!("kube-bench's report of {} ({})", node.name, json.display())
        })?;
        reports.push(NodeReport {
            name: node.name.clone(),
            role: node.role,
            ip: node.ip.clone(),
            targets: targets(node.role).to_string(),
            kubernetes_version: version,
            json,
            tally,
        });
    }
    Ok(Report {
        kube_bench_version: tool.version.clone(),
        benchmark: tool.benchmark.clone(),
        mapped_benchmark: mapped,
        report_dir: report_dir.to_path_buf(),
        nodes: reports,
        seconds: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    })
}

/// `v1.36.4` from the node's `kubelet --version` (every node has the
/// binary), or None.
fn kubelet_version(netns: &str, key: &Path, ip: &str) -> Option<String> {
    let out = harness::ssh::run(netns, key, ip, "/usr/local/bin/kubelet --version").ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .find(|w| w.starts_with('v') && w[1..].starts_with(|c: char| c.is_ascii_digit()))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_build_is_the_module_root_and_the_benchmark_s_files() {
        let b = build_spec(Path::new("/repo/images"));
        let BuildKind::Go(g) = &b.kind else {
            panic!("not a Go build")
        };
        assert_eq!(g.module_dir_path, Path::new("/repo/images/go/kube-bench"));
        assert!(!g.cgo);
        assert_eq!(
            g.stamps
                .get("github.com/aquasecurity/kube-bench/cmd.KubeBenchVersion"),
            Some(&"v{version}".to_string())
        );
        assert_eq!(
            b.outputs[0].from,
            OutputFrom::Package("github.com/aquasecurity/kube-bench".into())
        );
        let files: Vec<(&str, &str)> = b.outputs[1..]
            .iter()
            .map(|o| match &o.from {
                OutputFrom::ModuleFile(f) => (o.name.as_str(), f.file.as_str()),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(files[0], ("cfg-config.yaml", "cfg/config.yaml"));
        assert!(files.contains(&("cfg-cis-1.12-node.yaml", "cfg/cis-1.12/node.yaml")));
        assert!(files.contains(&("cfg-cis-1.12-config.yaml", "cfg/cis-1.12/config.yaml")));
        // Output names are flat and distinct.
        let mut names: Vec<&str> = b.outputs.iter().map(|o| o.name.as_str()).collect();
        assert!(names.iter().all(|n| !n.contains('/')));
        names.sort();
        names.dedup();
        assert_eq!(names.len(), b.outputs.len());
    }

    #[test]
    fn the_wrapper_module_pins_the_version_named_here() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../images");
        let text = std::fs::read_to_string(dir.join(MODULE_DIR).join("go.mod")).expect("go.mod");
        assert!(requires(&text, MODULE, &format!("v{VERSION}")), "{text}");
        assert!(text.contains(&format!("tool {MODULE}\n")), "{text}");
        assert!(!requires(&text, MODULE, "v0.15.1"));
    }

    const MAPPING: &str = r#"---
master:
  components:
    - apiserver
version_mapping:
  "1.31": "cis-1.11"
  "1.32": "cis-1.12"
  "1.34": "cis-1.12"   # comment
  "gke-1.0": "gke-1.0"

target_mapping:
  "cis-1.12":
    - "master"
"#;

    #[test]
    fn the_benchmark_is_kube_bench_s_mapping_or_the_nearest_lower_version() {
        assert_eq!(benchmark_for(MAPPING, "1.31").as_deref(), Some("cis-1.11"));
        assert_eq!(benchmark_for(MAPPING, "1.33").as_deref(), Some("cis-1.12"));
        assert_eq!(
            benchmark_for(MAPPING, "v1.36.4").as_deref(),
            Some("cis-1.12")
        );
        assert_eq!(benchmark_for(MAPPING, "1.20"), None);
        assert_eq!(benchmark_for(MAPPING, "garbage"), None);
        // target_mapping's keys are not versions.
        assert_eq!(
            benchmark_for("target_mapping:\n  \"1.5\": x\n", "1.5"),
            None
        );
    }

    #[test]
    fn only_an_empty_benchmark_config_may_be_replaced() {
        assert!(!has_settings(
            "---\n## Version-specific settings that override the values in cfg/config.yaml\n"
        ));
        assert!(has_settings("---\nmaster:\n  apiserver:\n"));
    }

    #[test]
    fn the_text_gives_counts_per_node_and_target_and_every_failure() {
        let tally = report::parse(include_str!("testdata/minion-node.json")).expect("parse");
        let r = Report {
            kube_bench_version: VERSION.into(),
            benchmark: BENCHMARK.into(),
            mapped_benchmark: Some(BENCHMARK.into()),
            report_dir: "/tmp/r".into(),
            nodes: vec![NodeReport {
                name: "minion1".into(),
                role: harness::Role::Minion,
                ip: "10.77.0.11".into(),
                targets: MINION_TARGETS.into(),
                kubernetes_version: Some("v1.36.4".into()),
                json: "/tmp/r/minion1.json".into(),
                tally,
            }],
            seconds: 1.0,
        };
        let t = r.text();
        assert!(t.contains("selects it for Kubernetes v1.36.4"), "{t}");
        assert!(
            t.contains("minion1 (minion, 10.77.0.11, Kubernetes v1.36.4) --targets node: 3 PASS, 2 FAIL, 1 WARN, 0 INFO"),
            "{t}"
        );
        assert!(
            t.contains("  FAIL 4.1.1 Ensure that the kubelet service file permissions"),
            "{t}"
        );
        assert!(t.contains("audit output: permissions=644"), "{t}");
    }

    #[test]
    fn masters_run_the_control_plane_targets_with_the_admin_kubeconfig() {
        let m = remote_command(harness::Role::Master, "cis-1.12");
        assert!(
            m.contains("--targets master,etcd,controlplane,policies --json"),
            "{m}"
        );
        assert!(m.contains("KUBECONFIG=/etc/kubernetes/admin.conf"), "{m}");
        assert!(m.contains("--benchmark cis-1.12"), "{m}");
        assert!(m.contains("sudo -n env"), "{m}");
        let n = remote_command(harness::Role::Minion, "cis-1.12");
        assert!(n.contains("--targets node --json"), "{n}");
        assert!(!n.contains("KUBECONFIG"), "{n}");
        // The directory is removed and kube-bench's exit code kept.
        assert!(n.ends_with("rm -rf \"$d\"; exit $rc"), "{n}");
    }
}
