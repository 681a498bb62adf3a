//! rolectl reads the user-data itself: the NoCloud seed volume (a real vfat
//! image made with mkfs.vfat + mcopy), NoCloud-net and the EC2 metadata
//! service (IMDSv2 and IMDSv1, an HTTP server on loopback), the check of
//! cloud-init's copy, and a host with no datasource at all.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

const MINION: &[u8] = b"#cloud-config\nkubernetes:\n  role: minion\n  cluster: demo\n";
const MASTER: &[u8] = b"#cloud-config\nkubernetes:\n  role: master\n  cluster: demo\n";

/// How the fake metadata service behaves.
#[derive(Clone, Copy, PartialEq)]
enum Imds {
    /// Tokens required (IMDSv2 only: a GET without a token is 401).
    V2Only,
    /// No tokens (the PUT is 405), plain GETs.
    V1Only,
    /// Tokens issued, but this instance has no user-data (404).
    NoUserData,
}

struct Server {
    url: String,
    requests: Arc<AtomicU32>,
}

/// Serves `user_data` on 127.0.0.1 from `delay` after the call on (the port
/// refuses connections until then).
fn serve(mode: Imds, user_data: &'static [u8], delay: Duration) -> Server {
    // Reserve a port, release it, and bind it again after the delay.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let requests = Arc::new(AtomicU32::new(0));
    let counter = requests.clone();
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        let server = tiny_http::Server::http(("127.0.0.1", port)).unwrap();
        for req in server.incoming_requests() {
            counter.fetch_add(1, Ordering::SeqCst);
            let token = req
                .headers()
                .iter()
                .find(|h| h.field.equiv("X-aws-ec2-metadata-token"))
                .map(|h| h.value.as_str().to_string());
            let path = req.url().to_string();
            let method = req.method().clone();
            let (code, body): (u16, Vec<u8>) = match (&method, path.as_str(), mode) {
                (tiny_http::Method::Put, "/latest/api/token", Imds::V1Only) => (405, vec![]),
                (tiny_http::Method::Put, "/latest/api/token", _) => (200, b"tok-123".to_vec()),
                (tiny_http::Method::Get, p, Imds::NoUserData) if p.ends_with("user-data") => {
                    (404, vec![])
                }
                (tiny_http::Method::Get, p, Imds::V2Only) if p.ends_with("user-data") => {
                    if token.as_deref() == Some("tok-123") {
                        (200, user_data.to_vec())
                    } else {
                        (401, vec![])
                    }
                }
                (tiny_http::Method::Get, p, Imds::V1Only) if p.ends_with("user-data") => {
                    (200, user_data.to_vec())
                }
                _ => (404, vec![]),
            };
            let _ = req.respond(tiny_http::Response::from_data(body).with_status_code(code));
        }
    });
    Server {
        url: format!("http://127.0.0.1:{port}"),
        requests,
    }
}

fn ec2_root(root: &Path) {
    put(root, "/sys/class/dmi/id/sys_vendor", b"Amazon EC2\n");
}

fn activate_from(root: &Path, imds: &str, timeout: &str) -> std::process::Output {
    rolectl(&[
        "activate",
        "--root",
        &root_arg(root),
        "--imds-url",
        imds,
        "--network-timeout",
        timeout,
    ])
}

#[test]
fn ec2_imdsv2_token_then_user_data() {
    let s = serve(Imds::V2Only, MINION, Duration::ZERO);
    let tmp = tempfile::tempdir().unwrap();
    ec2_root(tmp.path());
    let out = activate_from(tmp.path(), &s.url, "20");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(marker(tmp.path(), "minion").is_file());
    let st = status_json(tmp.path());
    assert_eq!(st["outcome"], "activated");
    let from = st["user_data"].as_str().unwrap();
    assert!(from.starts_with("EC2 IMDSv2 "), "{from}");
    assert_eq!(st["attempts"], 1);
    assert!(stderr(&out).contains("from EC2 IMDSv2"), "{}", stderr(&out));
    // Seed and NoCloud-net were looked at first, and said why not.
    let tried = st["tried"].as_array().unwrap();
    assert_eq!(tried.len(), 2, "{tried:?}");
    assert!(tried[1].as_str().unwrap().contains("ds=nocloud-net"));
}

