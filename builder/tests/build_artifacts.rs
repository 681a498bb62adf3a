//! Builds the source-built image plus artifacts served on loopback HTTP: a good
//! artifact is installed and verified by inspect; a tampered one fails the
//! build naming artifact, URL, expected and actual digest, and leaves no
//! image and nothing in the cache under the expected digest.

use std::path::{Path, PathBuf};

mod common;

use common::{repo_root, rolectl, scratch, serve, shared_cache};
use kubebake::build::{build, BuildOptions};
use kubebake::definition::LoadOptions;
use kubebake::progress::Progress;
use sha2::{Digest as _, Sha256};

fn tarball() -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    let body = b"#!/bin/sh\necho hello from a loopback artifact\n";
    let mut header = tar::Header::new_gnu();
    header.set_size(body.len() as u64);
    header.set_mode(0o755);
    header.set_mtime(1_700_000_000);
    header.set_cksum();
    builder
        .append_data(&mut header, "./tool-1.0/bin/hello", &body[..])
        .expect("append");
    builder.into_inner().expect("tar").finish().expect("gzip")
}

/// A data root holding the repo's units/ and dropins/ and a definition that is
/// the source-built one plus `artifacts`.
fn definition(dir: &Path, artifacts: &str) -> PathBuf {
    for d in ["units", "dropins"] {
        std::os::unix::fs::symlink(repo_root().join(d), dir.join(d)).expect("symlink");
    }
    std::fs::create_dir_all(dir.join("images")).expect("images dir");
    // The source-built definition's recipes and Go modules live beside it.
    for d in ["recipes", "go"] {
        std::os::unix::fs::symlink(
            repo_root().join("images").join(d),
            dir.join("images").join(d),
        )
        .expect("symlink images/ data");
    }
    let offline =
        std::fs::read_to_string(repo_root().join("images/k8s-node-source.yaml")).expect("read");
    assert!(
        offline.contains("\nartifacts: []\n"),
        "the source-built definition changed shape"
    );
    let text = offline.replace("\nartifacts: []\n", &format!("\nartifacts:\n{artifacts}\n"));
    let path = dir.join("images/k8s-node-source.yaml");
    std::fs::write(&path, text).expect("write definition");
    path
}

fn options(def: &Path, out: &Path, cache: &Path) -> BuildOptions {
    BuildOptions {
        definition: def.to_path_buf(),
        out_dir: out.to_path_buf(),
        cache_dir: cache.to_path_buf(),
        offline: false,
        load: LoadOptions {
            data_root: None,
            allow_insecure_urls: true,
        },
        rolectl: rolectl(),
        source_date_epoch: Some(1_700_000_000),
        progress: Progress::hidden(),
        no_wait: false,
    }
}

#[test]
fn tampered_artifact_fails_and_leaves_nothing() {
    let good = b"the real binary\n".to_vec();
    let base = serve(vec![("/tool".into(), b"a tampered binary\n".to_vec())]);
    let dir = tempfile::tempdir().expect("tempdir");
    let expected = hex::encode(Sha256::digest(&good));
    let def = definition(
        dir.path(),
        &format!(
            "  - name: tool\n    version: \"1.0\"\n    url: {base}/tool\n    sha256: {expected}\n    install:\n      binary: {{ path: /usr/local/bin/tool, mode: \"0755\" }}"
        ),
    );
    let out = dir.path().join("out");
    let cache = dir.path().join("cache");
    let err =
        build(&options(&def, &out, &cache)).expect_err("a tampered artifact must fail the build");
    let msg = format!("{err:#}");
    for needle in ["tool", &format!("{base}/tool"), &expected] {
        assert!(msg.contains(needle), "error {msg:?} does not name {needle}");
    }
    let actual = hex::encode(Sha256::digest(b"a tampered binary\n"));
    assert!(
        msg.contains(&actual),
        "error {msg:?} does not give the actual digest {actual}"
    );
    assert!(
        !cache.join("sha256").join(&expected).exists(),
        "nothing may be cached under the expected digest"
    );
    let left: Vec<_> = std::fs::read_dir(&out)
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "a failed build must leave no output, found {left:?}"
    );
}

#[test]
fn loopback_artifacts_are_installed_and_verified() {
    let binary = b"#!/bin/sh\necho tool\n".to_vec();
    let tgz = tarball();
    let base = serve(vec![
        ("/tool".into(), binary.clone()),
        ("/tool-1.0.tar.gz".into(), tgz.clone()),
    ]);
    let dir = scratch();
    let def = definition(
        dir.path(),
        &format!(
            "  - name: tool\n    version: \"1.0\"\n    url: {base}/tool\n    sha256: {}\n    install:\n      binary: {{ path: /usr/local/bin/tool, mode: \"0755\" }}\n  - name: tool-archive\n    version: \"1.0\"\n    url: {base}/tool-1.0.tar.gz\n    sha256: {}\n    install:\n      archive:\n        - {{ member: tool-1.0/bin/hello, path: /opt/tool/bin/hello, mode: \"0750\" }}",
            hex::encode(Sha256::digest(&binary)),
            hex::encode(Sha256::digest(&tgz)),
        ),
    );
    let out = dir.path().join("out");
    let report =
        build(&options(&def, &out, &shared_cache())).expect("build with loopback artifacts");
    let manifest = kubebake::manifest::Manifest::read(&report.manifest).expect("manifest");
    let tool = manifest
        .artifacts
        .iter()
        .find(|a| a.name == "tool")
        .expect("tool in manifest");
    assert_eq!(tool.paths[0].path, "/usr/local/bin/tool");
    assert_eq!(tool.sha256, hex::encode(Sha256::digest(&binary)));
    let hello = manifest
        .artifacts
        .iter()
        .find(|a| a.name == "tool-archive")
        .expect("archive in manifest");
    assert_eq!(hello.paths[0].path, "/opt/tool/bin/hello");
    assert_eq!(hello.paths[0].mode, "0750");
    let qcow2 = out.join("k8s-node-source.qcow2");
    let inspected = kubebake::inspect::inspect(&qcow2, None).expect("inspect");
    for c in inspected.checks.iter().filter(|c| !c.ok) {
        eprintln!("FAILED {}: {}", c.what, c.detail);
    }
    assert!(inspected.ok());
    assert!(inspected
        .checks
        .iter()
        .any(|c| c.what == "file /opt/tool/bin/hello" && c.ok));
}
