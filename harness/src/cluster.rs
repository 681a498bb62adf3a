//! A cluster of VMs in one private VPC: namespace + bridge, DHCP, DNS,
//! metadata service, and QEMU VMs booted from copy-on-write overlays of the
//! golden image. Dropping the cluster kills every VM, stops the services and
//! deletes the namespace (with its bridge and taps).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use contract::console;

use crate::accel::{self, Accel};
use crate::dns::{Entry, Registry};
use crate::imds::Metadata;
use crate::net::{self, Netns};
use crate::qemu::{self, Boot, Qemu, VmConfig};
use crate::ssh::{self, SshKey};
use crate::{dhcp, dns, imds, private, seed, userdata, wait_until, BootSpec, Role};

#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub image: BootSpec,
    /// DNS domain of the VPC zone (`k8s`).
    pub domain: String,
    pub memory_mib: u32,
    pub cpus: u32,
    /// Masters' size when it differs from the others' (the control plane
    /// needs more than a minion: kube-apiserver alone takes ~360 MB).
    pub master: Option<Sizing>,
    /// Each VM's disk in GiB, like an instance's root volume larger than
    /// its image (cloud-init's growpart and resizefs grow the root at first
    /// boot); None: the image's own size.
    pub disk_gib: Option<u32>,
    /// Overlays, seeds, serial logs, keys.
    pub work_dir: PathBuf,
    pub die_with_parent: bool,
}

/// Memory and vCPUs of one VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Sizing {
    pub memory_mib: u32,
    pub cpus: u32,
}

/// What a VM is told at launch.
#[derive(Debug, Clone)]
pub enum UserData {
    /// Harness-generated `#cloud-config` with the kubernetes block and the
    /// harness SSH key in the same document.
    Role {
        role: Role,
        expected_minions: Option<u32>,
    },
    /// Given verbatim by the user (like `run-instances --user-data`); the
    /// harness key goes into a second MIME part.
    File(Vec<u8>),
    /// Exactly these bytes, nothing added (SSH then relies on the meta-data
    /// `public-keys`).
    Exact(Vec<u8>),
}

/// Launch request for one VM.
#[derive(Debug, Clone)]
pub struct VmSpec {
    pub name: String,
    /// Cluster name the VM registers under in DNS (`<role>s.<cluster>.k8s`).
    pub cluster: String,
    /// Role for DNS registration (None: not registered under masters/minions).
    pub role: Option<Role>,
    pub user_data: UserData,
    /// Direct kernel boot instead of SeaBIOS.
    pub kernel_boot: bool,
    /// How the VM finds its meta-data and user-data.
    pub datasource: Datasource,
}

/// Where a VM's user-data comes from, as on a cloud.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datasource {
    /// A NoCloud seed disk (vfat, label CIDATA).
    Seed,
    /// No seed disk: NoCloud-net from the metadata service (SMBIOS serial
    /// `ds=nocloud-net;s=http://169.254.169.254/latest/`).
    NoCloudNet,
    /// Neither: the VM has no datasource at all (it must boot unassigned).
    Absent,
}

/// A VM of the cluster.
pub struct Vm {
    pub name: String,
    pub cluster: String,
    pub role: Option<Role>,
    pub ip: Ipv4Addr,
    pub tap: String,
    pub dir: PathBuf,
    pub qemu: Qemu,
    /// How it was started, to start it again on the same disk
    /// ([`Cluster::power_on`]).
    hardware: Hardware,
    /// Boots so far (1 after launch; each power-on adds one).
    pub boots: u32,
}

/// What QEMU needs to start a VM again: its disk stays, only the process is
/// new (like starting a stopped instance).
#[derive(Debug, Clone)]
struct Hardware {
    disk: PathBuf,
    seed: Option<PathBuf>,
    size: Sizing,
    boot: Boot,
    mac: String,
    smbios: Option<String>,
}

pub struct Cluster {
    pub opts: ClusterOptions,
    pub registry: Registry,
    pub key: SshKey,
    pub accel: Accel,
    vms: Vec<Vm>,
    next: u32,
    stop: Arc<AtomicBool>,
    rt: Option<tokio::runtime::Runtime>,
    /// The metadata service's task; None while it is refused.
    imds: Option<tokio::task::JoinHandle<()>>,
    // Declared last: dropped after the VMs and services are gone.
    ns: Netns,
}

