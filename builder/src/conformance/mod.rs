//! Kubernetes' conformance suite against a laptop cluster (`kubebake
//! conformance`): `e2e.test` and `ginkgo` built from the image's own
//! Kubernetes module ([`tools`]), run from the host inside the cluster's
//! network namespace with the admin kubeconfig, the test images named
//! through the suite's `KUBE_TEST_REPO_LIST` mechanism, and the JUnit
//! report tallied ([`junit`]).
//!
//! Only images already in the nodes' containerd can run: the suite's pods
//! use `IfNotPresent`, and nothing can be pulled. The repository list maps
//! the suite's registries onto `localhost/kubebake`, where the baked images
//! live (`pause:3.10.2` is the suite's pause image by name).

pub mod debian_root;
pub mod images;
pub mod junit;
pub mod tools;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use serde::Serialize;

/// Where the suite looks for its test images (`KUBE_TEST_REPO_LIST`): the
/// registries of the images the conformance tests use, mapped onto the
/// nodes' baked images.
pub const REPO_LIST: &str = "\
# kubebake: the conformance suite's registries, mapped onto the images the
# nodes have (test/utils/image/manifest.go: registry/name:version).
promoterE2eRegistry: localhost/kubebake
gcRegistry: localhost/kubebake
gcEtcdRegistry: localhost/kubebake
";

/// Which part of the suite runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Selection {
    pub focus: String,
    pub skip: Option<String>,
    /// Ginkgo's parallel processes (1 for the serial tests).
    pub nodes: u32,
}

impl Selection {
    /// The conformance tests that may run in parallel.
    pub fn parallel(nodes: u32) -> Self {
        Selection {
            focus: r"\[Conformance\]".into(),
            skip: Some(r"\[Serial\]|\[Disruptive\]".into()),
            nodes: nodes.max(1),
        }
    }

    /// The serial conformance tests, one at a time.
    pub fn serial() -> Self {
        Selection {
            focus: r"\[Serial\].*\[Conformance\]".into(),
            skip: None,
            nodes: 1,
        }
    }
}

/// A run of the suite.
#[derive(Debug, Clone)]
pub struct Run<'a> {
    pub tools: &'a tools::Tools,
    /// The cluster's network namespace (the API server's address is only
    /// reachable there).
    pub netns: &'a str,
    pub kubeconfig: &'a Path,
    pub selection: &'a Selection,
    /// Ginkgo's `--timeout` (e.g. `24h`).
    pub timeout: &'a str,
    /// Lists the selected tests without running them.
    pub dry_run: bool,
    /// JUnit report, repository list and the run's log go here.
    pub report_dir: &'a Path,
}

/// What a run left.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub selection: Selection,
    pub kubernetes_version: String,
    pub report_dir: PathBuf,
    pub junit: PathBuf,
    pub log: PathBuf,
    /// Ginkgo's exit code.
    pub exit_code: Option<i32>,
    pub seconds: f64,
    pub summary: junit::Summary,
}

