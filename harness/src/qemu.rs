//! QEMU wrapper (std::process around qemu-system-x86_64, SeaBIOS, no UEFI).
//!
//! Every VM runs in its own process group with a parent-death signal
//! (SIGKILL when the spawning thread/process dies) and a `-pidfile`; dropping
//! a [`Qemu`] kills the group, so no VM outlives a test, a panic or Ctrl-C.
//! The serial console goes to a log file; a QMP socket allows a clean
//! `system_powerdown` followed by `quit` after a grace period.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::accel::Accel;
use crate::wait_until;

/// How the VM boots.
#[derive(Debug, Clone)]
pub enum Boot {
    /// SeaBIOS → MBR → syslinux on the image's FAT partition.
    Bios,
    /// Direct kernel boot with the exported kernel + initrd and the
    /// manifest's `boot.cmdline`.
    Kernel {
        kernel: PathBuf,
        initrd: PathBuf,
        cmdline: String,
    },
}

/// Everything needed to start one VM.
pub struct VmConfig {
    pub name: String,
    /// The VM's own disk (a qcow2 overlay over the golden image).
    pub disk: PathBuf,
    pub seed: Option<PathBuf>,
    pub memory_mib: u32,
    pub cpus: u32,
    pub boot: Boot,
    pub accel: Accel,
    /// Tap device (inside `netns`) and MAC.
    pub tap: Option<(String, String)>,
    pub netns: Option<OwnedFd>,
    /// Directory for serial.log, qmp.sock, qemu.pid.
    pub dir: PathBuf,
    /// `-smbios` value, e.g. `type=1,serial=ds=nocloud-net;s=http://169.254.169.254/latest/`.
    pub smbios: Option<String>,
    /// Kill the VM when the spawning thread/process dies (PR_SET_PDEATHSIG).
    /// Off only for `kubebake up --detach`'s daemon, which is itself a child.
    pub die_with_parent: bool,
}

/// A running VM.
pub struct Qemu {
    pub name: String,
    child: Child,
    pub pid: u32,
    pub serial_log: PathBuf,
    pub qmp_socket: PathBuf,
    pub pidfile: PathBuf,
    pub started: Instant,
}

/// Creates `overlay` as a copy-on-write qcow2 over `golden` (never
/// written), of `gib` GiB when given (never smaller than `golden`: the
/// guest grows its root into the rest), else of `golden`'s size.
pub fn create_overlay(golden: &Path, overlay: &Path, gib: Option<u32>) -> Result<()> {
    let golden = golden
        .canonicalize()
        .with_context(|| format!("golden image {}", golden.display()))?;
    let fmt = if golden.extension().is_some_and(|e| e == "raw") {
        "raw"
    } else {
        "qcow2"
    };
    let _ = std::fs::remove_file(overlay);
    let mut args: Vec<OsString> = ["create", "-q", "-f", "qcow2", "-F", fmt, "-b"]
        .into_iter()
        .map(OsString::from)
        .collect();
    args.push(golden.clone().into());
    args.push(overlay.into());
    if let Some(gib) = gib {
        let image = virtual_size(&golden)?;
        let want = u64::from(gib) << 30;
        if want < image {
            bail!(
                "a {gib} GiB disk is smaller than the image {} ({:.1} GiB): give a larger disk size",
                golden.display(),
                image as f64 / f64::from(1u32 << 30)
            );
        }
        args.push(want.to_string().into());
    }
    qemu_img(&args).with_context(|| format!("creating the overlay {}", overlay.display()))?;
    Ok(())
}

/// A disk image's virtual size in bytes (`qemu-img info`).
fn virtual_size(image: &Path) -> Result<u64> {
    let out = qemu_img(&["info".into(), "--output=json".into(), image.into()])?;
    let info: serde_json::Value = serde_json::from_slice(&out)
        .with_context(|| format!("reading qemu-img info of {}", image.display()))?;
    info["virtual-size"]
        .as_u64()
        .with_context(|| format!("qemu-img info of {} has no virtual-size", image.display()))
}

