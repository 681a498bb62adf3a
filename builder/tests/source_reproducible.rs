//! The offline definition's source builds are reproducible: building them
//! again from scratch, in another cache and so another absolute tree path,
//! gives byte-identical outputs (Kubernetes v1.20.2: seven Go binaries and
//! the static pause; busybox). The first build is the one the README's test
//! command made for the golden image (shared cache); this test runs one more
//! cold build of each (several minutes for Kubernetes on 2 cores).

mod common;

use std::collections::BTreeMap;

use common::{repo_root, scratch, shared_cache};
use kubebake::definition::{self, LoadOptions};
use kubebake::fetch::{fetch_artifacts_blocking, FetchOptions};
use kubebake::progress::Progress;
use kubebake::stages::source_build::build_all;

const EPOCH: i64 = 1_700_000_000;

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
    let dir = scratch();
    let second = build_all(&def, &fetched, dir.path(), Some(EPOCH), &Progress::hidden())
        .expect("a second build from scratch");

    for (a, b) in first.iter().zip(&second) {
        assert!(
            !b.reused,
            "{}: the second build must run the recipe",
            b.provenance.name
        );
        assert_eq!(a.provenance.cache_key, b.provenance.cache_key);
        let digests = |p: &kubebake::stages::source_build::Provenance| -> BTreeMap<String, String> {
            p.outputs
                .iter()
                .map(|o| (o.name.clone(), o.sha256.clone()))
                .collect()
        };
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
