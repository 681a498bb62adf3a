//! Accelerator choice: KVM only when a probe guest survives a boot under it,
//! otherwise TCG (multi-threaded). Nested KVM here is unreliable: guests die
//! with "KVM internal error ... emulation failure" or hang, so /dev/kvm
//! existing proves nothing.
//!
//! The probe boots the image's kernel without a root file system
//! (`-no-reboot -append 'console=ttyS0 panic=-1'`): a working accelerator
//! reaches the VFS panic, prints "Kernel panic" on the serial port and QEMU
//! exits on its own within seconds. The decision is cached per process;
//! `KUBEBAKE_ACCEL=kvm|tcg` overrides it.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    /// QEMU `-accel` argument.
    pub fn qemu_arg(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg,thread=multi",
        }
    }
    /// QEMU `-cpu` model for this accelerator.
    ///
    /// Under TCG, `max` (everything QEMU can emulate). `Westmere` (no AVX,
    /// no XSAVE) was tried while kube-apiserver kept dying with a SIGSEGV in
    /// Go's map hash under `max`; the API server then never got through its
    /// start (loopback TLS handshakes timed out). The SIGSEGV turned out to
    /// be a Go library bug of the Kubernetes v1.20 image built then, not the
    /// emulator.
    /// `KUBEBAKE_TCG_CPU` overrides the TCG model (e.g. `max,-la57`) for
    /// chasing emulator faults.
    pub fn cpu_model(self) -> String {
        match self {
            Accel::Kvm => "host".into(),
            Accel::Tcg => std::env::var("KUBEBAKE_TCG_CPU")
                .ok()
                .filter(|m| !m.trim().is_empty())
                .unwrap_or_else(|| "max".into()),
        }
    }
}

impl std::fmt::Display for Accel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        })
    }
}

#[derive(Debug, Clone)]
pub struct Choice {
    pub accel: Accel,
    pub reason: String,
}

static CHOICE: OnceLock<Choice> = OnceLock::new();

/// Probe time limit: TCG reaches the panic in ~4 s on this machine, KVM in
/// under 2 s; a broken nested KVM hangs or errors out.
const PROBE_TIMEOUT: Duration = Duration::from_secs(25);

/// Returns the cached choice, probing with `kernel` the first time. Prints
/// the decision and its reason to stderr once.
pub fn detect(kernel: Option<&Path>) -> Choice {
    CHOICE
        .get_or_init(|| {
            let c = decide(kernel);
            eprintln!("vm: accelerator {} ({})", c.accel, c.reason);
            c
        })
        .clone()
}

fn decide(kernel: Option<&Path>) -> Choice {
    match std::env::var("KUBEBAKE_ACCEL").ok().as_deref() {
        Some("kvm") => {
            return Choice {
                accel: Accel::Kvm,
                reason: "forced by KUBEBAKE_ACCEL=kvm".into(),
            }
        }
        Some("tcg") => {
            return Choice {
                accel: Accel::Tcg,
                reason: "forced by KUBEBAKE_ACCEL=tcg".into(),
            }
        }
        _ => {}
    }
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return tcg("/dev/kvm is missing or not accessible");
    }
    let Some(kernel) = kernel else {
        return tcg("no kernel to probe KVM with");
    };
    if let Some(c) = read_cache() {
        return c;
    }
    let c = match probe_kvm(kernel) {
        Ok(d) => Choice {
            accel: Accel::Kvm,
            reason: format!(
                "probe guest reached the kernel panic under KVM in {:.1} s",
                d.as_secs_f64()
            ),
        },
        Err(why) => tcg(&format!("KVM probe failed: {why}")),
    };
    write_cache(&c);
    c
}

/// The probe result is also kept for the rest of this host boot (/run is a
/// tmpfs), so repeated `kubebake` runs and test binaries probe once.
const CACHE: &str = "/run/kubebake/accel-probe";

fn read_cache() -> Option<Choice> {
    let text = std::fs::read_to_string(CACHE).ok()?;
    let (accel, reason) = text.trim().split_once('\t')?;
    let accel = match accel {
        "kvm" => Accel::Kvm,
        "tcg" => Accel::Tcg,
        _ => return None,
    };
    Some(Choice {
        accel,
        reason: format!("{reason} [cached in {CACHE}]"),
    })
}

fn write_cache(c: &Choice) {
    let _ = std::fs::create_dir_all("/run/kubebake");
    let _ = std::fs::write(CACHE, format!("{}\t{}\n", c.accel, c.reason));
}

fn tcg(why: &str) -> Choice {
    Choice {
        accel: Accel::Tcg,
        reason: format!("{why}; using TCG thread=multi"),
    }
}

/// Boots `kernel` under KVM with no root fs and waits for a clean exit.
pub fn probe_kvm(kernel: &Path) -> Result<Duration, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
    let serial = dir.path().join("serial.log");
    let start = Instant::now();
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-accel", "kvm", "-cpu", "host", "-m", "256", "-smp", "1"])
        .args(["-nodefaults", "-display", "none", "-no-reboot"])
        .arg("-kernel")
        .arg(kernel)
        .args(["-append", "console=ttyS0 panic=-1"])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting qemu-system-x86_64: {e}"))?;
    let waited = crate::wait_until(
        "the probe guest to exit",
        PROBE_TIMEOUT,
        Duration::from_millis(100),
        || Ok(child.try_wait()?),
    );
    let status = match waited {
        Ok(s) => s,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "guest did not finish within {} s (hung)",
                PROBE_TIMEOUT.as_secs()
            ));
        }
    };
    let took = start.elapsed();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    if err.contains("KVM internal error") || err.contains("emulation failure") {
        return Err("KVM internal error (emulation failure)".into());
    }
    let log = std::fs::read_to_string(&serial).unwrap_or_default();
    if !log.contains("Kernel panic") {
        return Err(format!(
            "qemu exited ({status}) without the expected kernel panic on the serial console"
        ));
    }
    Ok(took)
}
