//! `kubebake up --detach` / `status --json` / `down` with the real binary:
//! 1 master + 2 minions (generated user-data, expected_minions 2) come up in
//! the background, status reports etcd active and weave launched, weave on
//! each minion got `consensus=2` and the other minion as its only peer (a),
//! and `down` leaves no process, namespace or tap behind.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use harness::wait_until;
use kubebake_vmtests as h;

/// The kubebake binary built next to this test (target/<profile>/kubebake).
fn kubebake_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|p| p.join("kubebake"))
        .expect("target dir");
    assert!(
        bin.is_file(),
        "{} missing: run `cargo build -p kubebake` (same profile) before the VM tests",
        bin.display()
    );
    bin
}

fn kb(args: &[&str]) -> (bool, String) {
    let out = Command::new(kubebake_bin())
        .args(args)
        .output()
        .expect("running kubebake");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn up_detach_status_down_leaves_nothing() {
    let image = h::golden();
    let state = h::log_dir("up_detach_status_down");
    let state_s = state.to_string_lossy().to_string();
    let image_s = image.disk.to_string_lossy().to_string();
    let (ok, out) = kb(&[
        "up",
        "--image",
        &image_s,
        "--masters",
        "1",
        "--minions",
        "2",
        "--memory",
        "768",
        "--cluster",
        "updown",
        "--state-dir",
        &state_s,
        "--detach",
    ]);
    assert!(ok, "kubebake up --detach failed:\n{out}");
    let result = wait_until(
        "status: etcd active on the master, weave launched on both minions",
        h::WAIT,
        Duration::from_secs(5),
        || {
            let (ok, out) = kb(&[
                "status",
                "--json",
                "--cluster",
                "updown",
                "--state-dir",
                &state_s,
            ]);
            anyhow::ensure!(ok, "kubebake status failed:\n{out}");
            let v: serde_json::Value = serde_json::from_str(&out)?;
            let stages: Vec<&str> = v["vms"]
                .as_array()
                .map(|a| a.iter().filter_map(|x| x["stage"].as_str()).collect())
                .unwrap_or_default();
            let ready = stages
                == [
                    "master: etcd active",
                    "minion: weave launched",
                    "minion: weave launched",
                ];
            // Not ready yet: the stages reached end up in the timeout message.
            anyhow::ensure!(ready, "stages so far: {stages:?}");
            Ok(Some(v))
        },
    );
    let st: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(state.join("state.json")).unwrap_or_default(),
    )
    .unwrap_or_default();
    let weave = result.as_ref().ok().map(|_| weave_plans(&st));
    let (ok, out) = kb(&["down", "--cluster", "updown", "--state-dir", &state_s]);
    assert!(ok, "kubebake down failed:\n{out}");
    let ns = st["netns"].as_str().unwrap_or_default().to_string();
    assert!(!ns.is_empty(), "state.json had no namespace");
    h::assert_clean(&ns);
    for pid in [st["pid"].as_u64(), st["vms"][0]["pid"].as_u64()]
        .into_iter()
        .flatten()
    {
        assert!(
            !PathBuf::from(format!("/proc/{pid}")).exists(),
            "process {pid} survived kubebake down"
        );
    }
    assert!(!state.join("state.json").exists(), "state left behind");
    if let Err(e) = result {
        panic!("{e:#}");
    }
    let plans = weave
        .expect("status was ready")
        .expect("reading weave.json");
    let ips = ["10.77.0.11", "10.77.0.12"];
    for (i, plan) in plans.iter().enumerate() {
        assert_eq!(plan["consensus"], 2, "minion{}: {plan}", i + 1);
        let peers: Vec<&str> = plan["peers"]
            .as_array()
            .map(|a| a.iter().filter_map(|p| p.as_str()).collect())
            .unwrap_or_default();
        assert_eq!(peers, [ips[1 - i]], "minion{} peers", i + 1);
        assert!(
            plan["command"].to_string().contains("consensus=2"),
            "minion{}: {plan}",
            i + 1
        );
    }
}

/// /run/rolectl/weave.json of minion1 and minion2, over SSH.
fn weave_plans(st: &serde_json::Value) -> anyhow::Result<Vec<serde_json::Value>> {
    let ns = st["netns"].as_str().unwrap_or_default();
    let key = PathBuf::from(st["ssh_key"].as_str().unwrap_or_default());
    ["10.77.0.11", "10.77.0.12"]
        .iter()
        .map(|ip| {
            let out = harness::ssh::run(ns, &key, ip, "cat /run/rolectl/weave.json")?;
            anyhow::ensure!(out.status.success(), "weave.json on {ip}: {out:?}");
            Ok(serde_json::from_slice(&out.stdout)?)
        })
        .collect()
}
