//! `kubebake inspect IMAGE`: opens the built image with libguestfs (read-only,
//! no mounts on the host) and proves it matches the manifest beside it:
//! the image's own sha256, every file kubebake wrote (content and mode), every
//! artifact path, every Debian package version, the role units and their
//! conditions, and the generalization (no host keys, empty machine-id, …).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;

use crate::manifest::{sha256_file, Manifest};

/// One verified property of the image.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub what: String,
    pub ok: bool,
    pub detail: String,
}

/// A role unit as found inside the image.
#[derive(Debug, Clone, Serialize)]
pub struct RoleUnit {
    pub unit: String,
    pub role: Option<String>,
    /// `ConditionPathExists=` values found in the unit and its drop-ins.
    pub conditions: Vec<String>,
    pub masked: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct InspectReport {
    pub image: PathBuf,
    pub manifest: PathBuf,
    pub checks: Vec<Check>,
    pub units: Vec<RoleUnit>,
    pub failures: usize,
}

impl InspectReport {
    pub fn ok(&self) -> bool {
        self.failures == 0
    }
}

/// The manifest that belongs to `image`: `<stem>.manifest.json` beside it.
pub fn manifest_path_for(image: &Path) -> PathBuf {
    let stem = image
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    image.with_file_name(format!("{stem}.manifest.json"))
}

fn gerr(op: &str) -> impl Fn(guestfs::Error) -> anyhow::Error + '_ {
    move |e| anyhow!("libguestfs {op}: {e:?}")
}

