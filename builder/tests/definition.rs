#![allow(clippy::unwrap_used)]

//! Definition parsing and validation: one test per rule, each asserting the
//! field path appears in the error.

use std::fs;
use std::path::{Path, PathBuf};

use kubebake::definition::{self, Definition, DefinitionError, Install, LoadOptions, Role};
use kubebake::digest::Digest;

const SHA: &str = "d857e1ebbf5d3ea1a6a3c1b2a4f0e6c1a0b3c2d4e5f60718293a4b5c6d7e8f90";

const VALID: &str = r#"
name: k8s-node-source
version: "0.1.0"
base:
  suite: bookworm
  mirror: http://deb.debian.org/debian
  packages:
    - linux-image-cloud-amd64
    - docker.io=20.10.24+dfsg1-1+deb12u1+b6
artifacts:
  - name: kubelet
    version: "1.36.0"
    url: https://dl.k8s.io/release/v1.36.0/bin/linux/amd64/kubelet
    sha256: d857e1ebbf5d3ea1a6a3c1b2a4f0e6c1a0b3c2d4e5f60718293a4b5c6d7e8f90
    install:
      binary: { path: /usr/local/bin/kubelet, mode: "0755" }
  - name: cni-plugins
    version: "1.9.1"
    url: https://github.com/containernetworking/plugins/releases/download/v1.9.1/cni-plugins-linux-amd64-v1.9.1.tgz
    sha512: 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff
    install:
      archive:
        - { member: ./loopback, path: /opt/cni/bin/loopback, mode: "0755" }
        - { member: ./bridge, path: /opt/cni/bin/bridge, mode: "755" }
units:
  - name: etcd.service
    role: master
    dropins: [etcd-tuning.conf]
  - name: kubelet.service
    role: minion
  - name: rolectl.service
mask: [docker.socket]
sysctl:
  90-kubernetes.conf:
    net.ipv4.ip_forward: "1"
    net.bridge.bridge-nf-call-iptables: 1
modules-load:
  kubernetes.conf: [overlay, br_netfilter]
files:
  - { path: /etc/docker/daemon.json, mode: "0644", content: "{\"dns\": [\"{{dns}}\"]}" }
links:
  - { path: /opt/cni/bin/host-local, target: /usr/lib/cni/host-local }
variables:
  cluster_domain: k8s
  dns: "10.0.0.10"
outputs:
  raw: true
  qcow2: false
  disk-size: 4GiB
"#;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for d in ["images", "units", "dropins"] {
            fs::create_dir(dir.path().join(d)).unwrap();
        }
        for u in ["etcd.service", "kubelet.service", "rolectl.service"] {
            fs::write(dir.path().join(format!("units/{u}.hbs")), "[Unit]\n").unwrap();
        }
        for d in [
            "role-master.conf.hbs",
            "role-minion.conf.hbs",
            "etcd-tuning.conf.hbs",
        ] {
            fs::write(dir.path().join("dropins").join(d), "[Unit]\n").unwrap();
        }
        Fixture { dir }
    }

    fn def_path(&self) -> PathBuf {
        self.dir.path().join("images/test.yaml")
    }

    fn load_opts(&self, yaml: &str, opts: &LoadOptions) -> Result<Definition, DefinitionError> {
        fs::write(self.def_path(), yaml).unwrap();
        definition::load(&self.def_path(), opts)
    }

    fn load(&self, yaml: &str) -> Result<Definition, DefinitionError> {
        self.load_opts(yaml, &LoadOptions::default())
    }

    /// Loads `yaml`, expects failure, returns all error lines.
    fn errors(&self, yaml: &str) -> Vec<String> {
        match self.load(yaml) {
            Ok(_) => panic!("definition unexpectedly valid:\n{yaml}"),
            Err(e) => e.field_errors().iter().map(|e| e.to_string()).collect(),
        }
    }
}

/// Replaces `from` (which must occur) in the valid definition.
fn edit(from: &str, to: &str) -> String {
    assert!(VALID.contains(from), "fixture does not contain {from:?}");
    VALID.replacen(from, to, 1)
}

