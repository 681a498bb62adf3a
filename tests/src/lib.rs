//! Shared helpers for the VM tests in `tests/tests/`. The VM machinery is the
//! harness crate (`harness`, shared with `kubebake up/down/status`); the
//! golden image's typed boot spec comes from the builder's manifest
//! (`kubebake::layout::boot_spec`).
//!
//! Every test boots the golden image from `KUBEBAKE_IMAGE` or
//! `out/k8s-node-source.qcow2` (repo root); a missing image FAILS the test.
//! Serial logs are kept under `target/vm-logs/<test>/`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use harness::cluster::{Cluster, ClusterOptions};
use harness::BootSpec;

/// Generous per-wait timeout (TCG, 2 cores shared by up to 3 VMs).
pub const WAIT: Duration = Duration::from_secs(300);

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The golden image under test; panics (fails the test) when missing.
pub fn golden() -> BootSpec {
    let path = std::env::var_os("KUBEBAKE_IMAGE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("out/k8s-node-source.qcow2"));
    match kubebake::layout::boot_spec(&path) {
        Ok(g) => g,
        Err(e) => panic!(
            "{e:#}\nThe VM tests need the golden image: run `scripts/main.sh` (or `kubebake build images/k8s-node-source.yaml --out out/`), or set KUBEBAKE_IMAGE."
        ),
    }
}

/// The manifest written beside the golden image.
pub fn manifest() -> Result<kubebake::manifest::Manifest> {
    let image = golden();
    kubebake::manifest::Manifest::read(
        &kubebake::layout::ImageLayout::of_image(&image.disk)?.manifest(),
    )
}

/// Log directory of `test`: target/vm-logs/<test>/ (emptied first).
pub fn log_dir(test: &str) -> PathBuf {
    let d = repo_root().join("target/vm-logs").join(test);
    let _ = std::fs::remove_dir_all(&d);
    d
}

pub fn options(test: &str, image: BootSpec, memory_mib: u32) -> ClusterOptions {
    ClusterOptions {
        image,
        domain: "k8s".into(),
        memory_mib,
        cpus: 1,
        master: None,
        disk_gib: Some(8),
        work_dir: log_dir(test),
        die_with_parent: true,
    }
}

pub fn start(test: &str, image: BootSpec, memory_mib: u32) -> Cluster {
    match Cluster::start(options(test, image, memory_mib)) {
        Ok(c) => c,
        Err(e) => panic!("starting the VM cluster for {test}: {e:#}"),
    }
}

/// SHA-256 of the golden disk (the builder's one hashing helper).
pub fn disk_sha256(image: &BootSpec) -> String {
    match kubebake::manifest::sha256_file(&image.disk) {
        Ok(s) => s,
        Err(e) => panic!("hashing the golden image: {e:#}"),
    }
}

/// Prints a measured time.
pub fn report(what: &str, d: Duration) {
    eprintln!("TIME {what}: {:.1} s", d.as_secs_f64());
}

pub fn since(t: Instant) -> Duration {
    t.elapsed()
}

/// Parses `systemctl show -p A,B unit` output into pairs.
pub fn show(out: &str) -> std::collections::BTreeMap<String, String> {
    out.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `systemctl show -p ConditionResult,ActiveState UNIT` on `vm`:
/// (condition, active state). The condition is "yes", "no", or
/// "unevaluated" (systemd reports ConditionResult=no until the unit's start
/// job ran, so ConditionTimestampMonotonic tells them apart).
pub fn unit_state(c: &Cluster, vm: &str, unit: &str) -> Result<(String, String)> {
    let out = c.ssh(
        vm,
        &format!(
            "systemctl show -p ConditionResult,ConditionTimestampMonotonic,ActiveState {unit}"
        ),
    )?;
    let m = show(&out);
    let evaluated = m
        .get("ConditionTimestampMonotonic")
        .is_some_and(|t| t != "0");
    let cond = m
        .get("ConditionResult")
        .cloned()
        .context("no ConditionResult")?;
    Ok((
        if evaluated {
            cond
        } else {
            "unevaluated".into()
        },
        m.get("ActiveState").cloned().context("no ActiveState")?,
    ))
}

/// Whether `unit` has a queued start job on `vm` (waiting on a dependency).
pub fn has_job(c: &Cluster, vm: &str, unit: &str) -> Result<bool> {
    let out = c.ssh(vm, &format!("systemctl list-jobs --no-legend {unit}"))?;
    Ok(out.contains(unit))
}

/// No namespace, tap or qemu of this process is left.
pub fn assert_clean(ns: &str) {
    let list = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    assert!(
        !list
            .lines()
            .any(|l| l.split_whitespace().next() == Some(ns)),
        "namespace {ns} left behind"
    );
    let me = std::process::id().to_string();
    let children = std::process::Command::new("pgrep")
        .args(["-P", &me, "qemu-system"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    assert!(
        children.trim().is_empty(),
        "qemu processes left: {children}"
    );
}

/// Fresh secrets for `cluster` (`kubebake cluster init`), in a temporary
/// directory that lives as long as the returned guard.
pub fn cluster_secrets(
    cluster: &str,
) -> (tempfile::TempDir, kubebake::cluster_secrets::ClusterSecrets) {
    use kubebake::cluster_secrets::{init, ClusterName, InitOptions};
    let dir = tempfile::tempdir().expect("tempdir");
    let name = ClusterName::try_from(cluster).expect("cluster name");
    let secrets = init(&name, &dir.path().join("secrets"), &InitOptions::default())
        .unwrap_or_else(|e| panic!("cluster secrets for {cluster}: {e:#}"));
    (dir, secrets)
}

/// Generated `#cloud-config` for `role` plus the cluster's credentials, as
/// a file (the harness adds its SSH key as a second MIME part). `token`
/// replaces the cluster's bootstrap token (a node that must be refused).
pub fn credentialed_user_data(
    secrets: &kubebake::cluster_secrets::ClusterSecrets,
    role: harness::Role,
    cluster: &str,
    expected_minions: Option<u32>,
    token: Option<&str>,
) -> Result<harness::cluster::UserData> {
    let mut section = secrets.userdata_section(role, None)?;
    if let Some(other) = token {
        section = section.replace(&secrets.token.expose(), other);
    }
    let text = format!(
        "{}{section}",
        harness::userdata::cloud_config(role, cluster, None, expected_minions, &[]),
    );
    Ok(harness::cluster::UserData::File(text.into_bytes()))
}

/// A cluster whose masters get 2 vCPUs (multi-threaded TCG) and 2.5 GiB for
/// the control plane; every other VM `memory_mib` and 1 vCPU.
pub fn start_with_control_plane(test: &str, image: BootSpec, memory_mib: u32) -> Cluster {
    let mut opts = options(test, image, memory_mib);
    opts.master = Some(harness::cluster::Sizing {
        memory_mib: 2560,
        cpus: 2,
    });
    match Cluster::start(opts) {
        Ok(c) => c,
        Err(e) => panic!("starting the VM cluster for {test}: {e:#}"),
    }
}
