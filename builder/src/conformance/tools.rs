//! The suite's programs, built from the image's own Kubernetes module
//! build: the definition's Go build named `kubernetes` (its go.mod, go.sum,
//! toolchain, tags and version stamps) with the suite's outputs instead of
//! the node's. So `e2e.test`, `ginkgo`, `kubectl` and `agnhost` are the
//! image's Kubernetes version by construction, cached like any build.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::definition::{BuildKind, BuildOutput, Definition, OutputFrom};
use crate::progress::Progress;
use crate::stages::source_build::build_all;

/// The definition's build the suite comes from.
pub const SOURCE_BUILD: &str = "kubernetes";

/// (output, how it is built)
const OUTPUTS: &[(&str, &str, bool)] = &[
    ("e2e.test", "k8s.io/kubernetes/test/e2e", true),
    ("ginkgo", "github.com/onsi/ginkgo/v2/ginkgo", false),
    ("kubectl", "k8s.io/kubernetes/cmd/kubectl", false),
    ("agnhost", "k8s.io/kubernetes/test/images/agnhost", false),
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
    /// The cache entry was reused (nothing compiled).
    pub reused: bool,
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
    let mut suite = source.clone();
    suite.name = "conformance".to_string();
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
        .collect();
    let mut only = def.clone();
    only.builds = vec![suite];
    let built = build_all(&only, &[], cache_dir, epoch, offline, progress)
        .context("building the conformance suite from the image's Kubernetes module")?;
    let b = built
        .into_iter()
        .next()
        .context("the conformance build produced nothing")?;
    Ok(Tools {
        version: source.version.clone(),
        e2e_test: b.output_path("e2e.test"),
        ginkgo: b.output_path("ginkgo"),
        kubectl: b.output_path("kubectl"),
        agnhost: b.output_path("agnhost"),
        reused: b.reused,
    })
}
