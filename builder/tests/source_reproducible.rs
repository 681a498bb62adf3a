//! The tested definition's builds are reproducible.
//!
//! - Every Go build (Kubernetes, etcd, containerd, runc, CNI plugins,
//!   crictl, Weave Net with its script, CoreDNS, and the pause program):
//!   the build the README's test command made for the golden image must
//!   have exactly the digests recorded below. They come from two
//!   independent builds on 2026-12-07, one into the default cache and one
//!   cold into an empty cache (another GOMODCACHE, GOCACHE and build
//!   directory), which gave the same bytes. A fresh
//!   machine builds cold, so this compares a new build against the recorded
//!   one without compiling Kubernetes twice in CI.
//! - The cheap builds (CNI plugins from Go modules, busybox from its
//!   recipe): rebuilt from scratch in another cache, so with another module
//!   cache, build cache and absolute tree path, and compared output by
//!   output.

mod common;

use std::collections::BTreeMap;

use common::{repo_root, scratch, shared_cache};
use kubebake::definition::{self, LoadOptions};
use kubebake::fetch::{fetch_artifacts_blocking, FetchOptions};
use kubebake::progress::Progress;
use kubebake::stages::source_build::build_all;

const EPOCH: i64 = 1_700_000_000;

/// (build, output, sha256) of every Go build output of the tested
/// definition (see the module comment for where they come from).
const RECORDED: &[(&str, &str, &str)] = &[
    (
        "kubernetes",
        "kubelet",
        "1e1a496ecca34aa82519e6d494866f26220061bb9de8efee3261c018b12df3dd",
    ),
    (
        "kubernetes",
        "kube-proxy",
        "f4718d7bc2a4dddf55278492ec585808f6f7d6e2347c099464af95ddd709b9c2",
    ),
    (
        "kubernetes",
        "kube-apiserver",
        "7db1204d2c40be7a96940ef346c060ac7a674ca9465a8947d90c27b2b98c0e1b",
    ),
    (
        "kubernetes",
        "kube-controller-manager",
        "5e8217a4f4078df202ed81ba5fe4bbed1f35fb53a240d5185b4f878a2593bf92",
    ),
    (
        "kubernetes",
        "kube-scheduler",
        "ae918635e87589a505638ca070efa86ad8a2bc53d39e55f915da521f5d205b21",
    ),
    (
        "kubernetes",
        "kubeadm",
        "9318a36096cd0142125078cda700013e163992895c74011eb3305a133009ef8d",
    ),
    (
        "kubernetes",
        "kubectl",
        "de0c0cd20846bcee498d8af2dbf02670dec6d3aa845c8d7b7482e2e76b7949b9",
    ),
    (
        "kubernetes",
        "pause",
        "34facc42fe548b1fed70c0b3df9da2de8b22ef9ae10fa25b9cb2fbc029246d4f",
    ),
    (
        "etcd",
        "etcd",
        "3218389b93a7696f48cd3e276b210182e87267a5f3cd8c16c5ebc1024e711bd0",
    ),
    (
        "etcd",
        "etcdctl",
        "b4b4653b355f0a0f0777964c6477ee694a6dd0b030ff3fdb8789a965bea37098",
    ),
    (
        "etcd",
        "etcdutl",
        "5e9636271460db5042efca99a0365ca369fee19fe23a1a8e9a339830fb2ab2e6",
    ),
    (
        "containerd",
        "containerd",
        "0299f2a201d0a05ed680715bc70ef76d7c7123602d6e88ee97a463d1bf693152",
    ),
    (
        "containerd",
        "ctr",
        "0f74f47713fdb55a1998e944a33689ed7e5c313e2b4b1bb98c69192f16faa72d",
    ),
    (
        "containerd-shim",
        "containerd-shim-runc-v2",
        "2c78c63e6ce1d28a18bf0a6aee7084a3203fbf6feccaad3ca365be13454ec78b",
    ),
    (
        "runc",
        "runc",
        "d558e8dfc4b928519638ce46c811a507b6aac5da37d58ffe67a65948584bdaa1",
    ),
    (
        "cni-plugins",
        "loopback",
        "bf70f72ee1efa59375d9f90401f15832d8d53f8f6634a4da1a1e38384da992f3",
    ),
    (
        "cni-plugins",
        "bridge",
        "f241a6892117e58ec0c69a53d8188b9ffece94cd59ea6dfee725ca5a4f8be434",
    ),
    (
        "cni-plugins",
        "host-local",
        "d0e487e491facbf8b42a656339a8526655ff9b9f1c0460be8f724b7a541aec46",
    ),
    (
        "cni-plugins",
        "portmap",
        "621dc7d165dd726a607eff329655de0b32ac27334a550bea7b4205ac8fb0b36e",
    ),
    (
        "cni-plugins",
        "bandwidth",
        "4d7c2cd27e0065fd5d39884f67317756f3d6f5347e4bafd335a87b0e570318fc",
    ),
    (
        "cni-plugins",
        "firewall",
        "43ca583643402df54fe0e53022b37472f1f38ddd4d9439642ce44b45f9925509",
    ),
    (
        "cni-plugins",
        "tuning",
        "33516ccac06df8137c5a78a2c9dac8757718a7949c3a9022d59c16de2295c5af",
    ),
    (
        "cri-tools",
        "crictl",
        "5094f41c875d625567563a639895a8b733f064d3fa97b949672a26b62cdc1525",
    ),
    (
        "weave",
        "weaver",
        "4edf6831f35b83a0a6ad7de57051bd65dfbb22640576b01d11596ec20ad84162",
    ),
    (
        "weaveutil",
        "weaveutil",
        "c090d4af15a4a71787ceb45a87ea70339785f820309fbaa3a8c338db5a2ab0a7",
    ),
    (
        "weaveutil",
        "weave",
        "5f9b3209d58f489e7a2c5df7db0cabba590f5615689a6fa4f47f6fce3bcb4d4d",
    ),
    (
        "coredns",
        "coredns",
        "97f2da46df3ada478b82121ca9745a82e4acdd4ea6d1f6c0931aa0f9c654abaa",
    ),
];

