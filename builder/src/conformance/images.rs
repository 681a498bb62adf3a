//! The suite's test images, made offline under the names the suite asks
//! for (`localhost/kubebake/<name>:<tag>`, through the repository list),
//! assembled as OCI archives like the node's baked images and imported
//! into every minion's containerd (`ctr -n k8s.io images import`). They
//! never go into the node image: only `kubebake conformance` puts them on a
//! cluster.
//!
//! | suite image | made of |
//! |---|---|
//! | `busybox:1.37.0-1` | Debian's busybox-static 1.35 with every applet linked in /bin, passwd/group, /tmp; CMD sh |
//! | `agnhost:2.63.0`, `agnhost:2.55` | agnhost built from the Kubernetes module (`main.Version` stamped), `/agnhost-2`, porter's `localhost.crt`/`.key`, `/uploads`, the image's user and group, busybox's applets for the shell tools (sh, nc, wget, nslookup); ENTRYPOINT /agnhost, CMD pause |
//! | `nautilus:1.8` | the agnhost image with the module's `nautilus.jpg` and `data.json`; CMD test-webserver |
//! | `nginx:1.15-4` | a stand-in: busybox `httpd` on port 80 (no conformance test talks to nginx; it must run and become ready) |
//! | `pause:3.10.2` | the node's baked pause image |
//!
//! Not made (the tests that need them fail, see docs/conformance.md):
//! agnhost's curl, dig and getent (Alpine packages upstream);
//! `glibc-dns-testing` (Debian's dig and getent); `kitten` (pulled with
//! `Always`); `etcd` and `sample-apiserver` for the aggregator test.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::tools::{Tools, AGNHOST_VERSION};
use crate::oci::{write_archive, ImageSpec, LayerEntry};

/// The registry prefix the repository list points the suite at.
pub const PREFIX: &str = "localhost/kubebake";

/// An image written for the suite.
#[derive(Debug, Clone, Serialize)]
pub struct Made {
    pub reference: String,
    pub archive: PathBuf,
    /// `sha256:…` of the image manifest.
    pub digest: String,
}

/// Busybox's applets (`busybox --list`), run on the host: the binary is
/// static.
fn applets(busybox: &Path) -> Result<Vec<String>> {
    let out = Command::new(busybox)
        .arg("--list")
        .output()
        .with_context(|| format!("running {} --list", busybox.display()))?;
    if !out.status.success() {
        bail!("{} --list failed", busybox.display());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox" && !a.contains('/'))
        .map(str::to_string)
        .collect())
}

/// What every test image has: busybox and its applets in /bin, /tmp, the
/// users the tests name.
struct Base {
    files: Vec<LayerEntry>,
    links: Vec<(String, String)>,
    dirs: Vec<(String, u32)>,
}

fn base(tools: &Tools, work: &Path, extra_passwd: &str, extra_group: &str) -> Result<Base> {
    let passwd = work.join(format!("passwd{}", extra_passwd.len()));
    std::fs::write(
        &passwd,
        format!("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n{extra_passwd}"),
    )?;
    let group = work.join(format!("group{}", extra_group.len()));
    std::fs::write(
        &group,
        format!("root:x:0:\nnogroup:x:65534:\n{extra_group}"),
    )?;
    let links = applets(&tools.busybox)?
        .into_iter()
        .map(|a| (format!("/bin/{a}"), "busybox".to_string()))
        .collect();
    Ok(Base {
        files: vec![
            entry("/bin/busybox", &tools.busybox, 0o755),
            entry("/etc/passwd", &passwd, 0o644),
            entry("/etc/group", &group, 0o644),
        ],
        links,
        dirs: vec![("/tmp".into(), 0o1777), ("/root".into(), 0o700)],
    })
}

fn entry(path: &str, source: &Path, mode: u32) -> LayerEntry {
    LayerEntry {
        path: path.to_string(),
        source: source.to_path_buf(),
        mode,
    }
}

