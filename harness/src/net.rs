//! A private "VPC" per cluster: a network namespace holding a bridge with the
//! gateway address (10.77.0.1/24, plus 169.254.169.254/32 for the metadata
//! service) and one tap per VM. Nothing leaves the namespace: no veth to the
//! host, no NAT. Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN); a rootless variant
//! (user + network namespace, qemu inside it) is possible but not implemented.

use anyhow::{bail, Context, Result};
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

pub const BRIDGE: &str = "kbbr0";
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
pub const PREFIX: u8 = 24;
pub const IMDS_ADDR: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
/// Prefix of every namespace the harness creates (`kubebake down --all`
/// removes leftovers by this prefix).
pub const NS_PREFIX: &str = "kb-";

/// Address of the `n`-th VM (n from 0): 10.77.0.10 + n.
pub fn vm_address(n: u32) -> Result<Ipv4Addr> {
    if n > 200 {
        bail!("at most 201 VMs per cluster (asked for VM #{n})");
    }
    let o = GATEWAY.octets();
    Ok(Ipv4Addr::new(o[0], o[1], o[2], 10 + n as u8))
}

/// Locally administered MAC for VM `n` of namespace serial `s`.
pub fn vm_mac(n: u32) -> [u8; 6] {
    let pid = std::process::id();
    [0x52, 0x54, 0x00, (pid >> 8) as u8, pid as u8, n as u8]
}

pub fn mac_string(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Runs `ip ARGS`, failing with its stderr.
pub fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .with_context(|| format!("running ip {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A network namespace with the cluster bridge; deleted on drop (which also
/// destroys the bridge and every tap in it).
pub struct Netns {
    name: String,
    fd: OwnedFd,
    keep: bool,
}

static SERIAL: AtomicU32 = AtomicU32::new(0);

impl Netns {
    /// Creates `kb-<pid>-<n>` with the bridge and gateway addresses.
    pub fn create() -> Result<Self> {
        let n = SERIAL.fetch_add(1, Ordering::SeqCst);
        let name = format!("{NS_PREFIX}{}-{n}", std::process::id());
        Self::create_named(&name)
    }

    pub fn create_named(name: &str) -> Result<Self> {
        if std::path::Path::new("/run/netns").join(name).exists() {
            // Leftover of a previous process with the same pid.
            let _ = ip(&["netns", "del", name]);
        }
        ip(&["netns", "add", name]).context(
            "creating the cluster network namespace (the VM harness needs root: run as root or with sudo)",
        )?;
        let fd = std::fs::File::open(Self::path_of(name))
            .with_context(|| format!("opening namespace {name}"))?
            .into();
        let ns = Netns {
            name: name.to_string(),
            fd,
            keep: false,
        };
        let gw = format!("{GATEWAY}/{PREFIX}");
        let imds = format!("{IMDS_ADDR}/32");
        ns.ip(&["link", "set", "lo", "up"])?;
        ns.ip(&["link", "add", BRIDGE, "type", "bridge"])?;
        ns.ip(&["addr", "add", &gw, "dev", BRIDGE])?;
        ns.ip(&["addr", "add", &imds, "dev", BRIDGE])?;
        ns.ip(&["link", "set", BRIDGE, "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path_of(name: &str) -> PathBuf {
        PathBuf::from("/run/netns").join(name)
    }

    /// Leaves the namespace in place when dropped (`kubebake up --detach`).
    pub fn keep(&mut self) {
        self.keep = true;
    }

    /// `ip -n NS ARGS`.
    pub fn ip(&self, args: &[&str]) -> Result<()> {
        let mut a = vec!["-n", self.name.as_str()];
        a.extend_from_slice(args);
        ip(&a)
    }

    /// Creates tap `name` enslaved to the bridge, up.
    pub fn add_tap(&self, tap: &str) -> Result<()> {
        self.ip(&["tuntap", "add", "dev", tap, "mode", "tap"])?;
        self.ip(&["link", "set", tap, "master", BRIDGE])?;
        self.ip(&["link", "set", tap, "up"])
    }

    pub fn del_tap(&self, tap: &str) -> Result<()> {
        self.ip(&["link", "del", tap])
    }

    /// A duplicate of the namespace fd (for `setns` in a child's pre_exec).
    pub fn fd(&self) -> Result<OwnedFd> {
        self.fd
            .as_fd()
            .try_clone_to_owned()
            .context("duplicating the namespace fd")
    }

    /// Runs `f` on a fresh thread that entered the namespace; sockets it
    /// opens stay bound inside the namespace and can be handed out.
    pub fn run_in<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let fd = self.fd()?;
        std::thread::spawn(move || -> Result<T> {
            nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET)
                .context("setns into the cluster namespace")?;
            f()
        })
        .join()
        .map_err(|_| anyhow::anyhow!("namespace thread panicked"))?
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if !self.keep {
            if let Err(e) = ip(&["netns", "del", &self.name]) {
                eprintln!("vm: removing namespace {}: {e:#}", self.name);
            }
        }
    }
}

/// Namespaces left by the harness (name starts with `kb-`).
pub fn leftover_namespaces() -> Vec<String> {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(NS_PREFIX))
        .map(str::to_string)
        .collect()
}

/// Deletes namespace `name` if it exists.
pub fn delete_namespace(name: &str) -> Result<()> {
    if Netns::path_of(name).exists() {
        ip(&["netns", "del", name])?;
    }
    Ok(())
}
