//! Runs `rolectl activate` on every fixture under
//! tests/fixtures/userdata/{valid,invalid}/<case>/user-data.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::*;

fn run_all(kind: &str, min: usize) {
    let cases = cases(kind);
    assert!(cases.len() >= min, "only {} {kind} cases", cases.len());
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|c| check_case(c, &fs::read(c.join("user-data")).unwrap()).err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} {kind} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

#[test]
fn valid_corpus() {
    run_all("valid", 20);
}

#[test]
fn invalid_corpus() {
    run_all("invalid", 30);
}

/// The checker itself must be able to fail: a valid case checked against
/// the wrong user-data is reported.
#[test]
fn checker_detects_mismatch() {
    let c = fixtures().join("userdata/valid/cloud-config-master-minimal");
    assert!(check_case(&c, b"touch /etc/sysconfig/kubernetes-minion").is_err());
    let c = fixtures().join("userdata/invalid/role-unknown");
    assert!(check_case(&c, b"touch /etc/sysconfig/kubernetes-minion").is_err());
}

/// Regenerates the MIME fixtures with cloud-init's own make-mime and checks
/// them against the committed expectations. cloud-init is a test dependency
/// (scripts/setup-host.sh installs it): missing it is a failure, not a skip.
#[test]
fn make_mime_fixtures_regenerated_by_cloud_init() {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("cloud-init").is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "cloud-init is not on PATH: it generates the MIME fixtures; run scripts/setup-host.sh (installs the Debian package cloud-init)"
    );
    let out = tempfile::tempdir().unwrap();
    let script = fixtures().join("make-mime.sh");
    let o = Command::new("bash")
        .arg(&script)
        .arg(out.path())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "make-mime.sh failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut n = 0;
    for kind in ["valid", "invalid"] {
        for case in fs::read_dir(out.path().join(kind)).unwrap() {
            let case = case.unwrap().path();
            let name = case.file_name().unwrap();
            let committed = fixtures().join("userdata").join(kind).join(name);
            let data = fs::read(case.join("user-data")).unwrap();
            assert!(
                data.starts_with(b"Content-Type: multipart/mixed")
                    || data.starts_with(&[0x1f, 0x8b]),
                "{}: not make-mime output",
                case.display()
            );
            check_case(&committed, &data).unwrap();
            n += 1;
        }
    }
    assert!(n >= 9, "only {n} MIME cases generated");
    assert!(Path::new(&fixtures().join("mime-src")).is_dir());
}
