//! The Debian root file system under the suite's Debian-based test images:
//! agnhost's network tools (upstream's image adds Alpine's curl,
//! netcat-openbsd, bind-tools, iproute2 and iperf) and glibc-dns-testing
//! (upstream's is Debian bookworm with dnsutils). mmdebstrap makes it from
//! the definition's suite and mirror with the packages below, pinned, in
//! the Essential variant with merged /usr and without /dev, as an
//! uncompressed tar used as the images' base layer. Cached under
//! `<cache>/conformance-root/<key>.tar`, the key hashing every input.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::definition::Definition;
use crate::locks;
use crate::stages::rootfs::Mmdebstrap;

/// Bumped whenever the way the root is made changes.
const FORMAT: &str = "conformance-root-v1";

/// The tools the suite runs in its test pods, pinned to the bookworm/main
/// versions (as the definitions pin theirs).
pub const PACKAGES: &[&str] = &[
    "curl=7.88.1-10+deb12u15",
    "netcat-openbsd=1.219-1",
    "bind9-dnsutils=1:9.18.49-1~deb12u1",
    "iproute2=6.1.0-3",
    "iperf=2.1.8+dfsg-1",
];

/// mmdebstrap options: merged /usr through its hook (so apt installs
/// `usr-is-merged`, not `usrmerge` and Perl), no device nodes in the tar
/// (a container runtime makes /dev).
const OPTIONS: &[&str] = &[
    "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
    "--skip=output/dev",
];

const VARIANT: &str = "essential";

/// The run, for `def`'s suite and mirror.
fn run<'a>(def: &'a Definition, include: &'a [String], options: &'a [String]) -> Mmdebstrap<'a> {
    Mmdebstrap {
        variant: VARIANT,
        suite: &def.base.suite,
        mirror: def.base.mirror.as_str(),
        include,
        options,
    }
}

/// The cached root tar for `def`'s suite and mirror, made now if needed.
pub fn ensure(def: &Definition, cache: &Path, epoch: i64, offline: bool) -> Result<PathBuf> {
    let include: Vec<String> = PACKAGES.iter().map(|p| p.to_string()).collect();
    let options: Vec<String> = OPTIONS.iter().map(|o| o.to_string()).collect();
    let mmdebstrap_run = run(def, &include, &options);
    let key = mmdebstrap_run.cache_key(FORMAT, Some(epoch));
    let dir = cache.join("conformance-root");
    let path = dir.join(format!("{key}.tar"));
    let entry = format!("conformance-root-{key}");
    let _lock = locks::entry(cache, &entry)?;
    if path.is_file() {
        return Ok(path);
    }
    if offline {
        bail!(
            "the Debian root of the suite's test images ({} packages from {} {}) is not in the cache {} and --offline forbids running mmdebstrap; run once without --offline",
            PACKAGES.len(),
            def.base.mirror,
            def.base.suite,
            dir.display()
        );
    }
    mmdebstrap_run
        .write_tar(&path, &entry, Some(epoch), "the test images' Debian root")
        .with_context(|| {
            format!(
                "making the test images' Debian {} root with mmdebstrap ({}); a pin the mirror no longer carries fails here: update conformance::debian_root::PACKAGES",
                def.base.suite,
                PACKAGES.join(" ")
            )
        })?;
    Ok(path)
}

/// The paths (absolute, `/`-led) and regular-file contents the images need
/// from the root: every entry's path, and the files named in `read`.
pub struct Listing {
    pub paths: std::collections::BTreeSet<String>,
    pub files: std::collections::BTreeMap<String, Vec<u8>>,
}

/// Lists `root`'s entries and reads the files named in `read`.
pub fn list(root: &Path, read: &[&str]) -> Result<Listing> {
    let f = fs::File::open(root).with_context(|| format!("opening {}", root.display()))?;
    let mut archive = tar::Archive::new(f);
    let mut paths = std::collections::BTreeSet::new();
    let mut files = std::collections::BTreeMap::new();
    for e in archive
        .entries()
        .with_context(|| format!("reading {}", root.display()))?
    {
        let mut e = e.with_context(|| format!("reading {}", root.display()))?;
        let p = e.path()?.display().to_string();
        let abs = format!("/{}", p.trim_start_matches("./").trim_end_matches('/'));
        if read.contains(&abs.as_str()) {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut buf)
                .with_context(|| format!("reading {abs} from {}", root.display()))?;
            files.insert(abs.clone(), buf);
        }
        paths.insert(abs);
    }
    for r in read {
        if !files.contains_key(*r) {
            bail!("{} has no {r}", root.display());
        }
    }
    Ok(Listing { paths, files })
}

/// Whether a program named `name` is on the image's PATH in the root.
pub fn has_program(listing: &Listing, name: &str) -> bool {
    [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ]
    .iter()
    .any(|d| listing.paths.contains(&format!("{d}/{name}")))
}
