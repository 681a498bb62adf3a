//! Single-VM scenarios, booted in parallel in one VPC:
//!   (b) the seed's literal user-data `touch /etc/sysconfig/kubernetes-master`
//!       makes a master (SeaBIOS boot); (d) it stays a master across a reboot;
//!   (c) bad user-data (`kubernetes: {role: captain}`): the VM boots, no role
//!       unit starts, rolectl.service failed with the reason in the journal
//!       and in /run/rolectl/status.json (direct kernel boot);
//!   plus gzip-compressed MIME multipart user-data (as `cloud-init devel
//!   make-mime | gzip` makes it) activating a master of cluster "zipped".

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use contract::console;
use harness::cluster::{Cluster, Datasource, UserData, VmSpec};
use harness::wait_until;
use harness::Role;
use kubebake_vmtests as h;

const TEST: &str = "single_seed_script_bad_userdata_reboot";
const WAIT: Duration = Duration::from_secs(480);
const SEED_SCRIPT: &str = "#!/bin/bash\ntouch /etc/sysconfig/kubernetes-master\n";

/// A two-part MIME message (a shell script and the kubernetes cloud-config),
/// gzip-compressed; SSH comes from the meta-data `public-keys`.
fn gzipped_mime() -> Result<Vec<u8>> {
    use std::io::Write;
    let mime = "Content-Type: multipart/mixed; boundary=\"===kubebake==\"\nMIME-Version: 1.0\n\n\
        --===kubebake==\nContent-Type: text/x-shellscript; charset=\"us-ascii\"\nMIME-Version: 1.0\n\
        Content-Disposition: attachment; filename=\"hello.sh\"\n\n#!/bin/sh\necho hello\n\n\
        --===kubebake==\nContent-Type: text/cloud-config; charset=\"us-ascii\"\nMIME-Version: 1.0\n\
        Content-Disposition: attachment; filename=\"k8s.yaml\"\n\n#cloud-config\nkubernetes:\n  role: master\n  cluster: zipped\n\n\
        --===kubebake==--\n";
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(mime.as_bytes())?;
    Ok(gz.finish()?)
}

