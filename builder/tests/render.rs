#![allow(clippy::unwrap_used)]
//! Renderer and role-condition proof tests; templates live in temp dirs.

use std::fs;

use kubebake::definition::{self, Definition, LoadOptions};
use kubebake::render::{check_role_conditions, render_all, RenderError, RenderedFile, Renderer};

const DEF: &str = r#"
name: node
version: "2.0"
base: { suite: bookworm, mirror: http://deb.debian.org/debian }
units:
  - name: etcd.service
    role: master
    dropins: [tuning.conf]
  - name: kubelet.service
    role: minion
  - name: rolectl.service
sysctl:
  90-k8s.conf:
    net.ipv4.ip_forward: "1"
    net.bridge.bridge-nf-call-iptables: "1"
modules-load:
  k8s.conf: [overlay, br_netfilter]
files:
  - path: /etc/kubebake/release
    mode: "0600"
    content: "{{image.name}}-{{image.version}} domain={{cluster_domain}} <&>\n"
variables:
  cluster_domain: k8s.local
outputs: { raw: true, disk-size: 2GiB }
"#;

const ROLE_DROPIN: &str = "[Unit]\nConditionPathExists={{marker}}\n";

struct Fx {
    dir: tempfile::TempDir,
}

impl Fx {
    fn new() -> Fx {
        let dir = tempfile::tempdir().unwrap();
        for d in ["images", "units", "dropins"] {
            fs::create_dir(dir.path().join(d)).unwrap();
        }
        let fx = Fx { dir };
        fx.unit(
            "etcd.service",
            "[Unit]\nDescription=etcd for {{image.name}} ({{role}})\n[Service]\nExecStart=/usr/local/bin/etcd --name {{unit}}\n",
        );
        fx.unit(
            "kubelet.service",
            "[Unit]\nDescription=kubelet in {{cluster_domain}}\n",
        );
        fx.unit(
            "rolectl.service",
            "[Unit]\nDescription=rolectl {{#if role}}BAD{{/if}}\n",
        );
        fx.dropin("role-master.conf", ROLE_DROPIN);
        fx.dropin("role-minion.conf", ROLE_DROPIN);
        fx.dropin("tuning.conf", "[Service]\nNice=-5\n");
        fx
    }

    fn unit(&self, name: &str, text: &str) {
        fs::write(self.dir.path().join(format!("units/{name}.hbs")), text).unwrap();
    }

    fn dropin(&self, name: &str, text: &str) {
        fs::write(self.dir.path().join(format!("dropins/{name}.hbs")), text).unwrap();
    }

    fn def(&self, yaml: &str) -> Definition {
        let p = self.dir.path().join("images/node.yaml");
        fs::write(&p, yaml).unwrap();
        definition::load(&p, &LoadOptions::default()).unwrap()
    }
}

fn find<'a>(files: &'a [RenderedFile], path: &str) -> &'a RenderedFile {
    files
        .iter()
        .find(|f| f.path.as_str() == path)
        .unwrap_or_else(|| panic!("{path} not rendered"))
}

#[test]
fn renders_everything_with_context() {
    let fx = Fx::new();
    let def = fx.def(DEF);
    let files = render_all(&def).unwrap();
    let etcd = find(&files, "/etc/systemd/system/etcd.service");
    assert_eq!(
        etcd.content,
        "[Unit]\nDescription=etcd for node (master)\n[Service]\nExecStart=/usr/local/bin/etcd --name etcd.service\n"
    );
    assert_eq!(etcd.mode, 0o644);
    assert_eq!(
        find(&files, "/etc/systemd/system/etcd.service.d/role.conf").content,
        "[Unit]\nConditionPathExists=/etc/sysconfig/kubernetes-master\n"
    );
    assert_eq!(
        find(&files, "/etc/systemd/system/kubelet.service.d/role.conf").content,
        "[Unit]\nConditionPathExists=/etc/sysconfig/kubernetes-minion\n"
    );
    assert_eq!(
        find(&files, "/etc/systemd/system/etcd.service.d/tuning.conf").content,
        "[Service]\nNice=-5\n"
    );
    // Shared unit: no role, no marker, no role drop-in.
    assert_eq!(
        find(&files, "/etc/systemd/system/rolectl.service").content,
        "[Unit]\nDescription=rolectl \n"
    );
    assert!(!files
        .iter()
        .any(|f| f.path.as_str() == "/etc/systemd/system/rolectl.service.d/role.conf"));
    // Inline file template, no HTML escaping.
    let rel = find(&files, "/etc/kubebake/release");
    assert_eq!(rel.content, "node-2.0 domain=k8s.local <&>\n");
    assert_eq!(rel.mode, 0o600);
    // sysctl sorted, modules one per line.
    assert_eq!(
        find(&files, "/etc/sysctl.d/90-k8s.conf").content,
        "net.bridge.bridge-nf-call-iptables = 1\nnet.ipv4.ip_forward = 1\n"
    );
    assert_eq!(
        find(&files, "/etc/modules-load.d/k8s.conf").content,
        "overlay\nbr_netfilter\n"
    );
    check_role_conditions(&def, &files).unwrap();
}