/// Asserts some error names `field` and contains every `needle`.
fn assert_error(errors: &[String], field: &str, needles: &[&str]) {
    let hit = errors
        .iter()
        .any(|e| e.contains(&format!(": {field}: ")) && needles.iter().all(|n| e.contains(n)));
    assert!(
        hit,
        "no error for field {field} containing {needles:?}; got:\n{}",
        errors.join("\n")
    );
}

#[test]
fn valid_definition_parses_into_model() {
    let fx = Fixture::new();
    let d = fx.load(VALID).unwrap();
    assert_eq!(d.name, "k8s-node-source");
    assert_eq!(d.version, "0.1.0");
    assert_eq!(d.data_root, fx.dir.path());
    assert_eq!(d.base.packages.len(), 2);
    assert_eq!(
        d.base.packages[1].version.as_deref(),
        Some("20.10.24+dfsg1-1+deb12u1+b6")
    );
    assert_eq!(
        d.artifacts[0].digest,
        format!("sha256:{SHA}").parse::<Digest>().unwrap()
    );
    match &d.artifacts[0].install {
        Install::Binary { path, mode } => {
            assert_eq!(path.as_str(), "/usr/local/bin/kubelet");
            assert_eq!(*mode, 0o755);
        }
        other => panic!("{other:?}"),
    }
    match &d.artifacts[1].install {
        Install::Archive(m) => {
            assert_eq!(m.len(), 2);
            assert_eq!(m[1].mode, 0o755);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(d.units[0].role, Some(Role::Master));
    assert_eq!(d.units[0].dropins, vec!["etcd-tuning.conf"]);
    assert_eq!(d.units[2].role, None);
    assert_eq!(
        Role::Minion.marker_path(),
        "/etc/sysconfig/kubernetes-minion"
    );
    assert_eq!(
        d.sysctl["90-kubernetes.conf"]["net.bridge.bridge-nf-call-iptables"],
        "1"
    );
    assert_eq!(
        d.modules_load["kubernetes.conf"],
        vec!["overlay", "br_netfilter"]
    );
    assert_eq!(d.files[0].mode, 0o644);
    assert_eq!(d.outputs.disk_size, 4 << 30);
    assert!(d.outputs.raw && !d.outputs.qcow2);
    // The model serializes (for --json and the manifest).
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["artifacts"][0]["digest"], format!("sha256:{SHA}"));
    assert_eq!(json["units"][0]["role"], "master");
}

#[test]
fn data_root_override() {
    let fx = Fixture::new();
    let other = tempfile::tempdir().unwrap();
    let opts = LoadOptions {
        data_root: Some(other.path().to_path_buf()),
        ..Default::default()
    };
    let errs = match fx.load_opts(VALID, &opts) {
        Ok(_) => panic!("empty data root must fail"),
        Err(e) => e.to_string(),
    };
    assert!(errs.contains("units[0].name"), "{errs}");
    assert!(errs.contains(&other.path().display().to_string()), "{errs}");
}

#[test]
fn unknown_key_top_level() {
    let fx = Fixture::new();
    let errs = fx.errors(&format!("{VALID}\nbogus: 1\n"));
    assert!(errs[0].contains("bogus"), "{errs:?}");
    assert!(errs[0].contains("test.yaml"), "{errs:?}");
}

#[test]
fn unknown_key_nested_names_path() {
    let fx = Fixture::new();
    let errs = fx.errors(&edit(
        "binary: { path: /usr/local/bin/kubelet, mode: \"0755\" }",
        "binary: { path: /usr/local/bin/kubelet, mode: \"0755\", owner: root }",
    ));
    assert_error(
        &errs,
        "artifacts[0].install.binary.owner",
        &["unknown field", "kebab-case"],
    );
}

#[test]
fn unknown_key_in_base() {
    let fx = Fixture::new();
    let errs = fx.errors(&edit(
        "  suite: bookworm",
        "  suite: bookworm\n  arch: amd64",
    ));
    assert_error(&errs, "base.arch", &["unknown field"]);
}

#[test]
fn missing_required_key() {
    let fx = Fixture::new();
    let errs = fx.errors(&edit("  suite: bookworm\n", ""));
    assert!(errs[0].contains("suite"), "{errs:?}");
}

#[test]
fn sha256_too_short() {
    let fx = Fixture::new();
    let errs = fx.errors(&edit(SHA, "abcd"));
    assert_error(
        &errs,
        "artifacts[0].sha256",
        &["expected 64 hex characters", "got 4"],
    );
}

#[test]
fn sha256_not_hex() {
    let fx = Fixture::new();
    let bad = format!("{}zz", &SHA[..62]);
    let errs = fx.errors(&edit(SHA, &bad));
    assert_error(&errs, "artifacts[0].sha256", &["hex"]);
}

#[test]
fn sha512_wrong_length() {
    let fx = Fixture::new();
    let errs = fx.errors(&edit("sha512: 0011", "sha512: 11"));
    assert_error(&errs, "artifacts[1].sha512", &["128"]);
}

#[test]
fn both_digests() {
    let fx = Fixture::new();
    let errs = fx.errors(&edit(
        &format!("sha256: {SHA}"),
        &format!("sha256: {SHA}\n    sha512: {SHA}{SHA}"),
    ));
    assert_error(&errs, "artifacts[0].sha512", &["exactly one"]);
}

#[test]
fn neither_digest() {
    let fx = Fixture::new();
    let errs = fx.errors(&edit(&format!("    sha256: {SHA}\n"), ""));
    assert_error(&errs, "artifacts[0]", &["no digest"]);
}

#[test]
fn bad_url_scheme() {
    let fx = Fixture::new();
    let errs = fx.errors(&edit(
        "https://dl.k8s.io/release/v1.36.0/bin/linux/amd64/kubelet",
        "ftp://example.com/kubelet",
    ));
    assert_error(&errs, "artifacts[0].url", &["ftp"]);
}

#[test]
fn unparseable_url() {
    let fx = Fixture::new();
    let errs = fx.errors(&edit(
        "https://dl.k8s.io/release/v1.36.0/bin/linux/amd64/kubelet",
        "not a url",
    ));
    assert_error(&errs, "artifacts[0].url", &["invalid URL"]);
}

#[test]
fn http_needs_flag() {
    let fx = Fixture::new();
    let yaml = edit("https://dl.k8s.io", "http://dl.k8s.io");
    let errs = fx.errors(&yaml);
    assert_error(&errs, "artifacts[0].url", &["--allow-insecure-urls"]);
    let opts = LoadOptions {
        allow_insecure_urls: true,
        ..Default::default()
    };
    fx.load_opts(&yaml, &opts).unwrap();
}

#[test]
fn file_url_needs_flag() {
    let fx = Fixture::new();
    let yaml = edit(
        "https://dl.k8s.io/release/v1.36.0/bin/linux/amd64/kubelet",
        "file:///srv/kubelet",
    );
    let errs = fx.errors(&yaml);
    assert_error(
        &errs,
        "artifacts[0].url",
        &["file", "--allow-insecure-urls"],
    );
    let opts = LoadOptions {
        allow_insecure_urls: true,
        ..Default::default()
    };
    fx.load_opts(&yaml, &opts).unwrap();
}

#[test]
fn missing_unit_template() {
    let fx = Fixture::new();
    fs::remove_file(fx.dir.path().join("units/rolectl.service.hbs")).unwrap();
    let errs = fx.errors(VALID);
    assert_error(&errs, "units[2].name", &["units/rolectl.service.hbs"]);
}

#[test]
fn missing_extra_dropin_template() {
    let fx = Fixture::new();
    fs::remove_file(fx.dir.path().join("dropins/etcd-tuning.conf.hbs")).unwrap();
    let errs = fx.errors(VALID);
    assert_error(
        &errs,
        "units[0].dropins[0]",
        &["dropins/etcd-tuning.conf.hbs"],
    );
}

#[test]
fn missing_role_dropin_template() {
    let fx = Fixture::new();
    fs::remove_file(fx.dir.path().join("dropins/role-minion.conf.hbs")).unwrap();
    let errs = fx.errors(VALID);
    assert_error(&errs, "units[1].role", &["role-minion.conf.hbs"]);
}

#[test]
fn bad_role_value() {
    let fx = Fixture::new();
    let errs = fx.errors(&edit("role: master", "role: worker"));
    assert_error(&errs, "units[0].role", &["worker", "master", "minion"]);
}

#[test]
fn bad_unit_suffix() {
    let fx = Fixture::new();
    let errs = fx.errors(&edit("- name: rolectl.service", "- name: rolectl.conf"));
    assert_error(&errs, "units[2].name", &[".service"]);
}

#[test]
fn duplicate_unit() {
    let fx = Fixture::new();
    let errs = fx.errors(&edit("- name: rolectl.service", "- name: etcd.service"));
    assert_error(&errs, "units[2].name", &["duplicate"]);
}

#[test]
fn bad_mask_entry() {
    let fx = Fixture::new();
    let errs = fx.errors(&edit("mask: [docker.socket]", "mask: [docker]"));
    assert_error(&errs, "mask[0]", &["invalid unit name"]);
}

#[test]
fn duplicate_artifact() {
    let fx = Fixture::new();
    let errs = fx.errors(&edit("- name: cni-plugins", "- name: kubelet"));
    assert_error(&errs, "artifacts[1].name", &["duplicate", "kubelet"]);
}

#[test]
fn two_artifacts_same_install_path() {
    let fx = Fixture::new();
    let errs = fx.errors(&edit(
        "path: /opt/cni/bin/loopback",
        "path: /usr/local/bin/kubelet",
    ));
    assert_error(
        &errs,
        "artifacts[1].install.archive[0].path",
        &["artifacts[0].install.binary.path"],
    );
}

#[test]
fn mode_as_integer_is_rejected() {
    let fx = Fixture::new();
    let errs = fx.errors(&edit("mode: \"0755\" }", "mode: 0755 }"));
    assert_error(&errs, "artifacts[0].install.binary.mode", &["quote"]);
}

#[test]
fn mode_not_octal() {
    let fx = Fixture::new();
    let errs = fx.errors(&edit("mode: \"0644\"", "mode: \"0948\""));
    assert_error(&errs, "files[0].mode", &["octal"]);
}

#[test]
fn bad_disk_size() {
    let fx = Fixture::new();
    let errs = fx.errors(&edit("disk-size: 4GiB", "disk-size: 4 gallons"));
    assert_error(&errs, "outputs.disk-size", &["GiB"]);
    let errs = fx.errors(&edit("disk-size: 4GiB", "disk-size: 512MiB"));
    assert_error(&errs, "outputs.disk-size", &["minimum"]);
    let errs = fx.errors(&edit("disk-size: 4GiB", "disk-size: 4096"));
    assert_error(&errs, "outputs.disk-size", &["unit"]);
}

#[test]
fn disk_size_units() {
    let fx = Fixture::new();
    let d = fx
        .load(&edit("disk-size: 4GiB", "disk-size: 2048M"))
        .unwrap();
    assert_eq!(d.outputs.disk_size, 2 << 30);
}

#[test]
fn no_output_format() {
    let fx = Fixture::new();
    let errs = fx.errors(&edit("raw: true", "raw: false"));
    assert_error(&errs, "outputs", &["qcow2"]);
}

#[test]
fn bad_package_pin() {
    let fx = Fixture::new();
    let errs = fx.errors(&edit(
        "docker.io=20.10.24+dfsg1-1+deb12u1+b6",
        "\"docker.io=20.10 beta\"",
    ));
    assert_error(&errs, "base.packages[1]", &["version"]);
    let errs = fx.errors(&edit("linux-image-cloud-amd64", "Linux_Image"));
    assert_error(&errs, "base.packages[0]", &["[a-z0-9][a-z0-9+.-]+"]);
}

#[test]
fn bad_mirror() {
    let fx = Fixture::new();
    let errs = fx.errors(&edit(
        "http://deb.debian.org/debian",
        "ftp://deb.debian.org/debian",
    ));
    assert_error(&errs, "base.mirror", &["http"]);
}

#[test]
fn bad_name_and_empty_version() {
    let fx = Fixture::new();
    let errs = fx.errors(&edit("name: k8s-node-source", "name: K8s_Node").replacen(
        "\"0.1.0\"",
        "\"\"",
        1,
    ));
    assert_error(&errs, "name", &["K8s_Node"]);
    assert_error(&errs, "version", &["empty"]);
}

#[test]
fn unquoted_float_version() {
    let fx = Fixture::new();
    let errs = fx.errors(&edit("version: \"1.9.1\"", "version: 1.10"));
    assert_error(&errs, "artifacts[1].version", &["quote"]);
}

#[test]
fn path_traversal() {
    let fx = Fixture::new();
    let errs = fx.errors(&edit(
        "/usr/local/bin/kubelet",
        "/usr/local/../../etc/shadow",
    ));
    assert_error(&errs, "artifacts[0].install.binary.path", &[".."]);
    let errs = fx.errors(&edit("/usr/local/bin/kubelet", "usr/local/bin/kubelet"));
    assert_error(&errs, "artifacts[0].install.binary.path", &["absolute"]);
    let errs = fx.errors(&edit("member: ./loopback", "member: ../loopback"));
    assert_error(&errs, "artifacts[1].install.archive[0].member", &[".."]);
}

#[test]
fn forbidden_install_roots() {
    let fx = Fixture::new();
    for root in ["/proc", "/sys", "/dev", "/run", "/tmp"] {
        let errs = fx.errors(&edit("/etc/docker/daemon.json", &format!("{root}/x")));
        assert_error(&errs, "files[0].path", &[root]);
    }
}

#[test]
fn archive_needs_tarball_url() {
    let fx = Fixture::new();
    let errs = fx.errors(&edit("v1.9.1.tgz", "v1.9.1.zip"));
    assert_error(&errs, "artifacts[1].install.archive", &[".tar.gz"]);
}

#[test]
fn install_needs_exactly_one_kind() {
    let fx = Fixture::new();
    let errs = fx.errors(&edit(
        "      binary: { path: /usr/local/bin/kubelet, mode: \"0755\" }\n",
        "      binary: { path: /usr/local/bin/kubelet, mode: \"0755\" }\n      archive: []\n",
    ));
    assert_error(&errs, "artifacts[0].install", &["exactly one"]);
}

#[test]
fn sysctl_errors_quote_dotted_keys() {
    let fx = Fixture::new();
    let errs = fx.errors(&edit(
        "net.ipv4.ip_forward: \"1\"",
        "net.ipv4.ip_forward: \"\"",
    ));
    assert_error(
        &errs,
        "sysctl.\"90-kubernetes.conf\".\"net.ipv4.ip_forward\"",
        &["non-empty"],
    );
    let errs = fx.errors(&edit("90-kubernetes.conf:", "90 kubernetes:"));
    assert_error(&errs, "sysctl.\"90 kubernetes\"", &[".conf"]);
    let errs = fx.errors(&edit("net.ipv4.ip_forward: \"1\"", "Net.IPv4: \"1\""));
    assert_error(
        &errs,
        "sysctl.\"90-kubernetes.conf\".\"Net.IPv4\"",
        &["[a-z0-9_.-]"],
    );
}

#[test]
fn modules_load_errors() {
    let fx = Fixture::new();
    let errs = fx.errors(&edit(
        "[overlay, br_netfilter]",
        "[overlay, \"br netfilter\"]",
    ));
    assert_error(
        &errs,
        "modules-load.\"kubernetes.conf\"[1]",
        &["module name"],
    );
}

#[test]
fn variable_errors() {
    let fx = Fixture::new();
    let errs = fx.errors(&edit("cluster_domain: k8s", "Cluster-Domain: k8s"));
    assert_error(&errs, "variables.Cluster-Domain", &["[a-z_][a-z0-9_]*"]);
    let errs = fx.errors(&edit("cluster_domain: k8s", "cluster_domain: 5"));
    assert_error(&errs, "variables.cluster_domain", &["quote"]);
}

#[test]
fn link_errors() {
    let fx = Fixture::new();
    let errs = fx.errors(&edit("target: /usr/lib/cni/host-local", "target: \"\""));
    assert_error(&errs, "links[0].target", &["non-empty"]);
}

#[test]
fn all_errors_are_collected() {
    let fx = Fixture::new();
    let yaml = edit(SHA, "abcd")
        .replacen("role: master", "role: worker", 1)
        .replacen("disk-size: 4GiB", "disk-size: 4 gallons", 1)
        .replacen("mode: \"0644\"", "mode: \"99\"", 1);
    let errs = fx.errors(&yaml);
    assert_error(&errs, "artifacts[0].sha256", &[]);
    assert_error(&errs, "units[0].role", &[]);
    assert_error(&errs, "outputs.disk-size", &[]);
    assert_error(&errs, "files[0].mode", &[]);
    assert!(errs.len() >= 4, "{errs:?}");
}

#[test]
fn default_data_root_is_parent_of_images_dir() {
    assert_eq!(
        definition::default_data_root(Path::new("/x/y/images/a.yaml")),
        Path::new("/x/y")
    );
}

#[test]
fn yaml_syntax_error_has_position_and_one_line() {
    let fx = Fixture::new();
    let errs = fx.errors("name: x\nversion: \"1\n");
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].contains("line 2"), "{errs:?}");
    assert!(!errs[0].contains('\n'), "{errs:?}");
}

