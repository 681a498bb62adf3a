//! Helpers shared by the integration tests: run the real binary on a
//! temporary root.
#![allow(dead_code, clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_rolectl");
pub const USER_DATA: &str = "var/lib/cloud/instance/user-data.txt";

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn rolectl(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

pub fn root_arg(root: &Path) -> String {
    root.to_str().unwrap().to_string()
}

/// Runs `rolectl activate --root ROOT`.
pub fn activate(root: &Path) -> Output {
    rolectl(&["activate", "--root", &root_arg(root)])
}

pub fn put(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel.trim_start_matches('/'));
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
}

pub fn put_user_data(root: &Path, data: &[u8]) {
    put(root, USER_DATA, data);
}

pub fn marker(root: &Path, role: &str) -> PathBuf {
    root.join(format!("etc/sysconfig/kubernetes-{role}"))
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn status_json(root: &Path) -> serde_json::Value {
    let t = fs::read_to_string(root.join("run/rolectl/status.json")).unwrap();
    serde_json::from_str(&t).unwrap()
}

/// Non-comment, non-empty lines.
pub fn env_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// Result of checking one corpus case; Err describes the mismatch.
pub fn check_case(case: &Path, user_data: &[u8]) -> Result<(), String> {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    put_user_data(root, user_data);
    let out = activate(root);
    let err = stderr(&out);
    let status = status_json(root);
    let markers: Vec<&str> = ["master", "minion"]
        .into_iter()
        .filter(|r| marker(root, r).exists())
        .collect();
    let name = case.display();
    if let Ok(exp) = fs::read_to_string(case.join("expected.env")) {
        let want = env_lines(&exp);
        if !out.status.success() {
            return Err(format!(
                "{name}: exit {:?}, stderr: {err}",
                out.status.code()
            ));
        }
        if want.is_empty() {
            if !markers.is_empty() || status["outcome"] != "unassigned" {
                return Err(format!(
                    "{name}: expected unassigned, markers {markers:?}, status {status}"
                ));
            }
            return Ok(());
        }
        let role = want[0].strip_prefix("ROLE=").unwrap_or_default();
        if markers != [role] {
            return Err(format!(
                "{name}: expected marker {role}, found {markers:?}; stderr: {err}"
            ));
        }
        let got = env_lines(&fs::read_to_string(marker(root, role)).unwrap());
        if got != want {
            return Err(format!(
                "{name}: marker mismatch\n got: {got:?}\nwant: {want:?}"
            ));
        }
        if status["outcome"] != "activated" || status["role"] != role {
            return Err(format!("{name}: status.json {status}"));
        }
        check_credential_files(case, root)?;
    } else {
        let want = fs::read_to_string(case.join("expected-error.txt"))
            .map_err(|e| format!("{name}: no expected.env or expected-error.txt: {e}"))?;
        let want = want.trim_end_matches('\n');
        if out.status.code() != Some(1) {
            return Err(format!(
                "{name}: expected exit 1, got {:?}; stderr: {err}",
                out.status.code()
            ));
        }
        if !err.contains(want) {
            return Err(format!("{name}: stderr lacks {want:?}:\n{err}"));
        }
        if !markers.is_empty() {
            return Err(format!("{name}: marker written despite error: {markers:?}"));
        }
        if root.join("etc/kubernetes").exists() {
            return Err(format!("{name}: credential files written despite error"));
        }
        let serr = status["error"].as_str().unwrap_or_default();
        if status["outcome"] != "error" || !serr.contains(want) {
            return Err(format!(
                "{name}: status.json does not record the error: {status}"
            ));
        }
    }
    Ok(())
}

/// `expected-files.txt` ("PATH MODE" lines) lists exactly the files under
/// /etc/kubernetes; without it there must be none.
fn check_credential_files(case: &Path, root: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let name = case.display();
    let want: Vec<String> = fs::read_to_string(case.join("expected-files.txt"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    let mut got = Vec::new();
    let mut stack = vec![root.join("etc/kubernetes")];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o7777;
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                got.push(format!("/{rel} {mode:04o}"));
            }
        }
    }
    let (mut a, mut b) = (got.clone(), want.clone());
    a.sort();
    b.sort();
    if a != b {
        return Err(format!(
            "{name}: credential files\n got: {a:?}\nwant: {b:?}"
        ));
    }
    Ok(())
}

/// All case directories under fixtures/userdata/<kind>.
pub fn cases(kind: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(fixtures().join("userdata").join(kind))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}

/// A throw-away PKI generated with openssl (tests/fixtures/pki/make-pki.sh).
pub fn gen_pki() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let o = Command::new("bash")
        .arg(fixtures().join("pki/make-pki.sh"))
        .arg(d.path())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "make-pki.sh (needs openssl): {}",
        String::from_utf8_lossy(&o.stderr)
    );
    d
}

/// `    key: |` followed by the file's lines indented by 6.
pub fn pem_block(key: &str, pki: &Path, file: &str) -> String {
    let text = fs::read_to_string(pki.join(file)).unwrap();
    let mut s = format!("    {key}: |\n");
    for l in text.lines() {
        s.push_str(&format!("      {l}\n"));
    }
    s
}

pub const TOKEN: &str = "abcdef.0123456789abcdef";

/// Master user-data with credentials from `pki`; `files` maps pki keys to
/// files (override to break things).
pub fn master_user_data(pki: &Path, expires: &str, files: &[(&str, &str)]) -> String {
    let mut s = format!("#cloud-config\nkubernetes:\n  role: master\n  cluster: demo\n  bootstrap_token: \"{TOKEN}\"\n  bootstrap_token_expires: \"{expires}\"\n  pki:\n");
    for (k, f) in files {
        s.push_str(&pem_block(k, pki, f));
    }
    s
}

pub const MASTER_FILES: &[(&str, &str)] = &[
    ("ca_crt", "ca.crt"),
    ("ca_key", "ca.key"),
    ("front_proxy_ca_crt", "front-proxy-ca.crt"),
    ("front_proxy_ca_key", "front-proxy-ca.key"),
    ("sa_key", "sa.key"),
    ("sa_pub", "sa.pub"),
];

pub const MINION_FILES: &[(&str, &str)] = &[("ca_crt", "ca.crt")];

/// Minion user-data with credentials from `pki`; `extra` goes under pki:.
pub fn minion_user_data(pki: &Path, files: &[(&str, &str)], extra: &str) -> String {
    let mut s = format!("#cloud-config\nkubernetes:\n  role: minion\n  cluster: demo\n  bootstrap_token: \"{TOKEN}\"\n  pki:\n");
    for (k, f) in files {
        s.push_str(&pem_block(k, pki, f));
    }
    s.push_str(extra);
    s
}
