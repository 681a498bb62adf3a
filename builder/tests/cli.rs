#![allow(clippy::unwrap_used)]
//! End-to-end tests of the `kubebake` binary: validate, fetch, the checks
//! build and bench make before any work, and the shape every command shares.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use kubebake::digest::{Algorithm, Digest};

fn kubebake(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubebake"))
        .args(args)
        .env_remove("KUBEBAKE_CACHE")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A data root with one shared unit and a definition with one file:// artifact.
fn setup(dir: &Path, artifact: &[u8], declared: &[u8]) -> String {
    for d in ["images", "units", "dropins"] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    fs::write(
        dir.join("units/rolectl.service.hbs"),
        "[Unit]\nDescription={{image.name}}\n",
    )
    .unwrap();
    fs::write(dir.join("payload.bin"), artifact).unwrap();
    let url = url::Url::from_file_path(dir.join("payload.bin")).unwrap();
    let digest = Digest::of_bytes(Algorithm::Sha256, declared);
    let yaml = format!(
        "name: cli-test\nversion: \"1\"\nbase: {{ suite: bookworm, mirror: http://deb.debian.org/debian, packages: [curl] }}\n\
         artifacts:\n  - name: payload\n    version: \"1\"\n    url: {url}\n    sha256: {}\n    install: {{ binary: {{ path: /usr/local/bin/payload, mode: \"0755\" }} }}\n\
         units:\n  - name: rolectl.service\noutputs: {{ qcow2: true, disk-size: 2GiB }}\n",
        digest.hex()
    );
    let def = dir.join("images/cli.yaml");
    fs::write(&def, yaml).unwrap();
    def.display().to_string()
}

#[test]
fn validate_prints_summary() {
    let dir = tempfile::tempdir().unwrap();
    let def = setup(dir.path(), b"x", b"x");
    let o = kubebake(&["validate", &def, "--allow-insecure-urls"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let s = text(&o.stdout);
    assert!(s.contains("cli-test 1: valid"), "{s}");
    assert!(s.contains("1 packages"), "{s}");
    assert!(s.contains("0 master, 0 minion, 1 shared"), "{s}");
}

#[test]
fn validate_reports_errors_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let def = setup(dir.path(), b"x", b"x");
    // Without the flag the file:// URL is refused.
    let o = kubebake(&["validate", &def]);
    assert_eq!(o.status.code(), Some(1));
    let e = text(&o.stderr);
    assert!(
        e.contains("artifacts[0].url") && e.contains("cli.yaml"),
        "{e}"
    );
}

#[test]
fn validate_json_lists_errors() {
    let dir = tempfile::tempdir().unwrap();
    let def = setup(dir.path(), b"x", b"x");
    fs::remove_file(dir.path().join("units/rolectl.service.hbs")).unwrap();
    let o = kubebake(&["--json", "validate", &def]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], false);
    let fields: Vec<&str> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert!(fields.contains(&"artifacts[0].url"), "{v}");
    assert!(fields.contains(&"units[0].name"), "{v}");
    assert!(v["errors"][0]["file"]
        .as_str()
        .unwrap()
        .ends_with("cli.yaml"));
}

#[test]
fn validate_json_includes_definition() {
    let dir = tempfile::tempdir().unwrap();
    let def = setup(dir.path(), b"x", b"x");
    let o = kubebake(&["validate", &def, "--json", "--allow-insecure-urls"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["errors"].as_array().unwrap().len(), 0);
    assert_eq!(v["definition"]["name"], "cli-test");
    assert_eq!(v["definition"]["outputs"]["disk-size"], 2u64 << 30);
}

#[test]
fn validate_catches_template_errors() {
    let dir = tempfile::tempdir().unwrap();
    let def = setup(dir.path(), b"x", b"x");
    fs::write(
        dir.path().join("units/rolectl.service.hbs"),
        "{{undefined_var}}\n",
    )
    .unwrap();
    let o = kubebake(&["validate", &def, "--allow-insecure-urls"]);
    assert_eq!(o.status.code(), Some(1));
    let e = text(&o.stderr);
    assert!(
        e.contains("undefined_var") && e.contains("rolectl.service.hbs"),
        "{e}"
    );
}

#[test]
fn fetch_file_url_into_cache_then_offline() {
    let dir = tempfile::tempdir().unwrap();
    let def = setup(dir.path(), b"payload", b"payload");
    let cache = dir.path().join("cache");
    let cache_s = cache.display().to_string();
    let o = kubebake(&[
        "fetch",
        &def,
        "--cache",
        &cache_s,
        "--allow-insecure-urls",
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let hex = Digest::of_bytes(Algorithm::Sha256, b"payload").hex();
    assert_eq!(v["artifacts"][0]["sha256"], format!("sha256:{hex}"));
    assert_eq!(
        fs::read(cache.join("sha256").join(&hex)).unwrap(),
        b"payload"
    );

    let o = kubebake(&[
        "fetch",
        &def,
        "--cache",
        &cache_s,
        "--allow-insecure-urls",
        "--offline",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("1 artifact(s) verified"));
}

#[test]
fn fetch_mismatch_fails() {
    let dir = tempfile::tempdir().unwrap();
    let def = setup(dir.path(), b"evil", b"good");
    let cache = dir.path().join("cache").display().to_string();
    let o = kubebake(&["fetch", &def, "--cache", &cache, "--allow-insecure-urls"]);
    assert_eq!(o.status.code(), Some(1));
    let e = text(&o.stderr);
    assert!(e.contains("payload") && e.contains("mismatch"), "{e}");
}

/// `setup`'s data root, with the definition moved to `<dir>/defs/x/`, where
/// the default data root (`<dir>/defs`) has no units: only `--data-root`
/// finds them.
fn setup_elsewhere(dir: &Path) -> String {
    let def = setup(dir, b"x", b"x");
    let moved = dir.join("defs/x/cli.yaml");
    fs::create_dir_all(moved.parent().unwrap()).unwrap();
    fs::rename(&def, &moved).unwrap();
    moved.display().to_string()
}

#[test]
fn build_honours_data_root() {
    let dir = tempfile::tempdir().unwrap();
    let def = setup_elsewhere(dir.path());
    let root = dir.path().display().to_string();
    let out = dir.path().join("out").display().to_string();
    let cache = dir.path().join("cache").display().to_string();
    let o = kubebake(&[
        "build",
        &def,
        "--data-root",
        &root,
        "--allow-insecure-urls",
        "--out",
        &out,
        "--cache",
        &cache,
        "--rolectl",
        "/nonexistent/rolectl",
    ]);
    // The definition and its templates pass; the build stops at the missing
    // rolectl (before anything is downloaded), not at the templates.
    let err = text(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("/nonexistent/rolectl"), "{err}");
    assert!(!err.contains("rolectl.service.hbs"), "{err}");
}

#[test]
fn bench_honours_data_root_and_allow_insecure_urls() {
    let dir = tempfile::tempdir().unwrap();
    let def = setup_elsewhere(dir.path());
    let root = dir.path().display().to_string();
    let work = dir.path().join("work").display().to_string();
    let o = kubebake(&[
        "bench",
        &def,
        "--data-root",
        &root,
        "--allow-insecure-urls",
        "--work",
        &work,
        "--rolectl",
        "/nonexistent/rolectl",
    ]);
    // Checked like `build`, before the (minutes long) floor measurement.
    let err = text(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("/nonexistent/rolectl"), "{err}");
    assert!(!err.contains("https"), "{err}");
}

#[test]
fn boot_until_login_can_be_turned_off() {
    let o = kubebake(&["boot", "/nonexistent/x.qcow2", "--until-login=false"]);
    // Parsed (exit 1: no such image), not refused by the parser (exit 2).
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("not found"), "{}", text(&o.stderr));
}

#[test]
fn closed_stdout_pipe_is_not_a_panic() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let o = Command::new(env!("CARGO_BIN_EXE_kubebake"))
        .args(["userdata", "--role", "minion", "--cluster", "demo"])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(!text(&o.stderr).contains("panicked"), "{}", text(&o.stderr));
}

#[test]
fn vm_commands_honour_json() {
    let o = kubebake(&[
        "--json",
        "userdata",
        "--role",
        "minion",
        "--cluster",
        "demo",
        "--expected-minions",
        "2",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["role"], "minion");
    assert!(v["user_data"]
        .as_str()
        .unwrap()
        .contains("expected_minions: 2"));

    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("none").display().to_string();
    let o = kubebake(&["status", "--json", "--state-dir", &state]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], false);
    let o = kubebake(&["down", "--json", "--cluster", "nope", "--state-dir", &state]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["cluster"], serde_json::Value::Null);
}
