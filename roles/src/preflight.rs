//! `rolectl preflight`: checks a running node's prerequisites (like
//! `kubeadm preflight`). Each check names the cncfdemo seed pitfall it
//! covers. Every path (including /proc and /sys) is taken relative to the
//! root, so tests run it against fake trees.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use serde::Serialize;

use crate::marker::under;
use contract::role::Role;

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub pass: bool,
    /// What was found.
    pub detail: String,
    /// How to fix it (empty when passing).
    pub fix: String,
    /// The seed pitfall this check covers.
    pub pitfall: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub role: Option<Role>,
    pub checks: Vec<Check>,
    pub ok: bool,
}

const P_OVERLAY: &str = "seed: Docker's default devicemapper-on-loopback storage corrupts /var/lib/docker; overlay needs the overlay module";
const P_BRNF: &str = "seed: bridge-nf-call-iptables disabled makes service endpoints unroutable (kube-proxy, Weave); sysctl races br_netfilter loading";
const P_FORWARD: &str =
    "seed: pod and service traffic must be forwarded between the overlay and the host";
const P_DOCKER: &str = "seed: `yum install docker` defaults to devicemapper with loopback devices: xfs corruption, nodes fail mysteriously";
const P_BINARIES: &str = "seed: undocumented dependencies conntrack-tools, socat, bridge-utils (kube-proxy, port-forward)";
const P_CNI: &str = "seed: Kubernetes 1.3.5/1.4 broke CNI setups; the cni bin folder needs at least the lo (loopback) binary";
const P_SELINUX: &str = "seed: with SELinux enforcing, service account secrets fail and KubeDNS cannot authenticate to the master";
const P_SWAP: &str = "not in the seed: kubelet refuses to start with swap on (--fail-swap-on)";

fn check(name: String, pass: bool, detail: String, fix: String, pitfall: &'static str) -> Check {
    Check {
        name,
        pass,
        detail,
        fix: if pass { String::new() } else { fix },
        pitfall,
    }
}

fn module_loaded(root: &Path, m: &str) -> bool {
    let listed = fs::read_to_string(under(root, "/proc/modules"))
        .map(|t| t.lines().any(|l| l.split_whitespace().next() == Some(m)))
        .unwrap_or(false);
    // Built into the kernel: no /proc/modules line, but /sys/module/<m>.
    listed || under(root, &format!("/sys/module/{m}")).is_dir()
}

fn sysctl(root: &Path, key: &str) -> Option<String> {
    let p = format!("/proc/sys/{}", key.replace('.', "/"));
    fs::read_to_string(under(root, &p))
        .ok()
        .map(|v| v.trim().to_string())
}

