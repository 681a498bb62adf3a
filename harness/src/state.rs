//! A cluster that outlives the command that started it (`kubebake up
//! --detach`): its state file, and `status` and `down` read from it.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::cluster::{probe_stage, Cluster};
use crate::{net, process, Role};

/// What `up` leaves for `down` and `status` (`<state dir>/state.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub cluster: String,
    pub netns: String,
    /// The process running DNS/DHCP/IMDS and owning the VMs.
    pub pid: u32,
    pub ready: bool,
    pub accel: String,
    pub ssh_key: PathBuf,
    pub vms: Vec<VmState>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VmState {
    pub name: String,
    pub role: Option<Role>,
    pub ip: String,
    pub pid: u32,
    pub pidfile: PathBuf,
    pub serial_log: PathBuf,
    pub tap: String,
}

impl State {
    /// The state of a running cluster owned by this process.
    pub fn of(name: &str, c: &Cluster) -> State {
        State {
            cluster: name.to_string(),
            netns: c.netns().to_string(),
            pid: std::process::id(),
            ready: true,
            accel: c.accel.to_string(),
            ssh_key: c.key.private.clone(),
            vms: c
                .vms()
                .iter()
                .map(|v| VmState {
                    name: v.name.clone(),
                    role: v.role,
                    ip: v.ip.to_string(),
                    pid: v.qemu.pid,
                    pidfile: v.qemu.pidfile.clone(),
                    serial_log: v.qemu.serial_log.clone(),
                    tap: v.tap.clone(),
                })
                .collect(),
        }
    }

    pub fn read(dir: &Path) -> Result<State> {
        let p = dir.join("state.json");
        let text = std::fs::read_to_string(&p).with_context(|| {
            format!(
                "reading {} (is the cluster up? `kubebake up --detach`)",
                p.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))
    }

    /// Written atomically (temp file + rename).
    pub fn write(&self, dir: &Path) -> Result<()> {
        let tmp = dir.join("state.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, dir.join("state.json")).context("renaming state.json")
    }
}

/// The default state directory of cluster `name`.
pub fn default_dir(name: &str) -> PathBuf {
    PathBuf::from("/run/kubebake").join(name)
}

/// One VM as `status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct VmStatus {
    pub name: String,
    pub role: Option<Role>,
    pub ip: String,
    pub running: bool,
    pub stage: String,
    /// The node's Ready condition as the API server reports it ("Ready",
    /// "NotReady", "not registered"); None on masters (no kubelet) and
    /// while no API server answers.
    pub node: Option<String>,
}

/// Fills each minion's `node` from the first master whose control plane
/// runs.
pub fn add_node_states(ns: &str, key: &Path, vms: &mut [VmStatus]) {
    let master = vms
        .iter()
        .find(|v| v.role == Some(Role::Master) && v.stage == "master: control plane active");
    let Some(ip) = master.and_then(|m| m.ip.parse::<Ipv4Addr>().ok()) else {
        return;
    };
    let Ok(nodes) = crate::kube::nodes(ns, key, ip) else {
        return;
    };
    for v in vms.iter_mut().filter(|v| v.role == Some(Role::Minion)) {
        v.node = Some(match nodes.iter().find(|n| n.name == v.name) {
            Some(n) if n.ready => "Ready".into(),
            Some(_) => "NotReady".into(),
            None => "not registered".into(),
        });
    }
}

/// `kubebake status`.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    pub cluster: String,
    pub netns: String,
    pub pid: u32,
    pub running: bool,
    pub accel: String,
    pub vms: Vec<VmStatus>,
}

/// Reads the state in `dir` and probes each VM's stage.
pub fn status(dir: &Path) -> Result<ClusterStatus> {
    let s = State::read(dir)?;
    let vms = s
        .vms
        .iter()
        .map(|v| {
            let running = process::alive(v.pid);
            let stage = match (running, v.ip.parse::<Ipv4Addr>()) {
                (true, Ok(ip)) => probe_stage(&s.netns, &s.ssh_key, ip, &v.serial_log),
                _ => "stopped".into(),
            };
            VmStatus {
                name: v.name.clone(),
                role: v.role,
                ip: v.ip.clone(),
                running,
                stage,
                node: None,
            }
        })
        .collect::<Vec<_>>();
    let mut vms = vms;
    add_node_states(&s.netns, &s.ssh_key, &mut vms);
    Ok(ClusterStatus {
        running: process::alive(s.pid),
        cluster: s.cluster,
        netns: s.netns,
        pid: s.pid,
        accel: s.accel,
        vms,
    })
}

/// What `down` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DownReport {
    /// The cluster found in the state directory, if any.
    pub cluster: Option<String>,
    pub vms_stopped: usize,
    /// Namespaces removed (the cluster's, and leftovers with `all`).
    pub namespaces_removed: Vec<String>,
}

/// Stops the cluster whose state is in `dir` (its process, then every VM's
/// process group, then the namespace) and removes `dir`. With `all`, also
/// every leftover `kb-*` namespace on the host.
pub fn down(dir: &Path, all: bool) -> Result<DownReport> {
    let mut report = DownReport::default();
    if let Ok(s) = State::read(dir) {
        if s.pid != std::process::id() && process::alive(s.pid) {
            process::terminate(s.pid, Duration::from_secs(30));
        }
        for v in &s.vms {
            if process::kill_pidfile(&v.pidfile).is_none() {
                process::kill_pid_group(v.pid as i32);
            }
        }
        net::delete_namespace(&s.netns)?;
        report.cluster = Some(s.cluster);
        report.vms_stopped = s.vms.len();
        report.namespaces_removed.push(s.netns);
    }
    if all {
        for ns in net::leftover_namespaces() {
            net::delete_namespace(&ns)?;
            report.namespaces_removed.push(ns);
        }
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    Ok(report)
}