#[test]
fn masked_unit_cannot_also_be_installed() {
    let fx = Fixture::new();
    let errs = fx.errors(&edit("mask: [docker.socket]", "mask: [rolectl.service]"));
    assert_error(&errs, "mask[0]", &["units[2]"]);
}

/// A Go build appended to the valid definition (before `units:`), with its
/// go.mod/go.sum directory created unless `make_dir` is false.
fn with_go_build(fx: &Fixture, build: &str, make_dir: bool) -> String {
    if make_dir {
        let dir = fx.dir.path().join("images/go/k8s");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("go.mod"), "module kubebake.build/k8s\n").unwrap();
        fs::write(dir.join("go.sum"), "").unwrap();
    }
    assert!(VALID.contains("\nunits:\n"));
    VALID.replacen("\nunits:\n", &format!("\nbuilds:\n{build}\nunits:\n"), 1)
}

const GO_BUILD: &str = r#"  - name: kubernetes
    version: "1.36.4"
    go:
      module-dir: go/k8s
      toolchain: go1.26.5
      tags: [selinux]
      ldflags: [-s, -w]
      stamps:
        k8s.io/component-base/version.gitVersion: "v{version}"
        k8s.io/component-base/version.buildDate: "{date}"
    outputs:
      - { name: kubelet, package: k8s.io/kubernetes/cmd/kubelet, path: /usr/local/bin/kubelet2, mode: "0755" }
      - name: pause
        c-program: { module: k8s.io/kubernetes, file: build/pause/linux/pause.c, cflags: [-Os, -static] }
      - { name: e2e.test, test-package: k8s.io/kubernetes/test/e2e }
      - name: pause-source
        module-file: { module: k8s.io/kubernetes, file: build/pause/linux/pause.c }
        path: /usr/share/kubebake/pause.c
        mode: "0644""#;

