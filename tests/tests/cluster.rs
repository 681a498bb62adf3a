//! Scenarios (a) + (e) + (f) on one cluster, to save boots under TCG:
//!   1. minion1 and minion2 start first (expected_minions: 3, the cluster's
//!      credentials in user-data): they become minions, docker runs (the
//!      runtimes never wait), kubelet waits for the master (e).
//!   2. master1 starts: its control plane comes up, the minions' kubelet
//!      starts only after the API server answered /readyz (a, e), and weave
//!      then waits for the third minion (f, "2 of 3").
//!   3. minion3 starts: weave launches on all three with consensus=3 and
//!      the other two minions as peers (a, f).
//!
//! Role gating is checked on both sides (a), and a container made from
//! busybox-static runs on a minion, nothing pulled from a registry. Every
//! VM gets its user-data as a file (like run-instances --user-data); the
//! harness adds its SSH key as a second MIME part.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use harness::cluster::{Cluster, VmSpec};
use harness::wait_until;
use harness::Role;
use kubebake::cluster_secrets::ClusterSecrets;
use kubebake_vmtests as h;

const TEST: &str = "cluster_master_minions_weave";
const CLUSTER: &str = "demo";
/// Four VMs on two cores under TCG, a control plane among them: be generous.
const WAIT: Duration = Duration::from_secs(900);

/// A VM of `role` with generated user-data plus the cluster's credentials.
fn node(name: &str, role: Role, secrets: &ClusterSecrets) -> Result<VmSpec> {
    let expected = (role == Role::Minion).then_some(3);
    Ok(VmSpec {
        name: name.into(),
        cluster: CLUSTER.into(),
        role: Some(role),
        user_data: h::credentialed_user_data(secrets, role, CLUSTER, expected)?,
        kernel_boot: false,
        imds_only: false,
    })
}

fn journal(c: &Cluster, vm: &str, unit: &str) -> Result<String> {
    c.ssh(
        vm,
        &format!("sudo journalctl -b -u {unit} --no-pager -o short-unix"),
    )
}

/// Guest wall clock minus host wall clock, seconds.
fn skew(c: &Cluster, vm: &str) -> Result<f64> {
    let host = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs_f64();
    let guest: f64 = c.ssh(vm, "date +%s.%N")?.trim().parse()?;
    Ok(guest - host)
}

/// `ActiveEnterTimestamp` of a unit as unix seconds (guest clock).
fn active_since(c: &Cluster, vm: &str, unit: &str) -> Result<f64> {
    let out = c.ssh(
        vm,
        &format!("systemctl show -p ActiveEnterTimestamp --timestamp=unix {unit}"),
    )?;
    let v = out
        .trim()
        .strip_prefix("ActiveEnterTimestamp=@")
        .with_context(|| format!("{unit} on {vm}: {out}"))?;
    Ok(v.parse()?)
}

/// Kubernetes built from source is in the image, and the container images
/// baked into it are in containerd's k8s.io namespace (imported at boot by
/// kubebake-images.service, nothing pulled: the VM network has no registry),
/// with the digests the manifest pins.
fn baked_kubernetes(c: &Cluster, vm: &str) -> Result<()> {
    let version = c.ssh(vm, "/usr/local/bin/kubelet --version")?;
    ensure!(
        version.trim() == "Kubernetes v1.20.2",
        "{vm}: kubelet --version printed {version:?}"
    );
    wait_until(
        &format!("{vm}: kubebake-images active"),
        WAIT,
        Duration::from_secs(3),
        || {
            let (_, active) = h::unit_state(c, vm, "kubebake-images.service")?;
            Ok((active == "active").then_some(()))
        },
    )?;
    let listed = c.ssh(vm, "sudo ctr --namespace k8s.io images ls")?;
    let manifest = h::manifest()?;
    for image in &manifest.container_images {
        let digest = image
            .digests
            .as_ref()
            .map(|d| d.manifest.clone())
            .unwrap_or_default();
        ensure!(
            listed
                .lines()
                .any(|l| l.starts_with(&format!("{} ", image.reference)) && l.contains(&digest)),
            "{vm}: {} @ {digest} not in containerd's k8s.io namespace:\n{listed}",
            image.reference
        );
    }
    let labels = c.ssh(
        vm,
        "sudo ctr --namespace k8s.io images ls | grep -c io.cri-containerd.pinned=pinned",
    )?;
    ensure!(
        labels.trim() == manifest.container_images.len().to_string(),
        "{vm}: {} images labelled pinned, want {}",
        labels.trim(),
        manifest.container_images.len()
    );
    Ok(())
}

fn weave_plan(c: &Cluster, vm: &str) -> Result<serde_json::Value> {
    let text = c.ssh(vm, "cat /run/rolectl/weave.json")?;
    serde_json::from_str(&text).with_context(|| format!("weave.json on {vm}: {text}"))
}

