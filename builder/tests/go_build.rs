//! Go builds (`builds[].go`) against the real Go module proxy: a small
//! public module (golang.org/x/example/hello) built with the host's Go
//! version as the pinned toolchain (no toolchain download). Provenance
//! (module, version and `h1:` hash from go.sum, flags with the stamps
//! expanded), a package's test binary, a file of the module copied as it
//! is, the cache entry reused, a byte-identical rebuild in a second
//! cache, a tampered go.sum failing the build naming the module, and
//! `--offline` with an empty module cache failing with what to do.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

use common::{repo_root, scratch};
use kubebake::definition::{self, LoadOptions};
use kubebake::progress::Progress;
use kubebake::stages::source_build::{build_all, Built};

const EPOCH: i64 = 1_700_000_000;
const MODULE: &str = "golang.org/x/example/hello";
const VERSION: &str = "v0.0.0-20250915201037-7f05d217867b";
const SUM: &str = "h1:+gZE2jOdiscYByu0606Uw8Ldir2Cecd39Vq/3IEasRA=";
const GO_MOD_SUM: &str = "h1:UhUKOXx5fMcLZxwL20DUrWWBBoRYG9Jvc8FiwZhRHCI=";

/// The host's Go version (`go1.N.P`): the build pins it, so no toolchain is
/// downloaded.
fn host_go_version() -> String {
    let go = ["/usr/local/go/bin/go", "go"]
        .into_iter()
        .find(|g| Command::new(g).arg("version").output().is_ok())
        .expect("a host Go (/usr/local/go/bin/go)");
    let out = Command::new(go)
        .args(["env", "GOVERSION"])
        .env("GOTOOLCHAIN", "local")
        .output()
        .expect("go env GOVERSION");
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}

/// A data root with units/ and dropins/ and a definition with one Go build.
fn fixture(go_sum: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    for d in ["units", "dropins"] {
        std::os::unix::fs::symlink(repo_root().join(d), root.join(d)).expect("symlink");
    }
    let module_dir = root.join("images/go/hello");
    std::fs::create_dir_all(&module_dir).expect("mkdir");
    std::fs::write(
        module_dir.join("go.mod"),
        format!("module kubebake.test/hello\n\ngo 1.24\n\ntool {MODULE}\n\nrequire {MODULE} {VERSION} // indirect\n"),
    )
    .expect("go.mod");
    std::fs::write(module_dir.join("go.sum"), go_sum).expect("go.sum");
    let def = root.join("images/hello.yaml");
    std::fs::write(
        &def,
        format!(
            r#"name: hello
version: "0.1.0"
base:
  suite: bookworm
  mirror: http://deb.debian.org/debian
builds:
  - name: hello
    version: "1.2.3"
    go:
      module-dir: go/hello
      toolchain: {toolchain}
      ldflags: [-s, -w]
      stamps:
        main.version: "v{{version}}"
        main.built: "{{date}}"
    outputs:
      - {{ name: hello, package: {MODULE}, path: /usr/local/bin/hello, mode: "0755" }}
      - {{ name: reverse.test, test-package: {MODULE}/reverse }}
      - name: hello.go
        module-file: {{ module: {MODULE}, file: hello.go }}
        path: /usr/share/hello/hello.go
        mode: "0644"
outputs:
  raw: true
  disk-size: 1GiB
"#,
            toolchain = host_go_version()
        ),
    )
    .expect("definition");
    (dir, def)
}

fn good_sum() -> String {
    format!("{MODULE} {VERSION} {SUM}\n{MODULE} {VERSION}/go.mod {GO_MOD_SUM}\n")
}

fn build(def: &Path, cache: &Path, offline: bool) -> anyhow::Result<Vec<Built>> {
    let def = definition::load(def, &LoadOptions::default()).expect("valid definition");
    build_all(&def, &[], cache, Some(EPOCH), offline, &Progress::hidden())
}

