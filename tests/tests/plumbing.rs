//! One VM: boots from a copy-on-write overlay, gets its address, resolver
//! and hostname by DHCP, resolves the VPC's DNS names, reads its own
//! user-data from the metadata service (a second VM boots with no seed
//! disk: rolectl and cloud-init both read NoCloud-net from the IMDS and
//! agree); a third VM has no datasource at all and boots unassigned, saying
//! why; a stopped VM leaves DNS; the golden image stays unchanged and
//! nothing is left behind.
//!
//! Fault: the metadata service is absent (connection refused) when the VMs
//! boot and comes up only 30 s after the NoCloud-net VM was first refused:
//! that VM activates its role once the service answers, and cloud-init,
//! which runs after rolectl's wait, gets the same user-data (SSH keys,
//! hostname, "agrees").

use anyhow::Context;
use std::time::{Duration, Instant};

use contract::console;
use harness::cluster::{Datasource, UserData, VmSpec};
use harness::imds::Metadata;
use harness::Role;
use kubebake_vmtests as h;

#[test]
fn one_vm_network_dns_imds() {
    let image = h::golden();
    let sha_before = h::disk_sha256(&image);
    let mut c = h::start("one_vm_network_dns_imds", image.clone(), 768);
    let ns = c.netns().to_string();
    let result = (|| -> anyhow::Result<()> {
        // No metadata service while the VMs boot.
        c.set_metadata(Metadata::Refused)?;
        c.launch(VmSpec {
            name: "node0".into(),
            cluster: "demo".into(),
            role: Some(Role::Master),
            user_data: UserData::Role {
                role: Role::Master,
                expected_minions: None,
            },
            kernel_boot: true,
            datasource: Datasource::Seed,
        })?;
        // A second VM without a seed disk: NoCloud-net over the IMDS.
        c.launch(VmSpec {
            name: "imdsnode".into(),
            cluster: "demo".into(),
            role: Some(Role::Minion),
            user_data: UserData::Role {
                role: Role::Minion,
                expected_minions: Some(1),
            },
            kernel_boot: true,
            datasource: Datasource::NoCloudNet,
        })?;
        // No seed disk and no metadata service address: no datasource.
        c.launch(VmSpec {
            name: "nods".into(),
            cluster: "demo".into(),
            role: None,
            user_data: UserData::Exact(Vec::new()),
            kernel_boot: true,
            datasource: Datasource::Absent,
        })?;
        metadata_comes_late(&mut c)?;
        // The seed disk holds the node's user-data: root's alone, in a
        // directory that is root's alone.
        {
            use std::os::unix::fs::PermissionsExt;
            let vm_dir = c.vm("node0")?.dir.clone();
            for (path, want) in [
                (
                    vm_dir
                        .parent()
                        .context("the cluster's directory")?
                        .to_path_buf(),
                    0o700,
                ),
                (vm_dir.clone(), 0o700),
                (vm_dir.join("seed.img"), 0o600),
            ] {
                let mode = std::fs::metadata(&path)
                    .with_context(|| format!("stat {}", path.display()))?
                    .permissions()
                    .mode()
                    & 0o777;
                anyhow::ensure!(
                    mode == want,
                    "{}: mode {mode:o}, want {want:o}",
                    path.display()
                );
            }
        }
        let t = c.wait_ssh("node0", h::WAIT)?;
        h::report("boot -> ssh (direct kernel boot)", t);
        let resolv = c.ssh("node0", "cat /etc/resolv.conf")?;
        anyhow::ensure!(
            resolv.contains("nameserver 10.77.0.1"),
            "resolv.conf: {resolv}"
        );
        let got = c.ssh("node0", "getent hosts masters.demo.k8s node0.demo.k8s")?;
        anyhow::ensure!(got.matches("10.77.0.10").count() == 2, "getent: {got}");
        let ud = c.ssh(
            "node0",
            "python3 -c 'import urllib.request as u; print(u.urlopen(\"http://169.254.169.254/latest/user-data\").read().decode())'",
        )?;
        anyhow::ensure!(
            ud.contains("role: master"),
            "IMDS user-data from the VM: {ud}"
        );
        let ip = c.ssh(
            "node0",
            "python3 -c 'import urllib.request as u; print(u.urlopen(\"http://169.254.169.254/latest/meta-data/local-ipv4\").read().decode())'",
        )?;
        anyhow::ensure!(ip.trim() == "10.77.0.10", "IMDS local-ipv4: {ip}");
        let out = c.ns_exec(&[
            "curl",
            "-sf",
            "-H",
            "X-Kubebake-Source: 10.77.0.10",
            "http://169.254.169.254/latest/meta-data/hostname",
        ])?;
        anyhow::ensure!(
            String::from_utf8_lossy(&out.stdout) == "node0.demo.k8s",
            "IMDS from the namespace: {:?}",
            out
        );
        let t = c.wait_ssh("imdsnode", h::WAIT)?;
        h::report("boot -> ssh (NoCloud-net from the IMDS, no seed disk)", t);
        let ud = c.ssh("imdsnode", "sudo cat /var/lib/cloud/instance/user-data.txt")?;
        anyhow::ensure!(ud.contains("role: minion"), "imdsnode user-data: {ud}");
        let ds = c.ssh("imdsnode", "sudo cat /var/lib/cloud/instance/datasource")?;
        anyhow::ensure!(ds.contains("NoCloudNet"), "imdsnode datasource: {ds}");
        // rolectl read the same user-data itself, before cloud-init, and
        // cloud-init's copy agrees.
        let st = c.ssh("imdsnode", "sudo /usr/local/bin/rolectl status")?;
        eprintln!("imdsnode rolectl status:\n{st}");
        for want in [
            "role: minion",
            "user-data from: NoCloud-net http://169.254.169.254/latest/user-data",
            "tried: NoCloud seed: no vfat volume labelled CIDATA",
            "cloud-init's copy (/var/lib/cloud/instance/user-data.txt): agrees",
        ] {
            anyhow::ensure!(
                st.contains(want),
                "imdsnode rolectl status lacks {want:?}:\n{st}"
            );
        }
        // The VM without a datasource: it boots, stays unassigned and says
        // why (the console carries rolectl's line; no SSH key reaches it).
        let t = c.wait_serial("nods", "login:", 0, h::WAIT)?;
        h::report("boot -> login prompt (no datasource)", t);
        let log = c.vm("nods")?.qemu.serial();
        let line = log
            .lines()
            .find(|l| l.contains(console::UNASSIGNED))
            .unwrap_or_default();
        for want in [
            "no datasource gave user-data",
            "NoCloud seed: no vfat volume labelled CIDATA",
            "NoCloud-net: no ds=nocloud-net;s=URL",
            "EC2: not an EC2 instance",
        ] {
            anyhow::ensure!(
                line.contains(want),
                "nods: rolectl said {line:?}, lacks {want:?}"
            );
        }
        anyhow::ensure!(
            !log.contains("Started containerd.service") && !log.contains("etcd.service"),
            "a role unit started on the unassigned VM"
        );
        let got = c.ssh("imdsnode", "getent hosts minions.demo.k8s")?;
        anyhow::ensure!(got.contains("10.77.0.11"), "minions.demo.k8s: {got}");
        c.stop_vm("node0", Duration::from_secs(60))?;
        let got = c.ssh("imdsnode", "getent hosts masters.demo.k8s || echo gone")?;
        anyhow::ensure!(
            got.trim() == "gone",
            "master still in DNS after stop: {got}"
        );
        Ok(())
    })();
    if let Err(e) = &result {
        eprintln!("FAILED: {e:#}");
        if let Ok(out) = c.ssh(
            "imdsnode",
            "sudo /usr/local/bin/rolectl status; systemctl --failed --no-pager; \
             sudo journalctl -b --no-pager -u rolectl -u cloud-init -u rolectl-cloud-init | tail -n 60",
        ) {
            eprintln!("==== imdsnode\n{out}");
        }
        let _ = c.save_logs(&h::repo_root().join("target/vm-logs/one_vm_network_dns_imds"));
    }
    drop(c);
    h::assert_clean(&ns);
    assert_eq!(
        h::disk_sha256(&image),
        sha_before,
        "the golden image changed"
    );
    if let Err(e) = result {
        panic!("{e:#}");
    }
}