pub fn inspect(image: &Path, manifest_path: Option<&Path>) -> Result<InspectReport> {
    let manifest_path = manifest_path
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest_path_for(image));
    let manifest = Manifest::read(&manifest_path).context(
        "inspect needs the manifest written beside the image; pass --manifest if it was moved",
    )?;
    let format = match image.extension().and_then(|e| e.to_str()) {
        Some("qcow2") => "qcow2",
        Some("raw") | Some("img") => "raw",
        _ => bail!(
            "{}: cannot tell the image format; name it .raw or .qcow2",
            image.display()
        ),
    };
    let mut checks = Vec::new();

    // 1. The image file itself.
    let actual = sha256_file(image)?;
    match manifest.output(format) {
        Some(o) => checks.push(Check {
            what: format!("{format} image sha256"),
            ok: o.sha256 == actual,
            detail: if o.sha256 == actual {
                actual.clone()
            } else {
                format!("manifest says {}, image is {actual}", o.sha256)
            },
        }),
        None => bail!(
            "the manifest {} lists no {format} output",
            manifest_path.display()
        ),
    }

    // 2. Inside the image.
    if std::env::var_os("LIBGUESTFS_BACKEND").is_none() {
        std::env::set_var("LIBGUESTFS_BACKEND", "direct");
    }
    let g = guestfs::Handle::create().map_err(gerr("create"))?;
    if std::env::var_os("LIBGUESTFS_BACKEND_SETTINGS").is_none() && !crate::hostcmd::kvm_usable() {
        g.set_backend_settings(&["force_tcg"])
            .map_err(gerr("set_backend_settings"))?;
    }
    let image_str = image.to_str().context("image path is not UTF-8")?;
    g.add_drive(
        image_str,
        guestfs::AddDriveOptArgs {
            readonly: Some(true),
            format: Some(format),
            ..Default::default()
        },
    )
    .map_err(gerr("add_drive"))?;
    g.launch()
        .map_err(gerr("launch (set LIBGUESTFS_DEBUG=1 for details)"))?;
    let parts = g.list_partitions().map_err(gerr("list_partitions"))?;
    let root_dev = parts
        .get(1)
        .context("the image has no second (root) partition")?;
    g.mount_ro(root_dev, "/").map_err(gerr("mount_ro"))?;

    let uuid = g.vfs_uuid(root_dev).map_err(gerr("vfs_uuid"))?;
    checks.push(Check {
        what: "root filesystem UUID".into(),
        ok: uuid == manifest.boot.root_uuid,
        detail: format!("{uuid} (manifest {})", manifest.boot.root_uuid),
    });

    let mut files: Vec<(&str, &str, Option<&str>)> = manifest
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.sha256.as_str(), Some(f.mode.as_str())))
        .collect();
    // Source-built outputs and baked container images: the manifest's
    // provenance is only worth something if the bytes inside match it.
    for b in &manifest.builds {
        files.extend(
            b.paths
                .iter()
                .map(|p| (p.path.as_str(), p.sha256.as_str(), Some(p.mode.as_str()))),
        );
    }
    for c in &manifest.container_images {
        if let Some(p) = &c.archive {
            files.push((p.path.as_str(), p.sha256.as_str(), Some(p.mode.as_str())));
        }
    }
    for a in &manifest.artifacts {
        files.extend(
            a.paths
                .iter()
                .map(|p| (p.path.as_str(), p.sha256.as_str(), Some(p.mode.as_str()))),
        );
    }
    for (path, want, mode) in files {
        checks.push(check_file(&g, path, want, mode));
    }

    // Packages: the dpkg database in the image against the manifest.
    let status = g
        .read_file("/var/lib/dpkg/status")
        .map_err(gerr("read /var/lib/dpkg/status"))?;
    let installed = dpkg_versions(&String::from_utf8_lossy(&status));
    let mut bad = Vec::new();
    for p in &manifest.packages {
        match installed.get(&p.name) {
            Some(v) if *v == p.version => {}
            Some(v) => bad.push(format!("{} {} (manifest {})", p.name, v, p.version)),
            None => bad.push(format!("{} missing", p.name)),
        }
    }
    let extra: Vec<&String> = installed
        .keys()
        .filter(|k| !manifest.packages.iter().any(|p| &p.name == *k))
        .collect();
    checks.push(Check {
        what: format!("{} Debian packages", manifest.packages.len()),
        ok: bad.is_empty() && extra.is_empty(),
        detail: if bad.is_empty() && extra.is_empty() {
            "all installed at the manifest's versions".into()
        } else {
            format!("differ: {}; not in manifest: {:?}", bad.join(", "), extra)
        },
    });

    // Role units and their conditions.
    let mut units = Vec::new();
    for u in &manifest.units {
        let unit_path = format!("/etc/systemd/system/{}", u.name);
        if u.masked {
            let target = g.readlink(&unit_path).unwrap_or_default();
            checks.push(Check {
                what: format!("{} masked", u.name),
                ok: target == "/dev/null",
                detail: format!("{unit_path} -> {target:?}"),
            });
            units.push(RoleUnit {
                unit: u.name.clone(),
                role: None,
                conditions: vec![],
                masked: true,
            });
            continue;
        }
        let conditions = unit_conditions(&g, &u.name)?;
        let want: Vec<String> = u.condition.iter().cloned().collect();
        checks.push(Check {
            what: format!("{} role condition", u.name),
            ok: conditions == want,
            detail: format!("{} (expected {})", show(&conditions), show(&want)),
        });
        units.push(RoleUnit {
            unit: u.name.clone(),
            role: u.role.clone(),
            conditions,
            masked: false,
        });
    }

    // Generalization.
    let host_keys = g
        .glob_expand("/etc/ssh/ssh_host_*", Default::default())
        .map_err(gerr("glob /etc/ssh"))?;
    checks.push(Check {
        what: "no SSH host keys".into(),
        ok: host_keys.is_empty(),
        detail: if host_keys.is_empty() {
            "none".into()
        } else {
            host_keys.join(", ")
        },
    });
    let machine_id = g
        .read_file("/etc/machine-id")
        .map_err(gerr("read /etc/machine-id"))?;
    checks.push(Check {
        what: "empty /etc/machine-id".into(),
        ok: machine_id.is_empty(),
        detail: format!("{} bytes", machine_id.len()),
    });
    let cloud = if g
        .is_dir("/var/lib/cloud", Default::default())
        .unwrap_or(false)
    {
        g.ls("/var/lib/cloud").map_err(gerr("ls /var/lib/cloud"))?
    } else {
        Vec::new()
    };
    checks.push(Check {
        what: "no cloud-init instance state".into(),
        ok: cloud.is_empty(),
        detail: if cloud.is_empty() {
            "/var/lib/cloud is empty".into()
        } else {
            cloud.join(", ")
        },
    });
    let shadow = String::from_utf8_lossy(
        &g.read_file("/etc/shadow")
            .map_err(gerr("read /etc/shadow"))?,
    )
    .into_owned();
    let root_pw = shadow
        .lines()
        .find_map(|l| l.strip_prefix("root:"))
        .and_then(|r| r.split(':').next())
        .unwrap_or("")
        .to_string();
    checks.push(Check {
        what: "root password locked".into(),
        ok: root_pw == "*" || root_pw.starts_with('!'),
        detail: format!(
            "password field {:?}",
            if root_pw.len() > 2 {
                "<hash>"
            } else {
                &root_pw
            }
        ),
    });

    checks.push(no_cluster_secrets(&g));

    g.umount_all().ok();
    g.shutdown().ok();
    let failures = checks.iter().filter(|c| !c.ok).count();
    Ok(InspectReport {
        image: image.to_path_buf(),
        manifest: manifest_path,
        checks,
        units,
        failures,
    })
}

fn show(v: &[String]) -> String {
    if v.is_empty() {
        "no role condition".into()
    } else {
        v.join(", ")
    }
}

/// Files that only exist once a node has its role and credentials: rolectl
/// writes them from user-data, kube-pki and kubelet make them at boot.
const CREDENTIAL_PATHS: &[&str] = &[
    "/etc/kubernetes/pki",
    "/etc/kubernetes/bootstrap/bootstrap-token.yaml",
    "/etc/kubernetes/bootstrap-kubelet.conf",
    "/etc/kubernetes/kubelet.conf",
    "/etc/kubernetes/kube-proxy.conf",
    "/etc/kubernetes/admin.conf",
    "/etc/kubernetes/super-admin.conf",
    "/etc/kubernetes/controller-manager.conf",
    "/etc/kubernetes/scheduler.conf",
    "/var/lib/kubelet/pki",
];

