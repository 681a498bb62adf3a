//! kubebake's node layout for kube-bench (`images/kube-bench/config.yaml`),
//! read strictly before it is shipped: kube-bench ignores a key it does not
//! know, so a misspelt `conf:` or component would silently leave upstream's
//! kubeadm paths in place and audit files a kubebake node does not have.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// The sections kube-bench reads component paths from.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layout {
    #[serde(default)]
    pub master: BTreeMap<String, Component>,
    #[serde(default)]
    pub etcd: BTreeMap<String, Component>,
    #[serde(default)]
    pub node: BTreeMap<String, Component>,
}

/// One component's candidate paths (kube-bench's TypeMap: each list and
/// its `default…` value).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Component {
    #[serde(default)]
    pub confs: Vec<String>,
    pub defaultconf: Option<String>,
    #[serde(default)]
    pub svc: Vec<String>,
    pub defaultsvc: Option<String>,
    #[serde(default)]
    pub kubeconfig: Vec<String>,
    pub defaultkubeconfig: Option<String>,
    #[serde(default)]
    pub cafile: Vec<String>,
    pub defaultcafile: Option<String>,
    #[serde(default)]
    pub datadirs: Vec<String>,
    pub defaultdatadir: Option<String>,
}

impl Component {
    /// (kind, candidates, default) of every path kind.
    fn kinds(&self) -> [(&'static str, &[String], Option<&String>); 5] {
        [
            ("confs", &self.confs, self.defaultconf.as_ref()),
            ("svc", &self.svc, self.defaultsvc.as_ref()),
            (
                "kubeconfig",
                &self.kubeconfig,
                self.defaultkubeconfig.as_ref(),
            ),
            ("cafile", &self.cafile, self.defaultcafile.as_ref()),
            ("datadirs", &self.datadirs, self.defaultdatadir.as_ref()),
        ]
    }

    /// Every path named.
    pub fn paths(&self) -> impl Iterator<Item = &String> {
        [
            &self.confs,
            &self.svc,
            &self.kubeconfig,
            &self.cafile,
            &self.datadirs,
        ]
        .into_iter()
        .flatten()
        .chain(
            [
                &self.defaultconf,
                &self.defaultsvc,
                &self.defaultkubeconfig,
                &self.defaultcafile,
                &self.defaultdatadir,
            ]
            .into_iter()
            .flatten(),
        )
    }
}

impl Layout {
    /// The sections by kube-bench's name.
    pub fn sections(&self) -> [(&'static str, &BTreeMap<String, Component>); 3] {
        [
            ("master", &self.master),
            ("etcd", &self.etcd),
            ("node", &self.node),
        ]
    }

    /// The first candidate of `kind` of `section.component`.
    pub fn first(&self, section: &str, component: &str, kind: &str) -> Option<&str> {
        let (_, s) = self.sections().into_iter().find(|(n, _)| *n == section)?;
        let c = s.get(component)?;
        let (_, list, _) = c.kinds().into_iter().find(|(k, _, _)| *k == kind)?;
        list.first().map(String::as_str)
    }
}

/// Reads and checks kubebake's layout `text` against kube-bench's global
/// `upstream` config (its cfg/config.yaml): every component must be one
/// kube-bench knows in that section, every path absolute, and each default
/// the first of its candidates.
pub fn check(text: &str, upstream: &str) -> Result<Layout> {
    let layout: Layout =
        serde_saphyr::from_str(text).context("reading kubebake's kube-bench layout")?;
    let upstream: serde_json::Value =
        serde_saphyr::from_str(upstream).context("reading kube-bench's cfg/config.yaml")?;
    for (name, section) in layout.sections() {
        for (component, c) in section {
            let known = upstream
                .get(name)
                .and_then(|s| s.get("components"))
                .and_then(|l| l.as_array())
                .is_some_and(|l| l.iter().any(|x| x.as_str() == Some(component.as_str())));
            if !known {
                bail!("{name}.{component}: kube-bench's cfg/config.yaml has no component {component:?} in its {name} section");
            }
            for p in c.paths() {
                if !p.starts_with('/') {
                    bail!("{name}.{component}: {p:?} is not an absolute path");
                }
            }
            for (kind, list, default) in c.kinds() {
                if let (Some(d), Some(first)) = (default, list.first()) {
                    if d != first {
                        bail!("{name}.{component}: the default {d} is not the first of {kind} ({first}): kube-bench audits the first that exists, the default when none does");
                    }
                }
            }
        }
    }
    Ok(layout)
}

/// Reads `path` and checks it ([`check`]).
pub fn read(path: &Path, upstream: &str) -> Result<Layout> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    check(&text, upstream).with_context(|| format!("{}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// kube-bench v0.16.0's cfg/config.yaml sections, cut to the
    /// components.
    const UPSTREAM: &str = "---
master:
  components:
    - apiserver
    - scheduler
    - controllermanager
    - etcd
    - flanneld
    - kubernetes
    - kubelet
node:
  components:
    - kubelet
    - proxy
    - kubernetes
etcd:
  components:
    - etcd
";

    fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    fn layout() -> Layout {
        read(&repo().join("images/kube-bench/config.yaml"), UPSTREAM).expect("layout")
    }

    #[test]
    fn misspelt_keys_unknown_components_and_relative_paths_are_refused() {
        let e = check("node:\n  kubelet:\n    conf: [/x]\n", UPSTREAM).expect_err("key");
        assert!(format!("{e:#}").contains("conf"), "{e:#}");
        let e = check("node:\n  apiserver:\n    confs: [/x]\n", UPSTREAM).expect_err("component");
        assert!(format!("{e:#}").contains("no component"), "{e:#}");
        let e = check("etcd:\n  etcd:\n    datadirs: [var/lib/etcd]\n", UPSTREAM).expect_err("rel");
        assert!(format!("{e:#}").contains("absolute"), "{e:#}");
        let e = check(
            "node:\n  kubelet:\n    confs: [/a]\n    defaultconf: /b\n",
            UPSTREAM,
        )
        .expect_err("default");
        assert!(format!("{e:#}").contains("first"), "{e:#}");
    }

    /// The rendered files of the source-built image (builder/tests/golden,
    /// kept equal to the renders by builder/tests/golden.rs).
    fn golden(path: &str) -> String {
        let p = repo().join("builder/tests/golden/k8s-node-source").join(
            path.strip_prefix('/')
                .unwrap_or_else(|| panic!("{path} is not absolute")),
        );
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    #[test]
    fn every_unit_and_config_file_named_is_one_the_image_renders() {
        let l = layout();
        for (_, section) in l.sections() {
            for c in section.values() {
                for p in c.paths() {
                    if p.starts_with("/etc/systemd/system/") || p.ends_with("-config.yaml") {
                        golden(p);
                    }
                }
            }
        }
    }

    #[test]
    fn the_layout_names_the_files_the_units_and_configs_use() {
        let l = layout();
        let first = |s: &str, c: &str, k: &str| {
            l.first(s, c, k)
                .unwrap_or_else(|| panic!("{s}.{c}.{k} is not set"))
                .to_string()
        };
        // Each component's unit is its "pod specification file".
        for (c, unit) in [
            ("apiserver", "kube-apiserver"),
            ("scheduler", "kube-scheduler"),
            ("controllermanager", "kube-controller-manager"),
            ("etcd", "etcd"),
        ] {
            let conf = first("master", c, "confs");
            assert_eq!(conf, format!("/etc/systemd/system/{unit}.service"));
            assert!(golden(&conf).contains(&format!("ExecStart=/usr/local/bin/{unit}")));
        }
        assert_eq!(
            first("etcd", "etcd", "confs"),
            first("master", "etcd", "confs")
        );
        let etcd = golden("/etc/systemd/system/etcd.service");
        for s in ["master", "etcd"] {
            let dir = first(s, "etcd", "datadirs");
            assert!(etcd.contains(&format!("--data-dir={dir} ")), "{dir}");
        }
        let scheduler = golden("/etc/systemd/system/kube-scheduler.service");
        let kc = first("master", "scheduler", "kubeconfig");
        assert!(scheduler.contains(&format!("-kubeconfig={kc} ")), "{kc}");
        let cm = golden("/etc/systemd/system/kube-controller-manager.service");
        let kc = first("master", "controllermanager", "kubeconfig");
        assert!(cm.contains(&format!("--kubeconfig={kc} ")), "{kc}");

        let kubelet_unit = first("node", "kubelet", "svc");
        let kubelet = golden(&kubelet_unit);
        let conf = first("node", "kubelet", "confs");
        assert!(kubelet.contains(&format!("--config={conf} ")), "{conf}");
        let kc = first("node", "kubelet", "kubeconfig");
        assert!(kubelet.contains(&format!("--kubeconfig={kc}\n")), "{kc}");

        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct KubeletConfig {
            authentication: Authn,
        }
        #[derive(Deserialize)]
        struct Authn {
            x509: X509,
        }
        #[derive(Deserialize)]
        struct X509 {
            #[serde(rename = "clientCAFile")]
            client_ca_file: String,
        }
        let kcfg: KubeletConfig = serde_saphyr::from_str(&golden(&conf)).expect("kubelet config");
        assert_eq!(
            kcfg.authentication.x509.client_ca_file,
            first("node", "kubelet", "cafile")
        );

        let proxy_unit = first("node", "proxy", "svc");
        let proxy_conf = first("node", "proxy", "confs");
        assert!(golden(&proxy_unit).contains(&format!("--config={proxy_conf}\n")));
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct ProxyConfig {
            client_connection: Conn,
        }
        #[derive(Deserialize)]
        struct Conn {
            kubeconfig: String,
        }
        let pcfg: ProxyConfig = serde_saphyr::from_str(&golden(&proxy_conf)).expect("proxy config");
        assert_eq!(
            pcfg.client_connection.kubeconfig,
            first("node", "proxy", "kubeconfig")
        );
    }
}