/// How long the metadata service stays away after the NoCloud-net VM's
/// first refused request.
const METADATA_LATE: Duration = Duration::from_secs(30);

/// The NoCloud-net VM (imdsnode) meets a refused metadata service at its
/// first boot; 30 s after rolectl's first refused request the service comes
/// up, and rolectl activates the role from it. The rest of the test then
/// checks that cloud-init got the same user-data and agrees.
fn metadata_comes_late(c: &mut harness::cluster::Cluster) -> anyhow::Result<()> {
    let t = harness::wait_until(
        "imdsnode: rolectl refused by the metadata service",
        h::WAIT,
        Duration::from_millis(500),
        || {
            let vm = c.vm("imdsnode")?;
            let log = vm.qemu.serial();
            let refused = log
                .lines()
                .any(|l| l.contains(console::PREFIX) && l.to_ascii_lowercase().contains("refused"));
            anyhow::ensure!(
                !log.contains(console::ACTIVATED_AS),
                "imdsnode activated while the metadata service was refused"
            );
            Ok(refused.then(|| vm.qemu.started.elapsed()))
        },
    )?;
    h::report("imdsnode: start -> metadata request refused", t);
    std::thread::sleep(METADATA_LATE);
    let log = c.vm("imdsnode")?.qemu.serial();
    anyhow::ensure!(
        !log.contains(console::ACTIVATED_AS) && !log.contains(console::UNASSIGNED),
        "imdsnode: rolectl finished while the metadata service was refused"
    );
    let served = c.vm("imdsnode")?.qemu.started.elapsed();
    let at = Instant::now();
    c.set_metadata(Metadata::Served)?;
    eprintln!(
        "FAULT metadata service refused from boot, served at imdsnode start + {:.1} s",
        served.as_secs_f64()
    );
    let t = c.wait_serial("imdsnode", &console::activated(Role::Minion), 0, h::WAIT)?;
    h::report("imdsnode: start -> role marker (metadata late)", t);
    h::report(
        "imdsnode: metadata served -> role marker",
        at.elapsed().min(t.saturating_sub(served)),
    );
    Ok(())
}
