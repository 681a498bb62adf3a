//! `kubebake bench-vm`: boots VMs of the golden image and times the stages.
//!
//! Boot scenarios ([`boot_run`], [`weave_run`]) read the guest's own
//! systemd timestamps (`ActiveEnterTimestampMonotonic`) once the VM is up and
//! map them onto the host clock with [`Cluster::guest_clock_zero`]: the
//! figures do not depend on when the console or ssh got around to showing
//! them. [`bench`] times the whole Kubernetes cluster up to every minion
//! Ready.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use contract::console;
use serde::Serialize;

use crate::cluster::{Cluster, ClusterOptions, Datasource, Sizing, UserData, VmSpec};
use crate::up::RoleSections;
use crate::{kube, wait_until, BootSpec, Role};

/// The benchmarks' VMs' disks, as `kubebake up`'s default.
const BENCH_DISK_GIB: u32 = 8;

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
        disk_gib: Some(BENCH_DISK_GIB),
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
            datasource: Datasource::Seed,
        })?;
    }
    let master_marker = c.wait_serial("master1", &console::activated(Role::Master), 0, timeout)?;
    let minion_marker = c.wait_serial("minion1", &console::activated(Role::Minion), 0, timeout)?;
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

/// Minimum, median and maximum of several runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    pub min: f64,
    pub median: f64,
    pub max: f64,
    pub runs: usize,
}

impl Spread {
    /// None for no figures. The median of an even count is the mean of the
    /// middle two.
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Spread {
            min: v[0],
            median,
            max: v[n - 1],
            runs: n,
        })
    }
}

/// The minion units that start without the master: "role units active"
/// (not kube-proxy: it waits for the node's own credential, which the
/// kubelet gets from the master).
pub const MINION_RUNTIME_UNITS: &[&str] = &[
    "containerd.service",
    "docker.service",
    "kubebake-images.service",
];

/// One VM's boot, seconds from its start (host clock).
#[derive(Debug, Clone, Serialize)]
pub struct BootTimes {
    pub vm: String,
    /// rolectl.service done: the role marker is written.
    pub marker_s: f64,
    /// The last of [`MINION_RUNTIME_UNITS`] active.
    pub units_active_s: f64,
}

/// systemd's `ActiveEnterTimestampMonotonic` of each unit in seconds of the
/// guest clock; None while a unit has not been active yet.
fn active_since(c: &Cluster, vm: &str, units: &[&str]) -> Result<Vec<Option<f64>>> {
    let cmd = units
        .iter()
        .map(|u| format!("systemctl show -p ActiveEnterTimestampMonotonic --value {u}"))
        .collect::<Vec<_>>()
        .join("; ");
    let out = c.ssh(vm, &cmd)?;
    let values: Vec<Option<f64>> = out
        .lines()
        .map(|l| {
            l.trim()
                .parse::<u64>()
                .ok()
                .filter(|us| *us > 0)
                .map(|us| us as f64 / 1e6)
        })
        .collect();
    if values.len() != units.len() {
        anyhow::bail!("systemctl show on {vm} printed {out:?} for {units:?}");
    }
    Ok(values)
}

/// How often [`wait_active`] asks a guest. The figures are systemd's own
/// timestamps, so a slow poll only delays noticing them; a fast one would
/// slow what it measures: each ssh login costs a guest under TCG about half
/// a second of its one vCPU (sshd, PAM, logind).
const POLL: Duration = Duration::from_secs(10);

/// Waits until every unit of `units` has been active on `vm`; the guest
/// clock time of each.
fn wait_active(c: &Cluster, vm: &str, units: &[&str], timeout: Duration) -> Result<Vec<f64>> {
    wait_until(
        &format!("{} active on {vm}", units.join(" ")),
        timeout,
        POLL,
        || {
            let Ok(v) = active_since(c, vm, units) else {
                return Ok(None);
            };
            Ok(v.iter()
                .all(Option::is_some)
                .then(|| v.into_iter().flatten().collect()))
        },
    )
}

fn start_cluster(
    image: &BootSpec,
    memory_mib: u32,
    master: Option<Sizing>,
) -> Result<(tempfile::TempDir, Cluster)> {
    let work = tempfile::tempdir().context("bench work dir")?;
    let c = Cluster::start(ClusterOptions {
        image: image.clone(),
        domain: "k8s".into(),
        memory_mib,
        cpus: 1,
        master,
        disk_gib: Some(BENCH_DISK_GIB),
        work_dir: work.path().to_path_buf(),
        die_with_parent: true,
    })?;
    Ok((work, c))
}