fn executable(p: &Path) -> bool {
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Finds `prog` in PATH, each PATH directory taken relative to `root`.
fn on_path(root: &Path, prog: &str) -> Option<String> {
    let path = std::env::var("PATH")
        .unwrap_or_else(|_| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    path.split(':')
        .filter(|d| d.starts_with('/'))
        .map(|d| format!("{}/{prog}", d.trim_end_matches('/')))
        .find(|p| executable(&under(root, p)))
}

/// docker's configuration file.
const DAEMON_JSON: &str = "/etc/docker/daemon.json";

/// Why daemon.json could not be read.
#[derive(Debug, thiserror::Error)]
enum DaemonJsonError {
    #[error("cannot read {DAEMON_JSON}: {0}")]
    Read(std::io::Error),
    #[error("{DAEMON_JSON} is not valid JSON: {0}")]
    Json(serde_json::Error),
}

/// The storage driver configured in /etc/docker/daemon.json.
fn docker_config_driver(root: &Path) -> Result<Option<String>, DaemonJsonError> {
    let text = match fs::read_to_string(under(root, DAEMON_JSON)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(DaemonJsonError::Read(e)),
    };
    let v: serde_json::Value = serde_json::from_str(&text).map_err(DaemonJsonError::Json)?;
    Ok(v.get("storage-driver")
        .and_then(|d| d.as_str())
        .map(str::to_string))
}

/// The running daemon's driver, when root is `/` and docker answers.
fn docker_running_driver(root: &Path) -> Option<String> {
    if root != Path::new("/") || on_path(root, "docker").is_none() {
        return None;
    }
    let out = Command::new("docker")
        .args(["info", "--format", "{{.Driver}}"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Runs every check that applies to `role` (None: all checks).
pub fn run(root: &Path, role: Option<Role>) -> Report {
    let minion = role != Some(Role::Master);
    let mut c = Vec::new();

    for (m, pit, why) in [
        ("overlay", P_OVERLAY, "the overlay2 storage driver"),
        ("br_netfilter", P_BRNF, "bridge-nf-call-iptables"),
    ] {
        let ok = module_loaded(root, m);
        c.push(check(
            format!("kernel module {m} loaded"),
            ok,
            if ok { "loaded".into() } else { format!("{m} not in /proc/modules (needed for {why})") },
            format!("modprobe {m}; echo {m} > /etc/modules-load.d/kubernetes.conf (loaded at every boot)"),
            pit,
        ));
    }

    for (key, pit) in [
        ("net.bridge.bridge-nf-call-iptables", P_BRNF),
        ("net.bridge.bridge-nf-call-ip6tables", P_BRNF),
        ("net.ipv4.ip_forward", P_FORWARD),
    ] {
        let v = sysctl(root, key);
        let ok = v.as_deref() == Some("1");
        let detail = match &v {
            Some(v) => format!("{key} = {v}"),
            None => format!(
                "/proc/sys/{} missing (module not loaded?)",
                key.replace('.', "/")
            ),
        };
        c.push(check(
            format!("sysctl {key} = 1"),
            ok,
            detail,
            format!("echo '{key} = 1' > /etc/sysctl.d/90-kubernetes.conf && sysctl --system (a sysctl.d file is re-applied when the bridge module loads; `echo 1 > /proc/sys/...` does not persist)"),
            pit,
        ));
    }

    if minion {
        let fix = "set {\"storage-driver\": \"overlay2\"} in /etc/docker/daemon.json and restart docker; never devicemapper on loopback".to_string();
        let (ok, detail) = match docker_config_driver(root) {
            Err(e) => (false, e.to_string()),
            Ok(None) => (false, "/etc/docker/daemon.json has no storage-driver (docker picks a default, possibly devicemapper/loopback)".to_string()),
            Ok(Some(d)) if d == "overlay2" => (true, "daemon.json storage-driver = overlay2".into()),
            Ok(Some(d)) => (false, format!("daemon.json storage-driver = {d}")),
        };
        c.push(check(
            "docker storage driver configured as overlay2".into(),
            ok,
            detail,
            fix.clone(),
            P_DOCKER,
        ));
        if let Some(d) = docker_running_driver(root) {
            let ok = d == "overlay2";
            c.push(check(
                "running docker uses overlay2".into(),
                ok,
                format!("docker info: Driver = {d}"),
                fix,
                P_DOCKER,
            ));
        }
    }

    for prog in ["conntrack", "socat", "ebtables", "iptables"] {
        let found = on_path(root, prog);
        c.push(check(
            format!("{prog} on PATH"),
            found.is_some(),
            found.unwrap_or_else(|| format!("{prog} not found on PATH")),
            format!(
                "apt-get install {}",
                match prog {
                    "conntrack" => "conntrack",
                    "socat" => "socat",
                    "ebtables" => "ebtables",
                    _ => "iptables",
                }
            ),
            P_BINARIES,
        ));
    }

    if minion {
        for b in ["loopback", "bridge"] {
            let p = format!("/opt/cni/bin/{b}");
            let ok = executable(&under(root, &p));
            c.push(check(
                format!("{p} executable"),
                ok,
                if ok {
                    "present".into()
                } else {
                    format!("{p} missing or not executable")
                },
                "install the CNI plugins release into /opt/cni/bin (mode 0755)".into(),
                P_CNI,
            ));
        }
        let ok = under(root, "/etc/cni/net.d").is_dir();
        c.push(check(
            "/etc/cni/net.d exists".into(),
            ok,
            if ok {
                "present".into()
            } else {
                "/etc/cni/net.d missing".into()
            },
            "mkdir -p /etc/cni/net.d (the network plugin writes its config there)".into(),
            P_CNI,
        ));
    }

    let enforce = fs::read_to_string(under(root, "/sys/fs/selinux/enforce")).ok();
    let ok = enforce.as_deref().is_none_or(|v| v.trim() == "0");
    c.push(check(
        "SELinux not enforcing".into(),
        ok,
        match &enforce {
            None => "SELinux not enabled".into(),
            Some(v) => format!("/sys/fs/selinux/enforce = {}", v.trim()),
        },
        "setenforce 0 and SELINUX=permissive in /etc/selinux/config (or label /var/lib/kubelet svirt_sandbox_file_t)".into(),
        P_SELINUX,
    ));

    if minion {
        let swaps: Vec<String> = fs::read_to_string(under(root, "/proc/swaps"))
            .map(|t| {
                t.lines()
                    .skip(1)
                    .filter(|l| !l.trim().is_empty())
                    .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default();
        c.push(check(
            "swap off".into(),
            swaps.is_empty(),
            if swaps.is_empty() {
                "no active swap".into()
            } else {
                format!("active swap: {}", swaps.join(", "))
            },
            "swapoff -a and remove swap entries from /etc/fstab".into(),
            P_SWAP,
        ));
    }

    let ok = c.iter().all(|x| x.pass);
    Report {
        role,
        checks: c,
        ok,
    }
}

/// The checklist as text.
pub fn render(r: &Report) -> String {
    let mut o = format!(
        "preflight for role {}\n",
        r.role.map_or("unknown (all checks)", Role::as_str)
    );
    for c in &r.checks {
        o.push_str(&format!(
            "[{}] {}: {}\n",
            if c.pass { "PASS" } else { "FAIL" },
            c.name,
            c.detail
        ));
        if !c.pass {
            o.push_str(&format!(
                "       fix: {}\n       covers: {}\n",
                c.fix, c.pitfall
            ));
        }
    }
    let failed = r.checks.iter().filter(|c| !c.pass).count();
    if failed == 0 {
        o.push_str(&format!("all {} checks passed\n", r.checks.len()));
    } else {
        o.push_str(&format!("{failed} of {} checks failed\n", r.checks.len()));
    }
    o
}