#[test]
fn extra_dropin_api_strips_hbs() {
    let fx = Fx::new();
    let def = fx.def(DEF);
    let r = Renderer::new(&def).unwrap();
    let f = r
        .render_extra_dropin(&def.units[0], "tuning.conf.hbs")
        .unwrap();
    assert_eq!(
        f.path.as_str(),
        "/etc/systemd/system/etcd.service.d/tuning.conf"
    );
}

#[test]
fn missing_variable_names_template_and_variable() {
    let fx = Fx::new();
    fx.unit(
        "kubelet.service",
        "[Service]\nExecStart=/kubelet --dns {{cluster_dns}}\n",
    );
    let def = fx.def(DEF);
    let err = render_all(&def).unwrap_err();
    assert!(matches!(err, RenderError::MissingVariable { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("units/kubelet.service.hbs"), "{msg}");
    assert!(msg.contains("cluster_dns"), "{msg}");
}

#[test]
fn marker_is_absent_for_shared_units() {
    let fx = Fx::new();
    fx.unit(
        "rolectl.service",
        "[Unit]\nConditionPathExists={{marker}}\n",
    );
    let def = fx.def(DEF);
    let msg = render_all(&def).unwrap_err().to_string();
    assert!(
        msg.contains("units/rolectl.service.hbs") && msg.contains("marker"),
        "{msg}"
    );
}

#[test]
fn missing_variable_in_inline_file() {
    let fx = Fx::new();
    let def = fx.def(&DEF.replace("{{cluster_domain}}", "{{nope}}"));
    let msg = render_all(&def).unwrap_err().to_string();
    assert!(
        msg.contains("/etc/kubebake/release") && msg.contains("nope"),
        "{msg}"
    );
}

#[test]
fn template_syntax_error_names_file() {
    let fx = Fx::new();
    fx.dropin("tuning.conf", "{{#if x}}unclosed\n");
    let def = fx.def(DEF);
    let msg = Renderer::new(&def).err().unwrap().to_string();
    assert!(msg.contains("dropins/tuning.conf.hbs"), "{msg}");
}

fn role_check(fx: &Fx) -> String {
    let def = fx.def(DEF);
    let files = render_all(&def).unwrap();
    check_role_conditions(&def, &files).unwrap_err().to_string()
}

#[test]
fn role_unit_missing_condition() {
    let fx = Fx::new();
    fx.dropin(
        "role-minion.conf",
        "[Unit]\nDescription=no condition here\n",
    );
    let msg = role_check(&fx);
    assert!(
        msg.contains("kubelet.service") && msg.contains("found 0"),
        "{msg}"
    );
    assert!(
        msg.contains("/etc/systemd/system/kubelet.service.d/role.conf"),
        "{msg}"
    );
    assert!(!msg.contains("etcd.service"), "{msg}");
}

#[test]
fn shared_unit_with_condition() {
    let fx = Fx::new();
    fx.unit(
        "rolectl.service",
        "[Unit]\nConditionPathExists=!/etc/sysconfig/kubernetes-master\n",
    );
    let msg = role_check(&fx);
    assert!(msg.contains("shared unit rolectl.service"), "{msg}");
    assert!(msg.contains("/etc/systemd/system/rolectl.service"), "{msg}");
}

#[test]
fn shared_unit_gated_on_every_roles_marker() {
    let fx = Fx::new();
    let both = "[Unit]\nConditionPathExists=|/etc/sysconfig/kubernetes-master\nConditionPathExists=|/etc/sysconfig/kubernetes-minion\n";
    fx.unit("rolectl.service", both);
    let def = fx.def(DEF);
    let files = render_all(&def).unwrap();
    check_role_conditions(&def, &files).expect("any role: one triggering condition per role");
    // One role's marker alone, as a trigger, is still a role gate.
    fx.unit(
        "rolectl.service",
        "[Unit]\nConditionPathExists=|/etc/sysconfig/kubernetes-minion\n",
    );
    let msg = role_check(&fx);
    assert!(msg.contains("shared unit rolectl.service"), "{msg}");
    assert!(msg.contains("every role's marker"), "{msg}");
}

#[test]
fn role_unit_with_two_conditions() {
    let fx = Fx::new();
    fx.unit(
        "etcd.service",
        "[Unit]\nConditionPathExists=/etc/sysconfig/kubernetes-master\n",
    );
    let msg = role_check(&fx);
    assert!(
        msg.contains("etcd.service") && msg.contains("found 2"),
        "{msg}"
    );
}

#[test]
fn role_unit_with_other_roles_marker() {
    let fx = Fx::new();
    fx.dropin(
        "tuning.conf",
        "[Unit]\nConditionPathExists=/etc/sysconfig/kubernetes-minion\n",
    );
    let msg = role_check(&fx);
    assert!(
        msg.contains("etcd.service") && msg.contains("role minion's marker"),
        "{msg}"
    );
    assert!(msg.contains("tuning.conf"), "{msg}");
}

#[test]
fn empty_assignment_resets_conditions() {
    let fx = Fx::new();
    // zz sorts after role.conf, so its reset wipes the role condition.
    fx.dropin("zz-reset.conf", "[Unit]\nConditionPathExists=\n");
    let def = fx.def(&DEF.replace(
        "dropins: [tuning.conf]",
        "dropins: [tuning.conf, zz-reset.conf]",
    ));
    let files = render_all(&def).unwrap();
    let msg = check_role_conditions(&def, &files).unwrap_err().to_string();
    assert!(
        msg.contains("etcd.service") && msg.contains("found 0"),
        "{msg}"
    );
}

#[test]
fn condition_outside_unit_section_does_not_count() {
    let fx = Fx::new();
    fx.dropin(
        "role-master.conf",
        "[Service]\nConditionPathExists={{marker}}\n",
    );
    let msg = role_check(&fx);
    assert!(
        msg.contains("etcd.service") && msg.contains("found 0"),
        "{msg}"
    );
}

#[test]
fn partial_is_included_with_the_unit_context() {
    let fx = Fx::new();
    fs::create_dir(fx.dir.path().join("units/partials")).unwrap();
    fs::write(
        fx.dir.path().join("units/partials/wait.hbs"),
        "ExecStartPre=/bin/wait-for {{cluster_domain}}\n",
    )
    .unwrap();
    fx.unit(
        "etcd.service",
        "[Service]\n{{> wait}}\nExecStart=/usr/local/bin/etcd\n",
    );
    let def = fx.def(DEF);
    let files = render_all(&def).unwrap();
    let etcd = files
        .iter()
        .find(|f| f.path.as_str() == "/etc/systemd/system/etcd.service")
        .unwrap();
    assert_eq!(
        etcd.content,
        "[Service]\nExecStartPre=/bin/wait-for k8s.local\nExecStart=/usr/local/bin/etcd\n"
    );
}

#[test]
fn missing_partial_names_the_template_and_the_partial() {
    let fx = Fx::new();
    fx.unit("etcd.service", "[Service]\n{{> nowhere}}\n");
    let def = fx.def(DEF);
    let msg = render_all(&def).unwrap_err().to_string();
    assert!(
        msg.contains("units/etcd.service.hbs") && msg.contains("nowhere"),
        "{msg}"
    );
}