#[test]
fn go_build_parses_into_model() {
    let fx = Fixture::new();
    let def = fx.load(&with_go_build(&fx, GO_BUILD, true)).unwrap();
    let b = def.build("kubernetes").unwrap();
    let definition::BuildKind::Go(g) = &b.kind else {
        panic!("a Go build: {:?}", b.kind)
    };
    assert_eq!(g.toolchain, "go1.26.5");
    assert!(g.module_dir_path.ends_with("images/go/k8s"));
    assert!(g.uses_date());
    assert!(b.sources().is_empty());
    assert_eq!(
        b.output("kubelet").unwrap().from,
        definition::OutputFrom::Package("k8s.io/kubernetes/cmd/kubelet".into())
    );
    assert!(matches!(
        b.output("pause").unwrap().from,
        definition::OutputFrom::C(_)
    ));
    assert_eq!(
        b.output("e2e.test").unwrap().from,
        definition::OutputFrom::TestPackage("k8s.io/kubernetes/test/e2e".into())
    );
    assert_eq!(
        b.output("pause-source").unwrap().from,
        definition::OutputFrom::ModuleFile(definition::ModuleFile {
            module: "k8s.io/kubernetes".into(),
            file: "build/pause/linux/pause.c".into(),
        })
    );
    assert!(def
        .downloads()
        .iter()
        .all(|d| !d.name.starts_with("kubernetes/")));
}