/// The specs of every test image.
pub fn specs(tools: &Tools, work: &Path, epoch: i64) -> Result<Vec<ImageSpec>> {
    std::fs::create_dir_all(work).with_context(|| format!("creating {}", work.display()))?;
    let file = |name: &str| tools.files.join(name);
    let plain = base(tools, work, "", "")?;
    let busybox = ImageSpec {
        reference: format!("{PREFIX}/busybox:1.37.0-1"),
        files: plain.files.clone(),
        links: plain.links.clone(),
        dirs: plain.dirs.clone(),
        entrypoint: vec![],
        cmd: vec!["sh".into()],
        epoch,
    };
    let index = work.join("index.html");
    std::fs::write(
        &index,
        "<html><body>kubebake stand-in for nginx</body></html>\n",
    )?;
    let mut nginx_files = plain.files.clone();
    nginx_files.push(entry("/usr/share/nginx/html/index.html", &index, 0o644));
    let nginx = ImageSpec {
        reference: format!("{PREFIX}/nginx:1.15-4"),
        files: nginx_files,
        links: plain.links.clone(),
        dirs: plain.dirs.clone(),
        entrypoint: vec![
            "/bin/busybox".into(),
            "httpd".into(),
            "-f".into(),
            "-p".into(),
            "80".into(),
            "-h".into(),
            "/usr/share/nginx/html".into(),
        ],
        cmd: vec![],
        epoch,
    };
    // agnhost's image user and group (a SupplementalGroups test names them).
    let with_users = base(
        tools,
        work,
        "user-defined-in-image:x:1000:1000::/home/user-defined-in-image:/bin/sh\n",
        "user-defined-in-image:x:1000:\ngroup-defined-in-image:x:50000:user-defined-in-image\n",
    )?;
    let mut agnhost_files = with_users.files.clone();
    agnhost_files.push(entry("/agnhost", &tools.agnhost, 0o755));
    agnhost_files.push(entry("/localhost.crt", &file("localhost.crt"), 0o644));
    agnhost_files.push(entry("/localhost.key", &file("localhost.key"), 0o644));
    let mut agnhost_links = with_users.links.clone();
    agnhost_links.push(("/agnhost-2".into(), "agnhost".into()));
    let mut agnhost_dirs = with_users.dirs.clone();
    agnhost_dirs.push(("/uploads".into(), 0o755));
    let agnhost = |tag: &str| ImageSpec {
        reference: format!("{PREFIX}/agnhost:{tag}"),
        files: agnhost_files.clone(),
        links: agnhost_links.clone(),
        dirs: agnhost_dirs.clone(),
        entrypoint: vec!["/agnhost".into()],
        cmd: vec!["pause".into()],
        epoch,
    };
    let mut nautilus_files = agnhost_files.clone();
    nautilus_files.push(entry("/nautilus.jpg", &file("nautilus.jpg"), 0o644));
    nautilus_files.push(entry("/data.json", &file("nautilus-data.json"), 0o644));
    let nautilus = ImageSpec {
        reference: format!("{PREFIX}/nautilus:1.8"),
        files: nautilus_files,
        links: agnhost_links.clone(),
        dirs: agnhost_dirs.clone(),
        entrypoint: vec!["/agnhost".into()],
        cmd: vec!["test-webserver".into()],
        epoch,
    };
    Ok(vec![
        busybox,
        agnhost(AGNHOST_VERSION),
        agnhost("2.55"),
        nautilus,
        nginx,
    ])
}

/// Writes every test image's archive under `dir`.
pub fn write_all(tools: &Tools, dir: &Path, epoch: i64) -> Result<Vec<Made>> {
    let specs = specs(tools, &dir.join("work"), epoch)?;
    specs
        .iter()
        .map(|s| {
            let name = s
                .reference
                .trim_start_matches(&format!("{PREFIX}/"))
                .replace([':', '/'], "_");
            let archive = dir.join(format!("{name}.oci.tar"));
            let d = write_archive(s, &archive)
                .with_context(|| format!("writing the image {}", s.reference))?;
            Ok(Made {
                reference: s.reference.clone(),
                archive,
                digest: d.manifest,
            })
        })
        .collect()
}

/// Whether `ctr images ls` output lists `m` at its digest already.
fn present(listing: &str, m: &Made) -> bool {
    listing.lines().any(|l| {
        let mut cols = l.split_whitespace();
        cols.next() == Some(m.reference.as_str()) && cols.any(|c| c == m.digest)
    })
}

