//! The offline definition's source builds are reproducible.
//!
//! - Kubernetes v1.20.2 (seven Go binaries and the static pause): the build
//!   the README's test command made for the golden image must have exactly
//!   the digests recorded below. They come from the builder's cold build of
//!   2026-11-28, after the recipe began swapping in reflect2 v1.0.2; the
//!   recipe before that change gave the same digests in three independent
//!   cold builds in three different tree paths (two by hand, one by the
//!   builder), and the swap adds only a fixed file copy. A fresh machine
//!   builds it cold, so this compares a new build against the recorded one
//!   without a second 15-minute compile in CI.
//! - busybox (cheap): rebuilt from scratch in another cache, and so another
//!   absolute tree path, and compared output by output.

mod common;

use std::collections::BTreeMap;

use common::{repo_root, scratch, shared_cache};
use kubebake::definition::{self, LoadOptions};
use kubebake::fetch::{fetch_artifacts_blocking, FetchOptions};
use kubebake::progress::Progress;
use kubebake::stages::source_build::build_all;

const EPOCH: i64 = 1_700_000_000;

/// Output digests of the offline definition's kubernetes build (see the
/// module comment for where they come from).
const KUBERNETES_1_20_2: &[(&str, &str)] = &[
    (
        "kube-apiserver",
        "1497ddbb191b44d9cb8f9b6d654070ffffe8f184d3057d956957cb8108ebf225",
    ),
    (
        "kube-controller-manager",
        "e3ae23b98fb47a3639b4e6dcdf3c796eecf1afc5fea0fdbba900152aca5ae894",
    ),
    (
        "kube-proxy",
        "3dd05160d98abea6e7fff33b186bb569bb84d50ae9733100bcaef852b7b1fa63",
    ),
    (
        "kube-scheduler",
        "dd9627a1be047038065ef9b7dec9fd33ae7564013dd1f51aa0525366b9a6eb01",
    ),
    (
        "kubeadm",
        "245cecbc8d501443033bff5a1967d878d0c2c4df283592f2bbf52188e747b33d",
    ),
    (
        "kubectl",
        "b628f8b5f844dd1df3b8604cb5afea5f5529c2cc8f5f7618bf883d2be53d943a",
    ),
    (
        "kubelet",
        "51155b93f431ed42052fc3ae25d87982ef4e636d7bf86d1eef6e7632ef38056c",
    ),
    (
        "pause",
        "d5ef547cb33aaaae9ac34eed4c5a6e609409349f185a6737c426a9de908ac7e7",
    ),
];

#[test]
fn offline_source_builds_are_byte_identical_when_rebuilt() {
    let def = definition::load(
        &repo_root().join("images/k8s-node-offline.yaml"),
        &LoadOptions::default(),
    )
    .expect("offline definition");
    assert!(!def.builds.is_empty(), "the offline definition has builds");
    let shared = shared_cache();
    let fetched = fetch_artifacts_blocking(&def, &FetchOptions::new(shared.clone()))
        .expect("sources in the shared cache");

    let first = build_all(&def, &fetched, &shared, Some(EPOCH), &Progress::hidden())
        .expect("the shared cache's build");
    let digests = |p: &kubebake::stages::source_build::Provenance| -> BTreeMap<String, String> {
        p.outputs
            .iter()
            .map(|o| (o.name.clone(), o.sha256.clone()))
            .collect()
    };
    let kubernetes = first
        .iter()
        .find(|b| b.provenance.name == "kubernetes")
        .expect("a kubernetes build");
    let recorded: BTreeMap<String, String> = KUBERNETES_1_20_2
        .iter()
        .map(|(n, d)| ((*n).to_string(), (*d).to_string()))
        .collect();
    assert_eq!(
        digests(&kubernetes.provenance),
        recorded,
        "kubernetes: outputs differ from the independent builds' digests"
    );

    let mut cheap = def.clone();
    cheap.builds.retain(|b| b.name != "kubernetes");
    let first: Vec<_> = first
        .into_iter()
        .filter(|b| b.provenance.name != "kubernetes")
        .collect();
    let dir = scratch();
    let second = build_all(
        &cheap,
        &fetched,
        dir.path(),
        Some(EPOCH),
        &Progress::hidden(),
    )
    .expect("a second build from scratch");
    assert_eq!(first.len(), second.len());

    for (a, b) in first.iter().zip(&second) {
        assert!(
            !b.reused,
            "{}: the second build must run the recipe",
            b.provenance.name
        );
        assert_eq!(a.provenance.cache_key, b.provenance.cache_key);
        assert_eq!(
            digests(&a.provenance),
            digests(&b.provenance),
            "{}: outputs differ between two builds with the same inputs",
            a.provenance.name
        );
        eprintln!(
            "TIME {} cold source build: {:.0} s (first build: {:.0} s)",
            b.provenance.name, b.provenance.build_seconds, a.provenance.build_seconds
        );
    }
}
