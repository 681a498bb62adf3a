//! Integration tests of the `rolectl` binary on temporary directory trees.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;

const MINION: &[u8] = b"#cloud-config\nkubernetes:\n  role: minion\n  cluster: demo\n  expected_minions: 2\n  weave:\n    password: secret-pass-1\n";

#[test]
fn activate_writes_marker_0600_and_status() {
    let t = tempfile::tempdir().unwrap();
    put_user_data(t.path(), MINION);
    let o = activate(t.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let m = marker(t.path(), "minion");
    let text = fs::read_to_string(&m).unwrap();
    assert_eq!(
        env_lines(&text),
        [
            "ROLE=minion",
            "CLUSTER_NAME=demo",
            "CLUSTER_DOMAIN=k8s",
            "EXPECTED_MINIONS=2",
            "WEAVE_PASSWORD=secret-pass-1"
        ]
    );
    assert_eq!(
        fs::metadata(&m).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(!marker(t.path(), "master").exists());
    let s = status_json(t.path());
    assert_eq!(s["outcome"], "activated");
    assert_eq!(s["role"], "minion");
    assert_eq!(s["cluster"], "demo");
    assert_eq!(s["user_data"], "/var/lib/cloud/instance/user-data.txt");
    assert_eq!(s["source"], "user-data line 3");
    // Timing: the marker is durable within milliseconds of start.
    let us = s["elapsed_us"].as_u64().unwrap();
    assert!(us < 500_000, "activation took {us} us");
    // No temp files left next to the marker.
    let n = fs::read_dir(m.parent().unwrap()).unwrap().count();
    assert_eq!(n, 1);
}

#[test]
fn user_data_option_is_relative_to_root() {
    let t = tempfile::tempdir().unwrap();
    put(
        t.path(),
        "/srv/ud",
        b"touch /etc/sysconfig/kubernetes-master\n",
    );
    let o = rolectl(&[
        "activate",
        "--root",
        &root_arg(t.path()),
        "--user-data",
        "/srv/ud",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(marker(t.path(), "master").exists());
    assert_eq!(status_json(t.path())["user_data"], "/srv/ud");
}

#[test]
fn missing_explicit_user_data_file_is_an_error() {
    // Only the default location may be absent; a file named on the command
    // line that does not exist is a mistake, not "no role".
    let t = tempfile::tempdir().unwrap();
    let o = rolectl(&[
        "activate",
        "--root",
        &root_arg(t.path()),
        "--user-data",
        "/srv/missing",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("/srv/missing"), "{}", stderr(&o));
    assert!(!marker(t.path(), "master").exists() && !marker(t.path(), "minion").exists());
    assert_eq!(status_json(t.path())["outcome"], "error");
}

#[test]
fn no_user_data_leaves_host_unassigned() {
    let t = tempfile::tempdir().unwrap();
    let o = activate(t.path());
    assert_eq!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("unassigned"), "{}", stderr(&o));
    assert!(!marker(t.path(), "master").exists() && !marker(t.path(), "minion").exists());
    let s = status_json(t.path());
    assert_eq!(s["outcome"], "unassigned");
    assert!(
        s["reason"]
            .as_str()
            .unwrap()
            .contains("no datasource gave user-data"),
        "{s}"
    );
}

#[test]
fn reboot_keeps_role_and_leaves_marker_untouched() {
    let t = tempfile::tempdir().unwrap();
    put_user_data(t.path(), MINION);
    assert!(activate(t.path()).status.success());
    let m = marker(t.path(), "minion");
    let before = fs::metadata(&m).unwrap();
    let ino = std::os::unix::fs::MetadataExt::ino(&before);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let o = activate(t.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("already a minion"), "{}", stderr(&o));
    let after = fs::metadata(&m).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&after),
        ino,
        "marker was rewritten"
    );
    assert_eq!(before.modified().unwrap(), after.modified().unwrap());
    assert_eq!(status_json(t.path())["outcome"], "unchanged");
    // User-data removed later: role kept.
    fs::remove_file(t.path().join(USER_DATA)).unwrap();
    assert_eq!(activate(t.path()).status.code(), Some(0));
    assert!(m.exists());
}

#[test]
fn different_role_on_activated_host_is_refused() {
    let t = tempfile::tempdir().unwrap();
    put_user_data(t.path(), MINION);
    assert!(activate(t.path()).status.success());
    let before = fs::read(marker(t.path(), "minion")).unwrap();
    put_user_data(t.path(), b"touch /etc/sysconfig/kubernetes-master\n");
    let o = activate(t.path());
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("already a minion") && e.contains("asks for role master"),
        "{e}"
    );
    assert!(!marker(t.path(), "master").exists());
    assert_eq!(fs::read(marker(t.path(), "minion")).unwrap(), before);
    let s = status_json(t.path());
    assert_eq!(s["outcome"], "error");
    assert!(s["error"].as_str().unwrap().contains("already a minion"));
}

#[test]
fn different_cluster_on_activated_host_is_refused() {
    let t = tempfile::tempdir().unwrap();
    put_user_data(t.path(), MINION);
    assert!(activate(t.path()).status.success());
    let other = String::from_utf8_lossy(MINION).replace("cluster: demo", "cluster: other");
    put_user_data(t.path(), other.as_bytes());
    let o = activate(t.path());
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("CLUSTER_NAME=demo") && e.contains("CLUSTER_NAME=other"),
        "{e}"
    );
    // A changed secret is reported masked.
    let pw = String::from_utf8_lossy(MINION).replace("secret-pass-1", "secret-pass-2");
    put_user_data(t.path(), pw.as_bytes());
    let e = stderr(&activate(t.path()));
    assert!(
        e.contains("WEAVE_PASSWORD=***") && !e.contains("secret-pass"),
        "{e}"
    );
}