fn launch(c: &mut Cluster, name: &str, role: Role, user_data: UserData) -> Result<()> {
    c.launch(VmSpec {
        name: name.into(),
        cluster: "bench".into(),
        role: Some(role),
        user_data,
        kernel_boot: false,
        datasource: Datasource::Seed,
    })?;
    Ok(())
}

/// A minion's start -> role marker and start -> runtime units active, its
/// guest clock starting `zero` seconds after its start.
fn minion_times(c: &Cluster, vm: &str, zero: f64, timeout: Duration) -> Result<BootTimes> {
    let marker = wait_active(c, vm, &["rolectl.service"], timeout)?;
    let units = wait_active(c, vm, MINION_RUNTIME_UNITS, timeout)?;
    Ok(BootTimes {
        vm: vm.to_string(),
        marker_s: zero + marker[0],
        units_active_s: zero + units.iter().copied().fold(0.0, f64::max),
    })
}

/// Boots `count` minions at once (NoCloud seed, SeaBIOS) and times each:
/// start -> role marker, start -> runtime units active.
pub fn boot_run(
    image: &BootSpec,
    memory_mib: u32,
    count: u32,
    credentials: &RoleSections,
    timeout: Duration,
) -> Result<Vec<BootTimes>> {
    let (_work, mut c) = start_cluster(image, memory_mib, None)?;
    let names: Vec<String> = (1..=count).map(|i| format!("minion{i}")).collect();
    for n in &names {
        let ud = credentials.user_data(Role::Minion, "bench", None, Some(count));
        launch(&mut c, n, Role::Minion, ud)?;
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let zero = c.guest_clock_zero(&refs, timeout)?;
    let mut times = Vec::new();
    for (n, z) in refs.iter().zip(zero) {
        times.push(minion_times(&c, n, z, timeout)?);
    }
    c.shutdown();
    Ok(times)
}

/// One run of 1 master + 2 minions: when weave.service became active on
/// each minion (it waits for masters.<cluster> to resolve and for both
/// minions under minions.<cluster>).
#[derive(Debug, Clone, Serialize)]
pub struct WeaveTimes {
    pub minions: Vec<BootTimes>,
    /// (minion, start -> weave launched), seconds.
    pub weave_s: Vec<(String, f64)>,
}

impl WeaveTimes {
    /// Weave launched on both minions.
    pub fn both_s(&self) -> f64 {
        self.weave_s.iter().map(|w| w.1).fold(0.0, f64::max)
    }
}

pub fn weave_run(
    image: &BootSpec,
    memory_mib: u32,
    master: Sizing,
    credentials: &RoleSections,
    timeout: Duration,
) -> Result<WeaveTimes> {
    let (_work, mut c) = start_cluster(image, memory_mib, Some(master))?;
    let minions = ["minion1", "minion2"];
    launch(
        &mut c,
        "master1",
        Role::Master,
        credentials.user_data(Role::Master, "bench", None, None),
    )?;
    for m in minions {
        let ud = credentials.user_data(Role::Minion, "bench", None, Some(2));
        launch(&mut c, m, Role::Minion, ud)?;
    }
    let zero = c.guest_clock_zero(&minions, timeout)?;
    // Watched on the consoles: nothing logs into the minions before both
    // launched weave, so the figure is not slowed by its own measurement.
    for m in minions {
        c.wait_serial(m, console::WEAVE_LAUNCH, 0, timeout)?;
    }
    let mut out = WeaveTimes {
        minions: Vec::new(),
        weave_s: Vec::new(),
    };
    for (m, z) in minions.iter().zip(zero) {
        out.minions.push(minion_times(&c, m, z, timeout)?);
        let weave = wait_active(&c, m, &["weave.service"], timeout)?;
        out.weave_s.push((m.to_string(), z + weave[0]));
    }
    c.shutdown();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::Spread;

    #[test]
    fn spread_min_median_max() {
        let s = Spread::of(&[3.0, 1.0, 2.0]).expect("three figures");
        assert_eq!((s.min, s.median, s.max, s.runs), (1.0, 2.0, 3.0, 3));
        let s = Spread::of(&[4.0, 1.0, 2.0, 3.0]).expect("four figures");
        assert_eq!(s.median, 2.5);
        assert_eq!(Spread::of(&[]), None);
    }
}