#[test]
fn ec2_imdsv1_when_the_service_issues_no_tokens() {
    let s = serve(Imds::V1Only, MASTER, Duration::ZERO);
    let tmp = tempfile::tempdir().unwrap();
    ec2_root(tmp.path());
    let out = activate_from(tmp.path(), &s.url, "20");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(marker(tmp.path(), "master").is_file());
    let from = status_json(tmp.path())["user_data"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(from.starts_with("EC2 IMDSv1 "), "{from}");
}

#[test]
fn ec2_without_user_data_leaves_the_host_unassigned() {
    let s = serve(Imds::NoUserData, MINION, Duration::ZERO);
    let tmp = tempfile::tempdir().unwrap();
    ec2_root(tmp.path());
    let out = activate_from(tmp.path(), &s.url, "20");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!marker(tmp.path(), "minion").exists());
    let st = status_json(tmp.path());
    assert_eq!(st["outcome"], "unassigned");
    assert!(st["reason"]
        .as_str()
        .unwrap()
        .contains("has no user-data for this instance"));
}

#[test]
fn a_metadata_service_that_comes_up_late_is_waited_for() {
    let s = serve(Imds::V2Only, MINION, Duration::from_millis(1500));
    let tmp = tempfile::tempdir().unwrap();
    ec2_root(tmp.path());
    let t = Instant::now();
    let out = activate_from(tmp.path(), &s.url, "30");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(marker(tmp.path(), "minion").is_file());
    let attempts = status_json(tmp.path())["attempts"].as_u64().unwrap();
    assert!(attempts >= 2, "attempts {attempts}");
    // Noticed within the 2 s backoff cap of coming up.
    assert!(
        t.elapsed() < Duration::from_millis(1500 + 2500),
        "{:?}",
        t.elapsed()
    );
    assert!(s.requests.load(Ordering::SeqCst) >= 2);
}

#[test]
fn a_metadata_service_that_never_answers_is_given_up_on_in_bounded_time() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tmp = tempfile::tempdir().unwrap();
    ec2_root(tmp.path());
    let t = Instant::now();
    let out = activate_from(tmp.path(), &format!("http://127.0.0.1:{port}"), "3");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!marker(tmp.path(), "minion").exists());
    let st = status_json(tmp.path());
    assert_eq!(st["outcome"], "unassigned");
    let reason = st["reason"].as_str().unwrap();
    assert!(
        reason.contains("no datasource gave user-data") && reason.contains("no answer after"),
        "{reason}"
    );
}

