//! The build's child processes and what happens to them (and to the
//! build's temporary files) when the build is interrupted.
//!
//! Every host tool runs in a process group of its own ([`spawn`]), so that
//! the whole tree it starts (mmdebstrap's apt and dpkg, a recipe's make and
//! go) can be signalled at once, and with `PR_SET_PDEATHSIG` so that the
//! direct child dies with the thread that started it.
//!
//! - SIGINT / SIGTERM ([`handle_signals`]): a signal-handling thread forwards
//!   the signal to every running group, waits up to 5 s for them to end,
//!   kills what is left, removes the registered temporaries (the staging
//!   directory, the in-memory root tree) and exits with 128 + the signal.
//!   It waits for a publication in progress ([`publishing`]), so the output
//!   directory holds either the old outputs or the new ones.
//! - SIGKILL cannot be caught: a reaper process ([`start_reaper`], this same
//!   binary started again) holds the read end of a pipe on which the build
//!   announces each group it starts and ends. When the build dies the pipe
//!   closes and the reaper kills the groups still announced. What the dead
//!   build left on disk is removed by the next build or `kubebake clean`
//!   (sweep.rs), which only touches directories whose lock is free.

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// Set in the reaper's environment: `main` runs [`reaper_main`] instead.
pub const REAPER_ENV: &str = "KUBEBAKE_INTERNAL_REAPER";
/// How long interrupted children get to end before SIGKILL.
const GRACE: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Registry {
    groups: BTreeSet<i32>,
    temporaries: Vec<PathBuf>,
    reaper: Option<ChildStdin>,
}

fn registry() -> MutexGuard<'static, Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn publish_lock() -> &'static Mutex<()> {
    static PUBLISH: OnceLock<Mutex<()>> = OnceLock::new();
    PUBLISH.get_or_init(Mutex::default)
}

/// A running child in its own process group; the group is forgotten (and
/// no longer killed on interruption) once the child has been waited for.
pub struct Tracked {
    child: Child,
    pgid: i32,
}

impl Tracked {
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    pub fn wait(mut self) -> std::io::Result<ExitStatus> {
        let status = self.child.wait();
        forget_group(self.pgid);
        status
    }

    pub fn wait_with_output(self) -> std::io::Result<Output> {
        let pgid = self.pgid;
        let out = self.child.wait_with_output();
        forget_group(pgid);
        out
    }
}

/// Starts `cmd` in a process group of its own, tied to this process.
pub fn spawn(cmd: &mut Command) -> std::io::Result<Tracked> {
    cmd.process_group(0);
    tie_to_parent(cmd);
    // Registered before the child can start its own children: the lock is
    // held across the spawn so an interruption sees the group.
    let mut reg = registry();
    let child = cmd.spawn()?;
    let pgid = child.id() as i32;
    reg.groups.insert(pgid);
    announce(&mut reg, '+', pgid);
    Ok(Tracked { child, pgid })
}

#[allow(unsafe_code)]
fn tie_to_parent(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
        });
    }
}

fn forget_group(pgid: i32) {
    let mut reg = registry();
    reg.groups.remove(&pgid);
    announce(&mut reg, '-', pgid);
}

fn announce(reg: &mut Registry, sign: char, pgid: i32) {
    send(reg, &format!("{sign}{pgid}"));
}

/// Paths travel hex-encoded: any byte may be in a path.
fn announce_path(reg: &mut Registry, sign: char, path: &Path) {
    use std::os::unix::ffi::OsStrExt as _;
    send(
        reg,
        &format!("{sign}{}", hex::encode(path.as_os_str().as_bytes())),
    );
}

fn send(reg: &mut Registry, line: &str) {
    if let Some(pipe) = reg.reaper.as_mut() {
        if writeln!(pipe, "{line}")
            .and_then(|()| pipe.flush())
            .is_err()
        {
            reg.reaper = None;
        }
    }
}

/// A path removed when dropped, and by the reaper if the build is
/// interrupted before that.
pub struct Temporary {
    path: PathBuf,
}

