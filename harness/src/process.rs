//! Processes the harness owns outside a [`crate::cluster::Cluster`]: the
//! background `kubebake up` and QEMU process groups recorded in a state file,
//! and the stop signal of a foreground cluster.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use crate::wait_until;

/// Whether process `pid` exists.
pub fn alive(pid: u32) -> bool {
    kill(Pid::from_raw(pid as i32), None).is_ok()
}

/// SIGTERM, up to `grace` for it to exit, then SIGKILL.
pub fn terminate(pid: u32, grace: Duration) {
    let p = Pid::from_raw(pid as i32);
    let _ = kill(p, Signal::SIGTERM);
    let _ = wait_until(
        "the process to exit",
        grace,
        Duration::from_millis(200),
        || Ok((!alive(pid)).then_some(())),
    );
    if alive(pid) {
        let _ = kill(p, Signal::SIGKILL);
    }
}

/// Kills a process group recorded by a pidfile.
pub fn kill_pidfile(pidfile: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(pidfile).ok()?.trim().parse().ok()?;
    kill_pid_group(pid);
    Some(pid)
}

/// SIGKILL to the group `pid` leads and to `pid` itself.
pub fn kill_pid_group(pid: i32) {
    let p = Pid::from_raw(pid);
    let _ = killpg(p, Signal::SIGKILL);
    let _ = kill(p, Signal::SIGKILL);
}

/// A flag set on SIGINT or SIGTERM.
pub fn stop_flag() -> Result<Arc<AtomicBool>> {
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
