//! `kubebake inspect IMAGE`: opens the built image with libguestfs (read-only,
//! no mounts on the host) and proves it matches the manifest beside it:
//! the image's own sha256, every file kubebake wrote (content and mode), every
//! artifact path, every Debian package version, the role units and their
//! conditions, and every step of the generalization (each file it removes,
//! each directory it empties, logs, machine-id, hostname, resolver, root
//! password). One function per group of checks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;

use contract::credentials::node;
use contract::unitfile;

use crate::layout::ImageLayout;
use crate::manifest::{sha256_file, Manifest};
use crate::stages::generalize;

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

fn gerr(op: &str) -> impl Fn(guestfs::Error) -> anyhow::Error + '_ {
    move |e| anyhow!("libguestfs {op}: {e:?}")
}

pub fn inspect(image: &Path, manifest_path: Option<&Path>) -> Result<InspectReport> {
    let manifest_path = match manifest_path {
        Some(p) => p.to_path_buf(),
        None => ImageLayout::of_image(image)?.manifest(),
    };
    let manifest = Manifest::read(&manifest_path).context(
        "inspect needs the manifest written beside the image; pass --manifest if it was moved",
    )?;
    let format = image_format(image)?;
    let mut checks = vec![image_digest(image, format, &manifest, &manifest_path)?];
    let g = open_read_only(image, format)?;
    checks.push(root_uuid(&g, &manifest)?);
    checks.extend(files(&g, &manifest));
    checks.push(packages(&g, &manifest)?);
    let (unit_checks, units) = role_units(&g, &manifest)?;
    checks.extend(unit_checks);
    checks.extend(generalization(&g)?);
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

fn image_format(image: &Path) -> Result<&'static str> {
    match image.extension().and_then(|e| e.to_str()) {
        Some("qcow2") => Ok("qcow2"),
        Some("raw") | Some("img") => Ok("raw"),
        _ => bail!(
            "{}: cannot tell the image format; name it .raw or .qcow2",
            image.display()
        ),
    }
}

/// The image file itself against the manifest's digest of it.
fn image_digest(
    image: &Path,
    format: &str,
    manifest: &Manifest,
    manifest_path: &Path,
) -> Result<Check> {
    let actual = sha256_file(image)?;
    let Some(o) = manifest.output(format) else {
        bail!(
            "the manifest {} lists no {format} output",
            manifest_path.display()
        );
    };
    Ok(Check {
        what: format!("{format} image sha256"),
        ok: o.sha256 == actual,
        detail: if o.sha256 == actual {
            actual
        } else {
            format!("manifest says {}, image is {actual}", o.sha256)
        },
    })
}

/// libguestfs on the image, read-only, root filesystem mounted at `/`.
fn open_read_only(image: &Path, format: &str) -> Result<guestfs::Handle> {
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
    Ok(g)
}

fn root_uuid(g: &guestfs::Handle, manifest: &Manifest) -> Result<Check> {
    let parts = g.list_partitions().map_err(gerr("list_partitions"))?;
    let root_dev = parts
        .get(1)
        .context("the image has no second (root) partition")?;
    let uuid = g.vfs_uuid(root_dev).map_err(gerr("vfs_uuid"))?;
    Ok(Check {
        what: "root filesystem UUID".into(),
        ok: uuid == manifest.boot.root_uuid,
        detail: format!("{uuid} (manifest {})", manifest.boot.root_uuid),
    })
}

/// Every file kubebake wrote and every artifact path: content and mode.
fn files(g: &guestfs::Handle, manifest: &Manifest) -> Vec<Check> {
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
    files
        .into_iter()
        .map(|(path, want, mode)| check_file(g, path, want, mode))
        .collect()
}

/// The dpkg database in the image against the manifest's package list.
fn packages(g: &guestfs::Handle, manifest: &Manifest) -> Result<Check> {
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
    Ok(Check {
        what: format!("{} Debian packages", manifest.packages.len()),
        ok: bad.is_empty() && extra.is_empty(),
        detail: if bad.is_empty() && extra.is_empty() {
            "all installed at the manifest's versions".into()
        } else {
            format!("differ: {}; not in manifest: {:?}", bad.join(", "), extra)
        },
    })
}

/// Masks, and each unit's role condition as systemd will read it.
fn role_units(g: &guestfs::Handle, manifest: &Manifest) -> Result<(Vec<Check>, Vec<RoleUnit>)> {
    let mut checks = Vec::new();
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
        let conditions = unit_conditions(g, &u.name)?;
        let want = u.conditions.clone();
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
    Ok((checks, units))
}

