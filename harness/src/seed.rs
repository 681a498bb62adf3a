//! NoCloud seed: a small vfat image labelled CIDATA holding `user-data`,
//! `meta-data` and `network-config`, attached to the VM as a second disk.
//! Built with `mkfs.vfat -n CIDATA` + `mcopy` (dosfstools, mtools).

use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::Command;

/// Per-VM seed contents.
pub struct Seed<'a> {
    pub user_data: &'a [u8],
    pub meta_data: &'a str,
    pub network_config: &'a str,
}

/// NoCloud meta-data (YAML): instance id, hostname, and the harness SSH key
/// as `public-keys` (like an EC2 key pair: metadata, not user-data).
pub fn meta_data(instance_id: &str, hostname: &str, ssh_keys: &[String]) -> String {
    let mut s = format!("instance-id: {instance_id}\nlocal-hostname: {hostname}\n");
    if !ssh_keys.is_empty() {
        s.push_str("public-keys:\n");
        for k in ssh_keys {
            s.push_str(&format!("  - \"{}\"\n", k.trim().replace('"', "")));
        }
    }
    s
}

/// network-config v1: DHCP on the NIC with `mac` (the harness DHCP server
/// hands out the VM's fixed address, gateway, DNS server and search domain,
/// and dhclient writes /etc/resolv.conf like on a real VPC). A static
/// config with `nameservers` would not do: cloud-init 22.4's ENI renderer
/// turns it into `dns-nameservers`, which only `resolvconf` applies, and the
/// image has no resolvconf.
pub fn network_config(mac: &str) -> String {
    format!(
        "version: 1\nconfig:\n  - type: physical\n    name: eth0\n    mac_address: \"{mac}\"\n    subnets:\n      - type: dhcp\n"
    )
}

/// Writes the seed image to `path`.
pub fn build(path: &Path, seed: &Seed<'_>) -> Result<()> {
    let dir = tempfile::tempdir().context("creating the seed staging directory")?;
    let files = [
        ("user-data", seed.user_data),
        ("meta-data", seed.meta_data.as_bytes()),
        ("network-config", seed.network_config.as_bytes()),
    ];
    for (name, data) in files {
        std::fs::write(dir.path().join(name), data)
            .with_context(|| format!("writing seed file {name}"))?;
    }
    let _ = std::fs::remove_file(path);
    run(
        Command::new("mkfs.vfat")
            .args(["-n", "CIDATA", "-C"])
            .arg(path)
            .arg("2048"),
        "mkfs.vfat (install dosfstools)",
    )?;
    let mut mcopy = Command::new("mcopy");
    mcopy.arg("-i").arg(path);
    for (name, _) in files {
        mcopy.arg(dir.path().join(name));
    }
    mcopy.arg("::");
    run(&mut mcopy, "mcopy (install mtools)")?;
    // The user-data in it holds the node's credentials.
    crate::private::file(path)
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
