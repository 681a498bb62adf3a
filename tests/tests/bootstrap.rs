//! The golden image forms a working Kubernetes cluster (offline image,
//! Kubernetes v1.20.2 built from source): 1 master + 2 minions with
//! credentials from `kubebake`'s cluster secrets in user-data.
//!
//! - both minions register through kubelet TLS bootstrapping and go Ready,
//!   their client CSRs approved automatically;
//! - the master runs the control plane and no minion unit, minions the
//!   reverse;
//! - a pod from the baked busybox image runs on each minion; `kubectl logs`
//!   and `kubectl exec` work (API server → kubelet over TLS); a ClusterIP
//!   service through kube-proxy answers from the node that hosts its pod;
//! - a minion with a wrong bootstrap token never joins and says why
//!   (rolectl status, journal);
//! - a rebooted minion keeps its identity (no second CSR);
//! - no private key or token appears in any process's argv or the journal.

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use harness::cluster::{Cluster, UserData, VmSpec};
use harness::{userdata, wait_until, Role};
use kubebake::cluster_secrets::ClusterSecrets;
use kubebake_vmtests as h;

const TEST: &str = "bootstrap_master_minions";
const CLUSTER: &str = "demo";
/// Three VMs under TCG on two cores; the API server alone needs ~100 s.
const WAIT: Duration = Duration::from_secs(900);
const KUBECTL: &str = "sudo /usr/local/bin/kubectl --kubeconfig /etc/kubernetes/admin.conf";

fn user_data(secrets: &ClusterSecrets, role: Role, token: Option<&str>) -> Result<UserData> {
    let mut section = secrets.userdata_section(role, None)?;
    if let Some(bad) = token {
        section = section.replace(&secrets.token.expose(), bad);
    }
    let text = format!(
        "{}{section}",
        userdata::cloud_config(role, CLUSTER, None, None, &[])
    );
    Ok(UserData::File(text.into_bytes()))
}

fn spec(name: &str, role: Role, user_data: UserData) -> VmSpec {
    VmSpec {
        name: name.into(),
        cluster: CLUSTER.into(),
        role: Some(role),
        user_data,
        kernel_boot: false,
        imds_only: false,
    }
}

fn kubectl(c: &Cluster, args: &str) -> Result<String> {
    c.ssh("master1", &format!("{KUBECTL} {args}"))
}

/// Node name → Ready condition status.
fn node_ready(c: &Cluster) -> Result<Vec<(String, bool)>> {
    let ip = c.vm("master1")?.ip;
    Ok(harness::kube::nodes(c.netns(), &c.key.private, ip)?
        .into_iter()
        .map(|n| (n.name, n.ready))
        .collect())
}

fn pod_manifest(node: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: web-{node}
  labels: {{ app: web-{node} }}
spec:
  nodeName: {node}
  containers:
    - name: web
      image: localhost/kubebake/busybox:1.35.0
      imagePullPolicy: Never
      command: ["/bin/busybox", "sh", "-c", "echo started on $(/bin/busybox hostname); mkdir -p /www; echo hello from {node} > /www/index.html; exec /bin/busybox httpd -f -p 8080 -h /www"]
---
apiVersion: v1
kind: Service
metadata:
  name: web-{node}
spec:
  selector: {{ app: web-{node} }}
  ports: [{{ port: 80, targetPort: 8080 }}]
"#
    )
}

fn active(c: &Cluster, vm: &str, unit: &str) -> Result<String> {
    Ok(h::unit_state(c, vm, unit)?.1)
}

#[test]
fn cluster_forms_and_minions_join_over_tls() {
    let (_dir, secrets) = h::cluster_secrets(CLUSTER);
    let mut c = h::start_with_control_plane(TEST, h::golden(), 1024);
    let result = scenario(&mut c, &secrets);
    let _ = c.save_logs(&h::log_dir(&format!("{TEST}-saved")));
    if let Err(e) = result {
        for vm in ["master1", "minion1", "minion2", "minion3"] {
            if let Ok(out) = c.ssh(
                vm,
                "sudo systemctl --no-pager --failed; sudo /usr/local/bin/rolectl status; \
                 sudo journalctl -b --no-pager -n 60 -u kubelet -u kube-apiserver -u kube-pki -u kube-bootstrap -u rolectl",
            ) {
                eprintln!("==== {vm}\n{out}");
            }
        }
        panic!("{e:#}");
    }
    c.shutdown();
}

