//! `kubebake bench-vm`: boots 1 master + 2 minions and times the stages.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::cluster::{Cluster, ClusterOptions, UserData, VmSpec};
use crate::{wait_until, BootSpec, Role};

/// Measured times, seconds from the VMs' start.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    pub accel: String,
    pub memory_mib: u32,
    pub master_marker_s: f64,
    pub master_units_s: f64,
    pub minion_marker_s: f64,
    pub minion_units_s: f64,
    pub weave_launched_s: f64,
}

/// Boots 1 master + 2 minions in parallel and measures the stages; each
/// stage may take up to `timeout`.
pub fn bench(image: &BootSpec, memory_mib: u32, timeout: Duration) -> Result<BenchResult> {
    let work = tempfile::tempdir().context("bench work dir")?;
    let mut c = Cluster::start(ClusterOptions {
        image: image.clone(),
        domain: "k8s".into(),
        memory_mib,
        cpus: 1,
        master: None,
        work_dir: work.path().to_path_buf(),
        die_with_parent: true,
    })?;
    let t0 = Instant::now();
    for (name, role) in [
        ("master1", Role::Master),
        ("minion1", Role::Minion),
        ("minion2", Role::Minion),
    ] {
        c.launch(VmSpec {
            name: name.into(),
            cluster: "bench".into(),
            role: Some(role),
            user_data: UserData::Role {
                role,
                expected_minions: (role == Role::Minion).then_some(2),
            },
            kernel_boot: false,
            imds_only: false,
        })?;
    }
    let master_marker = c.wait_serial("master1", "rolectl: activated as master", 0, timeout)?;
    let minion_marker = c.wait_serial("minion1", "rolectl: activated as minion", 0, timeout)?;
    let units = |vm: &str, unit: &str| -> Result<f64> {
        let t = wait_until(
            &format!("{unit} active on {vm}"),
            timeout,
            Duration::from_secs(2),
            || {
                Ok(c.ssh(vm, &format!("systemctl is-active {unit}"))
                    .ok()
                    .map(|_| t0.elapsed()))
            },
        )?;
        Ok(t.as_secs_f64())
    };
    let master_units = units("master1", "etcd.service")?;
    let minion_units = units("minion1", "docker.service")?;
    let weave = wait_until(
        "weave launched on both minions",
        timeout,
        Duration::from_secs(2),
        || {
            let ok = ["minion1", "minion2"]
                .iter()
                .all(|m| c.ssh(m, "test -s /run/rolectl/weave.json").is_ok());
            Ok(ok.then(|| t0.elapsed()))
        },
    )?;
    let accel = c.accel.to_string();
    c.shutdown();
    Ok(BenchResult {
        accel,
        memory_mib,
        master_marker_s: master_marker.as_secs_f64(),
        master_units_s: master_units,
        minion_marker_s: minion_marker.as_secs_f64(),
        minion_units_s: minion_units,
        weave_launched_s: weave.as_secs_f64(),
    })
}
