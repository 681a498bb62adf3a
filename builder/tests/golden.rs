//! Golden tests: every file both shipped definitions render (units, role
//! drop-ins, sysctl.d, modules-load.d, files) is compared with the checked-in
//! copy under tests/golden/<definition>/<path in the image>. After an
//! intended template change, regenerate with
//! `KUBEBAKE_UPDATE_GOLDEN=1 cargo test -p kubebake --test golden` and review
//! the diff.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::repo_root;
use kubebake::definition::{self, LoadOptions};
use kubebake::render;

fn golden_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

fn files_under(dir: &Path) -> BTreeSet<String> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| format!("/{}", e.path().strip_prefix(dir).expect("prefix").display()))
        .collect()
}

fn check(definition_file: &str) {
    let def = definition::load(
        &repo_root().join("images").join(definition_file),
        &LoadOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{definition_file}: {e}"));
    let rendered = render::render_all(&def).expect("render");
    render::check_role_conditions(&def, &rendered).expect("role proof");
    let dir = golden_dir(&def.name);
    let update = std::env::var_os("KUBEBAKE_UPDATE_GOLDEN").is_some();
    if update {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let mut mismatches = Vec::new();
    for f in &rendered {
        let golden = dir.join(f.path.relative());
        if update {
            std::fs::create_dir_all(golden.parent().expect("parent")).expect("mkdir");
            std::fs::write(&golden, &f.content).expect("write golden");
            continue;
        }
        match std::fs::read_to_string(&golden) {
            Ok(want) if want == f.content => {}
            Ok(want) => mismatches.push(format!(
                "{}: rendered output differs from {}\n--- golden\n{want}\n--- rendered\n{}",
                f.path.as_str(),
                golden.display(),
                f.content
            )),
            Err(_) => mismatches.push(format!(
                "{}: no golden file {}",
                f.path.as_str(),
                golden.display()
            )),
        }
    }
    let rendered_paths: BTreeSet<String> = rendered
        .iter()
        .map(|f| f.path.as_str().to_string())
        .collect();
    for stale in files_under(&dir).difference(&rendered_paths) {
        mismatches.push(format!("{stale}: golden file no longer rendered"));
    }
    assert!(
        mismatches.is_empty(),
        "{} golden mismatches for {definition_file} (KUBEBAKE_UPDATE_GOLDEN=1 regenerates):\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

#[test]
fn offline_definition_renders_as_golden() {
    check("k8s-node-offline.yaml");
}

#[test]
fn production_definition_renders_as_golden() {
    check("k8s-node.yaml");
}

#[test]
fn role_dropins_carry_their_role_condition() {
    let def = definition::load(
        &repo_root().join("images/k8s-node-offline.yaml"),
        &LoadOptions::default(),
    )
    .expect("load");
    let rendered = render::render_all(&def).expect("render");
    let find = |p: &str| {
        rendered
            .iter()
            .find(|f| f.path.as_str() == p)
            .map(|f| f.content.clone())
    };
    let etcd = find("/etc/systemd/system/etcd.service.d/role.conf").expect("etcd role.conf");
    assert!(etcd.contains("ConditionPathExists=/etc/sysconfig/kubernetes-master"));
    assert!(etcd.contains("EnvironmentFile=/etc/sysconfig/kubernetes-master"));
    assert!(
        !etcd.contains("wait-master"),
        "masters do not wait for themselves"
    );
    let docker = find("/etc/systemd/system/docker.service.d/role.conf").expect("docker role.conf");
    assert!(docker.contains("ConditionPathExists=/etc/sysconfig/kubernetes-minion"));
    assert!(docker.contains("After=rolectl.service"));
    // The runtimes do not wait for the master; the units that talk to it do.
    assert!(!docker.contains("ExecStartPre"));
    assert!(find("/etc/systemd/system/containerd.service.d/wait-master.conf").is_none());
    // kube-proxy retries the API server itself: one kubectl poller less.
    assert!(find("/etc/systemd/system/kube-proxy.service.d/wait-master.conf").is_none());
    let wait = find("/etc/systemd/system/kubelet.service.d/wait-master.conf")
        .expect("kubelet wait-master.conf");
    assert!(wait.contains(
        "ExecStartPre=/usr/local/bin/rolectl wait-master --kubeconfig /etc/kubernetes/kubelet.conf --kubeconfig /etc/kubernetes/bootstrap-kubelet.conf --timeout 900"
    ));
    assert!(!wait.contains("bash -c"));
    // weave talks to its peers, not to the API server: it waits for the
    // master's name only.
    assert!(find("/etc/systemd/system/weave.service.d/wait-master.conf").is_none());
    let wait = find("/etc/systemd/system/weave.service.d/wait-master-dns.conf")
        .expect("weave wait-master-dns.conf");
    assert!(wait
        .contains("ExecStartPre=/usr/local/bin/rolectl wait-master --resolve-only --timeout 900"));
    // Role activation runs before sysinit.target and cloud-init.
    let rolectl = find("/etc/systemd/system/rolectl.service").expect("rolectl.service");
    assert!(rolectl.contains("DefaultDependencies=no"));
    assert!(!rolectl.contains("After=cloud-init.service"));
    let check = find("/etc/systemd/system/rolectl-cloud-init.service").expect("check unit");
    assert!(check.contains("After=cloud-init.service rolectl.service"));
    assert!(check.contains("ExecStart=/usr/local/bin/rolectl activate --cloud-init"));
    assert!(find("/etc/systemd/system/rolectl.service.d/role.conf").is_none());
    let sysctl = find("/etc/sysctl.d/90-kubernetes.conf").expect("sysctl.d");
    assert!(sysctl.contains("net.bridge.bridge-nf-call-iptables = 1"));
    let modules = find("/etc/modules-load.d/kubernetes.conf").expect("modules-load.d");
    assert_eq!(
        modules
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>(),
        ["overlay", "br_netfilter"]
    );
}

/// One set of templates, two Kubernetes versions: flags a version removed are
/// never rendered for it.
#[test]
fn version_conditionals_follow_kubernetes_version() {
    let render = |file: &str| {
        let def = definition::load(
            &repo_root().join("images").join(file),
            &LoadOptions::default(),
        )
        .expect("load");
        render::render_all(&def).expect("render")
    };
    // The rendered file without its comment lines.
    let get = |files: &[render::RenderedFile], p: &str| {
        files
            .iter()
            .find(|f| f.path.as_str() == p)
            .map(|f| {
                f.content
                    .lines()
                    .filter(|l| !l.trim_start().starts_with('#'))
                    .map(|l| format!("{l}\n"))
                    .collect::<String>()
            })
            .unwrap_or_else(|| panic!("{p} not rendered"))
    };
    let v120 = render("k8s-node-offline.yaml");
    let v136 = render("k8s-node.yaml");
    let kubelet = "/etc/systemd/system/kubelet.service";
    let kcm = "/etc/systemd/system/kube-controller-manager.service";
    let sched = "/etc/systemd/system/kube-scheduler.service";
    let kcfg = "/etc/kubernetes/kubelet-config.yaml";

    let k = get(&v120, kubelet);
    assert!(k.contains("--container-runtime=remote"));
    assert!(k.contains("--pod-infra-container-image=localhost/kubebake/pause:1.20.2"));
    assert!(!k.contains("--network-plugin"));
    assert!(!get(&v120, kcfg).contains("containerRuntimeEndpoint"));
    assert!(get(&v120, kcm).contains("  --port=0 \\\n"));
    assert!(get(&v120, "/etc/kubernetes/kube-scheduler-config.yaml")
        .contains("healthzBindAddress: 127.0.0.1:10251"));
    assert!(!get(&v136, "/etc/kubernetes/kube-scheduler-config.yaml").contains("BindAddress"));

    let k = get(&v136, kubelet);
    for gone in [
        "--container-runtime",
        "--pod-infra-container-image",
        "--network-plugin",
    ] {
        assert!(!k.contains(gone), "v1.36 kubelet must not get {gone}");
    }
    assert!(get(&v136, kcfg)
        .contains("containerRuntimeEndpoint: unix:///run/containerd/containerd.sock"));
    for unit in [kcm, sched, "/etc/systemd/system/kube-apiserver.service"] {
        let u = get(&v136, unit);
        assert!(!u.contains("--port="), "{unit}");
        assert!(!u.contains("--address="), "{unit}");
        assert!(!u.contains("--insecure-port"), "{unit}");
    }
    assert!(get(&v136, "/etc/systemd/system/kube-bootstrap.service")
        .contains("--kubeconfig=/etc/kubernetes/super-admin.conf"));
    assert!(get(&v120, "/etc/systemd/system/kube-bootstrap.service")
        .contains("--kubeconfig=/etc/kubernetes/admin.conf"));
    assert!(
        get(&v120, "/etc/systemd/system/kube-pki.service").contains("--kubernetes-version=v1.20.2")
    );
    assert!(!get(&v120, "/etc/systemd/system/kube-pki.service")
        .contains("phase kubeconfig super-admin"));
    assert!(get(&v136, "/etc/systemd/system/kube-pki.service")
        .contains("init phase kubeconfig super-admin"));

    // containerd's Go template survives handlebars untouched.
    let tmpl = get(&v120, "/etc/containerd/cni-bridge.conflist.tmpl");
    assert!(tmpl.contains(r#""subnet": "{{.PodCIDR}}""#), "{tmpl}");
    assert!(!tmpl.contains("raw"), "{tmpl}");

    // etcd is reachable on loopback only.
    for files in [&v120, &v136] {
        let etcd = get(files, "/etc/systemd/system/etcd.service");
        assert!(!etcd.contains("0.0.0.0"), "{etcd}");
    }
}