impl Run<'_> {
    /// The command line (inside the namespace): ginkgo runs the precompiled
    /// e2e.test with the suite's flags after `--`.
    pub fn command(&self) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", self.netns])
            .arg(&self.tools.ginkgo)
            // Ginkgo lists (--dry-run) only in series.
            .arg(format!(
                "--nodes={}",
                if self.dry_run {
                    1
                } else {
                    self.selection.nodes
                }
            ))
            .arg(format!("--timeout={}", self.timeout))
            .arg("--no-color")
            // Not one `S` per skipped spec: a focused run skips ~7500.
            .arg("--silence-skips")
            .arg(format!("--focus={}", self.selection.focus));
        if let Some(s) = &self.selection.skip {
            c.arg(format!("--skip={s}"));
        }
        if self.dry_run {
            c.arg("--dry-run").arg("-v");
        }
        c.arg(&self.tools.e2e_test)
            .arg("--")
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .arg("--provider=skeleton")
            .arg(format!("--kubectl-path={}", self.tools.kubectl.display()))
            .arg(format!("--report-dir={}", self.report_dir.display()))
            .arg("--disable-log-dump=true");
        c.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", self.report_dir)
            .env("LANG", "C.UTF-8")
            .env(
                "KUBE_TEST_REPO_LIST",
                self.report_dir.join("repo-list.yaml"),
            );
        c
    }

    /// Runs the suite, copying its output to `out` as it comes (and to
    /// `e2e.log`), then tallies the JUnit report.
    pub fn execute(&self, out: &mut dyn Write) -> Result<Outcome> {
        std::fs::create_dir_all(self.report_dir)
            .with_context(|| format!("creating {}", self.report_dir.display()))?;
        let junit = self.report_dir.join("junit_01.xml");
        let _ = std::fs::remove_file(&junit);
        std::fs::write(self.report_dir.join("repo-list.yaml"), REPO_LIST)
            .context("writing the repository list")?;
        let log_path = self.report_dir.join("e2e.log");
        let mut log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let started = std::time::Instant::now();
        let mut child = self
            .command()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting ginkgo in the cluster's network namespace")?;
        // As the output comes, not by lines: Ginkgo marks each finished
        // spec with a `•` and no newline.
        let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let forward = |mut from: Box<dyn Read + Send>, tx: std::sync::mpsc::Sender<Vec<u8>>| {
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                while let Ok(n) = from.read(&mut buf) {
                    if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            })
        };
        let err_thread = forward(
            Box::new(child.stderr.take().context("ginkgo's stderr")?),
            tx.clone(),
        );
        let out_thread = forward(
            Box::new(child.stdout.take().context("ginkgo's stdout")?),
            tx,
        );
        for chunk in rx {
            log.write_all(&chunk).context("writing e2e.log")?;
            let _ = out.write_all(&chunk);
            let _ = out.flush();
        }
        let _ = out_thread.join();
        let _ = err_thread.join();
        let status = child.wait().context("waiting for ginkgo")?;
        let seconds = (started.elapsed().as_secs_f64() * 10.0).round() / 10.0;
        let summary = if self.dry_run {
            junit::Summary::default()
        } else if junit.is_file() {
            junit::read(&junit)?
        } else {
            bail!(
                "the suite wrote no JUnit report ({}); ginkgo exited {status}: see {}",
                junit.display(),
                log_path.display()
            );
        };
        Ok(Outcome {
            selection: self.selection.clone(),
            kubernetes_version: self.tools.version.clone(),
            report_dir: self.report_dir.to_path_buf(),
            junit,
            log: log_path,
            exit_code: status.code(),
            seconds,
            summary,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tools() -> tools::Tools {
        tools::Tools {
            version: "1.36.4".into(),
            e2e_test: "/c/e2e.test".into(),
            ginkgo: "/c/ginkgo".into(),
            kubectl: "/c/kubectl".into(),
            agnhost: "/c/agnhost".into(),
            sample_apiserver: "/c/sample-apiserver".into(),
            nonewprivs: "/c/nonewprivs".into(),
            etcd: "/e/etcd".into(),
            busybox: "/c/busybox".into(),
            files: "/c".into(),
            reused: true,
        }
    }

    fn args(c: &Command) -> Vec<String> {
        c.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn ginkgo_runs_the_precompiled_suite_in_the_namespace() {
        let t = tools();
        let sel = Selection::parallel(2);
        let r = Run {
            tools: &t,
            netns: "kb-1-0",
            kubeconfig: Path::new("/run/kubebake/demo/admin.conf"),
            selection: &sel,
            timeout: "24h",
            dry_run: false,
            report_dir: Path::new("/tmp/report"),
        };
        let c = r.command();
        let a = args(&c);
        assert_eq!(&a[..4], ["netns", "exec", "kb-1-0", "/c/ginkgo"]);
        let dashdash = a.iter().position(|x| x == "--").expect("--");
        assert_eq!(a[dashdash - 1], "/c/e2e.test");
        // ginkgo's own flags before the binary, the suite's after `--`.
        assert!(a[..dashdash].contains(&"--nodes=2".to_string()));
        assert!(a[..dashdash].contains(&r"--focus=\[Conformance\]".to_string()));
        assert!(a[..dashdash].contains(&r"--skip=\[Serial\]|\[Disruptive\]".to_string()));
        assert!(a[dashdash..].contains(&"--provider=skeleton".to_string()));
        assert!(a[dashdash..].contains(&"--kubectl-path=/c/kubectl".to_string()));
        assert!(a[dashdash..].contains(&"--report-dir=/tmp/report".to_string()));
        let env: Vec<(String, String)> = c
            .get_envs()
            .filter_map(|(k, v)| Some((k.to_string_lossy().into(), v?.to_string_lossy().into())))
            .collect();
        assert!(env.contains(&(
            "KUBE_TEST_REPO_LIST".into(),
            "/tmp/report/repo-list.yaml".into()
        )));
    }

    #[test]
    fn serial_runs_one_at_a_time_and_skips_nothing_else() {
        let s = Selection::serial();
        assert_eq!(s.nodes, 1);
        assert_eq!(s.skip, None);
        assert!(s.focus.contains("Serial"));
        assert_eq!(Selection::parallel(0).nodes, 1);
    }

    #[test]
    fn the_repository_list_maps_the_suite_registries_to_the_baked_images() {
        for key in ["promoterE2eRegistry", "gcRegistry", "gcEtcdRegistry"] {
            assert!(
                REPO_LIST.contains(&format!("{key}: localhost/kubebake\n")),
                "{key}"
            );
        }
    }
}
