//! The offline definition's source builds are reproducible.
//!
//! - Kubernetes v1.20.2 (seven Go binaries and the static pause): the build
//!   the README's test command made for the golden image must have exactly
//!   the digests recorded below, which three independent cold builds in
//!   three different tree paths produced on 2026-11-27 (two by hand, one by
//!   the builder). A fresh machine builds it cold, so this compares a new
//!   build against the recorded ones without a second 15-minute compile in
//!   CI.
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

/// Output digests of three independent cold builds of the offline
/// definition's kubernetes build (same digests from all three).
const KUBERNETES_1_20_2: &[(&str, &str)] = &[
    (
        "kube-apiserver",
        "e21a9662239a1fe94be53c07b76168e62da765d1a5131e4ddb08af3f030bc19a",
    ),
    (
        "kube-controller-manager",
        "090fc643ac017e21578556ca6596ea820c39d42b4c622cd29301775b43c5c5a8",
    ),
    (
        "kube-proxy",
        "93f483f0c6cdbf19640d9f76b5706b8edf67cf49f264514624dae1cad48fde20",
    ),
    (
        "kube-scheduler",
        "0919046f296c40fc6178d075312239dfb963b384ceb58e1c5a4eec36294233f8",
    ),
    (
        "kubeadm",
        "11c00a0c913a743f516ae6fe3a0a421f5f99feea080e2945a9eaa6bdee267d1f",
    ),
    (
        "kubectl",
        "8c08e5697e50ec8219a1c9889ca64936e4b731fe220ede0a10e77936d758dcff",
    ),
    (
        "kubelet",
        "2add6f20c8c8ab10e18738bd69246a37efb9bf3f839c2c96fc5ba8c20fc8e5fa",
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