/// Runs `qemu-img` with `args`; its standard output, or an error with its
/// standard error.
fn qemu_img(args: &[OsString]) -> Result<Vec<u8>> {
    let out = Command::new("qemu-img")
        .args(args)
        .output()
        .context("running qemu-img (install qemu-utils)")?;
    if !out.status.success() {
        bail!(
            "qemu-img {} failed: {}",
            args.first().map_or("".into(), |a| a.to_string_lossy()),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

impl Qemu {
    pub fn spawn(cfg: VmConfig) -> Result<Self> {
        std::fs::create_dir_all(&cfg.dir)
            .with_context(|| format!("creating {}", cfg.dir.display()))?;
        let serial_log = cfg.dir.join("serial.log");
        let qmp_socket = cfg.dir.join("qmp.sock");
        let pidfile = cfg.dir.join("qemu.pid");
        let _ = std::fs::remove_file(&qmp_socket);
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(["-name", &cfg.name, "-machine", "pc"])
            .args([
                "-accel",
                cfg.accel.qemu_arg(),
                "-cpu",
                &cfg.accel.cpu_model(),
            ])
            .args(["-m", &cfg.memory_mib.to_string()])
            .args(["-smp", &cfg.cpus.to_string()])
            .args(["-nodefaults", "-display", "none", "-no-user-config"])
            .args(["-device", "virtio-rng-pci"])
            // The disk is a throwaway overlay of the golden image:
            // cache=unsafe drops the guest's flushes, so etcd's fsyncs cost
            // the emulated master no host fsync (a host crash loses the VM,
            // which down would delete anyway).
            .arg("-drive")
            .arg(format!(
                "file={},if=virtio,format=qcow2,discard=unmap,cache=unsafe",
                cfg.disk.display()
            ));
        if let Some(seed) = &cfg.seed {
            cmd.arg("-drive").arg(format!(
                "file={},if=virtio,format=raw,readonly=on",
                seed.display()
            ));
        }
        if let Boot::Kernel {
            kernel,
            initrd,
            cmdline,
        } = &cfg.boot
        {
            cmd.arg("-kernel")
                .arg(kernel)
                .arg("-initrd")
                .arg(initrd)
                .arg("-append")
                .arg(cmdline);
        }
        match &cfg.tap {
            Some((tap, mac)) => {
                cmd.arg("-netdev")
                    .arg(format!("tap,id=n0,ifname={tap},script=no,downscript=no"))
                    .arg("-device")
                    .arg(format!("virtio-net-pci,netdev=n0,mac={mac}"));
            }
            None => {
                cmd.args(["-nic", "none"]);
            }
        }
        if let Some(s) = &cfg.smbios {
            cmd.arg("-smbios").arg(s);
        }
        cmd.arg("-serial")
            .arg(format!("file:{}", serial_log.display()))
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", qmp_socket.display()))
            .arg("-pidfile")
            .arg(&pidfile);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(cfg.dir.join("qemu.stderr"))
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null()),
            )
            .process_group(0);
        let ns_fd = cfg.netns.as_ref().map(|f| f.as_raw_fd());
        let die = cfg.die_with_parent;
        pre_exec(&mut cmd, ns_fd, die);
        let child = cmd
            .spawn()
            .context("starting qemu-system-x86_64 (install qemu-system-x86)")?;
        let pid = child.id();
        Ok(Qemu {
            name: cfg.name,
            child,
            pid,
            serial_log,
            qmp_socket,
            pidfile,
            started: Instant::now(),
        })
    }

    /// The serial console so far.
    pub fn serial(&self) -> String {
        std::fs::read(&self.serial_log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends one QMP command (after capabilities negotiation).
    pub fn qmp(&self, command: &str) -> Result<serde_json::Value> {
        qmp_command(&self.qmp_socket, command)
    }

    /// ACPI power button, then `quit` after `grace`, then SIGKILL.
    pub fn shutdown(&mut self, grace: Duration) {
        if self.is_running() {
            let _ = self.qmp("system_powerdown");
            let _ = wait_until(
                "the VM to power off",
                grace,
                Duration::from_millis(200),
                || Ok((!self.is_running()).then_some(())),
            );
            if self.is_running() {
                let _ = self.qmp("quit");
                std::thread::sleep(Duration::from_millis(500));
            }
        }
        self.kill();
    }

    /// Kills the process group and reaps the child.
    pub fn kill(&mut self) {
        let pg = nix::unistd::Pid::from_raw(self.pid as i32);
        let _ = nix::sys::signal::killpg(pg, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.qmp_socket);
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Enters the cluster namespace and arms the parent-death signal in the
/// child between fork and exec.
#[allow(unsafe_code)]
fn pre_exec(cmd: &mut Command, ns_fd: Option<i32>, die_with_parent: bool) {
    // SAFETY: the closure runs in the forked child before exec and only
    // makes async-signal-safe raw syscalls (prctl, setns, getppid); it does
    // not allocate or take locks.
    unsafe {
        cmd.pre_exec(move || {
            if die_with_parent {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may already be gone (race with the prctl).
                if libc::getppid() == 1 {
                    return Err(std::io::Error::other("parent exited"));
                }
            }
            if let Some(fd) = ns_fd {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// Connects to a QMP socket, negotiates capabilities and runs `command`;
/// returns the command's `return` value. Replies are parsed as JSON: events
/// (`{"event":…}`) are skipped, `{"error":{"class","desc"}}` is an error.
pub fn qmp_command(socket: &Path, command: &str) -> Result<serde_json::Value> {
    let stream = UnixStream::connect(socket)
        .with_context(|| format!("connecting to QMP {}", socket.display()))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut w = stream.try_clone()?;
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    r.read_line(&mut line)?; // greeting
    let mut last = serde_json::Value::Null;
    for cmd in ["qmp_capabilities", command] {
        writeln!(w, "{}", serde_json::json!({ "execute": cmd }))?;
        last = qmp_reply(&mut r, cmd)?;
    }
    Ok(last)
}

/// Reads lines until the reply to `cmd` (skipping asynchronous events).
fn qmp_reply(r: &mut impl BufRead, cmd: &str) -> Result<serde_json::Value> {
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            bail!("QMP closed during {cmd}");
        }
        let mut v: serde_json::Value = serde_json::from_str(line.trim())
            .with_context(|| format!("QMP {cmd}: not JSON: {}", line.trim()))?;
        if let Some(ret) = v.get_mut("return") {
            return Ok(ret.take());
        }
        if let Some(e) = v.get("error") {
            bail!(
                "QMP {cmd}: {} ({})",
                e["desc"].as_str().unwrap_or("?"),
                e["class"].as_str().unwrap_or("?")
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qmp_replies_are_parsed() {
        let mut ok = std::io::Cursor::new(
            "{\"event\": \"POWERDOWN\", \"data\": {\"return\": 1}}\n{\"return\": {}}\n",
        );
        assert_eq!(qmp_reply(&mut ok, "x").ok(), Some(serde_json::json!({})));
        let mut err = std::io::Cursor::new(
            "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"no such command\"}}\n",
        );
        let e = qmp_reply(&mut err, "x").err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("QMP x: no such command (CommandNotFound)")
        );
        assert!(qmp_reply(&mut std::io::Cursor::new(""), "x").is_err());
    }
}
