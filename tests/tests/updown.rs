//! `kubebake up --detach --wait` / `status --json` / `down` with the real
//! binary: 1 master + 1 minion come up in the background with cluster
//! secrets `up` made itself, `up` returns once the minion is Ready and
//! leaves the admin kubeconfig (0600) in the state directory; from the host,
//! inside the cluster's namespace, that kubeconfig's client certificate lists
//! the nodes over TLS verified against its CA; `status` shows the control
//! plane active and the minion's node Ready; `down` leaves no process,
//! namespace or tap behind.

use std::path::PathBuf;
use std::process::Command;

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
    let started = std::time::Instant::now();
    let (ok, up_out) = kb(&[
        "up",
        "--image",
        &image_s,
        "--masters",
        "1",
        "--minions",
        "1",
        "--cluster",
        "updown",
        "--state-dir",
        &state_s,
        "--detach",
        "--wait",
        "25m",
        "--json",
    ]);
    h::report(
        "kubebake up --wait: start -> minion Ready",
        started.elapsed(),
    );
    let st: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(state.join("state.json")).unwrap_or_default(),
    )
    .unwrap_or_default();
    let checks = if ok {
        after_up(&state, &state_s, &st, &up_out)
    } else {
        Err(anyhow::anyhow!(
            "kubebake up --detach --wait failed:\n{up_out}"
        ))
    };
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
    if let Err(e) = checks {
        panic!("{e:#}");
    }
}

/// What `up --wait` printed, `status`, and the admin kubeconfig from the host.
fn after_up(
    state: &std::path::Path,
    state_s: &str,
    st: &serde_json::Value,
    up_out: &str,
) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let ready: serde_json::Value = serde_json::from_str(up_out)
        .map_err(|e| anyhow::anyhow!("up --json printed {up_out:?}: {e}"))?;
    let nodes = ready["nodes"].to_string();
    anyhow::ensure!(
        ready["nodes"] == serde_json::json!([{ "name": "minion1", "ready": true }]),
        "up --wait reported nodes {nodes}"
    );
    let admin = state.join("admin.conf");
    let mode = std::fs::metadata(&admin)?.permissions().mode() & 0o777;
    anyhow::ensure!(mode == 0o600, "admin.conf mode {mode:o}");
    let (ok, out) = kb(&[
        "status",
        "--json",
        "--cluster",
        "updown",
        "--state-dir",
        state_s,
    ]);
    anyhow::ensure!(ok, "kubebake status failed:\n{out}");
    let v: serde_json::Value = serde_json::from_str(&out)?;
    let rows: Vec<(String, String)> = v["vms"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| {
                    (
                        x["stage"].as_str().unwrap_or_default().to_string(),
                        x["node"].as_str().unwrap_or("-").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    anyhow::ensure!(
        rows == [
            ("master: control plane active".to_string(), "-".to_string()),
            ("minion: weave launched".to_string(), "Ready".to_string()),
        ],
        "status rows {rows:?}"
    );
    // The admin kubeconfig works from the host, through the namespace: its
    // CA, client certificate and key, against its server.
    let text = std::fs::read_to_string(&admin)?;
    let field = |k: &str| -> anyhow::Result<String> {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{k}: ")))
            .map(str::to_string)
            .ok_or_else(|| anyhow::anyhow!("admin.conf has no {k}"))
    };
    let tmp = tempfile::tempdir()?;
    for (k, f) in [
        ("certificate-authority-data", "ca.crt"),
        ("client-certificate-data", "admin.crt"),
        ("client-key-data", "admin.key"),
    ] {
        let pem = data_encoding::BASE64
            .decode(field(k)?.as_bytes())
            .map_err(|e| anyhow::anyhow!("admin.conf {k}: {e}"))?;
        std::fs::write(tmp.path().join(f), pem)?;
    }
    let server = field("server")?;
    let ns = st["netns"].as_str().unwrap_or_default();
    let d = tmp.path();
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "curl",
            "-sS",
            "--max-time",
            "20",
            "--cacert",
        ])
        .arg(d.join("ca.crt"))
        .arg("--cert")
        .arg(d.join("admin.crt"))
        .arg("--key")
        .arg(d.join("admin.key"))
        .arg(format!("{server}/api/v1/nodes"))
        .output()?;
    let body = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success() && body.contains("\"name\": \"minion1\""),
        "GET {server}/api/v1/nodes with admin.conf from the host: {body} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