#[test]
fn both_markers_present_is_an_error() {
    let t = tempfile::tempdir().unwrap();
    put(
        t.path(),
        "/etc/sysconfig/kubernetes-master",
        b"ROLE=master\nCLUSTER_NAME=a\n",
    );
    put(
        t.path(),
        "/etc/sysconfig/kubernetes-minion",
        b"ROLE=minion\nCLUSTER_NAME=a\n",
    );
    put_user_data(t.path(), b"touch /etc/sysconfig/kubernetes-master\n");
    let o = activate(t.path());
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("a host has one role"), "{}", stderr(&o));
    assert_eq!(status_json(t.path())["outcome"], "error");
}

#[test]
fn empty_seed_marker_is_completed() {
    // The seed's `touch` ran (e.g. cloud-init executed the script): an empty
    // marker with the same role is filled in; the other role is refused.
    let t = tempfile::tempdir().unwrap();
    put(t.path(), "/etc/sysconfig/kubernetes-master", b"");
    put_user_data(
        t.path(),
        b"#cloud-config\nkubernetes: {role: master, cluster: demo}\n",
    );
    assert!(activate(t.path()).status.success());
    let text = fs::read_to_string(marker(t.path(), "master")).unwrap();
    assert!(text.contains("CLUSTER_NAME=demo"), "{text}");
    let t = tempfile::tempdir().unwrap();
    put(t.path(), "/etc/sysconfig/kubernetes-master", b"");
    put_user_data(t.path(), b"touch /etc/sysconfig/kubernetes-minion\n");
    assert_eq!(activate(t.path()).status.code(), Some(1));
}

