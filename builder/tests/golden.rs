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
fn source_definition_renders_as_golden() {
    check("k8s-node-source.yaml");
}

#[test]
fn production_definition_renders_as_golden() {
    check("k8s-node.yaml");
}

#[test]
fn role_dropins_carry_their_role_condition() {
    let def = definition::load(
        &repo_root().join("images/k8s-node-source.yaml"),
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
    // kube-proxy retries the API server itself (no kubectl poller): it
    // waits only for the node's own credential, the kubelet's kubelet.conf.
    assert!(find("/etc/systemd/system/kube-proxy.service.d/wait-master.conf").is_none());
    let proxy = find("/etc/systemd/system/kube-proxy.service").expect("kube-proxy.service");
    assert!(proxy.contains(
        "ExecStartPre=/usr/local/bin/rolectl wait-master --node-kubeconfig /etc/kubernetes/kubelet.conf --timeout 900\n"
    ));
    assert!(proxy.contains("After=network-online.target kubelet.service\n"));
    assert!(proxy.contains("TimeoutStartSec=1200\n") && proxy.contains("Restart=always\n"));
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

fn render_definition(file: &str) -> Vec<render::RenderedFile> {
    let def = definition::load(
        &repo_root().join("images").join(file),
        &LoadOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{file}: {e}"));
    render::render_all(&def).expect("render")
}

/// The rendered file without its comment lines.
fn uncommented(files: &[render::RenderedFile], p: &str) -> String {
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
}

/// Both definitions carry the same binaries at the same paths: every file
/// they render is the same, byte for byte.
#[test]
fn both_definitions_render_the_same_files() {
    let offline = render_definition("k8s-node-source.yaml");
    let production = render_definition("k8s-node.yaml");
    let paths = |files: &[render::RenderedFile]| {
        files
            .iter()
            .map(|f| f.path.as_str().to_string())
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(paths(&offline), paths(&production));
    for f in &offline {
        let other = production
            .iter()
            .find(|g| g.path == f.path)
            .expect("same paths");
        assert_eq!(
            (f.mode, &f.content),
            (other.mode, &other.content),
            "{} differs between the definitions",
            f.path.as_str()
        );
    }
}

/// Kubernetes v1.36 forms only: flags and fields older releases needed, or
/// that later ones removed, are never rendered.
#[test]
fn kubernetes_v136_forms() {
    for file in ["k8s-node-source.yaml", "k8s-node.yaml"] {
        let files = render_definition(file);
        let get = |p: &str| uncommented(&files, p);
        let k = get("/etc/systemd/system/kubelet.service");
        for gone in [
            "--container-runtime",
            "--pod-infra-container-image",
            "--network-plugin",
        ] {
            assert!(!k.contains(gone), "{file}: kubelet must not get {gone}");
        }
        assert!(get("/etc/kubernetes/kubelet-config.yaml")
            .contains("containerRuntimeEndpoint: unix:///run/containerd/containerd.sock"));
        let sched = get("/etc/kubernetes/kube-scheduler-config.yaml");
        assert!(
            sched.contains("apiVersion: kubescheduler.config.k8s.io/v1\n"),
            "{sched}"
        );
        assert!(!sched.contains("BindAddress"), "{sched}");
        for unit in [
            "kube-controller-manager.service",
            "kube-scheduler.service",
            "kube-apiserver.service",
        ] {
            let u = get(&format!("/etc/systemd/system/{unit}"));
            assert!(!u.contains("--port="), "{file}: {unit}");
            assert!(!u.contains("--address="), "{file}: {unit}");
            assert!(!u.contains("--insecure-port"), "{file}: {unit}");
        }
        // Every default controller, plus tokencleaner (no bootstrapsigner:
        // the tokens carry no signing usage).
        assert!(get("/etc/systemd/system/kube-controller-manager.service")
            .contains("  --controllers=*,tokencleaner \\\n"));
        assert!(get("/etc/systemd/system/kube-bootstrap.service")
            .contains("--kubeconfig=/etc/kubernetes/super-admin.conf"));
        let pki = get("/etc/systemd/system/kube-pki.service");
        assert!(pki.contains("--kubernetes-version=v1.36."), "{pki}");
        assert!(pki.contains("init phase kubeconfig super-admin"), "{pki}");

        // containerd 2.x: config version 3, the pause image as the pinned
        // sandbox image, no CNI template: Weave writes the network config.
        let toml = get("/etc/containerd/config.toml");
        assert!(toml.starts_with("version = 3\n"), "{toml}");
        assert!(!toml.contains("io.containerd.grpc.v1.cri"), "{toml}");
        assert!(
            toml.contains("sandbox = 'localhost/kubebake/pause:"),
            "{toml}"
        );
        assert!(!toml.contains("conf_template"), "{toml}");

        // Weave Net on every node with a role, launched by rolectl, its CNI
        // config written by Weave's own script once the router answers.
        let weave = uncommented(&files, "/etc/systemd/system/weave.service");
        assert!(
            weave.contains("ExecStart=/usr/local/bin/rolectl weave\n"),
            "{weave}"
        );
        assert!(!weave.contains("--dry-run"), "{weave}");
        assert!(
            weave.contains("ExecStartPost=/usr/local/bin/weave --local setup-cni"),
            "{weave}"
        );
        assert!(weave.contains("ConditionPathExists=|/etc/sysconfig/kubernetes-master"));
        assert!(weave.contains("ConditionPathExists=|/etc/sysconfig/kubernetes-minion"));
        assert!(!get("/etc/systemd/system/kube-controller-manager.service")
            .contains("--allocate-node-cidrs=true"));
        let proxy = get("/etc/kubernetes/kube-proxy-config.yaml");
        assert!(proxy.contains("bridgeInterface: weave"), "{proxy}");
        // kube-proxy is the node itself (its kubelet's credential), with
        // the built-in proxier role bound to the nodes' group.
        assert!(
            proxy.contains("  kubeconfig: /etc/kubernetes/kubelet.conf\n"),
            "{proxy}"
        );
        let rbac = get("/etc/kubernetes/bootstrap/rbac-node-bootstrap.yaml");
        let binding = rbac
            .split("\n---\n")
            .find(|d| d.contains("name: kubebake:node-proxier\n"))
            .unwrap_or_else(|| panic!("{file}: no kubebake:node-proxier binding:\n{rbac}"));
        assert!(
            binding.contains("name: \"system:node-proxier\"}"),
            "{binding}"
        );
        assert!(
            binding.contains("kind: Group, name: \"system:nodes\"}"),
            "{binding}"
        );
        assert!(!rbac.contains("system:kube-proxy"), "{rbac}");

        // Cluster DNS by kubeadm's addon phase, with the baked image.
        let bootstrap = get("/etc/systemd/system/kube-bootstrap.service");
        assert!(
            bootstrap.contains("init phase addon coredns"),
            "{bootstrap}"
        );
        let addons = get("/etc/kubernetes/kubeadm-addons.yaml");
        assert!(addons.contains("kubernetesVersion: v1.36."), "{addons}");
        assert!(
            addons.contains("imageRepository: localhost/kubebake"),
            "{addons}"
        );

        // etcd 3.6: reachable on loopback only, no v2 API.
        let etcd = get("/etc/systemd/system/etcd.service");
        assert!(!etcd.contains("0.0.0.0"), "{etcd}");
        assert!(!etcd.contains("--enable-v2"), "{etcd}");
        assert!(etcd.contains("ExecStart=/usr/local/bin/etcd "), "{etcd}");
        assert!(get("/etc/sysusers.d/etcd.conf").contains("u etcd "));

        // Everything the units run is in /usr/local (docker aside): none
        // of Debian's containerd/runc/etcd binaries.
        for f in files
            .iter()
            .filter(|f| f.path.as_str().starts_with("/etc/systemd/system/"))
        {
            let u = uncommented(&files, f.path.as_str());
            for debian in [
                "/usr/bin/containerd",
                "/usr/bin/ctr",
                "/usr/bin/etcd",
                "/usr/sbin/runc",
            ] {
                assert!(
                    !u.contains(debian),
                    "{file}: {} runs {debian}",
                    f.path.as_str()
                );
            }
        }
    }
}

/// One version of everything, two ways to get it: every release artifact of
/// the production definition has the version of the tested definition's Go
/// build that makes the same binaries, and the Kubernetes build both
/// definitions share is the same build (module directory, toolchain, tags,
/// flags and stamps).
#[test]
fn both_definitions_carry_the_same_versions() {
    let load = |file: &str| {
        definition::load(
            &repo_root().join("images").join(file),
            &LoadOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{file}: {e}"))
    };
    let source = load("k8s-node-source.yaml");
    let production = load("k8s-node.yaml");
    // Every file a production artifact installs is installed by a Go build
    // of the tested definition at the artifact's version.
    for a in &production.artifacts {
        for path in a.install.paths() {
            let b = source
                .builds
                .iter()
                .find(|b| {
                    b.outputs
                        .iter()
                        .any(|o| o.install.as_ref().map(|(p, _)| p) == Some(path))
                })
                .unwrap_or_else(|| {
                    panic!(
                        "{}: no build of the tested definition installs {}",
                        a.name,
                        path.as_str()
                    )
                });
            assert!(
                matches!(b.kind, definition::BuildKind::Go(_)),
                "{} comes from a Go module",
                b.name
            );
            assert_eq!(
                a.version,
                b.version,
                "{} ({}) vs build {}",
                a.name,
                path.as_str(),
                b.name
            );
        }
    }
    let k8s = |d: &definition::Definition| d.build("kubernetes").expect("kubernetes").clone();
    let (s, p) = (k8s(&source), k8s(&production));
    assert_eq!(s.version, p.version);
    assert_eq!(s.kind, p.kind, "the kubernetes Go builds differ");
    assert_eq!(
        source.kubernetes_version.map(|v| v.to_string()),
        Some(s.version.clone())
    );
    assert_eq!(source.kubernetes_version, production.kubernetes_version);
    assert_eq!(source.base.packages, production.base.packages);
    assert_eq!(source.container_images, production.container_images);
}