impl Temporary {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Temporary {
    /// Removes the path first and only then tells the reaper to forget it:
    /// an interruption in the middle of a removal (a 1.3 GB root tree takes
    /// a second or two) leaves the rest to the reaper. Forgetting it first
    /// left half-removed trees behind when SIGTERM arrived while the build
    /// unwound from its killed child.
    fn drop(&mut self) {
        remove_path(&self.path);
        let mut reg = registry();
        reg.temporaries.retain(|p| p != &self.path);
        announce_path(&mut reg, 'u', &self.path);
    }
}

/// Registers `path` for removal when the returned guard is dropped or the
/// build is interrupted. Whatever should outlive the guard must be renamed
/// away from `path` before (a persisted temporary file, say).
pub fn temporary(path: &Path) -> Temporary {
    let mut reg = registry();
    reg.temporaries.push(path.to_path_buf());
    announce_path(&mut reg, 't', path);
    Temporary {
        path: path.to_path_buf(),
    }
}

/// Held while outputs are moved into place: an interruption waits for it.
pub fn publishing() -> MutexGuard<'static, ()> {
    publish_lock()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Whether any process of group `pgid` is still alive.
pub fn group_alive(pgid: i32) -> bool {
    !matches!(killpg(Pid::from_raw(pgid), None), Err(Errno::ESRCH))
}

/// Sends `signal` to every registered group, waits up to [`GRACE`] for them
/// to end, then kills what is left.
fn stop_groups(signal: Signal) {
    let groups: Vec<i32> = registry().groups.iter().copied().collect();
    for &g in &groups {
        let _ = killpg(Pid::from_raw(g), signal);
    }
    let deadline = Instant::now() + GRACE;
    while groups.iter().any(|&g| group_alive(g)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    for &g in &groups {
        let _ = killpg(Pid::from_raw(g), Signal::SIGKILL);
    }
}

/// Removes every registered temporary (files and directory trees).
pub fn remove_temporaries() {
    let paths = std::mem::take(&mut registry().temporaries);
    for p in paths.iter().rev() {
        remove_path(p);
    }
}

/// Removes a file, a symlink or a whole tree; missing is fine.
pub fn remove_path(p: &Path) {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => {
            let _ = std::fs::remove_dir_all(p);
        }
        Ok(_) => {
            let _ = std::fs::remove_file(p);
        }
        Err(_) => {}
    }
}

/// The signal being handled (0: none).
static INTERRUPTED: AtomicI32 = AtomicI32::new(0);

/// Called when a command failed: if that is because a signal stopped its
/// children, the signal-handling thread is cleaning up and will exit with
/// 128 + the signal; wait for it rather than exit 1 first.
pub fn wait_if_interrupted() {
    let sig = INTERRUPTED.load(Ordering::SeqCst);
    if sig == 0 {
        return;
    }
    std::thread::sleep(GRACE * 3);
    std::process::exit(128 + sig);
}

/// Installs the SIGINT/SIGTERM handling described above (once per process).
pub fn handle_signals() -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .context("installing the SIGINT/SIGTERM handlers")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                INTERRUPTED.store(sig, Ordering::SeqCst);
                let signal = Signal::try_from(sig).unwrap_or(Signal::SIGTERM);
                eprintln!("\nkubebake: {signal} received: stopping the build's processes and removing its temporary files");
                // A publication in progress finishes first; none starts after.
                let _publishing = publishing();
                stop_groups(signal);
                // Other threads may still be writing into the temporaries:
                // the reaper removes them once this process is gone.
                let mut reg = registry();
                send(&mut reg, "x");
                if reg.reaper.is_none() {
                    drop(reg);
                    remove_temporaries();
                }
                std::process::exit(128 + sig);
            }
        })
        .context("starting the signal-handling thread")?;
    Ok(())
}

