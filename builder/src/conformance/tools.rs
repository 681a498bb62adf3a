//! The suite's programs, built from the image's own Kubernetes module
//! build: the definition's Go build named `kubernetes` (its go.mod, go.sum,
//! toolchain, tags and version stamps) with the suite's outputs instead of
//! the node's. So `e2e.test`, `ginkgo`, `kubectl` and `agnhost` are the
//! image's Kubernetes version by construction, cached like any build.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::definition::{Build, BuildKind, BuildOutput, Definition, ModuleFile, OutputFrom};
use crate::fetch::{fetch_artifacts_blocking, FetchOptions};
use crate::progress::Progress;
use crate::stages::source_build::build_all;

/// The definition's build the suite comes from.
pub const SOURCE_BUILD: &str = "kubernetes";
/// The definition's build of the busybox binary the test images use.
pub const BUSYBOX_BUILD: &str = "busybox";
/// The definition's etcd build: the aggregator test's etcd image runs it.
pub const ETCD_BUILD: &str = "etcd";
/// agnhost's version at Kubernetes v1.36 (test/images/agnhost/VERSION, its
/// Makefile's `main.Version` stamp and the image tag the suite asks for);
/// checked against the module's file at every build.
pub const AGNHOST_VERSION: &str = "2.63.0";

/// (output, how it is built)
const OUTPUTS: &[(&str, &str, bool)] = &[
    ("e2e.test", "k8s.io/kubernetes/test/e2e", true),
    ("ginkgo", "github.com/onsi/ginkgo/v2/ginkgo", false),
    ("kubectl", "k8s.io/kubernetes/cmd/kubectl", false),
    ("agnhost", "k8s.io/kubernetes/test/images/agnhost", false),
    // The aggregator test's API server (go.mod pins k8s.io/sample-apiserver
    // at the image's Kubernetes version).
    ("sample-apiserver", "k8s.io/sample-apiserver", false),
    // The no-new-privileges tests' setuid program (test/images/nonewprivs).
    (
        "nonewprivs",
        "k8s.io/kubernetes/test/images/nonewprivs",
        false,
    ),
];

/// Files of the Kubernetes module the test images carry: (output, path).
pub const MODULE_FILES: &[(&str, &str)] = &[
    ("agnhost-VERSION", "test/images/agnhost/VERSION"),
    ("localhost.crt", "test/images/agnhost/porter/localhost.crt"),
    ("localhost.key", "test/images/agnhost/porter/localhost.key"),
    ("nautilus.jpg", "test/images/nautilus/html/nautilus.jpg"),
    ("nautilus-data.json", "test/images/nautilus/html/data.json"),
];

/// The built programs.
#[derive(Debug, Clone, Serialize)]
pub struct Tools {
    /// The Kubernetes version of the definition's build.
    pub version: String,
    pub e2e_test: PathBuf,
    pub ginkgo: PathBuf,
    pub kubectl: PathBuf,
    pub agnhost: PathBuf,
    pub sample_apiserver: PathBuf,
    /// `nnp`: prints its effective uid.
    pub nonewprivs: PathBuf,
    /// The node image's own etcd.
    pub etcd: PathBuf,
    /// The definition's busybox build, as the node's test image has it.
    pub busybox: PathBuf,
    /// Where [`MODULE_FILES`] are, by output name.
    pub files: PathBuf,
    /// The cache entry was reused (nothing compiled).
    pub reused: bool,
}

/// `def`'s build `name` with an output `output`; `why` says what needs it.
fn build_with_output<'a>(
    def: &'a Definition,
    name: &str,
    output: &str,
    why: &str,
) -> Result<&'a Build> {
    def.builds
        .iter()
        .find(|b| b.name == name && b.output(output).is_some())
        .with_context(|| {
            format!(
                "{}: no build `{name}` with a `{output}` output: {why}",
                def.source.display()
            )
        })
}

/// Builds (or reuses) the suite's programs of `def`'s Kubernetes build.
pub fn build(
    def: &Definition,
    cache_dir: &Path,
    epoch: Option<i64>,
    offline: bool,
    progress: &Progress,
) -> Result<Tools> {
    let source = def
        .builds
        .iter()
        .find(|b| b.name == SOURCE_BUILD && matches!(b.kind, BuildKind::Go(_)))
        .with_context(|| {
            format!(
                "{}: no Go build named `{SOURCE_BUILD}`: the conformance suite is built from the image's Kubernetes module build (images/k8s-node-source.yaml has one)",
                def.source.display()
            )
        })?;
    let busybox = build_with_output(
        def,
        BUSYBOX_BUILD,
        "busybox",
        "the suite's busybox and agnhost images use it",
    )?;
    let etcd = build_with_output(
        def,
        ETCD_BUILD,
        "etcd",
        "the aggregator test's etcd image uses it",
    )?;
    let mut suite = source.clone();
    suite.name = "conformance".to_string();
    if let BuildKind::Go(g) = &mut suite.kind {
        g.stamps
            .insert("main.Version".to_string(), AGNHOST_VERSION.to_string());
    }
    suite.outputs = OUTPUTS
        .iter()
        .map(|(name, pkg, test)| BuildOutput {
            name: (*name).to_string(),
            from: if *test {
                OutputFrom::TestPackage((*pkg).to_string())
            } else {
                OutputFrom::Package((*pkg).to_string())
            },
            install: None,
        })
        .chain(MODULE_FILES.iter().map(|(name, file)| BuildOutput {
            name: (*name).to_string(),
            from: OutputFrom::ModuleFile(ModuleFile {
                module: "k8s.io/kubernetes".to_string(),
                file: (*file).to_string(),
            }),
            install: None,
        }))
        .collect();
    let mut only = def.clone();
    only.artifacts = Vec::new();
    only.builds = vec![suite, busybox.clone(), etcd.clone()];
    // busybox is a recipe build from a pinned release tarball: fetched (or
    // found in the cache) like any build source.
    let mut fo = FetchOptions::new(cache_dir.to_path_buf());
    fo.offline = offline;
    fo.progress = progress.clone();
    let fetched = fetch_artifacts_blocking(&only, &fo)
        .context("fetching the sources of the suite's test images")?;
    let built = build_all(&only, &fetched, cache_dir, epoch, offline, progress)
        .context("building the conformance suite from the image's Kubernetes module")?;
    let (b, bb, e) = match built.as_slice() {
        [b, bb, e] => (b, bb, e),
        _ => anyhow::bail!(
            "the conformance build produced {} builds, not 3",
            built.len()
        ),
    };
    let version = std::fs::read_to_string(b.output_path("agnhost-VERSION"))
        .context("reading agnhost's VERSION from the module")?;
    if version.trim() != AGNHOST_VERSION {
        anyhow::bail!(
            "the Kubernetes module's agnhost is {} but kubebake names it {AGNHOST_VERSION}: update conformance::tools::AGNHOST_VERSION",
            version.trim()
        );
    }
    Ok(Tools {
        version: source.version.clone(),
        e2e_test: b.output_path("e2e.test"),
        ginkgo: b.output_path("ginkgo"),
        kubectl: b.output_path("kubectl"),
        agnhost: b.output_path("agnhost"),
        sample_apiserver: b.output_path("sample-apiserver"),
        nonewprivs: b.output_path("nonewprivs"),
        etcd: e.output_path("etcd"),
        busybox: bb.output_path("busybox"),
        files: b.output_path(""),
        reused: b.reused,
    })
}
