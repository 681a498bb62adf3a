//! `kubebake up`: start a laptop cluster (harness [`harness::up`]); in the
//! foreground it shows each VM's stage until Ctrl-C, with `--detach` it
//! re-runs itself in the background and returns once the VMs are started.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use harness::cluster::Sizing;
use harness::state::State;
use harness::up::{RoleSections, UpPlan};
use serde::Serialize;

use super::role_str;
use crate::cli::{state_dir, GlobalArgs, UpArgs};
use crate::layout::boot_spec;
use crate::output::{emit, out};

pub fn run(global: &GlobalArgs, args: &UpArgs) -> Result<ExitCode> {
    let dir = state_dir(&args.cluster, args.state_dir.as_ref());
    // Generated user-data carries the cluster's credentials; secrets are
    // made once (in the state dir unless --secrets names a directory).
    let secrets_dir = args.secrets.clone().unwrap_or_else(|| dir.join("secrets"));
    let credentials = match &args.user_data {
        Some(_) => None,
        None => Some(credentials(&args.cluster, &secrets_dir)?),
    };
    let plan = UpPlan {
        cluster: args.cluster.clone(),
        domain: args.domain.clone(),
        masters: args.masters,
        minions: args.minions,
        memory_mib: args.memory,
        cpus: args.cpus,
        disk_gib: args.disk_size,
        user_data: match &args.user_data {
            Some(p) => Some(
                std::fs::read(p).with_context(|| format!("reading user-data {}", p.display()))?,
            ),
            None => None,
        },
        credentials,
        master: Some(Sizing {
            memory_mib: args.master_memory,
            cpus: args.master_cpus,
        }),
        expected_minions: args.expected_minions,
        kernel_boot: args.kernel_boot,
    };
    plan.check()?;
    let image = boot_spec(&args.image)?;
    if args.detach && !args.daemon {
        let state = detach(
            args,
            &dir,
            plan.credentials.is_some().then_some(&secrets_dir),
        )?;
        if let Some(timeout) = args.wait {
            let ready = wait_ready(&dir, timeout, !global.json)?;
            emit(global, &ready, |r| {
                format!("{}{}", detached_text(&state, &dir), ready_text(r))
            })?;
        } else {
            emit(global, &state, |s| detached_text(s, &dir))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let stop = harness::process::stop_flag()?;
    let (cluster, state) = harness::up::start(&image, &plan, &dir)?;
    emit(global, &state, |s| {
        format!(
            "cluster {} up: namespace {}, accelerator {}, {} VM(s); ssh: ip netns exec {} ssh -i {} debian@<ip>\n",
            s.cluster,
            s.netns,
            s.accel,
            s.vms.len(),
            s.netns,
            s.ssh_key.display()
        )
    })?;
    let started = Instant::now();
    let live = !args.daemon && !global.json;
    if let (Some(timeout), false) = (args.wait, args.daemon) {
        match wait_ready(&dir, timeout, live) {
            Ok(r) => emit(global, &r, ready_text)?,
            Err(e) => {
                cluster.shutdown();
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        }
    }
    let mut last_print: Option<Instant> = None;
    while !stop.load(Ordering::SeqCst) {
        if live && last_print.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            last_print = Some(Instant::now());
            let mut t = format!("--- {:.1} s since start\n", started.elapsed().as_secs_f64());
            t.push_str(&super::vm_rows(&harness::up::stages(&cluster)));
            out(&t)?;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!("stopping cluster {}", args.cluster);
    cluster.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(ExitCode::SUCCESS)
}

fn detached_text(s: &State, dir: &Path) -> String {
    let mut t = format!(
        "cluster {} up in the background (pid {}, namespace {}, accelerator {}):\n",
        s.cluster, s.pid, s.netns, s.accel
    );
    for v in &s.vms {
        t.push_str(&format!(
            "  {:<10} {:<7} {}\n",
            v.name,
            role_str(v.role),
            v.ip
        ));
    }
    t.push_str(&format!(
        "`kubebake status --cluster {c}` shows progress, `kubebake down --cluster {c}` stops it; log {}\n",
        dir.join("up.log").display(),
        c = s.cluster
    ));
    t
}

/// The cluster's secrets in `dir`: loaded if `cluster init` made them
/// there, else made now.
pub fn credentials(cluster: &str, dir: &Path) -> Result<RoleSections> {
    use crate::cluster_secrets as cs;
    let secrets = if dir.join("cluster.json").is_file() {
        let s = cs::load(dir)?;
        if s.info.name != cluster {
            bail!(
                "the secrets in {} belong to cluster {:?}, not {cluster:?}: pass --cluster {} or another --secrets DIR",
                dir.display(),
                s.info.name,
                s.info.name
            );
        }
        s
    } else {
        cs::init(
            &cs::ClusterName::try_from(cluster)?,
            dir,
            &cs::InitOptions::default(),
        )?
    };
    Ok(RoleSections {
        master: secrets.userdata_section(harness::Role::Master, None)?,
        minion: secrets.userdata_section(harness::Role::Minion, None)?,
    })
}

/// What `up --wait` reports once every minion is Ready.
#[derive(Debug, Serialize)]
struct Ready {
    cluster: String,
    seconds: f64,
    nodes: Vec<harness::kube::Node>,
    /// Copied from the first master (0600); its server is the master's
    /// address inside the cluster's namespace.
    admin_kubeconfig: PathBuf,
    netns: String,
}

fn ready_text(r: &Ready) -> String {
    format!(
        "all {} minion(s) Ready after {:.0} s; admin kubeconfig {}
           from the host: ip netns exec {} kubectl --kubeconfig {} get nodes
",
        r.nodes.len(),
        r.seconds,
        r.admin_kubeconfig.display(),
        r.netns,
        r.admin_kubeconfig.display()
    )
}

/// Polls `status` until every minion's node is Ready, then copies the admin
/// kubeconfig out of the first master.
fn wait_ready(dir: &Path, timeout: Duration, live: bool) -> Result<Ready> {
    let started = Instant::now();
    let mut last_print: Option<Instant> = None;
    let status = harness::wait_until(
        "every minion Ready",
        timeout,
        Duration::from_secs(5),
        || {
            let s = harness::state::status(dir)?;
            if !s.running {
                bail!("the cluster's process is gone; see {}", dir.join("up.log").display());
            }
            if live && last_print.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                last_print = Some(Instant::now());
                let mut t = format!("--- {:.1} s, waiting for every minion Ready\n", started.elapsed().as_secs_f64());
                t.push_str(&super::vm_rows(&s.vms));
                eprint!("{t}");
            }
            // Every master's control plane runs and every minion's node is
            // Ready (with no minions, the masters alone decide).
            let all = s.vms.iter().all(|v| match v.role {
                Some(harness::Role::Minion) => v.node.as_deref() == Some("Ready"),
                Some(harness::Role::Master) => v.stage == "master: control plane active",
                None => true,
            });
            Ok(all.then_some(s))
        },
    )
    .with_context(|| format!("the cluster stays up; `kubebake status --cluster NAME` shows where it is, `kubebake down` stops it (state {})", dir.display()))?;
    let state = State::read(dir)?;
    let master = state
        .vms
        .iter()
        .find(|v| v.role == Some(harness::Role::Master))
        .context("no master in the cluster: nothing to read the admin kubeconfig from")?;
    let ip = master
        .ip
        .parse()
        .with_context(|| format!("master address {:?}", master.ip))?;
    let text = harness::kube::admin_kubeconfig(&state.netns, &state.ssh_key, ip)?;
    let path = dir.join("admin.conf");
    harness::kube::write_private(&path, text.as_bytes())?;
    Ok(Ready {
        cluster: status.cluster.clone(),
        seconds: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        // The API server may still be starting when no minion had to join.
        nodes: harness::wait_until(
            "the API server lists the nodes",
            timeout
                .saturating_sub(started.elapsed())
                .max(Duration::from_secs(60)),
            Duration::from_secs(5),
            || Ok(harness::kube::nodes(&state.netns, &state.ssh_key, ip).ok()),
        )?,
        admin_kubeconfig: path,
        netns: state.netns,
    })
}

/// Re-runs `up` in a new session in the background and waits for its state.
fn detach(args: &UpArgs, dir: &Path, secrets: Option<&PathBuf>) -> Result<State> {
    use std::os::unix::process::CommandExt;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let _ = std::fs::remove_file(dir.join("state.json"));
    let log = dir.join("up.log");
    let exe = std::env::current_exe().context("locating the kubebake binary")?;
    let abs = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("up").arg("--daemon");
    cmd.arg("--image").arg(abs(&args.image));
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
        cmd.arg("--user-data").arg(abs(u));
    }
    if let Some(d) = secrets {
        cmd.arg("--secrets").arg(abs(d));
    }
    cmd.args([
        "--master-memory",
        &args.master_memory.to_string(),
        "--master-cpus",
        &args.master_cpus.to_string(),
    ]);
    if let Some(n) = args.expected_minions {
        cmd.args(["--expected-minions", &n.to_string()]);
    }
    if args.kernel_boot {
        cmd.arg("--kernel-boot");
    }
    cmd.arg("--state-dir").arg(dir);
    let logf =
        std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    cmd.stdin(std::process::Stdio::null())
        .stdout(logf.try_clone()?)
        .stderr(logf)
        .process_group(0);
    let mut child = cmd.spawn().context("starting the background kubebake up")?;
    harness::wait_until(
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
            Ok(State::read(dir).ok().filter(|s| s.ready))
        },
    )
}
