//! `kubebake up`: start a laptop cluster (harness [`harness::up`]); in the
//! foreground it shows each VM's stage until Ctrl-C, with `--detach` it
//! re-runs itself in the background and returns once the VMs are started.

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use harness::state::State;
use harness::up::UpPlan;

use super::role_str;
use crate::cli::{state_dir, GlobalArgs, UpArgs};
use crate::layout::boot_spec;
use crate::output::{emit, out};

pub fn run(global: &GlobalArgs, args: &UpArgs) -> Result<ExitCode> {
    let plan = UpPlan {
        cluster: args.cluster.clone(),
        domain: args.domain.clone(),
        masters: args.masters,
        minions: args.minions,
        memory_mib: args.memory,
        cpus: args.cpus,
        user_data: match &args.user_data {
            Some(p) => Some(
                std::fs::read(p).with_context(|| format!("reading user-data {}", p.display()))?,
            ),
            None => None,
        },
        expected_minions: args.expected_minions,
        kernel_boot: args.kernel_boot,
    };
    plan.check()?;
    let image = boot_spec(&args.image)?;
    let dir = state_dir(&args.cluster, args.state_dir.as_ref());
    if args.detach && !args.daemon {
        let state = detach(args, &dir)?;
        emit(global, &state, |s| detached_text(s, &dir))?;
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

/// Re-runs `up` in a new session in the background and waits for its state.
fn detach(args: &UpArgs, dir: &Path) -> Result<State> {
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
