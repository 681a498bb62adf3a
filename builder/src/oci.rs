//! Container images as OCI archives: the node's baked images and the
//! conformance suite's test images.
//!
//! An assembled image is its own uncompressed layer made of build outputs,
//! optionally on top of a base layer used as it is (a Debian root from
//! mmdebstrap), an image configuration (entrypoint, cmd), a manifest and an
//! index, written as an OCI image layout in a tar archive — the format `ctr
//! images import` reads. One archive may hold several images; a blob they
//! share (a base layer) is stored once. Everything is deterministic: layer
//! entries are sorted, owned by root, stamped with `SOURCE_DATE_EPOCH`; the
//! JSON documents come from the `oci-spec` types. The index names each image
//! twice, with `io.containerd.image.name` (the full reference, which `ctr
//! images import` uses) and `org.opencontainers.image.ref.name` (the tag,
//! per the OCI spec).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, Result};
use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, DescriptorBuilder, Digest as OciDigest, HistoryBuilder,
    ImageConfigurationBuilder, ImageIndexBuilder, ImageManifestBuilder, MediaType,
    OciLayoutBuilder, Os, RootFsBuilder,
};
use sha2::{Digest as _, Sha256};

use crate::manifest::ImageDigests;

/// One file of the image's own layer.
#[derive(Debug, Clone)]
pub struct LayerEntry {
    /// Absolute path inside the container.
    pub path: String,
    /// The file on the host.
    pub source: PathBuf,
    pub mode: u32,
}

/// What to assemble.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    pub reference: String,
    /// A lower layer used as it is: an uncompressed tar of a root file
    /// system. The image's own layer goes on top.
    pub base: Option<PathBuf>,
    pub files: Vec<LayerEntry>,
    /// Symbolic links: (absolute path, target).
    pub links: Vec<(String, String)>,
    /// Directories that must exist even when empty: (absolute path, mode),
    /// e.g. `/tmp` 0o1777.
    pub dirs: Vec<(String, u32)>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// Timestamp for the layer's entries and the config's `created`.
    pub epoch: i64,
}

const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";

/// Writes the OCI archive of `spec` to `dest` and returns its digests.
pub fn write_archive(spec: &ImageSpec, dest: &Path) -> Result<ImageDigests> {
    let mut digests = write_archive_of(std::slice::from_ref(spec), dest)?;
    Ok(digests.remove(0))
}

/// Writes one OCI archive holding every image of `specs` (in that order in
/// its index) to `dest`; returns their digests in the same order.
pub fn write_archive_of(specs: &[ImageSpec], dest: &Path) -> Result<Vec<ImageDigests>> {
    let mtime = specs.first().map_or(0, |s| s.epoch.max(0) as u64);
    let mut blobs = Blobs::default();
    let mut index_manifests = Vec::new();
    let mut digests = Vec::new();
    for spec in specs {
        let (desc, d) = add_image(spec, &mut blobs)?;
        index_manifests.push(desc);
        digests.push(d);
    }
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(index_manifests)
        .build()?;
    // The annotations are a HashMap: serialize through a BTreeMap-backed
    // Value so their order (and the archive's bytes) never vary.
    let index_json = serde_json::to_vec(&sorted(serde_json::to_value(&index)?))?;
    let layout_json = serde_json::to_vec(
        &OciLayoutBuilder::default()
            .image_layout_version("1.0.0".to_string())
            .build()?,
    )?;

    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let file = fs::File::create(dest).with_context(|| format!("creating {}", dest.display()))?;
    let mut tar = DeterministicTar::new(std::io::BufWriter::new(file), mtime);
    tar.dir("blobs", 0o755)?;
    tar.dir("blobs/sha256", 0o755)?;
    let mut files: BTreeMap<String, &[u8]> = BTreeMap::new();
    files.insert("oci-layout".into(), &layout_json);
    files.insert("index.json".into(), &index_json);
    for (hex, bytes) in &blobs.by_hex {
        files.insert(format!("blobs/sha256/{hex}"), bytes);
    }
    for (path, bytes) in files {
        tar.file(&path, bytes, 0o644)?;
    }
    tar.finish()?
        .flush()
        .with_context(|| format!("writing {}", dest.display()))?;
    Ok(digests)
}

/// Blobs by the hex of their sha256: a blob two images share is kept once.
/// A base layer file two images name is read and hashed once.
#[derive(Default)]
struct Blobs {
    by_hex: BTreeMap<String, Vec<u8>>,
    bases: BTreeMap<PathBuf, Descriptor>,
}

