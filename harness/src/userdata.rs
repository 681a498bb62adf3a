//! User-data the harness hands to VMs, and `kubebake userdata` for real
//! clouds. Roles and cluster names are rolectl's own types and rules (the
//! shared `kubebake-contract` crate).

use anyhow::Result;

use crate::Role;

/// Checks a cluster name with rolectl's own rule, so `up` and `userdata`
/// refuse exactly what `rolectl activate` would refuse at boot.
pub fn check_cluster(s: &str) -> Result<()> {
    contract::values::ClusterName::try_from(s)?;
    Ok(())
}

/// Checks a domain with rolectl's own rule (what `domain:` in user-data
/// accepts).
pub fn check_domain(s: &str) -> Result<()> {
    contract::values::Domain::try_from(s)?;
    Ok(())
}

/// Checks a DNS label used as a VM name (rolectl's label rule).
pub fn check_label(what: &str, s: &str) -> Result<()> {
    contract::values::check_label(s)
        .map_err(|e| anyhow::anyhow!("{what} {s:?} must be a DNS label: {e}"))
}

/// `#cloud-config` with the `kubernetes:` block (and SSH keys for the
/// default user when given).
pub fn cloud_config(
    role: Role,
    cluster: &str,
    domain: Option<&str>,
    expected_minions: Option<u32>,
    ssh_keys: &[String],
) -> String {
    let mut s = String::from("#cloud-config\n");
    if !ssh_keys.is_empty() {
        s.push_str("ssh_authorized_keys:\n");
        for k in ssh_keys {
            s.push_str(&format!("  - \"{}\"\n", k.trim().replace('"', "")));
        }
    }
    s.push_str(&format!(
        "kubernetes:\n  role: {role}\n  cluster: {cluster}\n"
    ));
    if let Some(d) = domain {
        s.push_str(&format!("  domain: {d}\n"));
    }
    if let Some(n) = expected_minions {
        s.push_str(&format!("  expected_minions: {n}\n"));
    }
    s
}

/// Wraps `user_data` and a second `#cloud-config` part with
/// `ssh_authorized_keys` into MIME multipart (what `cloud-init devel
/// make-mime` produces), leaving the user's part byte-for-byte intact.
pub fn with_ssh_part(user_data: &[u8], ssh_keys: &[String]) -> Vec<u8> {
    let boundary = "===============kubebake-harness==";
    let first_type = content_type(user_data);
    let mut ssh = String::from("#cloud-config\nssh_authorized_keys:\n");
    for k in ssh_keys {
        ssh.push_str(&format!("  - \"{}\"\n", k.trim().replace('"', "")));
    }
    let mut out = Vec::new();
    out.extend_from_slice(
        format!(
            "Content-Type: multipart/mixed; boundary=\"{boundary}\"\nMIME-Version: 1.0\n\n--{boundary}\nContent-Type: {first_type}; charset=\"us-ascii\"\nMIME-Version: 1.0\nContent-Transfer-Encoding: 7bit\nContent-Disposition: attachment; filename=\"user-data\"\n\n"
        )
        .as_bytes(),
    );
    out.extend_from_slice(user_data);
    if !user_data.ends_with(b"\n") {
        out.push(b'\n');
    }
    out.extend_from_slice(
        format!(
            "\n--{boundary}\nContent-Type: text/cloud-config; charset=\"us-ascii\"\nMIME-Version: 1.0\nContent-Transfer-Encoding: 7bit\nContent-Disposition: attachment; filename=\"harness-ssh.cfg\"\n\n{ssh}\n--{boundary}--\n"
        )
        .as_bytes(),
    );
    out
}

/// cloud-init's content type for a part, from its first line.
fn content_type(data: &[u8]) -> &'static str {
    if data.starts_with(b"#cloud-config") {
        "text/cloud-config"
    } else if data.starts_with(b"#!") {
        "text/x-shellscript"
    } else if data.starts_with(b"#cloud-boothook") {
        "text/cloud-boothook"
    } else {
        "text/plain"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_config_has_kubernetes_block() {
        let s = cloud_config(Role::Minion, "demo", None, Some(2), &[]);
        assert_eq!(
            s,
            "#cloud-config\nkubernetes:\n  role: minion\n  cluster: demo\n  expected_minions: 2\n"
        );
    }

    #[test]
    fn mime_keeps_user_part() {
        let m = with_ssh_part(
            b"#!/bin/sh\ntouch /etc/sysconfig/kubernetes-master\n",
            &["ssh-ed25519 AAAA k".into()],
        );
        let m = String::from_utf8_lossy(&m);
        assert!(m.contains("text/x-shellscript"));
        assert!(m.contains("touch /etc/sysconfig/kubernetes-master\n"));
        assert!(m.contains("ssh_authorized_keys:\n  - \"ssh-ed25519 AAAA k\""));
    }

    #[test]
    fn labels() {
        assert!(check_label("VM name", "demo-1").is_ok());
        assert!(check_label("VM name", "Demo").is_err());
        assert!(check_label("VM name", "").is_err());
        assert!(check_domain("k8s").is_ok() && check_domain("corp.example").is_ok());
        assert!(check_domain("K8s").is_err());
        assert!(check_cluster("demo-1").is_ok());
        assert!(check_cluster("Demo").is_err());
        assert!(check_cluster("-demo").is_err());
        assert!(check_cluster("a;rm").is_err());
    }
}
