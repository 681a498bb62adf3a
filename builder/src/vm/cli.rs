//! `kubebake up | down | status | userdata | bench-vm`: a laptop cluster from
//! the golden image, like `aws ec2 run-instances` into a private VPC.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::{Deserialize, Serialize};

use super::cluster::{self, Cluster, ClusterOptions, UserData, VmSpec};
use super::image::GoldenImage;
use super::userdata::{self, Role};
use super::{net, qemu, wait_until};

#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    /// Golden image (qcow2; kernel, initrd and manifest beside it).
    #[arg(long, default_value = "out/k8s-node-offline.qcow2")]
    pub image: PathBuf,
    #[arg(long, default_value_t = 1)]
    pub masters: u32,
    #[arg(long, default_value_t = 2)]
    pub minions: u32,
    #[arg(long, default_value = "demo")]
    pub cluster: String,
    /// DNS zone of the VPC.
    #[arg(long, default_value = "k8s")]
    pub domain: String,
    /// Memory per VM, MiB.
    #[arg(long, default_value_t = 1024)]
    pub memory: u32,
    #[arg(long, default_value_t = 1)]
    pub cpus: u32,
    /// The same user-data file for every instance (like run-instances
    /// --user-data); without it each VM gets generated role user-data.
    #[arg(long)]
    pub user_data: Option<PathBuf>,
    /// Expected minion count in generated user-data (default: --minions).
    #[arg(long)]
    pub expected_minions: Option<u32>,
    /// Direct kernel boot (-kernel/-initrd/-append) instead of SeaBIOS.
    #[arg(long)]
    pub kernel_boot: bool,
    /// Return once the VMs are started; `kubebake down` stops them.
    #[arg(long)]
    pub detach: bool,
    /// State directory (default /run/kubebake/<cluster>).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Internal: the background process of --detach.
    #[arg(long, hide = true)]
    pub daemon: bool,
}

