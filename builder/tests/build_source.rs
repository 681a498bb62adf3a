//! Builds the source-built image twice with the same SOURCE_DATE_EPOCH and checks
//! that it verifies with `inspect` and that both builds are byte-identical.
//! Needs the host tools of scripts/setup-host.sh and a Debian mirror; takes
//! a few minutes (the second build reuses the cached base root filesystem).

use std::path::Path;

mod common;

use common::{repo_root, rolectl, scratch, shared_cache};
use kubebake::build::{build, BuildOptions};
use kubebake::definition::LoadOptions;
use kubebake::progress::Progress;

fn options(out: &Path) -> BuildOptions {
    BuildOptions {
        definition: repo_root().join("images/k8s-node-source.yaml"),
        out_dir: out.to_path_buf(),
        cache_dir: shared_cache(),
        offline: false,
        load: LoadOptions {
            data_root: None,
            allow_insecure_urls: false,
        },
        rolectl: rolectl(),
        source_date_epoch: Some(1_700_000_000),
        progress: Progress::hidden(),
        no_wait: false,
    }
}

#[test]
fn offline_image_builds_reproducibly_and_verifies() {
    let a = scratch();
    let b = scratch();

    let first = build(&options(a.path())).expect("first build");
    let second = build(&options(b.path())).expect("second build");
    assert!(
        second.rootfs_reused,
        "the second build must reuse the cached base"
    );
    for kind in ["raw", "qcow2", "kernel", "initrd"] {
        let x = first.outputs.iter().find(|o| o.kind == kind).expect(kind);
        let y = second.outputs.iter().find(|o| o.kind == kind).expect(kind);
        assert_eq!(
            x.sha256, y.sha256,
            "{kind} differs between two builds with the same inputs"
        );
    }
    // The second build took its qcow2 clusters from the cache; a conversion
    // without any cache gives the same bytes.
    let raw = a.path().join("k8s-node-source.raw");
    let uncached = a.path().join("uncached.qcow2");
    let converted =
        kubebake::qcow2::convert(&raw, Some(&uncached), None).expect("convert without a cache");
    let qcow2 = second
        .outputs
        .iter()
        .find(|o| o.kind == "qcow2")
        .expect("qcow2");
    assert_eq!(
        converted.qcow2_sha256.as_deref(),
        Some(qcow2.sha256.as_str()),
        "the qcow2 made from the cluster cache differs from one made without it"
    );
    std::fs::remove_file(&uncached).expect("remove the uncached qcow2");

    // Nothing but the outputs is left in the output directory.
    let mut names: Vec<String> = std::fs::read_dir(a.path())
        .expect("read out dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "k8s-node-source.initrd",
            "k8s-node-source.manifest.json",
            "k8s-node-source.qcow2",
            "k8s-node-source.raw",
            "k8s-node-source.vmlinuz"
        ]
    );

    let report = kubebake::inspect::inspect(&raw, None).expect("inspect");
    for c in report.checks.iter().filter(|c| !c.ok) {
        eprintln!("FAILED {}: {}", c.what, c.detail);
    }
    assert!(report.ok(), "{} inspect checks failed", report.failures);
    let etcd = report
        .units
        .iter()
        .find(|u| u.unit == "etcd.service")
        .expect("etcd unit");
    assert_eq!(etcd.conditions, ["/etc/sysconfig/kubernetes-master"]);
    let docker = report
        .units
        .iter()
        .find(|u| u.unit == "docker.service")
        .expect("docker unit");
    assert_eq!(docker.conditions, ["/etc/sysconfig/kubernetes-minion"]);
    let rolectl = report
        .units
        .iter()
        .find(|u| u.unit == "rolectl.service")
        .expect("rolectl unit");
    assert!(rolectl.conditions.is_empty());

    // Tampering with a byte of the image is caught.
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&raw)
            .expect("open raw");
        f.seek(SeekFrom::Start(600)).expect("seek");
        f.write_all(b"tampered").expect("write");
    }
    let report = kubebake::inspect::inspect(&raw, None).expect("inspect tampered");
    assert!(!report.ok(), "inspect must fail on a modified image");
}