fn scenario(c: &mut Cluster) -> Result<()> {
    let kernel_boot = c.opts.image.direct_kernel.is_some();
    ensure!(
        kernel_boot,
        "the golden image has no kernel/initrd/manifest beside it for direct kernel boot"
    );
    c.launch(VmSpec {
        name: "seedmaster".into(),
        // The script form carries no cluster name: rolectl uses "kubernetes".
        cluster: "kubernetes".into(),
        role: Some(Role::Master),
        user_data: UserData::File(SEED_SCRIPT.as_bytes().to_vec()),
        kernel_boot: false,
        datasource: Datasource::Seed,
    })?;
    c.launch(VmSpec {
        name: "captain".into(),
        cluster: "bad".into(),
        role: None,
        user_data: UserData::File(b"#cloud-config\nkubernetes: {role: captain}\n".to_vec()),
        kernel_boot: true,
        datasource: Datasource::Seed,
    })?;

    c.launch(VmSpec {
        name: "zipped".into(),
        cluster: "zipped".into(),
        role: Some(Role::Master),
        user_data: UserData::Exact(gzipped_mime()?),
        kernel_boot: true,
        datasource: Datasource::Seed,
    })?;

    // (b) the seed's script makes a master.
    let t = c.wait_serial("seedmaster", &console::activated(Role::Master), 0, WAIT)?;
    h::report("seedmaster: start -> role marker (BIOS boot)", t);
    c.wait_ssh("seedmaster", WAIT)?;
    let tu = wait_until(
        "seedmaster: etcd active",
        WAIT,
        Duration::from_secs(3),
        || {
            let (_, a) = h::unit_state(c, "seedmaster", "etcd.service")?;
            Ok((a == "active").then(|| c.vm("seedmaster").map(|v| v.qemu.started.elapsed())))
        },
    )??;
    h::report("seedmaster: start -> etcd active", tu);
    c.ssh("seedmaster", "test -f /etc/sysconfig/kubernetes-master")?;
    for u in ["docker.service", "containerd.service"] {
        let (cond, a) = h::unit_state(c, "seedmaster", u)?;
        ensure!(
            cond == "no" && a == "inactive",
            "seedmaster {u}: {cond}/{a}"
        );
    }
    // The pod network runs on every node with a role, masters too: a lone
    // master's weave waits for minions to peer with.
    let (cond, _) = h::unit_state(c, "seedmaster", "weave.service")?;
    ensure!(cond == "yes", "seedmaster weave.service condition: {cond}");

    // (c) bad user-data.
    let t = c.wait_ssh("captain", WAIT)?;
    h::report("captain: start -> ssh (direct kernel boot)", t);
    let failed = wait_until(
        "captain: rolectl finished",
        WAIT,
        Duration::from_secs(3),
        || {
            let out = c.ssh_output("captain", "systemctl is-failed rolectl.service")?;
            let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
            Ok((s != "activating" && !s.is_empty()).then_some(s))
        },
    )?;
    ensure!(
        failed == "failed",
        "captain: rolectl.service is {failed}, want failed"
    );
    let j = c.ssh(
        "captain",
        "sudo journalctl -b -u rolectl.service --no-pager",
    )?;
    ensure!(
        j.contains("captain"),
        "captain: reason not in the journal:\n{j}"
    );
    let status = c.ssh("captain", "cat /run/rolectl/status.json")?;
    ensure!(
        status.contains("captain"),
        "captain: reason not in status.json: {status}"
    );
    for u in [
        "etcd.service",
        "docker.service",
        "containerd.service",
        "weave.service",
    ] {
        let (cond, a) = h::unit_state(c, "captain", u)?;
        ensure!(a != "active", "captain {u}: {cond}/{a}");
    }
    c.ssh(
        "captain",
        "! test -e /etc/sysconfig/kubernetes-master && ! test -e /etc/sysconfig/kubernetes-minion",
    )?;

    // gzip + MIME: a master of cluster "zipped".
    let t = c.wait_serial("zipped", &console::activated(Role::Master), 0, WAIT)?;
    h::report("zipped: start -> role marker (gzip MIME user-data)", t);
    c.wait_ssh("zipped", WAIT)?;
    let marker = c.ssh("zipped", "sudo cat /etc/sysconfig/kubernetes-master")?;
    ensure!(
        marker.lines().any(|l| l == "CLUSTER_NAME=zipped"),
        "zipped: marker {marker:?}"
    );

    // (d) reboot keeps the role.
    let boot_id = c.ssh("seedmaster", "cat /proc/sys/kernel/random/boot_id")?;
    let tr = Instant::now();
    let _ = c.ssh_output("seedmaster", "sudo systemctl reboot");
    wait_until(
        "seedmaster: back after reboot",
        WAIT,
        Duration::from_secs(5),
        || {
            Ok(c.ssh("seedmaster", "cat /proc/sys/kernel/random/boot_id")
                .ok()
                .filter(|b| *b != boot_id))
        },
    )?;
    h::report("seedmaster: reboot -> ssh", tr.elapsed());
    wait_until(
        "seedmaster: etcd active after reboot",
        WAIT,
        Duration::from_secs(3),
        || {
            let (_, a) = h::unit_state(c, "seedmaster", "etcd.service")?;
            Ok((a == "active").then_some(()))
        },
    )?;
    c.ssh("seedmaster", "test -f /etc/sysconfig/kubernetes-master")?;
    let (cond, a) = h::unit_state(c, "seedmaster", "docker.service")?;
    ensure!(
        cond == "no" && a == "inactive",
        "after reboot docker {cond}/{a}"
    );
    let log = c.vm("seedmaster")?.qemu.serial();
    ensure!(
        log.matches(console::PREFIX).count() >= 2,
        "seedmaster: rolectl did not run again on the second boot"
    );
    Ok(())
}

#[test]
fn single_seed_script_bad_userdata_reboot() {
    let image = h::golden();
    let mut c = h::start(TEST, image, 768);
    let ns = c.netns().to_string();
    let result = scenario(&mut c);
    if let Err(e) = &result {
        eprintln!("FAILED: {e:#}; serial logs in target/vm-logs/{TEST}/");
    }
    drop(c);
    h::assert_clean(&ns);
    if let Err(e) = result {
        panic!("{e:#}");
    }
}