impl Blobs {
    /// Stores the base layer file `path` (once) and returns its descriptor.
    fn add_base(&mut self, path: &Path, reference: &str) -> Result<Descriptor> {
        if let Some(d) = self.bases.get(path) {
            return Ok(d.clone());
        }
        let bytes = fs::read(path)
            .with_context(|| format!("reading the base layer {} of {reference}", path.display()))?;
        let d = self.add(MediaType::Other(LAYER_MEDIA_TYPE.to_string()), bytes)?;
        self.bases.insert(path.to_path_buf(), d.clone());
        Ok(d)
    }

    /// Stores `bytes` and returns its descriptor.
    fn add(&mut self, media_type: MediaType, bytes: Vec<u8>) -> Result<Descriptor> {
        let d = descriptor(media_type, &bytes)?;
        self.by_hex
            .entry(d.digest().digest().to_string())
            .or_insert(bytes);
        Ok(d)
    }
}

/// Adds `spec`'s layers, config and manifest to `blobs`; returns the index's
/// descriptor of the image and its digests.
fn add_image(spec: &ImageSpec, blobs: &mut Blobs) -> Result<(Descriptor, ImageDigests)> {
    let mtime = spec.epoch.max(0) as u64;
    let mut layers = Vec::new();
    if let Some(base) = &spec.base {
        layers.push(blobs.add_base(base, &spec.reference)?);
    }
    let own = blobs.add(
        MediaType::Other(LAYER_MEDIA_TYPE.to_string()),
        layer_tar(spec, mtime)?,
    )?;
    let layer_digest = own.digest().to_string();
    layers.push(own);

    let created = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime),
    )
    .to_string();
    let mut config = ConfigBuilder::default()
        .env(vec![
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        ])
        .entrypoint(spec.entrypoint.clone())
        .working_dir("/".to_string());
    if !spec.cmd.is_empty() {
        config = config.cmd(spec.cmd.clone());
    }
    let history = layers
        .iter()
        .map(|_| {
            HistoryBuilder::default()
                .created(created.clone())
                .created_by(format!("kubebake {}", env!("CARGO_PKG_VERSION")))
                .build()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let image_config = ImageConfigurationBuilder::default()
        .created(created.clone())
        .architecture(Arch::Amd64)
        .os(Os::Linux)
        .config(config.build()?)
        .rootfs(
            RootFsBuilder::default()
                .typ("layers".to_string())
                .diff_ids(
                    layers
                        .iter()
                        .map(|l| l.digest().to_string())
                        .collect::<Vec<_>>(),
                )
                .build()?,
        )
        .history(history)
        .build()?;
    let config_desc = blobs.add(MediaType::ImageConfig, serde_json::to_vec(&image_config)?)?;
    let config_digest = config_desc.digest().to_string();

    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config_desc)
        .layers(layers)
        .build()?;
    let mut index_desc = blobs.add(MediaType::ImageManifest, serde_json::to_vec(&manifest)?)?;
    let manifest_digest = index_desc.digest().to_string();

    let tag = spec
        .reference
        .rsplit_once(':')
        .map(|(_, t)| t.to_string())
        .unwrap_or_default();
    let mut annotations = std::collections::HashMap::new();
    annotations.insert(
        "io.containerd.image.name".to_string(),
        spec.reference.clone(),
    );
    annotations.insert("org.opencontainers.image.ref.name".to_string(), tag);
    index_desc.set_annotations(Some(annotations));
    Ok((
        index_desc,
        ImageDigests {
            manifest: manifest_digest,
            config: config_digest,
            layer: layer_digest,
        },
    ))
}

/// The image's own layer: directories first (every parent, and the
/// declared ones with their modes), then the files and links, sorted by
/// path.
fn layer_tar(spec: &ImageSpec, mtime: u64) -> Result<Vec<u8>> {
    let mut dirs: BTreeMap<String, u32> = BTreeMap::new();
    fn parents(dirs: &mut BTreeMap<String, u32>, rel: &str) {
        let mut parent = Path::new(rel).parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            dirs.entry(p.display().to_string()).or_insert(0o755);
            parent = p.parent();
        }
    }
    let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
    for f in &spec.files {
        let rel = f.path.trim_start_matches('/').to_string();
        parents(&mut dirs, &rel);
        let bytes = fs::read(&f.source)
            .with_context(|| format!("reading {} for {}", f.source.display(), spec.reference))?;
        entries.insert(rel, Entry::File(bytes, f.mode));
    }
    for (path, target) in &spec.links {
        let rel = path.trim_start_matches('/').to_string();
        parents(&mut dirs, &rel);
        entries.insert(rel, Entry::Link(target.clone()));
    }
    for (path, mode) in &spec.dirs {
        let rel = path.trim_start_matches('/').to_string();
        parents(&mut dirs, &rel);
        dirs.insert(rel, *mode);
    }
    let mut tar = DeterministicTar::new(Vec::new(), mtime);
    for (path, mode) in &dirs {
        tar.dir(path, *mode)?;
    }
    for (path, entry) in &entries {
        match entry {
            Entry::File(bytes, mode) => tar.file(path, bytes, *mode)?,
            Entry::Link(target) => tar.link(path, target)?,
        }
    }
    tar.finish()
}