#[derive(Debug, Clone, Args)]
pub struct DownArgs {
    #[arg(long, default_value = "demo")]
    pub cluster: String,
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Also delete every leftover `kb-*` network namespace (careful: other
    /// harness runs on this host use that prefix too).
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    #[arg(long, default_value = "demo")]
    pub cluster: String,
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct UserdataArgs {
    #[arg(long)]
    pub role: Role,
    #[arg(long, default_value = "demo")]
    pub cluster: String,
    #[arg(long)]
    pub expected_minions: Option<u32>,
    #[arg(long)]
    pub domain: Option<String>,
    /// Public key file for the default user (ssh_authorized_keys).
    #[arg(long)]
    pub ssh_key: Option<PathBuf>,
    /// Cluster secrets made by `kubebake cluster init`: a master gets the
    /// CAs' keys, service-account keys and the bootstrap token; a minion the
    /// CA certificate (and pin), the token and kube-proxy's certificate.
    #[arg(long, value_name = "DIR")]
    pub secrets: Option<PathBuf>,
    /// A minion's API server URL [default: https://masters.<cluster>.<domain>:6443].
    #[arg(long, value_name = "URL")]
    pub api_server: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct BenchVmArgs {
    #[arg(long, default_value = "out/k8s-node-offline.qcow2")]
    pub image: PathBuf,
    #[arg(long, default_value_t = 1024)]
    pub memory: u32,
    /// Per-stage time limit, seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
}

/// What `up --detach` leaves for `down` and `status`.
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

fn state_dir(cluster: &str, given: &Option<PathBuf>) -> PathBuf {
    given
        .clone()
        .unwrap_or_else(|| PathBuf::from("/run/kubebake").join(cluster))
}

fn read_state(dir: &Path) -> Result<State> {
    let p = dir.join("state.json");
    let text = std::fs::read_to_string(&p).with_context(|| {
        format!(
            "reading {} (is the cluster up? `kubebake up --detach`)",
            p.display()
        )
    })?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))
}

fn write_state(dir: &Path, s: &State) -> Result<()> {
    let tmp = dir.join("state.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(s)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, dir.join("state.json")).context("renaming state.json")
}

/// Sets the returned flag on SIGINT or SIGTERM.
fn stop_flag() -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::spawn(move || {
        rt.block_on(async move {
            let Ok(mut term) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            else {
                return;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            f.store(true, Ordering::SeqCst);
        });
    });
    Ok(flag)
}

pub fn run_up(args: UpArgs) -> Result<()> {
    userdata::check_cluster(&args.cluster)?;
    userdata::check_label("domain", &args.domain)?;
    if args.masters + args.minions == 0 {
        bail!("nothing to start: --masters and --minions are both 0");
    }
    let user_data = match &args.user_data {
        Some(p) => {
            Some(std::fs::read(p).with_context(|| format!("reading user-data {}", p.display()))?)
        }
        None => None,
    };
    let image = GoldenImage::open(&args.image)?;
    let dir = state_dir(&args.cluster, &args.state_dir);
    if args.detach && !args.daemon {
        return detach(&args, &dir);
    }
    if let Ok(old) = read_state(&dir) {
        if nix::sys::signal::kill(nix::unistd::Pid::from_raw(old.pid as i32), None).is_ok() {
            bail!(
                "cluster {} is already up (pid {}); `kubebake down --cluster {}` first",
                args.cluster,
                old.pid,
                args.cluster
            );
        }
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let stop = stop_flag()?;
    let mut c = Cluster::start(ClusterOptions {
        image,
        domain: args.domain.clone(),
        memory_mib: args.memory,
        cpus: args.cpus,
        work_dir: dir.join("vms"),
        die_with_parent: true,
    })?;
    let expected = args.expected_minions.or(Some(args.minions));
    let started = Instant::now();
    let plan = (1..=args.masters)
        .map(|i| (format!("master{i}"), Role::Master))
        .chain((1..=args.minions).map(|i| (format!("minion{i}"), Role::Minion)));
    for (name, role) in plan {
        let ud = match &user_data {
            Some(b) => UserData::File(b.clone()),
            None => UserData::Role {
                role,
                expected_minions: (role == Role::Minion).then_some(expected).flatten(),
            },
        };
        c.launch(VmSpec {
            name,
            cluster: args.cluster.clone(),
            role: Some(role),
            user_data: ud,
            kernel_boot: args.kernel_boot,
            imds_only: false,
        })?;
    }
    let state = State {
        cluster: args.cluster.clone(),
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
    };
    write_state(&dir, &state)?;
    println!(
        "cluster {} up: namespace {}, accelerator {}, {} VM(s); ssh: ip netns exec {} ssh -i {} debian@<ip>",
        args.cluster,
        state.netns,
        state.accel,
        state.vms.len(),
        state.netns,
        state.ssh_key.display()
    );
    let mut last_print = Instant::now() - Duration::from_secs(60);
    while !stop.load(Ordering::SeqCst) {
        if !args.daemon && last_print.elapsed() >= Duration::from_secs(10) {
            last_print = Instant::now();
            println!("--- {} since start", cluster::secs(started));
            for v in c.vms() {
                let stage =
                    cluster::probe_stage(c.netns(), &c.key.private, v.ip, &v.qemu.serial_log);
                println!(
                    "  {:<10} {:<7} {:<12} {}",
                    v.name,
                    role_str(v.role),
                    v.ip,
                    stage
                );
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    println!("stopping cluster {}", args.cluster);
    c.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn role_str(r: Option<Role>) -> String {
    r.map(|r| r.to_string()).unwrap_or_else(|| "-".into())
}

/// Re-runs `up` in a new session in the background and waits for its state.
fn detach(args: &UpArgs, dir: &Path) -> Result<()> {
    use std::os::unix::process::CommandExt;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let _ = std::fs::remove_file(dir.join("state.json"));
    let log = dir.join("up.log");
    let exe = std::env::current_exe().context("locating the kubebake binary")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("up").arg("--daemon");
    let image = args
        .image
        .canonicalize()
        .unwrap_or_else(|_| args.image.clone());
    cmd.arg("--image").arg(image);
    cmd.args(["--masters", &args.masters.to_string()]);
    cmd.args(["--minions", &args.minions.to_string()]);
    cmd.args(["--cluster", &args.cluster, "--domain", &args.domain]);
    cmd.args([
        "--memory",
        &args.memory.to_string(),
        "--cpus",
        &args.cpus.to_string(),
    ]);
    if let Some(u) = &args.user_data {
        cmd.arg("--user-data")
            .arg(u.canonicalize().unwrap_or_else(|_| u.clone()));
    }
    if let Some(n) = args.expected_minions {
        cmd.args(["--expected-minions", &n.to_string()]);
    }
    if args.kernel_boot {
        cmd.arg("--kernel-boot");
    }
    cmd.arg("--state-dir").arg(dir);
    let out = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    cmd.stdin(std::process::Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .process_group(0);
    let mut child = cmd.spawn().context("starting the background kubebake up")?;
    let state = wait_until(
        "the detached cluster to start",
        Duration::from_secs(300),
        Duration::from_millis(300),
        || {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "background kubebake up exited ({status}); see {}:\n{}",
                    log.display(),
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            Ok(read_state(dir).ok().filter(|s| s.ready))
        },
    )?;
    println!(
        "cluster {} up in the background (pid {}, namespace {}, accelerator {}):",
        state.cluster, state.pid, state.netns, state.accel
    );
    for v in &state.vms {
        println!("  {:<10} {:<7} {}", v.name, role_str(v.role), v.ip);
    }
    println!(
        "`kubebake status --cluster {c}` shows progress, `kubebake down --cluster {c}` stops it; log {}",
        log.display(),
        c = state.cluster
    );
    Ok(())
}

pub fn run_down(args: DownArgs) -> Result<()> {
    let dir = state_dir(&args.cluster, &args.state_dir);
    let state = read_state(&dir);
    if let Ok(s) = &state {
        let pid = nix::unistd::Pid::from_raw(s.pid as i32);
        if s.pid != std::process::id() && nix::sys::signal::kill(pid, None).is_ok() {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = wait_until(
                "the cluster process to exit",
                Duration::from_secs(30),
                Duration::from_millis(200),
                || Ok(nix::sys::signal::kill(pid, None).is_err().then_some(())),
            );
            if nix::sys::signal::kill(pid, None).is_ok() {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            }
        }
        for v in &s.vms {
            if qemu::kill_pidfile(&v.pidfile).is_none() {
                qemu::kill_pid_group(v.pid as i32);
            }
        }
        net::delete_namespace(&s.netns)?;
        println!(
            "cluster {}: {} VM(s) stopped, namespace {} removed",
            s.cluster,
            s.vms.len(),
            s.netns
        );
    } else if !args.all {
        println!(
            "cluster {}: nothing to stop (no state in {})",
            args.cluster,
            dir.display()
        );
    }
    if args.all {
        for ns in net::leftover_namespaces() {
            net::delete_namespace(&ns)?;
            println!("removed leftover namespace {ns}");
        }
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    Ok(())
}

#[derive(Serialize)]
struct VmStatus<'a> {
    name: &'a str,
    role: String,
    ip: &'a str,
    running: bool,
    stage: String,
}

/// `json`: the global `--json` flag.
pub fn run_status(args: StatusArgs, json: bool) -> Result<()> {
    let dir = state_dir(&args.cluster, &args.state_dir);
    let s = read_state(&dir)?;
    let alive =
        |pid: u32| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok();
    let vms: Vec<VmStatus> = s
        .vms
        .iter()
        .map(|v| {
            let running = alive(v.pid);
            let stage = match (running, v.ip.parse()) {
                (true, Ok(ip)) => cluster::probe_stage(&s.netns, &s.ssh_key, ip, &v.serial_log),
                _ => "stopped".into(),
            };
            VmStatus {
                name: &v.name,
                role: role_str(v.role),
                ip: &v.ip,
                running,
                stage,
            }
        })
        .collect();
    if json {
        let out = serde_json::json!({
            "cluster": s.cluster, "netns": s.netns, "pid": s.pid,
            "running": alive(s.pid), "accel": s.accel, "vms": vms,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "cluster {} (pid {}, {}), namespace {}, accelerator {}",
            s.cluster,
            s.pid,
            if alive(s.pid) {
                "running"
            } else {
                "NOT running"
            },
            s.netns,
            s.accel
        );
        for v in &vms {
            println!("  {:<10} {:<7} {:<12} {}", v.name, v.role, v.ip, v.stage);
        }
    }
    Ok(())
}

pub fn run_userdata(args: UserdataArgs) -> Result<()> {
    userdata::check_cluster(&args.cluster)?;
    if let Some(d) = &args.domain {
        userdata::check_label("domain", d)?;
    }
    let keys = match &args.ssh_key {
        Some(p) => vec![std::fs::read_to_string(p)
            .with_context(|| format!("reading SSH public key {}", p.display()))?
            .trim()
            .to_string()],
        None => Vec::new(),
    };
    let mut text = userdata::cloud_config(
        args.role,
        &args.cluster,
        args.domain.as_deref(),
        args.expected_minions,
        &keys,
    );
    if let Some(dir) = &args.secrets {
        let secrets = crate::cluster_secrets::load(dir)?;
        if secrets.info.name != args.cluster {
            anyhow::bail!(
                "the secrets in {} belong to cluster {:?}, not {:?}: pass --cluster {}",
                dir.display(),
                secrets.info.name,
                args.cluster,
                secrets.info.name
            );
        }
        let role = match args.role {
            Role::Master => rolectl::settings::Role::Master,
            Role::Minion => rolectl::settings::Role::Minion,
        };
        if role == rolectl::settings::Role::Master && args.api_server.is_some() {
            anyhow::bail!("--api-server is for minions: a master serves the API itself");
        }
        text.push_str(&secrets.userdata_section(role, args.api_server.as_deref())?);
    } else if args.api_server.is_some() {
        anyhow::bail!("--api-server needs --secrets DIR (the minion's credentials)");
    }
    print!("{text}");
    Ok(())
}

/// Measured times of [`bench`].
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    pub accel: String,
    pub master_marker_s: f64,
    pub master_units_s: f64,
    pub minion_marker_s: f64,
    pub minion_units_s: f64,
    pub weave_launched_s: f64,
}

pub fn run_bench_vm(args: BenchVmArgs) -> Result<()> {
    let r = bench(
        &GoldenImage::open(&args.image)?,
        args.memory,
        Duration::from_secs(args.timeout),
    )?;
    println!(
        "VM benchmark (accelerator {}, 1 vCPU, {} MiB per VM, 3 VMs in parallel):",
        r.accel, args.memory
    );
    println!(
        "  master: start -> role marker written   {:>7.1} s",
        r.master_marker_s
    );
    println!(
        "  master: start -> etcd active           {:>7.1} s",
        r.master_units_s
    );
    println!(
        "  minion: start -> role marker written   {:>7.1} s",
        r.minion_marker_s
    );
    println!(
        "  minion: start -> docker active         {:>7.1} s",
        r.minion_units_s
    );
    println!(
        "  1 master + 2 minions: start -> weave launched on both minions {:>7.1} s",
        r.weave_launched_s
    );
    Ok(())
}

/// Boots 1 master + 2 minions and measures the stages (callable from
/// `kubebake bench`).
pub fn bench(image: &GoldenImage, memory_mib: u32, timeout: Duration) -> Result<BenchResult> {
    let work = tempfile::tempdir().context("bench work dir")?;
    let mut c = Cluster::start(ClusterOptions {
        image: image.clone(),
        domain: "k8s".into(),
        memory_mib,
        cpus: 1,
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
        master_marker_s: master_marker.as_secs_f64(),
        master_units_s: master_units,
        minion_marker_s: minion_marker.as_secs_f64(),
        minion_units_s: minion_units,
        weave_launched_s: weave.as_secs_f64(),
    })
}
