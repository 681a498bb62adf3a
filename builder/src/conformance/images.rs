//! The suite's test images, made offline under the names the suite asks
//! for (`localhost/kubebake/<name>:<tag>`, through the repository list),
//! written as one OCI archive (a base layer two images share is in it
//! once) and imported into every minion's containerd (`ctr -n k8s.io images
//! import`). They never go into the node image: only `kubebake conformance`
//! puts them on a cluster.
//!
//! | suite image | made of |
//! |---|---|
//! | `busybox:1.37.0-1` | the definition's busybox (upstream 1.37.0 compiled static) with every applet linked in /bin, passwd/group, /tmp; CMD sh |
//! | `agnhost:2.63.0`, `agnhost:2.55` | on the Debian root of [`debian_root`] (curl, OpenBSD nc, dig, ip, iperf): agnhost built from the Kubernetes module (`main.Version` stamped), `/agnhost-2`, porter's `localhost.crt`/`.key`, `/uploads`, the image's user and group, busybox's applets for the tools the root lacks (wget, …); ENTRYPOINT /agnhost, CMD pause |
//! | `nautilus:1.8` | the agnhost image with the module's `nautilus.jpg` and `data.json`; CMD test-webserver |
//! | `glibc-dns-testing:2.0.0` | the Debian root (bookworm with dnsutils, as upstream's); CMD bash |
//! | `nginx:1.15-4` | a stand-in: busybox `httpd` on port 80 (no conformance test talks to nginx; it must run and become ready) |
//! | `sample-apiserver:1.29.2` | `k8s.io/sample-apiserver` at the image's Kubernetes version, built with the suite; ENTRYPOINT /sample-apiserver |
//! | `etcd:3.6.8-0` | the node image's own etcd build at /usr/local/bin/etcd |
//! | `nonewprivs:1.4` | the busybox image with `nnp` (test/images/nonewprivs, built with the suite) setuid root at /usr/local/bin/nnp; CMD nnp |
//! | `pause:3.10.2` | the node's baked pause image |
//!
//! Not made (the test that needs it fails, see docs/conformance.md):
//! `kitten` (pulled with `Always` and checked to be Alpine Linux).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::debian_root::{self, Listing};
use super::tools::{Tools, AGNHOST_VERSION};
use crate::definition::Definition;
use crate::oci::{write_archive_of, ImageSpec, LayerEntry};

/// The registry prefix the repository list points the suite at.
pub const PREFIX: &str = "localhost/kubebake";
/// The tags the suite's image manifest (`test/utils/image/manifest.go`)
/// gives the aggregator test's images; kubebake's hold the image's own
/// sample-apiserver and etcd.
const SAMPLE_APISERVER_TAG: &str = "1.29.2";
const ETCD_TAG: &str = "3.6.8-0";
/// test/images/nonewprivs/VERSION.
const NONEWPRIVS_TAG: &str = "1.4";

