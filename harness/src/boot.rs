//! One boot of the golden image under QEMU (SeaBIOS through the image's own
//! MBR and syslinux, or direct kernel boot) on a throw-away copy-on-write
//! overlay, until the login prompt on the serial console or until the guest
//! powers itself off (`kubebake boot`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::accel;
use crate::qemu::{create_overlay, Boot, Qemu, VmConfig};
use crate::spec::BootSpec;
use crate::wait_until;

/// When the boot is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Until {
    /// `login:` on the serial console; then the VM is shut down.
    Login,
    /// The guest powers itself off (e.g. a check unit ends with `poweroff`).
    Poweroff,
}

#[derive(Debug, Clone)]
pub struct BootOptions {
    /// Direct kernel boot instead of SeaBIOS → MBR → syslinux.
    pub direct_kernel: bool,
    pub until: Until,
    pub timeout: Duration,
    pub memory_mib: u32,
    /// Keep the serial log here; None: a temporary directory, and the log is
    /// copied to `$TMPDIR/kubebake-boot-serial.log`.
    pub log_dir: Option<PathBuf>,
}

/// What one boot measured.
#[derive(Debug, Clone, Serialize)]
pub struct BootReport {
    pub image: PathBuf,
    pub boot: String,
    pub accelerator: String,
    pub until: Until,
    /// Seconds from QEMU's start to the login prompt or the power-off.
    pub seconds: f64,
    pub serial_log: PathBuf,
}

pub fn boot(spec: &BootSpec, opts: &BootOptions) -> Result<BootReport> {
    let choice = accel::detect(spec.kernel());
    let tmp = tempfile::Builder::new()
        .prefix("kubebake-boot-")
        .tempdir()?;
    let dir = opts
        .log_dir
        .clone()
        .unwrap_or_else(|| tmp.path().join("vm"));
    let overlay = tmp.path().join("overlay.qcow2");
    create_overlay(&spec.disk, &overlay, None)?;
    let (boot, boot_name) = if opts.direct_kernel {
        (spec.kernel_boot()?, "direct kernel")
    } else {
        (Boot::Bios, "SeaBIOS → MBR → syslinux")
    };
    let mut vm = Qemu::spawn(VmConfig {
        name: "kubebake-boot".into(),
        disk: overlay,
        seed: None,
        memory_mib: opts.memory_mib,
        cpus: 1,
        boot,
        accel: choice.accel,
        tap: None,
        netns: None,
        dir,
        smbios: None,
        die_with_parent: true,
    })?;
    let start = Instant::now();
    let waited = wait_until(
        match opts.until {
            Until::Login => "the login prompt",
            Until::Poweroff => "the guest to power off",
        },
        opts.timeout,
        Duration::from_millis(250),
        || {
            let running = vm.is_running();
            match opts.until {
                Until::Login if vm.serial().contains("login:") => Ok(Some(start.elapsed())),
                Until::Login if !running => bail!("the VM exited before the login prompt"),
                Until::Poweroff if !running => Ok(Some(start.elapsed())),
                _ => Ok(None),
            }
        },
    );
    let seconds = match waited {
        Ok(d) => d.as_secs_f64(),
        Err(e) => {
            let log = tail(&vm.serial(), 20);
            vm.kill();
            return Err(e.context(format!(
                "{boot_name}, {}; serial log {}, last lines:\n{log}",
                choice.accel,
                vm.serial_log.display()
            )));
        }
    };
    vm.shutdown(Duration::from_secs(20));
    let serial_log = keep_log(&vm.serial_log, opts.log_dir.as_deref())?;
    Ok(BootReport {
        image: spec.disk.clone(),
        boot: boot_name.into(),
        accelerator: choice.accel.to_string(),
        until: opts.until,
        seconds: (seconds * 10.0).round() / 10.0,
        serial_log,
    })
}

fn keep_log(log: &Path, dir: Option<&Path>) -> Result<PathBuf> {
    match dir {
        Some(_) => Ok(log.to_path_buf()),
        None => {
            let kept = std::env::temp_dir().join("kubebake-boot-serial.log");
            std::fs::copy(log, &kept).with_context(|| format!("keeping {}", log.display()))?;
            Ok(kept)
        }
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