/// Starts the reaper (see the module documentation). Without it, a build
/// killed with SIGKILL could leave grandchildren running; so failing to
/// start it is only a warning.
pub fn start_reaper() {
    let started = std::env::current_exe().and_then(|exe| {
        let mut cmd = Command::new(exe);
        cmd.env(REAPER_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            // Its own group: a Ctrl-C at the terminal does not reach it.
            .process_group(0);
        cmd.spawn()
    });
    match started {
        Ok(mut child) => {
            let mut reg = registry();
            reg.reaper = child.stdin.take();
            let groups: Vec<i32> = reg.groups.iter().copied().collect();
            for g in groups {
                announce(&mut reg, '+', g);
            }
            let temporaries = reg.temporaries.clone();
            for t in temporaries {
                announce_path(&mut reg, 't', &t);
            }
        }
        Err(e) => tracing::warn!(
            "could not start the reaper ({e}): a build killed with SIGKILL may leave child processes"
        ),
    }
}

/// The reaper: reads `+PGID` / `-PGID` (groups), `tHEXPATH` / `uHEXPATH`
/// (temporaries) and `x` (the build is exiting on SIGINT/SIGTERM) until the
/// build's end of the pipe closes; then kills the groups still listed and,
/// after `x`, removes the temporaries still listed. After a SIGKILL (no
/// `x`) the files stay for the next build's sweep: the reaper does not
/// know whether the build was done with them.
pub fn reaper_main() -> std::process::ExitCode {
    let mut groups = BTreeSet::new();
    let mut temporaries: Vec<PathBuf> = Vec::new();
    let mut exiting = false;
    for line in BufReader::new(std::io::stdin().lock()).lines() {
        let Ok(line) = line else { break };
        let (sign, rest) = line.split_at(line.len().min(1));
        match sign {
            "+" | "-" => {
                if let Ok(pgid) = rest.parse::<i32>() {
                    if sign == "+" {
                        groups.insert(pgid);
                    } else {
                        groups.remove(&pgid);
                    }
                }
            }
            "t" | "u" => {
                use std::os::unix::ffi::OsStringExt as _;
                if let Ok(bytes) = hex::decode(rest) {
                    let path = PathBuf::from(std::ffi::OsString::from_vec(bytes));
                    temporaries.retain(|p| p != &path);
                    if sign == "t" {
                        temporaries.push(path);
                    }
                }
            }
            "x" => exiting = true,
            _ => {}
        }
    }
    for g in groups {
        if g > 1 {
            let _ = killpg(Pid::from_raw(g), Signal::SIGKILL);
        }
    }
    if exiting {
        for p in temporaries.iter().rev() {
            remove_path(p);
        }
    }
    std::process::ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spawned_child_leads_its_own_group_and_is_forgotten_after_wait() {
        let t = spawn(Command::new("sleep").arg("0.1")).expect("spawn");
        let pgid = t.pgid;
        assert!(registry().groups.contains(&pgid));
        assert_eq!(
            nix::unistd::getpgid(Some(Pid::from_raw(pgid))).expect("getpgid"),
            Pid::from_raw(pgid),
            "the child must lead a process group of its own"
        );
        assert!(t.wait().expect("wait").success());
        assert!(!registry().groups.contains(&pgid));
    }

    #[test]
    fn stopping_groups_ends_the_grandchildren_too() {
        // bash starts a background sleep (a grandchild) and waits for it.
        let mut t = spawn(Command::new("bash").args(["-c", "sleep 30 & wait"])).expect("spawn");
        let pgid = t.pgid;
        std::thread::sleep(Duration::from_millis(200));
        stop_groups(Signal::SIGTERM);
        let status = t.child().wait().expect("wait");
        assert!(!status.success());
        let deadline = Instant::now() + Duration::from_secs(5);
        while group_alive(pgid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!group_alive(pgid), "the background sleep survived");
        forget_group(pgid);
    }

    #[test]
    fn temporaries_are_removed_and_forgotten_when_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dropped = dir.path().join("dropped");
        std::fs::create_dir_all(dropped.join("sub")).expect("mkdir");
        let t = temporary(&dropped);
        drop(t);
        assert!(!registry().temporaries.contains(&dropped));
        assert!(!dropped.exists(), "a dropped temporary is removed");
        let gone = dir.path().join("gone");
        std::fs::create_dir_all(gone.join("sub")).expect("mkdir");
        let _t = temporary(&gone);
        // Only this test's temporaries: others run in parallel threads.
        let mine: Vec<PathBuf> = registry()
            .temporaries
            .iter()
            .filter(|p| p.starts_with(dir.path()))
            .cloned()
            .collect();
        for p in &mine {
            remove_path(p);
        }
        assert!(!gone.exists());
    }
}