#[test]
fn go_build_records_provenance_reuses_its_entry_and_is_reproducible() {
    let (_dir, def) = fixture(&good_sum());
    let cache = scratch();
    let first = build(&def, cache.path(), false).expect("go build");
    let b = &first[0];
    assert!(!b.reused);
    let p = &b.provenance;
    let go = p.go.as_ref().expect("go provenance");
    assert_eq!(go.toolchain, host_go_version());
    assert_eq!(go.go_version, go.toolchain);
    assert!(!go.cgo);
    let ldflags = go
        .flags
        .iter()
        .find(|f| f.starts_with("-ldflags="))
        .expect("ldflags");
    assert!(ldflags.contains("-X=main.version=v1.2.3"), "{ldflags}");
    assert!(
        ldflags.contains("-X=main.built=2023-11-14T22:13:20Z"),
        "{ldflags}"
    );
    assert!(ldflags.contains("-buildid="), "{ldflags}");
    assert!(go.flags.contains(&"-trimpath".to_string()));
    assert_eq!(p.source_date_epoch, Some(EPOCH));
    let out = &p.outputs[0];
    let origin = out.go.as_ref().expect("module of the output");
    assert_eq!(origin.source, MODULE);
    assert_eq!(origin.module, MODULE);
    assert_eq!(origin.version, VERSION);
    assert_eq!(origin.sum, SUM);
    // A module's file: copied as it is from the verified module, with the
    // same provenance.
    let copied = p
        .outputs
        .iter()
        .find(|o| o.name == "hello.go")
        .expect("module-file output");
    let from = copied.go.as_ref().expect("module of the file");
    assert_eq!(from.source, format!("{MODULE}/hello.go"));
    assert_eq!(from.sum, SUM);
    let text = std::fs::read_to_string(b.output_path("hello.go")).expect("copied file");
    assert!(text.starts_with("// Copyright"), "{text}");
    assert!(text.contains("package main"), "{text}");
    // A package's test binary (go test -c): it runs the package's tests.
    let tests = Command::new(b.output_path("reverse.test"))
        .arg("-test.v")
        .output()
        .expect("run reverse.test");
    let said = String::from_utf8_lossy(&tests.stdout);
    assert!(tests.status.success(), "{said}");
    assert!(
        said.contains("--- PASS") && said.ends_with("PASS\n"),
        "{said}"
    );
    let test_origin = p
        .outputs
        .iter()
        .find(|o| o.name == "reverse.test")
        .and_then(|o| o.go.as_ref())
        .expect("test binary provenance");
    assert_eq!(test_origin.source, format!("{MODULE}/reverse"));
    assert_eq!(test_origin.sum, SUM);
    let binary = b.output_path("hello");
    let ran = Command::new(&binary).output().expect("run hello");
    assert!(ran.status.success());
    assert!(!ran.stdout.is_empty(), "hello prints a greeting");
    // The binary's embedded build info names the module and its hash.
    let info = Command::new("/usr/local/go/bin/go")
        .args(["version", "-m"])
        .arg(&binary)
        .env("GOTOOLCHAIN", "local")
        .output()
        .expect("go version -m");
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(info.contains("-trimpath=true"), "{info}");
    assert!(info.contains("CGO_ENABLED=0"), "{info}");

    // Same inputs: the entry is reused, nothing is rebuilt.
    let again = build(&def, cache.path(), false).expect("second build");
    assert!(again[0].reused);
    assert_eq!(again[0].provenance.outputs, p.outputs);

    // Offline with the modules cached: built again from the cache alone
    // (another epoch, so another entry), no network.
    let offline = {
        let d = definition::load(&def, &LoadOptions::default()).expect("valid");
        build_all(
            &d,
            &[],
            cache.path(),
            Some(EPOCH + 1),
            true,
            &Progress::hidden(),
        )
        .expect("offline build from the module cache")
    };
    assert!(!offline[0].reused);

    // A second, empty cache: downloads and compiles again, same bytes.
    let other = scratch();
    let second = build(&def, other.path(), false).expect("build in a second cache");
    assert_eq!(
        second[0].provenance.outputs[0].sha256, out.sha256,
        "two builds of the same go.sum give byte-identical binaries"
    );
}

#[test]
fn go_build_with_a_tampered_go_sum_fails_naming_the_module() {
    // One character of the module's hash changed.
    let tampered = good_sum().replace(SUM, "h1:+gZE2jOdiscYByu0606Uw8Ldir2Cecd39Vq/3IEasRB=");
    let (_dir, def) = fixture(&tampered);
    let cache = scratch();
    let err = format!(
        "{:#}",
        build(&def, cache.path(), false).expect_err("checksum mismatch")
    );
    assert!(err.contains(MODULE), "{err}");
    assert!(err.contains("checksum mismatch"), "{err}");
    assert!(
        !cache.path().join("builds").exists()
            || std::fs::read_dir(cache.path().join("builds"))
                .expect("builds dir")
                .next()
                .is_none(),
        "no cache entry after a failed build"
    );
}

#[test]
fn go_build_offline_with_an_empty_module_cache_says_what_to_do() {
    let (_dir, def) = fixture(&good_sum());
    let cache = scratch();
    let err = format!(
        "{:#}",
        build(&def, cache.path(), true).expect_err("nothing cached")
    );
    assert!(err.contains("--offline"), "{err}");
    assert!(err.contains("build once without --offline"), "{err}");
}