/// The node prerequisites baked into the image, on a running node: the
/// bridge-netfilter sysctls read 1 (persisted, applied after br_netfilter
/// loaded: the seed's race), overlay and br_netfilter are loaded, `rolectl
/// preflight` passes for the node's role, and on minions docker runs on
/// overlay2 (never loopback devicemapper) without bridge-nf warnings.
fn node_prerequisites(c: &Cluster, vm: &str, role: &str) -> Result<()> {
    let sysctls = c.ssh(
        vm,
        "cat /proc/sys/net/bridge/bridge-nf-call-iptables \
             /proc/sys/net/bridge/bridge-nf-call-ip6tables /proc/sys/net/ipv4/ip_forward",
    )?;
    ensure!(
        sysctls.split_whitespace().collect::<Vec<_>>() == ["1", "1", "1"],
        "{vm}: bridge-nf-call-iptables, -ip6tables, ip_forward read {sysctls:?}"
    );
    let modules = c.ssh(vm, "cat /proc/modules")?;
    for module in ["overlay", "br_netfilter"] {
        ensure!(
            modules
                .lines()
                .any(|l| l.split_whitespace().next() == Some(module)),
            "{vm}: module {module} is not loaded"
        );
    }
    let out = c.ssh(vm, "sudo /usr/local/bin/rolectl preflight --json")?;
    let report: serde_json::Value =
        serde_json::from_str(&out).with_context(|| format!("{vm}: preflight said {out}"))?;
    ensure!(
        report["ok"] == true && report["role"] == role,
        "{vm}: preflight for {role}: {out}"
    );
    if role == "minion" {
        let info = c.ssh(vm, "sudo docker info 2>&1")?;
        ensure!(
            info.contains("Storage Driver: overlay2"),
            "{vm}: docker info:\n{info}"
        );
        ensure!(
            !info.contains("bridge-nf-call") && !info.contains("devicemapper"),
            "{vm}: docker warns:\n{info}"
        );
    }
    eprintln!("{vm}: node prerequisites for {role} pass");
    Ok(())
}

