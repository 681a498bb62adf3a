//! What the cluster's Kubernetes says, asked with the admin kubeconfig that
//! the master's kube-pki unit writes: read over SSH, then used from the host
//! inside the cluster's namespace ([`AdminClient`]). `up --wait`, `status`
//! and `bench-vm` read node readiness through here; `up` also copies the
//! admin kubeconfig out for the user.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::ssh;

/// Written on every master by kube-pki (kubeadm's `kubeconfig admin` phase).
pub const ADMIN_KUBECONFIG: &str = "/etc/kubernetes/admin.conf";

/// One registered node and its Ready condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    pub name: String,
    pub ready: bool,
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
    AdminClient::of_master(ns, key, ip)?.nodes()
}

/// The cluster's API as the admin kubeconfig's user, asked from the host
/// inside the cluster's namespace with curl (TLS verified against the
/// kubeconfig's CA, client certificate and key from it). Polling this way
/// costs the emulated master only the API server's work, where every
/// kubectl run there costs seconds of emulated CPU and starves the control
/// plane under TCG.
pub struct AdminClient {
    ns: String,
    server: String,
    /// ca.crt, client.crt, client.key (0600 in a 0700 directory).
    dir: tempfile::TempDir,
}

/// The parts of a kubeconfig that the client uses (kubeadm writes one
/// cluster and one user, certificates embedded as base64 PEM).
#[derive(Deserialize)]
struct Kubeconfig {
    clusters: Vec<KubeCluster>,
    users: Vec<KubeUser>,
}

#[derive(Deserialize)]
struct KubeCluster {
    cluster: ClusterEntry,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct ClusterEntry {
    server: String,
    certificate_authority_data: String,
}

#[derive(Deserialize)]
struct KubeUser {
    user: UserEntry,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct UserEntry {
    client_certificate_data: String,
    client_key_data: String,
}

impl AdminClient {
    /// A client for the admin kubeconfig on the master at `ip`.
    pub fn of_master(ns: &str, key: &Path, ip: Ipv4Addr) -> Result<Self> {
        Self::from_kubeconfig(ns, &admin_kubeconfig(ns, key, ip)?)
    }

    /// A client for a kubeconfig's first cluster and user.
    pub fn from_kubeconfig(ns: &str, text: &str) -> Result<Self> {
        let k: Kubeconfig = serde_saphyr::from_str(text)
            .context("admin kubeconfig: not a kubeconfig with embedded certificates")?;
        let (Some(cluster), Some(user)) = (k.clusters.first(), k.users.first()) else {
            bail!("admin kubeconfig: no cluster or no user");
        };
        let dir = tempfile::Builder::new()
            .prefix("kubebake-admin-")
            .tempdir()
            .context("creating a directory for the admin credentials")?;
        for (field, b64, file) in [
            (
                "certificate-authority-data",
                &cluster.cluster.certificate_authority_data,
                "ca.crt",
            ),
            (
                "client-certificate-data",
                &user.user.client_certificate_data,
                "client.crt",
            ),
            ("client-key-data", &user.user.client_key_data, "client.key"),
        ] {
            let pem = data_encoding::BASE64
                .decode(b64.trim().as_bytes())
                .with_context(|| format!("admin kubeconfig: {field} is not base64"))?;
            write_private(&dir.path().join(file), &pem)?;
        }
        Ok(Self {
            ns: ns.to_string(),
            server: cluster.cluster.server.trim_end_matches('/').to_string(),
            dir,
        })
    }

    /// The API server's URL from the kubeconfig.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// GET `path` (e.g. `/api/v1/nodes`); the body as text.
    pub fn get_text(&self, path: &str) -> Result<String> {
        let d = self.dir.path();
        let url = format!("{}{path}", self.server);
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns, "curl", "-sS", "--fail-with-body"])
            .args(["--max-time", "30", "--cacert"])
            .arg(d.join("ca.crt"))
            .arg("--cert")
            .arg(d.join("client.crt"))
            .arg("--key")
            .arg(d.join("client.key"))
            .arg(&url)
            .output()
            .context("running curl in the cluster's namespace (install curl)")?;
        if !out.status.success() {
            bail!(
                "GET {url}: {} {}",
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            );
        }
        String::from_utf8(out.stdout).with_context(|| format!("GET {url}: body is not UTF-8"))
    }

    /// GET `path` as JSON.
    pub fn get(&self, path: &str) -> Result<serde_json::Value> {
        let body = self.get_text(path)?;
        serde_json::from_str(&body).with_context(|| format!("GET {path}: not JSON: {body}"))
    }

    /// The registered nodes and their Ready conditions.
    pub fn nodes(&self) -> Result<Vec<Node>> {
        parse_nodes(&self.get_text("/api/v1/nodes")?)
    }
}

/// Writes credentials to `path`, mode 0600 from the start and atomically
/// (a temporary file in the same directory, renamed over `path`): a reader
/// never sees half a key, and a file left by an earlier run with a wider
/// mode is replaced, not reused.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    let mut f = tempfile::NamedTempFile::new_in(dir.unwrap_or(Path::new(".")))
        .with_context(|| format!("creating a temporary file for {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    f.persist(path)
        .with_context(|| format!("renaming into {}", path.display()))?;
    Ok(())
}

/// Names and Ready conditions from a node list (`GET /api/v1/nodes`).
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
    fn admin_client_from_kubeadm_kubeconfig() {
        let b64 = |s: &str| data_encoding::BASE64.encode(s.as_bytes());
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: https://10.77.0.10:6443/\n  name: demo\ncontexts: []\ncurrent-context: ''\nusers:\n- name: kubernetes-admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
            b64("CA PEM"),
            b64("CERT PEM"),
            b64("KEY PEM")
        );
        let c = AdminClient::from_kubeconfig("ns", &text).expect("kubeconfig");
        assert_eq!(c.server(), "https://10.77.0.10:6443");
        use std::os::unix::fs::PermissionsExt;
        for (f, want) in [
            ("ca.crt", "CA PEM"),
            ("client.crt", "CERT PEM"),
            ("client.key", "KEY PEM"),
        ] {
            let p = c.dir.path().join(f);
            assert_eq!(std::fs::read_to_string(&p).expect("written"), want);
            let mode = std::fs::metadata(&p).expect("stat").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        let broken = text.replace(&b64("KEY PEM"), "not base64!");
        let e = AdminClient::from_kubeconfig("ns", &broken)
            .err()
            .expect("refused");
        assert!(format!("{e:#}").contains("client-key-data"), "{e:#}");
        let e = AdminClient::from_kubeconfig("ns", "clusters: []\nusers: []\n")
            .err()
            .expect("refused");
        assert!(format!("{e:#}").contains("no cluster"), "{e:#}");
    }

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