/// The golden image carries no cluster credential: none of the files a node
/// gets at activation, and no private key or bearer token in any file under
/// /etc/kubernetes (the baked configuration and RBAC manifests).
fn no_cluster_secrets(g: &guestfs::Handle) -> Check {
    let mut found: Vec<String> = CREDENTIAL_PATHS
        .iter()
        .filter(|p| g.exists(p).unwrap_or(false))
        .map(|p| (*p).to_string())
        .collect();
    if let Ok(files) = g.find("/etc/kubernetes") {
        for f in files {
            let path = format!("/etc/kubernetes/{f}");
            if !g.is_file(&path, Default::default()).unwrap_or(false) {
                continue;
            }
            let text =
                String::from_utf8_lossy(&g.read_file(&path).unwrap_or_default()).into_owned();
            if text.contains("PRIVATE KEY")
                || text.lines().any(|l| l.trim_start().starts_with("token:"))
            {
                found.push(path);
            }
        }
    }
    Check {
        what: "no cluster credentials in the image".into(),
        ok: found.is_empty(),
        detail: if found.is_empty() {
            "no keys, tokens or kubeconfigs: they arrive in user-data".into()
        } else {
            format!("found {}", found.join(", "))
        },
    }
}

fn check_file(g: &guestfs::Handle, path: &str, want: &str, mode: Option<&str>) -> Check {
    let what = format!("file {path}");
    let sum = match g.checksum("sha256", path) {
        Ok(s) => s,
        Err(e) => {
            return Check {
                what,
                ok: false,
                detail: format!("cannot read it: {e:?}"),
            }
        }
    };
    if sum != want {
        return Check {
            what,
            ok: false,
            detail: format!("sha256 {sum}, manifest {want}"),
        };
    }
    if let Some(mode) = mode {
        match g.lstatns(path) {
            Ok(st) => {
                let got = format!("{:04o}", st.st_mode & 0o7777);
                if got != mode {
                    return Check {
                        what,
                        ok: false,
                        detail: format!("mode {got}, manifest {mode}"),
                    };
                }
            }
            Err(e) => {
                return Check {
                    what,
                    ok: false,
                    detail: format!("cannot stat it: {e:?}"),
                }
            }
        }
    }
    Check {
        what,
        ok: true,
        detail: sum,
    }
}

/// `ConditionPathExists=` values of a unit and its drop-ins, as installed.
fn unit_conditions(g: &guestfs::Handle, unit: &str) -> Result<Vec<String>> {
    let mut texts = Vec::new();
    let unit_path = format!("/etc/systemd/system/{unit}");
    texts.push(g.read_file(&unit_path).map_err(gerr("read unit"))?);
    let dir = format!("{unit_path}.d");
    if g.is_dir(&dir, Default::default()).unwrap_or(false) {
        let mut names = g.ls(&dir).map_err(gerr("ls drop-ins"))?;
        names.sort();
        for n in names.iter().filter(|n| n.ends_with(".conf")) {
            texts.push(
                g.read_file(&format!("{dir}/{n}"))
                    .map_err(gerr("read drop-in"))?,
            );
        }
    }
    Ok(texts
        .iter()
        .flat_map(|t| {
            String::from_utf8_lossy(t)
                .lines()
                .filter_map(|l| {
                    l.trim()
                        .strip_prefix("ConditionPathExists=")
                        .map(|v| v.trim().to_string())
                })
                .collect::<Vec<_>>()
        })
        .filter(|c| c.starts_with("/etc/sysconfig/kubernetes-"))
        .collect())
}

/// Package → version from a dpkg status file, installed packages only.
fn dpkg_versions(status: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for para in status.split("\n\n") {
        let mut name = None;
        let mut version = None;
        let mut installed = false;
        for line in para.lines() {
            if let Some(v) = line.strip_prefix("Package: ") {
                name = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("Version: ") {
                version = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("Status: ") {
                installed = v.trim().ends_with(" installed");
            }
        }
        if let (Some(n), Some(v), true) = (name, version, installed) {
            out.insert(n, v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpkg_status_keeps_installed_packages_only() {
        let status = "Package: a\nStatus: install ok installed\nVersion: 1.0\n\n\
                      Package: b\nStatus: deinstall ok config-files\nVersion: 2.0\n\n\
                      Package: c\nStatus: install ok installed\nArchitecture: amd64\nVersion: 3:1.2-1\n";
        let v = dpkg_versions(status);
        assert_eq!(v.get("a").map(String::as_str), Some("1.0"));
        assert_eq!(v.get("b"), None);
        assert_eq!(v.get("c").map(String::as_str), Some("3:1.2-1"));
    }

    #[test]
    fn manifest_sits_beside_the_image() {
        assert_eq!(
            manifest_path_for(Path::new("/o/k8s-node.qcow2")),
            PathBuf::from("/o/k8s-node.manifest.json")
        );
    }
}
