//! `kubebake boot IMAGE`: boots the golden image once under QEMU (SeaBIOS
//! through the image's own MBR and syslinux, or direct kernel boot) on a
//! throw-away copy-on-write overlay, waits for the login prompt on the serial
//! console and proves the golden image was not modified.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::vm::accel;
use crate::vm::image::GoldenImage;
use crate::vm::qemu::{create_overlay, Boot, Qemu, VmConfig};

#[derive(Debug, Clone, Args)]
pub struct BootArgs {
    /// The golden image (.qcow2 or .raw) written by `kubebake build`.
    #[arg(value_name = "IMAGE")]
    pub image: PathBuf,
    /// Boot the exported kernel and initrd directly instead of through the
    /// image's MBR and syslinux.
    #[arg(long)]
    pub direct_kernel: bool,
    /// Wait for the login prompt, then shut the VM down (the default and only
    /// mode: interactive consoles are `kubebake up`'s job).
    #[arg(long, default_value_t = true)]
    pub until_login: bool,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 1024)]
    pub memory: u32,
    /// Keep the serial log here [default: a temporary directory].
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
}

/// What one boot measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BootReport {
    pub image: PathBuf,
    pub boot: String,
    pub accelerator: String,
    pub seconds_to_login: f64,
    pub serial_log: PathBuf,
    pub golden_unchanged: bool,
}

pub fn boot(args: &BootArgs) -> Result<BootReport> {
    let golden = GoldenImage::open(&args.image)?;
    let before = crate::manifest::sha256_file(&golden.disk)?;
    let choice = accel::detect(golden.kernel.as_deref());
    let tmp = tempfile::Builder::new()
        .prefix("kubebake-boot-")
        .tempdir()?;
    let dir = args
        .log_dir
        .clone()
        .unwrap_or_else(|| tmp.path().join("vm"));
    let overlay = tmp.path().join("overlay.qcow2");
    create_overlay(&golden.disk, &overlay)?;
    let boot = if args.direct_kernel {
        golden.kernel_boot().with_context(|| {
            format!(
                "--direct-kernel needs the kernel, initrd and manifest beside {}",
                golden.disk.display()
            )
        })?
    } else {
        Boot::Bios
    };
    let boot_name = if args.direct_kernel {
        "direct kernel"
    } else {
        "SeaBIOS → MBR → syslinux"
    };
    let mut vm = Qemu::spawn(VmConfig {
        name: "kubebake-boot".into(),
        disk: overlay,
        seed: None,
        memory_mib: args.memory,
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
    let deadline = start + Duration::from_secs(args.timeout);
    let seconds = loop {
        if vm.serial().contains("login:") {
            break start.elapsed().as_secs_f64();
        }
        if !vm.is_running() {
            bail!(
                "the VM exited before the login prompt; serial log {}:\n{}",
                vm.serial_log.display(),
                tail(&vm.serial(), 20)
            );
        }
        if Instant::now() > deadline {
            let log = tail(&vm.serial(), 20);
            vm.kill();
            bail!(
                "no login prompt after {} s ({boot_name}, {}); last serial lines:\n{log}",
                args.timeout,
                choice.accel
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    vm.shutdown(Duration::from_secs(20));
    let serial_log = keep_log(&vm.serial_log, args.log_dir.as_deref())?;
    let after = crate::manifest::sha256_file(&golden.disk)?;
    if before != after {
        bail!(
            "the golden image {} changed during the boot",
            golden.disk.display()
        );
    }
    Ok(BootReport {
        image: golden.disk.clone(),
        boot: boot_name.into(),
        accelerator: choice.accel.to_string(),
        seconds_to_login: (seconds * 10.0).round() / 10.0,
        serial_log,
        golden_unchanged: true,
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

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