/// A layer entry other than a directory.
enum Entry {
    File(Vec<u8>, u32),
    Link(String),
}

/// A tar whose bytes depend only on what is put in it: root-owned entries,
/// one mtime, no host metadata.
struct DeterministicTar<W: Write> {
    builder: tar::Builder<W>,
    mtime: u64,
}

impl<W: Write> DeterministicTar<W> {
    fn new(w: W, mtime: u64) -> Self {
        let mut builder = tar::Builder::new(w);
        builder.mode(tar::HeaderMode::Deterministic);
        Self { builder, mtime }
    }

    fn header(&self, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(self.mtime);
        h.set_uid(0);
        h.set_gid(0);
        h
    }

    fn dir(&mut self, path: &str, mode: u32) -> Result<()> {
        let mut h = self.header(tar::EntryType::Directory, mode, 0);
        self.builder
            .append_data(&mut h, format!("{path}/"), std::io::empty())?;
        Ok(())
    }

    fn file(&mut self, path: &str, bytes: &[u8], mode: u32) -> Result<()> {
        let mut h = self.header(tar::EntryType::Regular, mode, bytes.len() as u64);
        self.builder.append_data(&mut h, path, bytes)?;
        Ok(())
    }

    fn link(&mut self, path: &str, target: &str) -> Result<()> {
        let mut h = self.header(tar::EntryType::Symlink, 0o777, 0);
        self.builder.append_link(&mut h, path, target)?;
        Ok(())
    }

    fn finish(self) -> Result<W> {
        Ok(self.builder.into_inner()?)
    }
}

fn sha256_digest(bytes: &[u8]) -> OciDigest {
    // A 64-hex sha256 always parses.
    OciDigest::from_str(&format!("sha256:{}", hex::encode(Sha256::digest(bytes))))
        .unwrap_or_else(|_| unreachable!("sha256 digests are well-formed"))
}

fn descriptor(media_type: MediaType, bytes: &[u8]) -> Result<Descriptor> {
    Ok(DescriptorBuilder::default()
        .media_type(media_type)
        .digest(sha256_digest(bytes))
        .size(bytes.len() as u64)
        .build()?)
}