/// Everything the generalize stage does, checked in the image: each file it
/// removes is absent, each directory it empties is empty, logs are empty,
/// identity files are generic and the root password is locked.
fn generalization(g: &guestfs::Handle) -> Result<Vec<Check>> {
    let mut checks = Vec::new();
    let listed = |items: Vec<String>, none: &str| -> (bool, String) {
        if items.is_empty() {
            (true, none.to_string())
        } else {
            (false, items.join(", "))
        }
    };
    for pattern in generalize::REMOVE {
        let found = g
            .glob_expand(pattern, Default::default())
            .map_err(gerr("glob_expand"))?;
        let (ok, detail) = listed(found, "none");
        checks.push(Check {
            what: format!("generalized: no {pattern}"),
            ok,
            detail,
        });
    }
    for dir in generalize::EMPTY_DIRS {
        let entries = if g.is_dir(dir, Default::default()).unwrap_or(false) {
            g.ls(dir).map_err(gerr("ls"))?
        } else {
            Vec::new()
        };
        let (ok, detail) = listed(entries, "empty");
        checks.push(Check {
            what: format!("generalized: {dir} empty"),
            ok,
            detail,
        });
    }
    let mut logs = Vec::new();
    for rel in g.find("/var/log").map_err(gerr("find /var/log"))? {
        let path = format!("/var/log/{rel}");
        if g.is_file(&path, Default::default()).unwrap_or(false)
            && g.filesize(&path).map_err(gerr("filesize"))? > 0
        {
            logs.push(path);
        }
    }
    let (ok, detail) = listed(logs, "every log file is empty");
    checks.push(Check {
        what: "generalized: empty logs".into(),
        ok,
        detail,
    });
    let read = |path: &str| -> Result<String> {
        Ok(String::from_utf8_lossy(&g.read_file(path).map_err(gerr("read_file"))?).into_owned())
    };
    let machine_id = read("/etc/machine-id")?;
    checks.push(Check {
        what: "generalized: empty /etc/machine-id".into(),
        ok: machine_id.is_empty(),
        detail: format!("{} bytes", machine_id.len()),
    });
    let hostname = read("/etc/hostname")?;
    checks.push(Check {
        what: "generalized: hostname localhost".into(),
        ok: hostname.trim() == "localhost",
        detail: format!("{:?}", hostname.trim()),
    });
    let resolv = read("/etc/resolv.conf")?;
    checks.push(Check {
        what: "generalized: no build-host resolver".into(),
        ok: !resolv
            .lines()
            .any(|l| l.trim_start().starts_with("nameserver")),
        detail: format!("{} lines", resolv.lines().count()),
    });
    let shadow = read("/etc/shadow")?;
    let root_pw = shadow
        .lines()
        .find_map(|l| l.strip_prefix("root:"))
        .and_then(|r| r.split(':').next())
        .unwrap_or("")
        .to_string();
    checks.push(Check {
        what: "generalized: root password locked".into(),
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
    checks.push(no_cluster_secrets(g));
    Ok(checks)
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
    node::TOKEN_SECRET.path,
    node::BOOTSTRAP_KUBELET_CONF.path,
    node::KUBELET_CONF,
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

/// The role-marker `ConditionPathExists=` values of a unit and its
/// drop-ins as installed, read with rolectl's unit-file reader (the same the
/// build-time proof and `rolectl status` use).
fn unit_conditions(g: &guestfs::Handle, unit: &str) -> Result<Vec<String>> {
    let unit_path = format!("/etc/systemd/system/{unit}");
    let mut files = vec![(
        unit_path.clone(),
        g.read_file(&unit_path).map_err(gerr("read unit"))?,
    )];
    let dir = format!("{unit_path}.d");
    if g.is_dir(&dir, Default::default()).unwrap_or(false) {
        let mut names = g.ls(&dir).map_err(gerr("ls drop-ins"))?;
        names.sort();
        for n in names.iter().filter(|n| unitfile::is_dropin(n)) {
            let p = format!("{dir}/{n}");
            let text = g.read_file(&p).map_err(gerr("read drop-in"))?;
            files.push((p, text));
        }
    }
    let texts: Vec<(String, String)> = files
        .into_iter()
        .map(|(p, t)| (p, String::from_utf8_lossy(&t).into_owned()))
        .collect();
    let refs: Vec<(&str, &str)> = texts
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    Ok(unitfile::marker_conditions(&refs)
        .into_iter()
        .map(|(v, _)| v)
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
}
