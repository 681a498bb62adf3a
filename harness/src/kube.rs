//! What the cluster's Kubernetes says, asked on a master over SSH with the
//! admin kubeconfig that the master's kube-pki unit writes. `up --wait`,
//! `status` and `bench-vm` read node readiness through here; the admin
//! kubeconfig is copied out for use from the host (through the namespace).

use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::ssh;

/// Written on every master by kube-pki (kubeadm's `kubeconfig admin` phase).
pub const ADMIN_KUBECONFIG: &str = "/etc/kubernetes/admin.conf";
const KUBECTL: &str = "/usr/local/bin/kubectl";

/// One registered node and its Ready condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    pub name: String,
    pub ready: bool,
}

/// Runs kubectl as root on the master at `ip` with the admin kubeconfig.
pub fn kubectl(ns: &str, key: &Path, ip: Ipv4Addr, args: &str) -> Result<String> {
    let cmd =
        format!("sudo {KUBECTL} --kubeconfig {ADMIN_KUBECONFIG} --request-timeout=10s {args}");
    let out = ssh::run(ns, key, &ip.to_string(), &cmd)?;
    if !out.status.success() {
        bail!(
            "kubectl {args} on {ip}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `/readyz` of the master's API server, asked on the master with curl
/// (anonymous, verified against the cluster CA, at the marker's
/// API_SERVER): cheap, where a kubectl run costs seconds of emulated CPU.
pub fn api_ready(ns: &str, key: &Path, ip: Ipv4Addr) -> bool {
    let cmd = r#"sudo sh -c '. /etc/sysconfig/kubernetes-master && curl -sf --max-time 10 --cacert /etc/kubernetes/pki/ca.crt "$API_SERVER/readyz"'"#;
    ssh::run(ns, key, &ip.to_string(), cmd)
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "ok")
}

/// The nodes the API server on the master at `ip` knows.
pub fn nodes(ns: &str, key: &Path, ip: Ipv4Addr) -> Result<Vec<Node>> {
    parse_nodes(&kubectl(ns, key, ip, "get nodes -o json")?)
}

/// Names and Ready conditions from `kubectl get nodes -o json`.
pub fn parse_nodes(json: &str) -> Result<Vec<Node>> {
    let v: serde_json::Value =
        serde_json::from_str(json).context("kubectl get nodes -o json: not JSON")?;
    let Some(items) = v["items"].as_array() else {
        bail!("kubectl get nodes -o json: no items list");
    };
    Ok(items
        .iter()
        .map(|n| Node {
            name: n["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            ready: n["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            }),
        })
        .collect())
}

/// The admin kubeconfig of the master at `ip` (its server is the master's
/// address, reachable inside the cluster's namespace).
pub fn admin_kubeconfig(ns: &str, key: &Path, ip: Ipv4Addr) -> Result<String> {
    let out = ssh::run(
        ns,
        key,
        &ip.to_string(),
        &format!("sudo cat {ADMIN_KUBECONFIG}"),
    )?;
    if !out.status.success() || out.stdout.is_empty() {
        bail!(
            "reading {ADMIN_KUBECONFIG} on {ip}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8(out.stdout).context("admin kubeconfig is not UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_and_ready_conditions() {
        let json = r#"{"items":[
          {"metadata":{"name":"minion1"},"status":{"conditions":[
            {"type":"MemoryPressure","status":"False"},{"type":"Ready","status":"True"}]}},
          {"metadata":{"name":"minion2"},"status":{"conditions":[{"type":"Ready","status":"False"}]}},
          {"metadata":{"name":"minion3"},"status":{}}]}"#;
        let n = parse_nodes(json).expect("valid node list");
        assert_eq!(
            n,
            [
                Node {
                    name: "minion1".into(),
                    ready: true
                },
                Node {
                    name: "minion2".into(),
                    ready: false
                },
                Node {
                    name: "minion3".into(),
                    ready: false
                },
            ]
        );
        assert!(parse_nodes("{}").is_err());
        assert!(parse_nodes("error").is_err());
    }
}
