//! `kubebake bench-vm`: boots 1 master + 2 minions and times the stages.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::cluster::{Cluster, ClusterOptions, Sizing, VmSpec};
use crate::up::RoleSections;
use crate::{kube, wait_until, BootSpec, Role};

/// Measured times, seconds from the VMs' start.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    pub accel: String,
    pub memory_mib: u32,
    pub master: Sizing,
    pub master_marker_s: f64,
    pub api_ready_s: f64,
    pub minion_marker_s: f64,
    /// Each minion's node Ready, in minion order.
    pub minions_ready_s: Vec<(String, f64)>,
    pub weave_launched_s: f64,
    /// `free -m` "used" on the master once every minion is Ready.
    pub master_used_mib: u64,
}

/// Boots 1 master + 2 minions in parallel with the cluster's credentials
/// and measures the stages; each stage may take up to `timeout`.
pub fn bench(
    image: &BootSpec,
    memory_mib: u32,
    master: Sizing,
    credentials: &RoleSections,
    timeout: Duration,
) -> Result<BenchResult> {
    let work = tempfile::tempdir().context("bench work dir")?;
    let mut c = Cluster::start(ClusterOptions {
        image: image.clone(),
        domain: "k8s".into(),
        memory_mib,
        cpus: 1,
        master: Some(master),
        work_dir: work.path().to_path_buf(),
        die_with_parent: true,
    })?;
    let t0 = Instant::now();
    let minions = ["minion1", "minion2"];
    for (name, role) in [
        ("master1", Role::Master),
        ("minion1", Role::Minion),
        ("minion2", Role::Minion),
    ] {
        c.launch(VmSpec {
            name: name.into(),
            cluster: "bench".into(),
            role: Some(role),
            user_data: credentials.user_data(
                role,
                "bench",
                None,
                (role == Role::Minion).then_some(2),
            ),
            kernel_boot: false,
            imds_only: false,
        })?;
    }
    let master_marker = c.wait_serial("master1", "rolectl: activated as master", 0, timeout)?;
    let minion_marker = c.wait_serial("minion1", "rolectl: activated as minion", 0, timeout)?;
    let ip = c.vm("master1")?.ip;
    let api = wait_until("API server ready", timeout, Duration::from_secs(3), || {
        Ok(kube::api_ready(c.netns(), &c.key.private, ip).then(|| t0.elapsed()))
    })?;
    let mut ready: Vec<(String, f64)> = Vec::new();
    wait_until(
        "every minion Ready",
        timeout,
        Duration::from_secs(5),
        || {
            if let Ok(nodes) = kube::nodes(c.netns(), &c.key.private, ip) {
                for m in minions {
                    let now = nodes.iter().any(|n| n.name == m && n.ready);
                    if now && !ready.iter().any(|(n, _)| n == m) {
                        ready.push((m.to_string(), t0.elapsed().as_secs_f64()));
                    }
                }
            }
            Ok((ready.len() == minions.len()).then_some(()))
        },
    )?;
    let used = c.ssh("master1", "free -m | awk '/^Mem:/ {print $3}'")?;
    let master_used_mib = used
        .trim()
        .parse()
        .with_context(|| format!("free -m on master1 said {used:?}"))?;
    let weave = wait_until(
        "weave launched on both minions",
        timeout,
        Duration::from_secs(3),
        || {
            let ok = minions
                .iter()
                .all(|m| c.ssh(m, "test -s /run/rolectl/weave.json").is_ok());
            Ok(ok.then(|| t0.elapsed()))
        },
    )?;
    let accel = c.accel.to_string();
    c.shutdown();
    ready.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(BenchResult {
        accel,
        memory_mib,
        master,
        master_marker_s: master_marker.as_secs_f64(),
        api_ready_s: api.as_secs_f64(),
        minion_marker_s: minion_marker.as_secs_f64(),
        minions_ready_s: ready,
        weave_launched_s: weave.as_secs_f64(),
        master_used_mib,
    })
}