fn scenario(c: &mut Cluster, secrets: &ClusterSecrets) -> Result<()> {
    let t0 = Instant::now();
    c.launch(node("minion1", Role::Minion, secrets)?)?;
    c.launch(node("minion2", Role::Minion, secrets)?)?;
    for m in ["minion1", "minion2"] {
        let t = c.wait_serial(m, "rolectl: activated as minion", 0, WAIT)?;
        h::report(&format!("{m}: start -> role marker"), t);
    }
    for m in ["minion1", "minion2"] {
        c.wait_ssh(m, WAIT)?;
    }
    // (e) no master yet: kubelet waits for masters.demo.k8s (its
    // wait-master ExecStartPre); the runtimes do not wait.
    for m in ["minion1", "minion2"] {
        wait_until(
            &format!("{m}: kubelet.service waiting for the master"),
            WAIT,
            Duration::from_secs(3),
            || {
                let (_, active) = h::unit_state(c, m, "kubelet.service")?;
                let j = journal(c, m, "kubelet.service")?;
                Ok(
                    (active == "activating" && j.contains("waiting for DNS: masters.demo.k8s"))
                        .then_some(()),
                )
            },
        )?;
        wait_until(
            &format!("{m}: docker active without a master"),
            WAIT,
            Duration::from_secs(3),
            || {
                let (_, active) = h::unit_state(c, m, "docker.service")?;
                Ok((active == "active").then_some(()))
            },
        )?;
        let (cond, active) = h::unit_state(c, m, "etcd.service")?;
        ensure!(
            cond == "no" && active == "inactive",
            "{m}: etcd {cond}/{active}"
        );
    }
    eprintln!(
        "minions are waiting ({:.0} s); starting master1",
        t0.elapsed().as_secs_f64()
    );

    let tm = Instant::now();
    c.launch(node("master1", Role::Master, secrets)?)?;
    let t = c.wait_serial("master1", "rolectl: activated as master", 0, WAIT)?;
    h::report("master1: start -> role marker", t);
    c.wait_ssh("master1", WAIT)?;
    let master_ip = c.vm("master1")?.ip;
    wait_until(
        "API server /readyz on master1",
        WAIT,
        Duration::from_secs(5),
        || Ok(harness::kube::api_ready(c.netns(), &c.key.private, master_ip).then_some(())),
    )?;
    h::report("master1: start -> API server ready", tm.elapsed());
    // (a) master runs only master units.
    for u in ["etcd.service", "kube-apiserver.service"] {
        let (cond, active) = h::unit_state(c, "master1", u)?;
        ensure!(
            cond == "yes" && active == "active",
            "master1 {u}: {cond}/{active}"
        );
    }
    for u in [
        "docker.service",
        "containerd.service",
        "kubelet.service",
        "weave.service",
    ] {
        let (cond, active) = h::unit_state(c, "master1", u)?;
        ensure!(
            cond == "no" && active == "inactive",
            "master1 {u}: {cond}/{active}"
        );
    }
    let api_up = active_since(c, "master1", "kube-apiserver.service")? - skew(c, "master1")?;
    node_prerequisites(c, "master1", "master")?;

    // (a)+(e) minions' kubelet proceeds once the API server is ready.
    for m in ["minion1", "minion2"] {
        wait_until(
            &format!("{m}: kubelet active"),
            WAIT,
            Duration::from_secs(5),
            || {
                let (_, active) = h::unit_state(c, m, "kubelet.service")?;
                Ok((active == "active").then_some(()))
            },
        )?;
        h::report(
            &format!("{m}: master start -> kubelet active"),
            tm.elapsed(),
        );
        let j = journal(c, m, "kubelet.service")?;
        ensure!(
            j.contains(&format!("the API server at masters.{CLUSTER}.k8s is ready")),
            "{m}: no wait-master success line in kubelet's journal:\n{j}"
        );
        let kubelet_up = active_since(c, m, "kubelet.service")? - skew(c, m)?;
        ensure!(
            kubelet_up + 3.0 >= api_up,
            "{m}: kubelet active at {kubelet_up:.1} before the master's API server at {api_up:.1}"
        );
        let out = c.ssh(
            m,
            "set -e; d=$(mktemp -d); mkdir -p $d/bin; cp /bin/busybox $d/bin/; \
             sudo tar -C $d -c . | sudo docker import - local/busybox >/dev/null; \
             sudo docker run --rm local/busybox /bin/busybox echo ok",
        )?;
        ensure!(out.trim() == "ok", "{m}: container said {out:?}");
        node_prerequisites(c, m, "minion")?;
        baked_kubernetes(c, m)?;
    }
    // Still waiting for the third minion.
    for m in ["minion1", "minion2"] {
        wait_until(
            &format!("{m}: weave waiting"),
            WAIT,
            Duration::from_secs(3),
            || {
                let (_, active) = h::unit_state(c, m, "weave.service")?;
                let j = journal(c, m, "weave.service")?;
                Ok((active == "activating" && j.contains("2 of 3 addresses")).then_some(()))
            },
        )?;
    }

    // (f) third minion: all three launch with consensus=3.
    let t3 = Instant::now();
    c.launch(node("minion3", Role::Minion, secrets)?)?;
    let minions = ["minion1", "minion2", "minion3"];
    c.wait_ssh("minion3", WAIT)?;
    for m in minions {
        wait_until(
            &format!("{m}: weave launched"),
            WAIT,
            Duration::from_secs(3),
            || Ok(c.ssh(m, "test -s /run/rolectl/weave.json").ok()),
        )?;
    }
    h::report("minion3 start -> weave launched on all three", t3.elapsed());
    h::report(
        "cluster: first start -> weave launched everywhere",
        t0.elapsed(),
    );
    let ips: Vec<String> = minions
        .iter()
        .map(|m| c.vm(m).map(|v| v.ip.to_string()))
        .collect::<Result<_>>()?;
    for (i, m) in minions.iter().enumerate() {
        let plan = weave_plan(c, m)?;
        ensure!(
            plan["consensus"] == 3,
            "{m}: consensus {}",
            plan["consensus"]
        );
        let peers: BTreeSet<String> = plan["peers"]
            .as_array()
            .context("peers")?
            .iter()
            .filter_map(|p| p.as_str().map(str::to_string))
            .collect();
        let want: BTreeSet<String> = ips
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, ip)| ip.clone())
            .collect();
        ensure!(peers == want, "{m}: peers {peers:?}, want {want:?}");
        let cmd = plan["command"].to_string();
        ensure!(cmd.contains("consensus=3"), "{m}: command {cmd}");
        let (_, active) = h::unit_state(c, m, "weave.service")?;
        ensure!(active == "active", "{m}: weave.service {active}");
    }
    Ok(())
}

#[test]
fn cluster_master_minions_weave() {
    let image = h::golden();
    let sha = h::disk_sha256(&image);
    let (_dir, secrets) = h::cluster_secrets(CLUSTER);
    let mut c = h::start_with_control_plane(TEST, image.clone(), 1024);
    let ns = c.netns().to_string();
    let result = scenario(&mut c, &secrets);
    if let Err(e) = &result {
        eprintln!("FAILED: {e:#}; serial logs in target/vm-logs/{TEST}/");
        for vm in c.vms() {
            let log = vm.qemu.serial();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            eprintln!("--- {} (last lines)", vm.name);
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
    drop(c);
    h::assert_clean(&ns);
    assert_eq!(h::disk_sha256(&image), sha, "the golden image changed");
    if let Err(e) = result {
        panic!("{e:#}");
    }
}