/// Rebuilt from scratch by the test (cheap).
const CHEAP: [&str; 2] = ["cni-plugins", "busybox"];

#[test]
fn tested_definition_builds_are_byte_identical_when_rebuilt() {
    let def = definition::load(
        &repo_root().join("images/k8s-node-source.yaml"),
        &LoadOptions::default(),
    )
    .expect("tested definition");
    assert!(!def.builds.is_empty(), "the tested definition has builds");
    let shared = shared_cache();
    let fetched = fetch_artifacts_blocking(&def, &FetchOptions::new(shared.clone()))
        .expect("sources in the shared cache");

    let first = build_all(
        &def,
        &fetched,
        &shared,
        Some(EPOCH),
        false,
        &Progress::hidden(),
    )
    .expect("the shared cache's build");
    let digests = |p: &kubebake::manifest::Provenance| -> BTreeMap<String, String> {
        p.outputs
            .iter()
            .map(|o| (o.name.clone(), o.sha256.clone()))
            .collect()
    };
    let mut built = BTreeMap::new();
    for b in &first {
        if b.provenance.go.is_some() {
            for (name, sha) in digests(&b.provenance) {
                built.insert((b.provenance.name.clone(), name), sha);
            }
        }
    }
    let recorded: BTreeMap<(String, String), String> = RECORDED
        .iter()
        .map(|(b, o, d)| (((*b).to_string(), (*o).to_string()), (*d).to_string()))
        .collect();
    assert_eq!(
        built, recorded,
        "Go build outputs differ from the independent builds' digests"
    );

    let mut cheap = def.clone();
    cheap.builds.retain(|b| CHEAP.contains(&b.name.as_str()));
    assert_eq!(cheap.builds.len(), CHEAP.len());
    let first: Vec<_> = first
        .into_iter()
        .filter(|b| CHEAP.contains(&b.provenance.name.as_str()))
        .collect();
    let dir = scratch();
    let second = build_all(
        &cheap,
        &fetched,
        dir.path(),
        Some(EPOCH),
        false,
        &Progress::hidden(),
    )
    .expect("a second build from scratch");
    assert_eq!(first.len(), second.len());

    for (a, b) in first.iter().zip(&second) {
        assert!(
            !b.reused,
            "{}: the second build must build again",
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
            "TIME {} cold build: {:.0} s (first build: {:.0} s)",
            b.provenance.name, b.provenance.build_seconds, a.provenance.build_seconds
        );
    }
}