#[test]
fn nocloud_net_from_the_smbios_serial() {
    let s = serve(Imds::V1Only, MINION, Duration::ZERO);
    let tmp = tempfile::tempdir().unwrap();
    put(
        tmp.path(),
        "/sys/class/dmi/id/product_serial",
        format!("ds=nocloud-net;s={}/latest/\n", s.url).as_bytes(),
    );
    let out = activate_from(tmp.path(), "http://127.0.0.1:9", "20");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(marker(tmp.path(), "minion").is_file());
    let from = status_json(tmp.path())["user_data"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(from, format!("NoCloud-net {}/latest/user-data", s.url));
}

#[test]
fn no_datasource_at_all_says_what_was_looked_at() {
    let tmp = tempfile::tempdir().unwrap();
    let out = activate(tmp.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let st = status_json(tmp.path());
    assert_eq!(st["outcome"], "unassigned");
    assert_eq!(st["tried"].as_array().unwrap().len(), 3);
    let text = stdout(&rolectl(&["status", "--root", &root_arg(tmp.path())]));
    assert!(text.contains("role: unassigned"), "{text}");
    assert!(text.contains("tried: EC2: not an EC2 instance"), "{text}");
}

#[test]
fn cloud_init_copy_agrees_or_is_refused() {
    let s = serve(Imds::V2Only, MINION, Duration::ZERO);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    ec2_root(root);
    assert!(activate_from(root, &s.url, "20").status.success());
    // cloud-init's copy of the same user-data: agrees, record kept.
    put_user_data(root, MINION);
    let out = rolectl(&["activate", "--root", &root_arg(root), "--cloud-init"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let st = status_json(root);
    assert!(st["user_data"].as_str().unwrap().starts_with("EC2 IMDSv2"));
    assert_eq!(st["cloud_init"]["outcome"], "unchanged");
    let text = stdout(&rolectl(&["status", "--root", &root_arg(root)]));
    assert!(
        text.contains("cloud-init's copy (/var/lib/cloud/instance/user-data.txt): agrees"),
        "{text}"
    );
    // A copy that asks for another role: refused, marker untouched.
    put_user_data(root, MASTER);
    let out = rolectl(&["activate", "--root", &root_arg(root), "--cloud-init"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!marker(root, "master").exists());
    assert!(marker(root, "minion").is_file());
    let st = status_json(root);
    assert_eq!(st["outcome"], "activated");
    assert_eq!(st["cloud_init"]["outcome"], "error");
}

#[test]
fn cloud_init_copy_activates_when_no_datasource_did() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    assert!(activate(root).status.success());
    assert_eq!(status_json(root)["outcome"], "unassigned");
    put_user_data(root, MASTER);
    let out = rolectl(&["activate", "--root", &root_arg(root), "--cloud-init"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(marker(root, "master").is_file());
    let st = status_json(root);
    assert_eq!(st["outcome"], "activated");
    assert_eq!(st["user_data"], "/var/lib/cloud/instance/user-data.txt");
    // What the early activation looked at is kept.
    assert_eq!(st["tried"].as_array().unwrap().len(), 3);
    assert_eq!(st["cloud_init"]["outcome"], "activated");
}

fn mkseed(dir: &Path, files: &[(&str, &[u8])]) -> std::path::PathBuf {
    let img = dir.join("seed.img");
    let ok = Command::new("mkfs.vfat")
        .args(["-n", "CIDATA", "-C"])
        .arg(&img)
        .arg("2048")
        .output()
        .unwrap();
    assert!(ok.status.success(), "mkfs.vfat: {ok:?}");
    for (name, data) in files {
        let f = dir.join(name);
        std::fs::write(&f, data).unwrap();
        let ok = Command::new("mcopy")
            .arg("-i")
            .arg(&img)
            .arg(&f)
            .arg("::")
            .output()
            .unwrap();
        assert!(ok.status.success(), "mcopy: {ok:?}");
    }
    img
}

#[test]
fn the_seed_volume_is_read_without_mounting_and_left_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let img = mkseed(
        tmp.path(),
        &[("user-data", MINION), ("meta-data", b"instance-id: i-1\n")],
    );
    let before = std::fs::read(&img).unwrap();
    let data = rolectl::datasource::read_seed(&img).unwrap();
    assert_eq!(data.as_deref(), Some(MINION));
    assert_eq!(
        std::fs::read(&img).unwrap(),
        before,
        "the seed was modified"
    );

    let other = tempfile::tempdir().unwrap();
    let img = mkseed(other.path(), &[("meta-data", b"instance-id: i-1\n")]);
    assert_eq!(rolectl::datasource::read_seed(&img).unwrap(), None);

    let junk = tmp.path().join("junk");
    std::fs::write(&junk, vec![0u8; 4096]).unwrap();
    let e = rolectl::datasource::read_seed(&junk)
        .unwrap_err()
        .to_string();
    assert!(e.contains("is not a readable FAT volume"), "{e}");
}