#[test]
fn go_build_without_go_mod_and_go_sum_says_how_to_make_them() {
    let fx = Fixture::new();
    let errs = fx.errors(&with_go_build(&fx, GO_BUILD, false));
    assert_error(&errs, "builds[0].go.module-dir", &["go.mod", "go mod tidy"]);
}

#[test]
fn go_build_rejects_bad_toolchain_tags_ldflags_and_stamps() {
    let fx = Fixture::new();
    let bad = GO_BUILD
        .replace("go1.26.5", "1.26")
        .replace("tags: [selinux]", "tags: [\"a b\"]")
        .replace("ldflags: [-s, -w]", "ldflags: [-s, \"-X=main.v=1\"]")
        .replace("\"v{version}\"", "\"v{commit}\"");
    let errs = fx.errors(&with_go_build(&fx, &bad, true));
    assert_error(&errs, "builds[0].go.toolchain", &["go1.N.P"]);
    assert_error(&errs, "builds[0].go.tags[0]", &["build tag"]);
    assert_error(&errs, "builds[0].go.ldflags[1]", &["stamps"]);
    assert_error(
        &errs,
        "builds[0].go.stamps.k8s.io/component-base/version.gitVersion",
        &["{version}", "{date}"],
    );
}

#[test]
fn go_build_outputs_need_a_package_and_no_sources() {
    let fx = Fixture::new();
    let bad = GO_BUILD
        .replace(
            "{ name: kubelet, package: k8s.io/kubernetes/cmd/kubelet,",
            "{ name: kubelet,",
        )
        .replace(
            "    outputs:\n",
            "    sources:\n      - { url: https://example.org/x.tar.gz, sha256: d857e1ebbf5d3ea1a6a3c1b2a4f0e6c1a0b3c2d4e5f60718293a4b5c6d7e8f90 }\n    outputs:\n",
        );
    let errs = fx.errors(&with_go_build(&fx, &bad, true));
    assert_error(&errs, "builds[0].outputs[0]", &["package:"]);
    assert_error(&errs, "builds[0].sources", &["go.sum"]);
}

#[test]
fn go_build_module_files_name_one_file_of_one_module() {
    let fx = Fixture::new();
    let bad = GO_BUILD
        .replace(
            "module-file: { module: k8s.io/kubernetes, file: build/pause/linux/pause.c }",
            "module-file: { module: \"k8s io\", file: ../etc/passwd }",
        )
        .replace(
            "        c-program: { module: k8s.io/kubernetes,",
            "        package: k8s.io/kubernetes/cmd/pause\n        c-program: { module: k8s.io/kubernetes,",
        );
    let errs = fx.errors(&with_go_build(&fx, &bad, true));
    assert_error(&errs, "builds[0].outputs[1]", &["one of"]);
    assert_error(
        &errs,
        "builds[0].outputs[3].module-file.module",
        &["module path"],
    );
    assert_error(&errs, "builds[0].outputs[3].module-file.file", &[".."]);
}

#[test]
fn build_with_both_recipe_and_go_is_refused() {
    let fx = Fixture::new();
    let bad = GO_BUILD.replace("    go:\n", "    recipe: recipes/x.sh\n    go:\n");
    let errs = fx.errors(&with_go_build(&fx, &bad, true));
    assert_error(&errs, "builds[0]", &["exactly one"]);
}