/// Rebuilds a JSON value with every object's keys sorted.
fn sorted(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(map) => {
            let sorted: BTreeMap<String, serde_json::Value> =
                map.into_iter().map(|(k, v)| (k, sorted(v))).collect();
            serde_json::Value::Object(sorted.into_iter().collect())
        }
        serde_json::Value::Array(a) => {
            serde_json::Value::Array(a.into_iter().map(sorted).collect())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &Path) -> ImageSpec {
        let bin = dir.join("pause");
        fs::write(&bin, b"\x7fELF not really").unwrap_or_else(|e| panic!("{e}"));
        ImageSpec {
            reference: "localhost/kubebake/pause:1.0".into(),
            base: None,
            files: vec![LayerEntry {
                path: "/bin/pause".into(),
                source: bin,
                mode: 0o755,
            }],
            links: vec![("/bin/sh".into(), "pause".into())],
            dirs: vec![("/tmp".into(), 0o1777)],
            entrypoint: vec!["/bin/pause".into()],
            cmd: vec![],
            epoch: 1_700_000_000,
        }
    }

    #[test]
    fn archive_is_reproducible_and_names_the_image() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let s = spec(dir.path());
        let a = dir.path().join("a.tar");
        let b = dir.path().join("b.tar");
        let da = write_archive(&s, &a)?;
        let db = write_archive(&s, &b)?;
        assert_eq!(da, db);
        assert_eq!(fs::read(&a)?, fs::read(&b)?);

        let mut archive = tar::Archive::new(fs::File::open(&a)?);
        let mut names = BTreeMap::new();
        for e in archive.entries()? {
            let mut e = e?;
            let name = e.path()?.display().to_string();
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut buf)?;
            names.insert(name, buf);
        }
        let index: serde_json::Value = serde_json::from_slice(&names["index.json"])?;
        let m = &index["manifests"][0];
        assert_eq!(m["digest"], da.manifest);
        assert_eq!(
            m["annotations"]["io.containerd.image.name"],
            "localhost/kubebake/pause:1.0"
        );
        // Every blob's name is its digest.
        for (name, bytes) in &names {
            if let Some(hex) = name.strip_prefix("blobs/sha256/") {
                if !hex.is_empty() {
                    assert_eq!(hex, hex::encode(Sha256::digest(bytes)));
                }
            }
        }
        // The layer holds the declared link and directory.
        let layer_hex = da.layer.trim_start_matches("sha256:");
        let mut layer = tar::Archive::new(std::io::Cursor::new(
            names[&format!("blobs/sha256/{layer_hex}")].clone(),
        ));
        let mut seen = BTreeMap::new();
        for e in layer.entries()? {
            let e = e?;
            let kind = e.header().entry_type();
            let link = e.link_name()?.map(|l| l.display().to_string());
            seen.insert(
                e.path()?.display().to_string(),
                (kind, link, e.header().mode()?),
            );
        }
        assert_eq!(
            seen["bin/sh"],
            (tar::EntryType::Symlink, Some("pause".into()), 0o777)
        );
        assert_eq!(seen["tmp/"], (tar::EntryType::Directory, None, 0o1777));
        let manifest_hex = da.manifest.trim_start_matches("sha256:");
        let manifest: serde_json::Value =
            serde_json::from_slice(&names[&format!("blobs/sha256/{manifest_hex}")])?;
        assert_eq!(manifest["layers"][0]["digest"], da.layer);
        Ok(())
    }

    #[test]
    fn images_of_one_archive_share_their_base_layer() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let base = dir.path().join("root.tar");
        let mut root = DeterministicTar::new(Vec::new(), 1);
        root.dir("usr/bin", 0o755)?;
        root.file("usr/bin/dig", b"dig", 0o755)?;
        fs::write(&base, root.finish()?)?;
        let mut a = spec(dir.path());
        a.base = Some(base.clone());
        let mut b = a.clone();
        b.reference = "localhost/kubebake/other:2".into();
        b.cmd = vec!["x".into()];
        let archive = dir.path().join("both.tar");
        let d = write_archive_of(&[a, b], &archive)?;
        assert_eq!(d.len(), 2);
        assert_ne!(d[0].manifest, d[1].manifest);
        assert_eq!(d[0].layer, d[1].layer);

        let mut names = BTreeMap::new();
        for e in tar::Archive::new(fs::File::open(&archive)?).entries()? {
            let mut e = e?;
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut buf)?;
            names.insert(e.path()?.display().to_string(), buf);
        }
        let base_hex = hex::encode(Sha256::digest(fs::read(&base)?));
        let index: serde_json::Value = serde_json::from_slice(&names["index.json"])?;
        let refs: Vec<&str> = index["manifests"]
            .as_array()
            .map(|m| {
                m.iter()
                    .filter_map(|m| m["annotations"]["io.containerd.image.name"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(
            refs,
            ["localhost/kubebake/pause:1.0", "localhost/kubebake/other:2"]
        );
        // Two manifests, two configs, the shared base and the shared own layer.
        let blobs = names
            .keys()
            .filter(|n| n.starts_with("blobs/sha256/") && n.len() > "blobs/sha256/".len())
            .count();
        assert_eq!(blobs, 6);
        let manifest: serde_json::Value = serde_json::from_slice(
            &names[&format!(
                "blobs/sha256/{}",
                d[1].manifest.trim_start_matches("sha256:")
            )],
        )?;
        assert_eq!(
            manifest["layers"][0]["digest"],
            format!("sha256:{base_hex}")
        );
        assert_eq!(manifest["layers"][1]["digest"], d[1].layer);
        let config: serde_json::Value = serde_json::from_slice(
            &names[&format!("blobs/sha256/{}", d[1].config.trim_start_matches("sha256:"))],
        )?;
        assert_eq!(
            config["rootfs"]["diff_ids"].as_array().map(Vec::len),
            Some(2)
        );
        assert_eq!(config["history"].as_array().map(Vec::len), Some(2));
        Ok(())
    }
}
