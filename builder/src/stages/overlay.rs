//! Stage 2: everything kubebake adds on top of the Debian base: verified
//! artifacts, rendered units, drop-ins, sysctl.d, modules-load.d and extra
//! files, symlinks, rolectl, fstab, and the systemd enablement of the units.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use sha2::{Digest as _, Sha256};

use crate::definition::{Artifact, Definition, ImageContent, Install};
use crate::fetch::Fetched;
use crate::hostcmd;
use crate::manifest::{BakedImage, BuiltArtifact, InstalledArtifact, WrittenFile};
use crate::oci;
use crate::render::RenderedFile;
use crate::stages::source_build::{find_output, Built};

/// Where rolectl lives inside the image.
pub const ROLECTL_PATH: &str = "/usr/local/bin/rolectl";

/// Writes `bytes` at `image_path` below `root`, replacing (never modifying
/// in place) whatever was there, and returns its manifest entry.
pub fn write_file(root: &Path, image_path: &str, bytes: &[u8], mode: u32) -> Result<WrittenFile> {
    let dest = in_root(root, image_path)?;
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    if dest.symlink_metadata().is_ok() {
        fs::remove_file(&dest).with_context(|| format!("replacing {}", dest.display()))?;
    }
    fs::write(&dest, bytes).with_context(|| format!("writing {}", dest.display()))?;
    fs::set_permissions(&dest, fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting mode {mode:o} on {}", dest.display()))?;
    Ok(WrittenFile {
        path: image_path.to_string(),
        sha256: hex::encode(Sha256::digest(bytes)),
        mode: format!("{mode:04o}"),
    })
}

/// Maps an absolute image path to the staging tree, refusing `..`.
pub fn in_root(root: &Path, image_path: &str) -> Result<PathBuf> {
    let rel = Path::new(image_path);
    if !rel.is_absolute() || rel.components().any(|c| matches!(c, Component::ParentDir)) {
        bail!("image path {image_path:?} must be absolute and must not contain `..`");
    }
    Ok(root.join(rel.strip_prefix("/").unwrap_or(rel)))
}

/// Installs every fetched artifact as its definition says.
pub fn install_artifacts(
    root: &Path,
    def: &Definition,
    fetched: &[Fetched],
) -> Result<Vec<InstalledArtifact>> {
    def.artifacts
        .iter()
        .map(|artifact| {
            let file = fetched
                .iter()
                .find(|f| f.name == artifact.name)
                .with_context(|| format!("artifact {} was not fetched", artifact.name))?;
            let paths = install_artifact(root, artifact, &file.path).with_context(|| {
                format!(
                    "installing artifact {} from {}",
                    artifact.name,
                    file.path.display()
                )
            })?;
            Ok(InstalledArtifact {
                name: artifact.name.clone(),
                version: artifact.version.clone(),
                url: artifact.url.to_string(),
                sha256: file.sha256.hex(),
                pinned: artifact.digest.to_string(),
                paths,
            })
        })
        .collect()
}

/// Installs the outputs of every source build that have an image path.
pub fn install_built(root: &Path, def: &Definition, built: &[Built]) -> Result<Vec<BuiltArtifact>> {
    def.builds
        .iter()
        .map(|b| {
            let done = built
                .iter()
                .find(|x| x.provenance.name == b.name)
                .with_context(|| format!("build {} was not run", b.name))?;
            let mut paths = Vec::new();
            for o in &b.outputs {
                let Some((path, mode)) = &o.install else {
                    continue;
                };
                let src = done.output_path(&o.name);
                let bytes = fs::read(&src).with_context(|| {
                    format!(
                        "reading output {} of build {} ({})",
                        o.name,
                        b.name,
                        src.display()
                    )
                })?;
                paths.push(write_file(root, path.as_str(), &bytes, *mode)?);
            }
            Ok(BuiltArtifact {
                provenance: done.provenance.clone(),
                paths,
            })
        })
        .collect()
}

/// Writes the OCI archive of every assembled container image into the
/// image; pinned registry images are only recorded.
pub fn bake_container_images(
    root: &Path,
    def: &Definition,
    built: &[Built],
    epoch: i64,
) -> Result<Vec<BakedImage>> {
    def.container_images
        .iter()
        .map(|c| match &c.content {
            ImageContent::Pinned { digest } => Ok(BakedImage {
                name: c.name.clone(),
                reference: c.reference.clone(),
                baked: false,
                digests: None,
                pinned_digest: Some(digest.to_string()),
                archive: None,
            }),
            ImageContent::Assembled {
                files,
                entrypoint,
                cmd,
            } => {
                let entries = files
                    .iter()
                    .map(|f| {
                        let (source, _) = find_output(built, &f.build, &f.output)?;
                        Ok(oci::LayerEntry {
                            path: f.path.clone(),
                            source,
                            mode: f.mode,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                let archive = c.archive_path();
                let dest = in_root(root, archive.as_str())?;
                let digests = oci::write_archive(
                    &oci::ImageSpec {
                        reference: c.reference.clone(),
                        base: None,
                        files: entries,
                        links: Vec::new(),
                        dirs: Vec::new(),
                        entrypoint: entrypoint.clone(),
                        cmd: cmd.clone(),
                        epoch,
                    },
                    &dest,
                )
                .with_context(|| format!("assembling container image {}", c.reference))?;
                let bytes =
                    fs::read(&dest).with_context(|| format!("reading {}", dest.display()))?;
                Ok(BakedImage {
                    name: c.name.clone(),
                    reference: c.reference.clone(),
                    baked: true,
                    digests: Some(digests),
                    pinned_digest: None,
                    archive: Some(WrittenFile {
                        path: archive.as_str().to_string(),
                        sha256: hex::encode(Sha256::digest(&bytes)),
                        mode: "0644".to_string(),
                    }),
                })
            }
        })
        .collect()
}

fn install_artifact(root: &Path, artifact: &Artifact, source: &Path) -> Result<Vec<WrittenFile>> {
    match &artifact.install {
        Install::Binary { path, mode } => {
            let bytes =
                fs::read(source).with_context(|| format!("reading {}", source.display()))?;
            Ok(vec![write_file(root, path.as_str(), &bytes, *mode)?])
        }
        Install::Archive(members) => {
            let file =
                fs::File::open(source).with_context(|| format!("opening {}", source.display()))?;
            let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
            let mut written: Vec<Option<WrittenFile>> = vec![None; members.len()];
            for entry in archive.entries().context("reading the tar.gz archive")? {
                let mut entry = entry.context("reading an archive entry")?;
                let name = normalize_member(
                    &entry
                        .path()
                        .context("archive entry name")?
                        .to_string_lossy(),
                );
                for (i, member) in members.iter().enumerate() {
                    if written[i].is_none() && normalize_member(&member.member) == name {
                        let mut bytes = Vec::new();
                        entry
                            .read_to_end(&mut bytes)
                            .with_context(|| format!("extracting {}", member.member))?;
                        written[i] =
                            Some(write_file(root, member.path.as_str(), &bytes, member.mode)?);
                        break;
                    }
                }
            }
            members
                .iter()
                .zip(written)
                .map(|(member, w)| {
                    w.with_context(|| {
                        format!(
                            "archive member {:?} is not in the archive; check install.archive[].member \
                             (list the archive with `tar tzf`)",
                            member.member
                        )
                    })
                })
                .collect()
        }
    }
}

fn normalize_member(name: &str) -> String {
    name.trim_start_matches("./")
        .trim_end_matches('/')
        .to_string()
}

/// Writes the rendered units, drop-ins, sysctl.d, modules-load.d and files.
pub fn write_rendered(root: &Path, rendered: &[RenderedFile]) -> Result<Vec<WrittenFile>> {
    rendered
        .iter()
        .map(|f| write_file(root, f.path.as_str(), f.content.as_bytes(), f.mode))
        .collect()
}

/// Creates the definition's symlinks.
pub fn make_links(root: &Path, def: &Definition) -> Result<()> {
    for link in &def.links {
        let dest = in_root(root, link.path.as_str())?;
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        if dest.symlink_metadata().is_ok() {
            fs::remove_file(&dest).with_context(|| format!("replacing {}", dest.display()))?;
        }
        symlink(&link.target, &dest)
            .with_context(|| format!("linking {} -> {}", link.path.as_str(), link.target))?;
    }
    Ok(())
}

/// Copies the rolectl binary into the image.
pub fn install_rolectl(root: &Path, rolectl: &Path) -> Result<WrittenFile> {
    let bytes = fs::read(rolectl).with_context(|| {
        format!(
            "reading the rolectl binary {}; build it with `cargo build --release -p rolectl` \
             or pass --rolectl PATH",
            rolectl.display()
        )
    })?;
    write_file(root, ROLECTL_PATH, &bytes, 0o755)
}

/// Writes /etc/fstab for the root filesystem made by the disk stage.
pub fn write_fstab(root: &Path, root_uuid: &str) -> Result<WrittenFile> {
    let fstab = format!(
        "# Written by kubebake. The boot partition (kernel, initrd, syslinux) is not mounted.\n\
         UUID={root_uuid} / ext4 defaults,errors=remount-ro 0 1\n"
    );
    write_file(root, "/etc/fstab", fstab.as_bytes(), 0o644)
}

/// Enables every unit of the definition and masks the `mask` list, offline,
/// with `systemctl --root`.
pub fn enable_units(root: &Path, def: &Definition) -> Result<()> {
    let names: Vec<&str> = def.units.iter().map(|u| u.name.as_str()).collect();
    if !names.is_empty() {
        hostcmd::run(
            Command::new("systemctl")
                .arg(format!("--root={}", root.display()))
                .arg("enable")
                .args(&names),
        )
        .context("enabling the image's units")?;
    }
    if !def.mask.is_empty() {
        hostcmd::run(
            Command::new("systemctl")
                .arg(format!("--root={}", root.display()))
                .arg("mask")
                .args(&def.mask),
        )
        .context("masking units listed under `mask`")?;
    }
    Ok(())
}