impl Cluster {
    /// Creates the VPC: namespace, bridge, DHCP, DNS and metadata service.
    pub fn start(opts: ClusterOptions) -> Result<Self> {
        private::dir(&opts.work_dir)?;
        let accel = accel::detect(opts.image.kernel()).accel;
        let key = SshKey::generate(&opts.work_dir)?;
        let ns = Netns::create()?;
        let registry = Registry::new(&opts.domain);
        let stop = Arc::new(AtomicBool::new(false));

        let (dns_sockets, imds_listener) =
            ns.run_in(|| Ok((dns::bind(net::GATEWAY)?, imds::bind()?)))?;
        let imds_task;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("kb-vpc")
            .enable_all()
            .build()
            .context("starting the VPC service runtime")?;
        {
            let _guard = rt.enter();
            let r = registry.clone();
            rt.spawn(async move {
                if let Err(e) = dns::serve(dns_sockets, r).await {
                    eprintln!("vm dns: {e:#}");
                }
            });
            imds_task = spawn_imds(&rt, imds_listener, registry.clone());
        }
        let fd = ns.fd()?;
        let (r, s) = (registry.clone(), stop.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("kb-dhcp".into())
            .spawn(move || {
                let bound = nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET)
                    .context("setns for DHCP")
                    .and_then(|_| dhcp::bind());
                match bound {
                    Ok(sock) => {
                        let _ = tx.send(Ok(()));
                        dhcp::serve(sock, r, s);
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            })
            .context("starting the DHCP thread")?;
        rx.recv().context("DHCP thread died")??;
        Ok(Cluster {
            opts,
            registry,
            key,
            accel,
            vms: Vec::new(),
            next: 0,
            stop,
            rt: Some(rt),
            imds: Some(imds_task),
            ns,
        })
    }

    /// Takes the metadata service away or brings it back (fault injection).
    /// `Refused` closes its listening socket: from then on every VM's
    /// connection to 169.254.169.254:80 is refused. `Served` binds it again
    /// and answers as before. The DNS and DHCP servers are not touched.
    pub fn set_metadata(&mut self, state: Metadata) -> Result<()> {
        let rt = self.rt.as_ref().context("the VPC services are stopped")?;
        match (state, self.imds.take()) {
            (Metadata::Refused, Some(task)) => {
                task.abort();
                // The listener is closed once the aborted task is dropped.
                let _ = rt.block_on(task);
            }
            (Metadata::Served, None) => {
                let listener = self.ns.run_in(imds::bind)?;
                self.imds = Some(spawn_imds(rt, listener, self.registry.clone()));
            }
            (_, task) => self.imds = task,
        }
        Ok(())
    }

    /// Whether the metadata service is served or refused.
    pub fn metadata(&self) -> Metadata {
        if self.imds.is_some() {
            Metadata::Served
        } else {
            Metadata::Refused
        }
    }

    pub fn netns(&self) -> &str {
        self.ns.name()
    }

    /// Keeps the namespace after drop (detached `kubebake up`).
    pub fn keep_namespace(&mut self) {
        self.ns.keep();
    }

    /// Starts one VM and registers it in DNS/DHCP/IMDS. Call from a
    /// long-lived thread: the VM dies with the thread that spawned it.
    pub fn launch(&mut self, spec: VmSpec) -> Result<&Vm> {
        if self.vms.iter().any(|v| v.name == spec.name) {
            bail!("a VM named {} is already running", spec.name);
        }
        userdata::check_label("VM name", &spec.name)?;
        let n = self.next;
        self.next += 1;
        let ip = net::vm_address(n)?;
        let mac = net::vm_mac(n);
        let mac_s = net::mac_string(&mac);
        let tap = format!("kbtap{n}");
        let dir = self.opts.work_dir.join(&spec.name);
        private::dir(&dir)?;
        let keys = vec![self.key.public.clone()];
        let user_data = match &spec.user_data {
            UserData::Role {
                role,
                expected_minions,
            } => userdata::cloud_config(
                *role,
                &spec.cluster,
                (self.opts.domain != "k8s").then_some(self.opts.domain.as_str()),
                *expected_minions,
                &keys,
            )
            .into_bytes(),
            UserData::File(b) => userdata::with_ssh_part(b, &keys),
            UserData::Exact(b) => b.clone(),
        };
        let instance_id = format!("i-{}-{}", self.ns.name(), spec.name);
        let meta_data = seed::meta_data(&instance_id, &spec.name, &keys);
        let seed_path = dir.join("seed.img");
        if spec.datasource == Datasource::Seed {
            seed::build(
                &seed_path,
                &seed::Seed {
                    user_data: &user_data,
                    meta_data: &meta_data,
                    network_config: &seed::network_config(&mac_s),
                },
            )?;
        }
        let overlay = dir.join("disk.qcow2");
        qemu::create_overlay(&self.opts.image.disk, &overlay, self.opts.disk_gib)?;
        self.ns.add_tap(&tap)?;
        self.registry.add(Entry {
            name: spec.name.clone(),
            cluster: spec.cluster.clone(),
            role: spec.role,
            ip,
            mac,
            user_data,
            instance_id,
            meta_data,
        });
        let boot = if spec.kernel_boot {
            self.opts.image.kernel_boot()?
        } else {
            Boot::Bios
        };
        let size = match (spec.role, self.opts.master) {
            (Some(Role::Master), Some(m)) => m,
            _ => Sizing {
                memory_mib: self.opts.memory_mib,
                cpus: self.opts.cpus,
            },
        };
        let hardware = Hardware {
            disk: overlay,
            seed: (spec.datasource == Datasource::Seed).then_some(seed_path),
            size,
            boot,
            mac: mac_s,
            smbios: (spec.datasource == Datasource::NoCloudNet).then(|| {
                format!(
                    "type=1,serial=ds=nocloud-net;s=http://{}/latest/",
                    net::IMDS_ADDR
                )
            }),
        };
        let spawned = self.spawn_qemu(&spec.name, &tap, &dir, &hardware);
        let qemu = match spawned {
            Ok(q) => q,
            Err(e) => {
                self.registry.remove(&spec.name);
                let _ = self.ns.del_tap(&tap);
                return Err(e);
            }
        };
        self.vms.push(Vm {
            name: spec.name,
            cluster: spec.cluster,
            role: spec.role,
            ip,
            tap,
            dir,
            qemu,
            hardware,
            boots: 1,
        });
        self.vms.last().context("VM just pushed")
    }

    fn spawn_qemu(&self, name: &str, tap: &str, dir: &Path, hw: &Hardware) -> Result<Qemu> {
        Qemu::spawn(VmConfig {
            name: name.to_string(),
            disk: hw.disk.clone(),
            seed: hw.seed.clone(),
            memory_mib: hw.size.memory_mib,
            cpus: hw.size.cpus,
            boot: hw.boot.clone(),
            accel: self.accel,
            tap: Some((tap.to_string(), hw.mac.clone())),
            netns: Some(self.ns.fd()?),
            dir: dir.to_path_buf(),
            smbios: hw.smbios.clone(),
            die_with_parent: self.opts.die_with_parent,
        })
    }

    /// Cuts a VM's power (fault injection): QMP `quit`, no ACPI, no guest
    /// shutdown: what the guest had not written to its disk is lost. The VM
    /// keeps its disk, address, DHCP reservation, DNS records and tap, like a
    /// stopped cloud instance; [`power_on`](Self::power_on) boots it again.
    pub fn power_off(&mut self, name: &str) -> Result<()> {
        let vm = self.vm_mut(name)?;
        if vm.qemu.is_running() {
            if let Err(e) = vm.qemu.qmp("quit") {
                eprintln!("vm {name}: QMP quit: {e:#}; killing it");
            }
            let _ = wait_until(
                &format!("qemu of {name} to exit"),
                Duration::from_secs(10),
                Duration::from_millis(100),
                || Ok((!vm.qemu.is_running()).then_some(())),
            );
        }
        vm.qemu.kill();
        Ok(())
    }

    /// Boots a powered-off VM again from its own disk (same address, MAC,
    /// seed and boot method). The previous boot's serial console is kept as
    /// `serial.boot<N>.log`; `serial.log` and the VM's start time (for
    /// [`wait_serial`](Self::wait_serial), [`wait_ssh`](Self::wait_ssh)) are
    /// the new boot's.
    pub fn power_on(&mut self, name: &str) -> Result<()> {
        let vm = self.vm_mut(name)?;
        if vm.qemu.is_running() {
            bail!("{name} is running: power it off first");
        }
        let kept = vm.dir.join(format!("serial.boot{}.log", vm.boots));
        std::fs::rename(&vm.qemu.serial_log, &kept)
            .with_context(|| format!("keeping {}", vm.qemu.serial_log.display()))?;
        let (tap, dir, hw) = (vm.tap.clone(), vm.dir.clone(), vm.hardware.clone());
        let qemu = self.spawn_qemu(name, &tap, &dir, &hw)?;
        let vm = self.vm_mut(name)?;
        vm.qemu = qemu;
        vm.boots += 1;
        Ok(())
    }

    pub fn vms(&self) -> &[Vm] {
        &self.vms
    }

    pub fn vm(&self, name: &str) -> Result<&Vm> {
        self.vms
            .iter()
            .find(|v| v.name == name)
            .with_context(|| format!("no VM named {name}"))
    }

    pub fn vm_mut(&mut self, name: &str) -> Result<&mut Vm> {
        self.vms
            .iter_mut()
            .find(|v| v.name == name)
            .with_context(|| format!("no VM named {name}"))
    }

    /// Powers a VM off (ACPI, then quit, then kill), removes it from DNS and
    /// deletes its tap.
    pub fn stop_vm(&mut self, name: &str, grace: Duration) -> Result<()> {
        let i = self
            .vms
            .iter()
            .position(|v| v.name == name)
            .with_context(|| format!("no VM named {name}"))?;
        let mut vm = self.vms.remove(i);
        self.registry.remove(name);
        vm.qemu.shutdown(grace);
        let _ = self.ns.del_tap(&vm.tap);
        Ok(())
    }

    /// Runs `command` on VM `name` over SSH; Ok(stdout) only on exit 0.
    ///
    /// A connection that fails before the command runs (ssh's own exit 255
    /// with a timeout or reset, which a busy single-vCPU guest under TCG
    /// gives now and then) is retried twice; the command itself never runs
    /// twice.
    pub fn ssh(&self, name: &str, command: &str) -> Result<String> {
        let mut out = self.ssh_output(name, command)?;
        for _ in 0..2 {
            if !ssh::connection_failed(&out) {
                break;
            }
            std::thread::sleep(Duration::from_secs(3));
            out = self.ssh_output(name, command)?;
        }
        if !out.status.success() {
            bail!(
                "ssh {name} `{command}` exited {}: {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Like [`ssh`](Self::ssh) but returns the raw output whatever the exit.
    pub fn ssh_output(&self, name: &str, command: &str) -> Result<std::process::Output> {
        let vm = self.vm(name)?;
        ssh::run(
            self.ns.name(),
            &self.key.private,
            &vm.ip.to_string(),
            command,
        )
    }

    /// Runs a host command inside the namespace (e.g. curl the IMDS).
    pub fn ns_exec(&self, argv: &[&str]) -> Result<std::process::Output> {
        std::process::Command::new("ip")
            .args(["netns", "exec", self.ns.name()])
            .args(argv)
            .output()
            .context("ip netns exec")
    }

    /// Waits until SSH answers on `name`; returns the time since its start.
    pub fn wait_ssh(&self, name: &str, timeout: Duration) -> Result<Duration> {
        let started = self.vm(name)?.qemu.started;
        wait_until(
            &format!("ssh on {name}"),
            timeout,
            Duration::from_secs(3),
            || {
                self.check_alive(name)?;
                Ok(self.ssh(name, "true").ok().map(|_| started.elapsed()))
            },
        )
    }

    /// Waits until the serial console of `name` contains `needle` (counting
    /// from occurrence `after`); returns the time since the VM's start.
    pub fn wait_serial(
        &self,
        name: &str,
        needle: &str,
        after: usize,
        timeout: Duration,
    ) -> Result<Duration> {
        let started = self.vm(name)?.qemu.started;
        wait_until(
            &format!("\"{needle}\" on the serial console of {name}"),
            timeout,
            Duration::from_millis(500),
            || {
                self.check_alive(name)?;
                let log = self.vm(name)?.qemu.serial();
                Ok((log.matches(needle).count() > after).then(|| started.elapsed()))
            },
        )
    }

    /// Where each guest's clock starts on the host's: for every VM of
    /// `names`, the seconds since its start at which the guest kernel's clock
    /// (printk timestamps, CLOCK_MONOTONIC, systemd's `*TimestampMonotonic`)
    /// read zero. Taken from a line the kernel prints itself as it runs
    /// (`Run /init`); all consoles are polled together every 50 ms, so each
    /// line is seen within about 0.1 s of being written.
    pub fn guest_clock_zero(&self, names: &[&str], timeout: Duration) -> Result<Vec<f64>> {
        const LINE: &str = "Run /init as init process";
        let mut seen: Vec<Option<f64>> = vec![None; names.len()];
        wait_until(
            &format!("\"{LINE}\" on the serial consoles of {}", names.join(", ")),
            timeout,
            Duration::from_millis(50),
            || {
                for (name, at) in names.iter().zip(seen.iter_mut()) {
                    if at.is_some() {
                        continue;
                    }
                    self.check_alive(name)?;
                    let vm = self.vm(name)?;
                    let stamp = vm
                        .qemu
                        .serial()
                        .lines()
                        .find(|l| l.contains(LINE))
                        .map(|l| {
                            kernel_stamp(l).with_context(|| {
                                format!("no kernel timestamp on the \"{LINE}\" line of {name}")
                            })
                        })
                        .transpose()?;
                    *at = stamp.map(|k| vm.qemu.started.elapsed().as_secs_f64() - k);
                }
                Ok(seen.iter().all(Option::is_some).then_some(()))
            },
        )?;
        Ok(seen.into_iter().flatten().collect())
    }

    fn check_alive(&self, name: &str) -> Result<()> {
        let vm = self.vm(name)?;
        if nix::sys::signal::kill(nix::unistd::Pid::from_raw(vm.qemu.pid as i32), None).is_err() {
            bail!(
                "qemu of {name} exited; see {}",
                vm.qemu.serial_log.display()
            );
        }
        Ok(())
    }

    /// Copies serial logs (and qemu stderr) of every VM to `dest`.
    pub fn save_logs(&self, dest: &Path) -> Result<()> {
        std::fs::create_dir_all(dest)?;
        for vm in &self.vms {
            let _ = std::fs::copy(
                &vm.qemu.serial_log,
                dest.join(format!("{}.serial.log", vm.name)),
            );
            let _ = std::fs::copy(
                vm.dir.join("qemu.stderr"),
                dest.join(format!("{}.qemu.stderr", vm.name)),
            );
            for boot in 1..vm.boots {
                let _ = std::fs::copy(
                    vm.dir.join(format!("serial.boot{boot}.log")),
                    dest.join(format!("{}.serial.boot{boot}.log", vm.name)),
                );
            }
        }
        Ok(())
    }

    /// Stops everything now (same as drop).
    pub fn shutdown(mut self) {
        self.teardown();
    }

    fn teardown(&mut self) {
        for mut vm in self.vms.drain(..) {
            vm.qemu.kill();
        }
        self.stop.store(true, Ordering::Relaxed);
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

/// Serves the metadata service on `listener` until the task is aborted (or
/// the runtime stops); dropping the task closes the listener.
fn spawn_imds(
    rt: &tokio::runtime::Runtime,
    listener: std::net::TcpListener,
    registry: Registry,
) -> tokio::task::JoinHandle<()> {
    rt.spawn(async move {
        if let Err(e) = imds::serve(listener, registry).await {
            eprintln!("vm imds: {e:#}");
        }
    })
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// The kernel timestamp of a console line: `[   6.335698] Run /init …` ->
/// 6.335698.
pub fn kernel_stamp(line: &str) -> Option<f64> {
    let rest = line.trim_start().strip_prefix('[')?;
    let (num, _) = rest.split_once(']')?;
    num.trim().parse().ok()
}

/// Stage of a VM derived from its serial console.
pub fn serial_stage(log: &str) -> &'static str {
    let has =
        |role| log.contains(&console::activated(role)) || log.contains(&console::already(role));
    if log.contains(&console::activation_failed()) || log.contains("Failed to start rolectl") {
        "role activation FAILED"
    } else if has(Role::Master) {
        "role master active"
    } else if has(Role::Minion) {
        "role minion active"
    } else if log.contains(console::UNASSIGNED) {
        "no role (unassigned)"
    } else if log.contains("Cloud-init v.") && log.contains("running 'init'") {
        "cloud-init"
    } else if log.contains("Linux version") {
        "booting kernel"
    } else if log.is_empty() {
        "starting"
    } else {
        "firmware"
    }
}

/// Time since `since` in seconds, one decimal.
pub fn secs(since: Instant) -> String {
    format!("{:.1} s", since.elapsed().as_secs_f64())
}

/// Live stage of a VM: the serial console first, refined by an SSH probe
/// once the role is active (units, wait-master, weave).
pub fn probe_stage(ns: &str, key: &Path, ip: Ipv4Addr, serial_log: &Path) -> String {
    let log = std::fs::read(serial_log)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let stage = serial_stage(&log);
    if !stage.starts_with("role ") && stage != "cloud-init" {
        return stage.to_string();
    }
    let markers: String = Role::ALL
        .iter()
        .map(|r| format!("test -f {} && echo role={r}; ", r.marker_path()))
        .collect();
    let probe = format!(
        "for u in rolectl etcd kube-apiserver kube-controller-manager kube-scheduler containerd docker kubelet weave; do printf '%s=%s\\n' $u $(systemctl is-active $u.service); done; \
         {markers}test -s /run/rolectl/weave.json && echo weave-json=yes; true"
    );
    let Ok(out) = ssh::run(ns, key, &ip.to_string(), &probe) else {
        return stage.to_string();
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let m: std::collections::BTreeMap<&str, &str> =
        text.lines().filter_map(|l| l.split_once('=')).collect();
    if m.is_empty() {
        return stage.to_string();
    }
    let get = |k: &str| m.get(k).copied().unwrap_or("?");
    match get("role") {
        "master"
            if [
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler",
            ]
            .iter()
            .all(|u| get(u) == "active") =>
        {
            "master: control plane active".into()
        }
        "master" if get("etcd") == "active" => "master: etcd active".into(),
        "master" => format!("master: etcd {}", get("etcd")),
        "minion" if get("weave-json") == "yes" => "minion: weave launched".into(),
        "minion" if get("weave") == "activating" && get("kubelet") == "active" => {
            "minion: kubelet active, weave waiting".into()
        }
        "minion" if get("kubelet") == "activating" => "minion: waiting for master".into(),
        "minion" if get("weave") == "activating" => "minion: waiting for minions (weave)".into(),
        "minion" if get("docker") == "activating" || get("containerd") == "activating" => {
            "minion: waiting for master".into()
        }
        "minion" => format!("minion: docker {}", get("docker")),
        _ if get("rolectl") == "failed" => "role activation FAILED".into(),
        _ if get("rolectl") == "active" => "no role (rolectl done)".into(),
        _ => stage.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::{kernel_stamp, serial_stage};

    #[test]
    fn kernel_stamps() {
        assert_eq!(
            kernel_stamp("[    6.335698] Run /init as init process"),
            Some(6.335698)
        );
        assert_eq!(kernel_stamp("[  123.5] x"), Some(123.5));
        assert_eq!(kernel_stamp("Loading, please wait..."), None);
        assert_eq!(kernel_stamp("[[0;32m  OK  [0m] Started"), None);
    }

    #[test]
    fn serial_stages_follow_rolectl_lines() {
        let boot = "Linux version 6.1\n";
        for (line, want) in [
            ("rolectl: activated as master of cluster demo (domain k8s) from NoCloud seed /dev/vdb: wrote /etc/sysconfig/kubernetes-master in 0.31 ms", "role master active"),
            ("rolectl: already a minion; same settings (user-data); /etc/sysconfig/kubernetes-minion untouched", "role minion active"),
            ("rolectl: activation failed; no marker written: invalid user-data: x", "role activation FAILED"),
            ("rolectl: host stays unassigned: no datasource", "no role (unassigned)"),
            ("[    1.0] systemd[1]: Started", "booting kernel"),
        ] {
            assert_eq!(serial_stage(&format!("{boot}{line}\n")), want, "{line}");
        }
    }
}