#[test]
fn corrupt_marker_is_reported() {
    let t = tempfile::tempdir().unwrap();
    put(
        t.path(),
        "/etc/sysconfig/kubernetes-minion",
        b"ROLE=minion\nCLUSTER_NAME=$(reboot)\n",
    );
    put_user_data(t.path(), MINION);
    let o = activate(t.path());
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("kubernetes-minion line 2"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn usage_errors_exit_1() {
    for args in [
        &["frobnicate"][..],
        &["activate", "--bogus"],
        &["wait-master"],
        &["preflight", "--role", "boss"],
        &[],
    ] {
        let o = rolectl(args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(stderr(&o).contains("usage:"), "{args:?}: {}", stderr(&o));
    }
    assert!(rolectl(&["--help"]).status.success());
}

/// kube-proxy's ExecStartPre: waits for the kubeconfig the kubelet writes
/// after its TLS bootstrap, then exits 0; on timeout exit 2. It needs no
/// marker and leaves status.json (the kubelet's wait) alone.
#[test]
fn wait_master_node_kubeconfig_waits_for_the_kubelets_file() {
    let t = tempfile::tempdir().unwrap();
    put_user_data(t.path(), MINION);
    assert!(activate(t.path()).status.success());
    let before = fs::read_to_string(t.path().join("run/rolectl/status.json")).unwrap();
    let root = root_arg(t.path());
    let args = |timeout: &'static str| {
        vec![
            "wait-master".to_string(),
            "--root".into(),
            root.clone(),
            "--node-kubeconfig".into(),
            "/etc/kubernetes/kubelet.conf".into(),
            "--timeout".into(),
            timeout.into(),
            "--initial-backoff".into(),
            "0.05".into(),
            "--max-backoff".into(),
            "0.1".into(),
        ]
    };
    let child = std::process::Command::new(BIN)
        .args(args("20"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(400));
    put(
        t.path(),
        "/etc/kubernetes/kubelet.conf",
        b"apiVersion: v1\n",
    );
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("waiting for the node's kubeconfig: ")
            && err.contains("kubelet.conf does not exist yet"),
        "{err}"
    );
    assert!(
        err.contains("etc/kubernetes/kubelet.conf is there"),
        "{err}"
    );
    assert_eq!(
        fs::read_to_string(t.path().join("run/rolectl/status.json")).unwrap(),
        before
    );

    // No marker needed; an empty file is not there yet; timeout: exit 2.
    let t = tempfile::tempdir().unwrap();
    put(t.path(), "/etc/kubernetes/kubelet.conf", b"");
    let o = rolectl(&[
        "wait-master",
        "--root",
        &root_arg(t.path()),
        "--node-kubeconfig",
        "/etc/kubernetes/kubelet.conf",
        "--timeout",
        "0.3",
        "--initial-backoff",
        "0.05",
        "--max-backoff",
        "0.1",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("rolectl: timed out after") && err.contains("kubelet.conf is empty"),
        "{err}"
    );
    assert!(!t.path().join("run/rolectl/status.json").exists());
}

fn dropin(root: &Path, unit: &str, role: &str) {
    put(
        root,
        &format!("/etc/systemd/system/{unit}.d/role.conf"),
        format!("[Unit]\nConditionPathExists=/etc/sysconfig/kubernetes-{role}\n\n[Service]\nEnvironmentFile=/etc/sysconfig/kubernetes-{role}\n").as_bytes(),
    );
}

#[test]
fn status_lists_role_units_and_masks_secrets() {
    let t = tempfile::tempdir().unwrap();
    dropin(t.path(), "kube-apiserver.service", "master");
    dropin(t.path(), "kubelet.service", "minion");
    dropin(t.path(), "weave.service", "minion");
    put(
        t.path(),
        "/etc/systemd/system/other.service.d/tuning.conf",
        b"[Service]\n",
    );
    put_user_data(t.path(), MINION);
    assert!(activate(t.path()).status.success());
    let o = rolectl(&["status", "--root", &root_arg(t.path()), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["role"], "minion");
    assert_eq!(v["cluster"], "demo");
    let settings = v["settings"].to_string();
    assert!(
        settings.contains("\"***\"") && !settings.contains("secret-pass"),
        "{settings}"
    );
    let units = v["units"].as_array().unwrap();
    let names: Vec<&str> = units.iter().map(|u| u["unit"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["kube-apiserver.service", "kubelet.service", "weave.service"]
    );
    assert_eq!(units[0]["condition_met"], false);
    assert_eq!(units[1]["condition_met"], true);
    assert_eq!(units[1]["active_state"], "unknown");
    assert_eq!(
        units[1]["conditions"][0],
        "/etc/sysconfig/kubernetes-minion"
    );
    assert_eq!(v["last_activation"]["outcome"], "activated");
    let o = rolectl(&["status", "--root", &root_arg(t.path())]);
    let text = stdout(&o);
    assert!(text.contains("role: minion"), "{text}");
    assert!(text.contains("WEAVE_PASSWORD=***"), "{text}");
    assert!(text.contains("skipped by condition"), "{text}");
}

#[test]
fn status_unassigned() {
    let t = tempfile::tempdir().unwrap();
    let o = rolectl(&["status", "--root", &root_arg(t.path())]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("role: unassigned"), "{}", stdout(&o));
}

/// A node tree where every preflight check passes.
fn healthy_node(root: &Path) {
    put(root, "/proc/modules", b"overlay 151552 0 - Live 0x0\nbr_netfilter 32768 0 - Live 0x0\nbridge 311296 1 br_netfilter, Live 0x0\n");
    for k in [
        "net/bridge/bridge-nf-call-iptables",
        "net/bridge/bridge-nf-call-ip6tables",
        "net/ipv4/ip_forward",
    ] {
        put(root, &format!("/proc/sys/{k}"), b"1\n");
    }
    put(
        root,
        "/proc/swaps",
        b"Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n",
    );
    put(
        root,
        "/etc/docker/daemon.json",
        br#"{"storage-driver": "overlay2", "log-driver": "journald"}"#,
    );
    for b in [
        "/usr/sbin/conntrack",
        "/usr/bin/socat",
        "/usr/sbin/ebtables",
        "/usr/sbin/iptables",
        "/opt/cni/bin/loopback",
        "/opt/cni/bin/bridge",
    ] {
        put(root, b, b"#!/bin/sh\n");
        fs::set_permissions(
            root.join(b.trim_start_matches('/')),
            fs::Permissions::from_mode(0o755),
        )
        .unwrap();
    }
    fs::create_dir_all(root.join("etc/cni/net.d")).unwrap();
    put(root, "/sys/fs/selinux/enforce", b"0");
}

fn preflight(root: &Path, extra: &[&str]) -> (Option<i32>, serde_json::Value) {
    let r = root_arg(root);
    let mut args = vec!["preflight", "--root", &r, "--json"];
    args.extend_from_slice(extra);
    let o = std::process::Command::new(BIN)
        .args(&args)
        .env("PATH", "/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .unwrap();
    (o.status.code(), serde_json::from_slice(&o.stdout).unwrap())
}

fn failed(v: &serde_json::Value) -> Vec<String> {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["pass"] == false)
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn preflight_passes_on_healthy_tree() {
    let t = tempfile::tempdir().unwrap();
    healthy_node(t.path());
    let (code, v) = preflight(t.path(), &["--role", "minion"]);
    assert_eq!(failed(&v), Vec::<String>::new());
    assert_eq!(code, Some(0));
    assert!(v["checks"].as_array().unwrap().len() >= 15);
    for c in v["checks"].as_array().unwrap() {
        assert!(!c["pitfall"].as_str().unwrap().is_empty());
    }
}

#[test]
fn preflight_reports_each_seed_pitfall() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    healthy_node(root);
    put(root, "/proc/modules", b"bridge 311296 0 - Live 0x0\n");
    put(root, "/proc/sys/net/bridge/bridge-nf-call-iptables", b"0\n");
    fs::remove_file(root.join("proc/sys/net/bridge/bridge-nf-call-ip6tables")).unwrap();
    put(
        root,
        "/etc/docker/daemon.json",
        br#"{"storage-driver": "devicemapper"}"#,
    );
    fs::remove_file(root.join("usr/bin/socat")).unwrap();
    fs::set_permissions(
        root.join("opt/cni/bin/loopback"),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    put(root, "/sys/fs/selinux/enforce", b"1");
    put(
        root,
        "/proc/swaps",
        b"Filename Type Size Used Priority\n/swapfile file 1024 0 -2\n",
    );
    let (code, v) = preflight(root, &["--role", "minion"]);
    assert_eq!(code, Some(1));
    let f = failed(&v);
    for want in [
        "kernel module overlay loaded",
        "kernel module br_netfilter loaded",
        "sysctl net.bridge.bridge-nf-call-iptables = 1",
        "sysctl net.bridge.bridge-nf-call-ip6tables = 1",
        "docker storage driver configured as overlay2",
        "socat on PATH",
        "/opt/cni/bin/loopback executable",
        "SELinux not enforcing",
        "swap off",
    ] {
        assert!(
            f.iter().any(|x| x == want),
            "{want} not failed; failed: {f:?}"
        );
    }
    assert_eq!(f.len(), 9, "{f:?}");
    let docker = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "docker storage driver configured as overlay2")
        .unwrap();
    assert!(docker["detail"].as_str().unwrap().contains("devicemapper"));
    assert!(docker["pitfall"].as_str().unwrap().contains("loopback"));
    assert!(docker["fix"].as_str().unwrap().contains("overlay2"));
}

#[test]
fn preflight_role_defaults_to_marker_and_master_skips_minion_checks() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    healthy_node(root);
    fs::remove_file(root.join("etc/docker/daemon.json")).unwrap();
    fs::remove_dir_all(root.join("opt/cni")).unwrap();
    // No marker, no --role: every check runs.
    let (code, v) = preflight(root, &[]);
    assert_eq!(code, Some(1));
    assert_eq!(failed(&v).len(), 3, "{:?}", failed(&v));
    put_user_data(root, b"touch /etc/sysconfig/kubernetes-master\n");
    assert!(activate(root).status.success());
    let (code, v) = preflight(root, &[]);
    assert_eq!(v["role"], "master");
    assert_eq!(failed(&v), Vec::<String>::new());
    assert_eq!(code, Some(0));
    // Text output names the fix.
    let o = rolectl(&["preflight", "--root", &root_arg(root), "--role", "minion"]);
    let text = stdout(&o);
    assert!(
        text.contains("[FAIL] /opt/cni/bin/loopback executable")
            && text.contains("fix:")
            && text.contains("covers: seed"),
        "{text}"
    );
}