/// Imports `images` into the containerd (namespace k8s.io) of the VM at
/// `ip`, over ssh in the cluster's namespace; an image already there at the
/// same digest is left alone. Returns how many were imported.
pub fn import(netns: &str, key: &Path, ip: &str, images: &[Made]) -> Result<usize> {
    let listing = harness::ssh::run(
        netns,
        key,
        ip,
        "sudo /usr/local/bin/ctr -n k8s.io images ls",
    )?;
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    let mut imported = 0;
    for m in images.iter().filter(|m| !present(&listing, m)) {
        let input = std::fs::File::open(&m.archive)
            .with_context(|| format!("opening {}", m.archive.display()))?;
        // As kubebake-images.service imports the baked images: into the
        // CRI's namespace, labelled pinned (the kubelet's image garbage
        // collection leaves them).
        let out = harness::ssh::run_with_input(
            netns,
            key,
            ip,
            &format!(
                "sudo /usr/local/bin/ctr -n k8s.io images import - && sudo /usr/local/bin/ctr -n k8s.io images label {} io.cri-containerd.pinned=pinned",
                m.reference
            ),
            input,
        )?;
        if !out.status.success() {
            bail!(
                "importing {} on {ip}: {}{}",
                m.reference,
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        imported += 1;
    }
    Ok(imported)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_at_the_same_digest_is_not_imported_again() {
        let m = Made {
            reference: "localhost/kubebake/agnhost:2.63.0".into(),
            archive: "/x".into(),
            digest: "sha256:aa".into(),
        };
        let listing = "REF TYPE DIGEST SIZE PLATFORMS LABELS\nlocalhost/kubebake/agnhost:2.63.0 application/vnd.oci.image.manifest.v1+json sha256:aa 30.1 MiB linux/amd64 -\n";
        assert!(present(listing, &m));
        assert!(!present(&listing.replace("sha256:aa", "sha256:bb"), &m));
        assert!(!present(&listing.replace("2.63.0", "2.55"), &m));
    }

    #[test]
    fn images_have_the_names_the_suite_asks_for_and_busybox_applets() {
        let bb = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file());
        let Some(bb) = bb else {
            panic!("busybox-static is installed by scripts/setup-host.sh");
        };
        let dir = tempfile::tempdir().expect("tempdir");
        for f in [
            "localhost.crt",
            "localhost.key",
            "nautilus.jpg",
            "nautilus-data.json",
        ] {
            std::fs::write(dir.path().join(f), "x").expect("write");
        }
        let agnhost = dir.path().join("agnhost");
        std::fs::write(&agnhost, "x").expect("write");
        let tools = Tools {
            version: "1.36.4".into(),
            e2e_test: "/x".into(),
            ginkgo: "/x".into(),
            kubectl: "/x".into(),
            agnhost,
            busybox: bb,
            files: dir.path().to_path_buf(),
            reused: true,
        };
        let made = write_all(&tools, &dir.path().join("images"), 1_700_000_000).expect("images");
        let refs: Vec<&str> = made.iter().map(|m| m.reference.as_str()).collect();
        assert_eq!(
            refs,
            [
                "localhost/kubebake/busybox:1.37.0-1",
                "localhost/kubebake/agnhost:2.63.0",
                "localhost/kubebake/agnhost:2.55",
                "localhost/kubebake/nautilus:1.8",
                "localhost/kubebake/nginx:1.15-4",
            ]
        );
        let specs = specs(&tools, &dir.path().join("w"), 0).expect("specs");
        let links: Vec<&str> = specs[0].links.iter().map(|(p, _)| p.as_str()).collect();
        for a in [
            "/bin/sh",
            "/bin/sleep",
            "/bin/wget",
            "/bin/nc",
            "/bin/nslookup",
        ] {
            assert!(links.contains(&a), "busybox image lacks {a}");
        }
        assert_eq!(specs[1].entrypoint, ["/agnhost"]);
        assert_eq!(specs[1].cmd, ["pause"]);
        assert!(specs[1]
            .links
            .contains(&("/agnhost-2".to_string(), "agnhost".to_string())));
    }
}