/// An image written for the suite.
#[derive(Debug, Clone, Serialize)]
pub struct Made {
    pub reference: String,
    /// The archive holding it (every test image is in the same one).
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

/// An image's own layer, before it is named.
#[derive(Clone)]
struct Layer {
    files: Vec<LayerEntry>,
    links: Vec<(String, String)>,
    dirs: Vec<(String, u32)>,
}

impl Layer {
    fn image(
        &self,
        reference: String,
        base: Option<&Path>,
        entrypoint: &[&str],
        cmd: &[&str],
        epoch: i64,
    ) -> ImageSpec {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        ImageSpec {
            reference,
            base: base.map(Path::to_path_buf),
            files: self.files.clone(),
            links: self.links.clone(),
            dirs: self.dirs.clone(),
            entrypoint: strings(entrypoint),
            cmd: strings(cmd),
            epoch,
        }
    }
}

/// The busybox image's layer: busybox and its applets in /bin, /tmp, root
/// and nobody.
fn busybox_layer(tools: &Tools, work: &Path) -> Result<Layer> {
    let passwd = work.join("busybox-passwd");
    std::fs::write(
        &passwd,
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )?;
    let group = work.join("busybox-group");
    std::fs::write(&group, "root:x:0:\nnogroup:x:65534:\n")?;
    let links = applets(&tools.busybox)?
        .into_iter()
        .map(|a| (format!("/bin/{a}"), "busybox".to_string()))
        .collect();
    Ok(Layer {
        files: vec![
            entry("/bin/busybox", &tools.busybox, 0o755),
            entry("/etc/passwd", &passwd, 0o644),
            entry("/etc/group", &group, 0o644),
        ],
        links,
        dirs: vec![("/tmp".into(), 0o1777), ("/root".into(), 0o700)],
    })
}

/// agnhost's layer on the Debian root: agnhost, porter's certificate, the
/// image's user 1000 and group 50000 (a SupplementalGroups test names
/// them) added to the root's passwd and group, busybox for the applets the
/// root has no program of (merged /usr: everything under /usr/bin).
fn agnhost_layer(tools: &Tools, root: &Listing, work: &Path) -> Result<Layer> {
    let passwd = work.join("agnhost-passwd");
    let mut p = root.files["/etc/passwd"].clone();
    p.extend_from_slice(
        b"user-defined-in-image:x:1000:1000::/home/user-defined-in-image:/bin/sh\n",
    );
    std::fs::write(&passwd, p)?;
    let group = work.join("agnhost-group");
    let mut g = root.files["/etc/group"].clone();
    g.extend_from_slice(
        b"user-defined-in-image:x:1000:\ngroup-defined-in-image:x:50000:user-defined-in-image\n",
    );
    std::fs::write(&group, g)?;
    let file = |name: &str| tools.files.join(name);
    let mut links: Vec<(String, String)> = applets(&tools.busybox)?
        .into_iter()
        .filter(|a| !debian_root::has_program(root, a))
        .map(|a| (format!("/usr/bin/{a}"), "busybox".to_string()))
        .collect();
    links.push(("/agnhost-2".into(), "agnhost".into()));
    Ok(Layer {
        files: vec![
            entry("/agnhost", &tools.agnhost, 0o755),
            entry("/localhost.crt", &file("localhost.crt"), 0o644),
            entry("/localhost.key", &file("localhost.key"), 0o644),
            entry("/usr/bin/busybox", &tools.busybox, 0o755),
            entry("/etc/passwd", &passwd, 0o644),
            entry("/etc/group", &group, 0o644),
        ],
        links,
        dirs: vec![("/uploads".into(), 0o755)],
    })
}

fn entry(path: &str, source: &Path, mode: u32) -> LayerEntry {
    LayerEntry {
        path: path.to_string(),
        source: source.to_path_buf(),
        mode,
    }
}

/// The specs of every test image; `root` is the Debian root tar of
/// [`debian_root::ensure`].
pub fn specs(tools: &Tools, root: &Path, work: &Path, epoch: i64) -> Result<Vec<ImageSpec>> {
    std::fs::create_dir_all(work).with_context(|| format!("creating {}", work.display()))?;
    let listing = debian_root::list(root, &["/etc/passwd", "/etc/group"])?;
    let plain = busybox_layer(tools, work)?;
    let busybox = plain.image(
        format!("{PREFIX}/busybox:1.37.0-1"),
        None,
        &[],
        &["sh"],
        epoch,
    );
    let index = work.join("index.html");
    std::fs::write(
        &index,
        "<html><body>kubebake stand-in for nginx</body></html>\n",
    )?;
    let mut nginx_layer = plain.clone();
    nginx_layer
        .files
        .push(entry("/usr/share/nginx/html/index.html", &index, 0o644));
    let nginx = nginx_layer.image(
        format!("{PREFIX}/nginx:1.15-4"),
        None,
        &[
            "/bin/busybox",
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/usr/share/nginx/html",
        ],
        &[],
        epoch,
    );
    // Upstream's is alpine with `nnp` setuid root: run as a user, it prints
    // "Effective uid: 0" unless no_new_privs stops the setuid.
    let mut nnp_layer = plain.clone();
    nnp_layer
        .files
        .push(entry("/usr/local/bin/nnp", &tools.nonewprivs, 0o4755));
    let nonewprivs = nnp_layer.image(
        format!("{PREFIX}/nonewprivs:{NONEWPRIVS_TAG}"),
        None,
        &[],
        &["nnp"],
        epoch,
    );
    let agnhost_layer = agnhost_layer(tools, &listing, work)?;
    let agnhost = |tag: &str| {
        agnhost_layer.image(
            format!("{PREFIX}/agnhost:{tag}"),
            Some(root),
            &["/agnhost"],
            &["pause"],
            epoch,
        )
    };
    let mut nautilus_layer = agnhost_layer.clone();
    let file = |name: &str| tools.files.join(name);
    nautilus_layer
        .files
        .push(entry("/nautilus.jpg", &file("nautilus.jpg"), 0o644));
    nautilus_layer
        .files
        .push(entry("/data.json", &file("nautilus-data.json"), 0o644));
    let nautilus = nautilus_layer.image(
        format!("{PREFIX}/nautilus:1.8"),
        Some(root),
        &["/agnhost"],
        &["test-webserver"],
        epoch,
    );
    let dns = Layer {
        files: vec![],
        links: vec![],
        dirs: vec![],
    }
    .image(
        format!("{PREFIX}/glibc-dns-testing:2.0.0"),
        Some(root),
        &[],
        &["bash"],
        epoch,
    );
    // The aggregator test's pod: the sample API server and its etcd.
    let tmp = vec![("/tmp".to_string(), 0o1777)];
    let sample_apiserver = Layer {
        files: vec![entry("/sample-apiserver", &tools.sample_apiserver, 0o755)],
        links: vec![],
        dirs: tmp.clone(),
    }
    .image(
        format!("{PREFIX}/sample-apiserver:{SAMPLE_APISERVER_TAG}"),
        None,
        &["/sample-apiserver"],
        &[],
        epoch,
    );
    let etcd = Layer {
        files: vec![entry("/usr/local/bin/etcd", &tools.etcd, 0o755)],
        links: vec![],
        dirs: tmp,
    }
    .image(
        format!("{PREFIX}/etcd:{ETCD_TAG}"),
        None,
        &["/usr/local/bin/etcd"],
        &[],
        epoch,
    );
    Ok(vec![
        busybox,
        agnhost(AGNHOST_VERSION),
        agnhost("2.55"),
        nautilus,
        dns,
        nginx,
        sample_apiserver,
        etcd,
        nonewprivs,
    ])
}

/// Makes every test image of `def`'s suite into one archive under `dir`:
/// the Debian root (cached, made by mmdebstrap if needed), then the images.
pub fn make(
    def: &Definition,
    cache: &Path,
    tools: &Tools,
    dir: &Path,
    epoch: i64,
    offline: bool,
) -> Result<Vec<Made>> {
    let root = debian_root::ensure(def, cache, epoch, offline)?;
    write_all(tools, &root, dir, epoch)
}

/// Writes every test image, on the Debian root tar `root`, into one
/// archive under `dir`.
pub fn write_all(tools: &Tools, root: &Path, dir: &Path, epoch: i64) -> Result<Vec<Made>> {
    let specs = specs(tools, root, &dir.join("work"), epoch)?;
    let archive = dir.join("test-images.oci.tar");
    let digests = write_archive_of(&specs, &archive)
        .with_context(|| format!("writing the test images to {}", archive.display()))?;
    Ok(specs
        .iter()
        .zip(digests)
        .map(|(s, d)| Made {
            reference: s.reference.clone(),
            archive: archive.clone(),
            digest: d.manifest,
        })
        .collect())
}

/// Whether `ctr images ls` output lists `m` at its digest already.
fn present(listing: &str, m: &Made) -> bool {
    listing.lines().any(|l| {
        let mut cols = l.split_whitespace();
        cols.next() == Some(m.reference.as_str()) && cols.any(|c| c == m.digest)
    })
}

/// Imports `images` into the containerd (namespace k8s.io) of the VM at
/// `ip`, over ssh in the cluster's namespace. When every image is there at
/// its digest nothing is sent; otherwise their archive is, once. Returns
/// how many images were missing.
pub fn import(netns: &str, key: &Path, ip: &str, images: &[Made]) -> Result<usize> {
    let listing = harness::ssh::run(
        netns,
        key,
        ip,
        "sudo /usr/local/bin/ctr -n k8s.io images ls",
    )?;
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    let missing = images.iter().filter(|m| !present(&listing, m)).count();
    let mut archives: Vec<&Path> = images.iter().map(|m| m.archive.as_path()).collect();
    archives.dedup();
    if missing == 0 {
        return Ok(0);
    }
    for archive in archives {
        let input = std::fs::File::open(archive)
            .with_context(|| format!("opening {}", archive.display()))?;
        // As kubebake-images.service imports the baked images: into the
        // CRI's namespace, labelled pinned (the kubelet's image garbage
        // collection leaves them).
        let labels: Vec<String> = images
            .iter()
            .filter(|m| m.archive == archive)
            .map(|m| {
                format!(
                    " && sudo /usr/local/bin/ctr -n k8s.io images label {} io.cri-containerd.pinned=pinned >/dev/null",
                    m.reference
                )
            })
            .collect();
        let out = harness::ssh::run_with_input(
            netns,
            key,
            ip,
            &format!(
                "sudo /usr/local/bin/ctr -n k8s.io images import - >/dev/null{}",
                labels.concat()
            ),
            input,
        )?;
        if !out.status.success() {
            bail!(
                "importing {} on {ip}: {}{}",
                archive.display(),
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    Ok(missing)
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
            agnhost: agnhost.clone(),
            sample_apiserver: agnhost.clone(),
            nonewprivs: agnhost.clone(),
            etcd: agnhost,
            busybox: bb,
            files: dir.path().to_path_buf(),
            reused: true,
        };
        // A Debian root with the files and programs the images look at.
        let root = dir.path().join("root.tar");
        let mut tar = tar::Builder::new(Vec::new());
        for (path, body) in [
            ("./etc/passwd", "root:x:0:0:root:/root:/bin/bash\n"),
            ("./etc/group", "root:x:0:\n"),
            ("./usr/bin/nc", "nc"),
            ("./usr/bin/sh", "dash"),
        ] {
            let mut h = tar::Header::new_ustar();
            h.set_size(body.len() as u64);
            h.set_mode(0o755);
            tar.append_data(&mut h, path, body.as_bytes()).expect("tar");
        }
        std::fs::write(&root, tar.into_inner().expect("tar")).expect("write");
        let made =
            write_all(&tools, &root, &dir.path().join("images"), 1_700_000_000).expect("images");
        let refs: Vec<&str> = made.iter().map(|m| m.reference.as_str()).collect();
        assert_eq!(
            refs,
            [
                "localhost/kubebake/busybox:1.37.0-1",
                "localhost/kubebake/agnhost:2.63.0",
                "localhost/kubebake/agnhost:2.55",
                "localhost/kubebake/nautilus:1.8",
                "localhost/kubebake/glibc-dns-testing:2.0.0",
                "localhost/kubebake/nginx:1.15-4",
                "localhost/kubebake/sample-apiserver:1.29.2",
                "localhost/kubebake/etcd:3.6.8-0",
                "localhost/kubebake/nonewprivs:1.4",
            ]
        );
        assert!(made.iter().all(|m| m.archive == made[0].archive));
        let specs = specs(&tools, &root, &dir.path().join("w"), 0).expect("specs");
        // nnp is setuid root, and the image runs it by default.
        let nnp = specs.last().expect("nonewprivs");
        assert!(nnp
            .files
            .iter()
            .any(|f| f.path == "/usr/local/bin/nnp" && f.mode == 0o4755));
        assert_eq!(nnp.cmd, ["nnp"]);
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
        let agnhost = &specs[1];
        assert_eq!(agnhost.entrypoint, ["/agnhost"]);
        assert_eq!(agnhost.cmd, ["pause"]);
        assert_eq!(agnhost.base.as_deref(), Some(root.as_path()));
        let links: Vec<&str> = agnhost.links.iter().map(|(p, _)| p.as_str()).collect();
        assert!(links.contains(&"/agnhost-2"));
        // busybox fills in what the root lacks, never over the root's own.
        assert!(links.contains(&"/usr/bin/wget"));
        assert!(!links.contains(&"/usr/bin/nc"));
        assert!(!links.contains(&"/usr/bin/sh"));
        assert!(!links.iter().any(|l| l.starts_with("/bin/")));
        let passwd = agnhost
            .files
            .iter()
            .find(|f| f.path == "/etc/passwd")
            .map(|f| std::fs::read_to_string(&f.source).expect("passwd"))
            .expect("agnhost has /etc/passwd");
        assert!(passwd.starts_with("root:x:0:0:root:/root:/bin/bash\n"));
        assert!(passwd.contains("user-defined-in-image:x:1000:1000:"));
        assert_eq!(specs[4].base.as_deref(), Some(root.as_path()));
    }
}
