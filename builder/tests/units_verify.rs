//! `systemd-analyze verify` on every unit and drop-in as rendered into the
//! image's root: the source-built definition's base root filesystem (the cached
//! mmdebstrap tarball the build uses) with the overlay stage applied.
//! the source-built definition's Kubernetes binaries are build outputs (built from
//! Debian's source package by the build stage, not part of the base): empty
//! executables stand in for exactly those paths. The production
//! definition's units are verified in the same root; its upstream binaries
//! (kubelet, kube-apiserver, …) cannot be downloaded here, so empty
//! executables stand in for every missing ExecStart binary in its root.

mod common;

use std::path::Path;
use std::process::Command;

use common::{repo_root, rolectl, scratch, shared_cache};
use kubebake::definition::{self, Definition, LoadOptions};
use kubebake::render;
use kubebake::stages::{overlay, rootfs};

fn load(name: &str) -> Definition {
    definition::load(
        &repo_root().join("images").join(name),
        &LoadOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn verify(root: &Path, def: &Definition) -> Vec<String> {
    let units: Vec<String> = def
        .units
        .iter()
        .map(|u| {
            root.join("etc/systemd/system")
                .join(&u.name)
                .display()
                .to_string()
        })
        .collect();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .args(["--man=no", "--generators=no"])
        .args(&units)
        .output()
        .expect("run systemd-analyze (Debian package systemd; scripts/setup-host.sh installs it)");
    let mut problems: Vec<String> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .chain(String::from_utf8_lossy(&out.stdout).lines())
        .map(str::to_string)
        .filter(|l| !l.trim().is_empty())
        .collect();
    if !out.status.success() && problems.is_empty() {
        problems.push(format!("systemd-analyze verify exited with {}", out.status));
    }
    problems
}

/// Empty executables for ExecStart*= binaries the base does not have.
fn stub_missing_binaries(root: &Path, rendered: &[render::RenderedFile]) -> Vec<String> {
    let mut stubbed = Vec::new();
    for f in rendered
        .iter()
        .filter(|f| f.path.as_str().starts_with("/etc/systemd/system/"))
    {
        for (_, key, value) in render::parse_unit_file(&f.content) {
            if !key.starts_with("Exec") {
                continue;
            }
            let Some(bin) = value
                .trim_start_matches(['-', '@', ':', '+', '!'])
                .split_whitespace()
                .next()
            else {
                continue;
            };
            if bin.starts_with('/') && !root.join(&bin[1..]).exists() {
                overlay::write_file(root, bin, b"#!/bin/sh\n", 0o755).expect("stub");
                stubbed.push(bin.to_string());
            }
        }
    }
    stubbed
}

/// Empty executables at the install paths of the definition's build outputs.
fn stub_build_outputs(root: &Path, def: &Definition) -> Vec<String> {
    let mut stubbed = Vec::new();
    for b in &def.builds {
        for (path, _) in b.outputs.iter().filter_map(|o| o.install.as_ref()) {
            overlay::write_file(root, path.as_str(), b"#!/bin/sh\n", 0o755).expect("stub");
            stubbed.push(path.as_str().to_string());
        }
    }
    stubbed
}

/// The offline base unpacked into `dir/name` with `def`'s overlay applied as
/// the overlay stage applies it, build outputs stubbed (`stub` also adds
/// stand-ins for any other missing binary before enabling).
fn image_root(dir: &Path, name: &str, def: &Definition, stub: bool) -> std::path::PathBuf {
    let offline = load("k8s-node-source.yaml");
    let base = rootfs::ensure_base(&offline, &shared_cache(), Some(1_700_000_000), false)
        .expect("base root filesystem");
    let root = dir.join(name);
    rootfs::unpack(&base.path, &root).expect("unpack");
    let rendered = render::render_all(def).expect("render");
    overlay::write_rendered(&root, &rendered).expect("write");
    overlay::make_links(&root, def).expect("links");
    overlay::install_rolectl(&root, &rolectl()).expect("rolectl");
    let built = stub_build_outputs(&root, def);
    eprintln!("{name}: build outputs stubbed in the test root: {built:?}");
    if stub {
        let stubbed = stub_missing_binaries(&root, &rendered);
        eprintln!("{name}: stand-ins in the test root for {stubbed:?}");
    }
    overlay::enable_units(&root, def).expect("enable");
    root
}

#[test]
fn rendered_units_pass_systemd_analyze_verify() {
    let offline = load("k8s-node-source.yaml");
    let production = load("k8s-node.yaml");
    let dir = scratch();

    // The source-built image exactly as the overlay stage makes it.
    let root = image_root(dir.path(), "offline", &offline, false);
    let problems = verify(&root, &offline);
    assert!(
        problems.is_empty(),
        "offline units:\n{}",
        problems.join("\n")
    );

    // The production units, in the same kind of root.
    let root = image_root(dir.path(), "production", &production, true);
    let problems = verify(&root, &production);
    assert!(
        problems.is_empty(),
        "production units:\n{}",
        problems.join("\n")
    );
}

#[test]
fn verify_catches_a_broken_unit() {
    // The check above must be able to fail: a unit with an unknown section
    // key and a relative ExecStart is reported.
    let offline = load("k8s-node-source.yaml");
    let dir = scratch();
    let root = image_root(dir.path(), "broken", &offline, false);
    overlay::write_file(
        &root,
        "/etc/systemd/system/etcd.service.d/broken.conf",
        b"[Service]\nExecStartPost=relative/path\nNoSuchKey=1\n",
        0o644,
    )
    .expect("write broken drop-in");
    let problems = verify(&root, &offline);
    assert!(
        !problems.is_empty(),
        "systemd-analyze verify accepted a broken drop-in"
    );
}