fn scenario(c: &mut Cluster, secrets: &ClusterSecrets) -> Result<()> {
    let t0 = Instant::now();
    c.launch(spec(
        "master1",
        Role::Master,
        user_data(secrets, Role::Master, None)?,
    ))?;
    for m in ["minion1", "minion2"] {
        c.launch(spec(
            m,
            Role::Minion,
            user_data(secrets, Role::Minion, None)?,
        ))?;
    }
    c.wait_ssh("master1", WAIT)?;
    wait_until("API server ready", WAIT, Duration::from_secs(5), || {
        let ip = c.vm("master1")?.ip;
        Ok(harness::kube::api_ready(c.netns(), &c.key.private, ip).then_some(()))
    })?;
    h::report("start -> API server ready", t0.elapsed());
    wait_until("both minions Ready", WAIT, Duration::from_secs(15), || {
        let nodes = node_ready(c).unwrap_or_default();
        let ready = |n: &str| nodes.iter().any(|(name, r)| name == n && *r);
        Ok((ready("minion1") && ready("minion2")).then_some(()))
    })?;
    h::report("start -> both minions Ready", t0.elapsed());
    let free = c.ssh("master1", "free -m | awk '/^Mem:/ {print $3}'")?;
    eprintln!("MEMORY master1 in use once all Ready: {} MiB", free.trim());

    // Registered through TLS bootstrap: every CSR made with the bootstrap
    // token (one per minion) was approved automatically and issued.
    let csrs: serde_json::Value = serde_json::from_str(&kubectl(c, "get csr -o json")?)?;
    let bootstrap: Vec<&serde_json::Value> = csrs["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|x| {
            x["spec"]["username"] == format!("system:bootstrap:{}", secrets.token.id())
                && x["spec"]["signerName"] == "kubernetes.io/kube-apiserver-client-kubelet"
        })
        .collect();
    ensure!(
        bootstrap.len() >= 2,
        "want a bootstrap CSR per minion: {csrs}"
    );
    for csr in &bootstrap {
        let approved = csr["status"]["conditions"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .any(|k| k["type"] == "Approved" && k["reason"] == "AutoApproved");
        ensure!(
            approved && csr["status"]["certificate"].is_string(),
            "CSR not auto-approved and issued: {csr}"
        );
    }

    // Role gating.
    for unit in [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
    ] {
        ensure!(
            active(c, "master1", &format!("{unit}.service"))? == "active",
            "master1: {unit}"
        );
        for m in ["minion1", "minion2"] {
            ensure!(
                active(c, m, &format!("{unit}.service"))? != "active",
                "{m}: {unit} runs"
            );
        }
    }
    for unit in ["kubelet", "kube-proxy", "containerd"] {
        ensure!(
            active(c, "master1", &format!("{unit}.service"))? != "active",
            "master1: {unit} runs"
        );
        for m in ["minion1", "minion2"] {
            ensure!(
                active(c, m, &format!("{unit}.service"))? == "active",
                "{m}: {unit}"
            );
        }
    }

    // Pods need the default service account's token, which the (slow,
    // under TCG) controller-manager's token controller makes after start.
    wait_until(
        "the default service account's token",
        WAIT,
        Duration::from_secs(10),
        || {
            let s = kubectl(
                c,
                "get serviceaccount default -o jsonpath={.secrets[0].name}",
            )
            .unwrap_or_default();
            Ok((!s.trim().is_empty()).then_some(()))
        },
    )?;
    // A pod from the baked image on each minion; logs, exec, a service.
    for m in ["minion1", "minion2"] {
        c.ssh(
            "master1",
            &format!(
                "cat > /tmp/web-{m}.yaml <<'EOF'\n{}EOF\n{KUBECTL} apply -f /tmp/web-{m}.yaml",
                pod_manifest(m)
            ),
        )?;
    }
    for m in ["minion1", "minion2"] {
        let pod = format!("web-{m}");
        wait_until(
            &format!("{pod} Running"),
            WAIT,
            Duration::from_secs(5),
            || {
                let phase = kubectl(c, &format!("get pod {pod} -o jsonpath={{.status.phase}}"))?;
                Ok((phase.trim() == "Running").then_some(()))
            },
        )?;
        let ip = kubectl(c, &format!("get pod {pod} -o jsonpath={{.status.podIP}}"))?;
        ensure!(
            ip.starts_with("10.244."),
            "{pod}: pod IP {ip:?} not from the pod CIDR"
        );
        let logs = kubectl(c, &format!("logs {pod}"))?;
        ensure!(
            logs.contains(&format!("started on {pod}")),
            "{pod} logs: {logs:?}"
        );
        let exec = kubectl(
            c,
            &format!("exec {pod} -- /bin/busybox cat /www/index.html"),
        )?;
        ensure!(
            exec.trim() == format!("hello from {m}"),
            "{pod} exec: {exec:?}"
        );
        let svc = kubectl(
            c,
            &format!("get service {pod} -o jsonpath={{.spec.clusterIP}}"),
        )?;
        let body = wait_until(
            &format!("service {pod} answers on {m}"),
            Duration::from_secs(120),
            Duration::from_secs(3),
            || {
                let out = c.ssh(
                    m,
                    &format!(
                        "/bin/busybox wget -q -T 5 -O - http://{}/index.html 2>&1 || true",
                        svc.trim()
                    ),
                )?;
                Ok(out.contains("hello").then_some(out))
            },
        )?;
        ensure!(
            body.trim() == format!("hello from {m}"),
            "{m}: service said {body:?}"
        );
    }
    h::report("start -> pods + services verified", t0.elapsed());

    // No secret in any argv or journal, on any VM.
    let token_secret = secrets.token.secret().to_string();
    for vm in ["master1", "minion1", "minion2"] {
        let argv = c.ssh(
            vm,
            "sudo sh -c 'for f in /proc/[0-9]*/cmdline; do tr \"\\0\" \" \" < $f; echo; done'",
        )?;
        ensure!(
            !argv.contains(&token_secret),
            "{vm}: the bootstrap token is in a process's argv"
        );
        ensure!(
            !argv.contains("PRIVATE KEY"),
            "{vm}: a private key is in a process's argv"
        );
        let hits = c.ssh(vm, &format!("sudo journalctl -b --no-pager | grep -c -e '{token_secret}' -e 'PRIVATE KEY' || true"))?;
        ensure!(
            hits.trim() == "0",
            "{vm}: secrets in the journal ({} lines)",
            hits.trim()
        );
    }

    // A minion with a wrong token never joins and says why.
    let wrong = format!("{}.{}", secrets.token.id(), "0000000000000000");
    c.launch(spec(
        "minion3",
        Role::Minion,
        user_data(secrets, Role::Minion, Some(&wrong))?,
    ))?;
    c.wait_ssh("minion3", WAIT)?;
    let why = wait_until(
        "minion3 reports the rejected token",
        WAIT,
        Duration::from_secs(5),
        || {
            let s = c.ssh("minion3", "sudo /usr/local/bin/rolectl status 2>&1 || true")?;
            Ok(s.contains("rejected").then_some(s))
        },
    )?;
    eprintln!("minion3 rolectl status:\n{why}");
    let j = c.ssh(
        "minion3",
        "sudo journalctl -b --no-pager -u kubelet | tail -n 20",
    )?;
    ensure!(
        j.contains("rejected") || j.contains("Unauthorized"),
        "minion3 journal: {j}"
    );
    ensure!(
        !node_ready(c)?.iter().any(|(n, _)| n == "minion3"),
        "minion3 registered with a wrong token"
    );
    c.stop_vm("minion3", Duration::from_secs(30))?;

    // A rebooted minion keeps its identity: no second CSR.
    let csr_count = |c: &Cluster| -> Result<usize> {
        let v: serde_json::Value = serde_json::from_str(&kubectl(c, "get csr -o json")?)?;
        Ok(v["items"].as_array().map_or(0, Vec::len))
    };
    let before = csr_count(c)?;
    let cert = c.ssh(
        "minion1",
        "sudo sha256sum /var/lib/kubelet/pki/kubelet-client-current.pem",
    )?;
    let _ = c.ssh("minion1", "sudo systemctl reboot");
    std::thread::sleep(Duration::from_secs(20));
    c.wait_ssh("minion1", WAIT)?;
    wait_until(
        "minion1 Ready after reboot",
        WAIT,
        Duration::from_secs(5),
        || {
            let kubelet = active(c, "minion1", "kubelet.service").unwrap_or_default();
            let nodes = node_ready(c).unwrap_or_default();
            Ok(
                (kubelet == "active" && nodes.iter().any(|(n, r)| n == "minion1" && *r))
                    .then_some(()),
            )
        },
    )?;
    ensure!(csr_count(c)? == before, "a second bootstrap after reboot");
    let after = c.ssh(
        "minion1",
        "sudo sha256sum /var/lib/kubelet/pki/kubelet-client-current.pem",
    )?;
    ensure!(
        cert == after,
        "minion1's client certificate changed across the reboot"
    );
    h::report("whole scenario", t0.elapsed());
    Ok(())
}
