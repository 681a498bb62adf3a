//! The manifest written beside the image: everything baked in, with digests,
//! so that `kubebake inspect` can prove the image is what the build says.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::oci::ImageDigests;
use crate::stages::overlay::{InstalledArtifact, WrittenFile};
use crate::stages::rootfs::InstalledPackage;
use crate::stages::source_build::Provenance;

pub const MANIFEST_FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub kubebake_version: String,
    pub image: ImageInfo,
    pub build_time: String,
    pub source_date_epoch: Option<i64>,
    pub definition: DefinitionInfo,
    pub base: BaseInfo,
    pub boot: BootInfo,
    pub outputs: Vec<OutputFile>,
    pub artifacts: Vec<InstalledArtifact>,
    /// Artifacts built from pinned sources, with their provenance.
    #[serde(default)]
    pub builds: Vec<BuiltArtifact>,
    /// Container images baked in (or pinned for the runtime to pull).
    #[serde(default)]
    pub container_images: Vec<BakedImage>,
    pub packages: Vec<InstalledPackage>,
    /// Every file kubebake rendered or copied into the image.
    pub files: Vec<WrittenFile>,
    pub units: Vec<UnitInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageInfo {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DefinitionInfo {
    pub path: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BaseInfo {
    pub suite: String,
    pub mirror: String,
    pub rootfs_cache_key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BootInfo {
    pub kernel_version: String,
    pub cmdline: String,
    pub root_uuid: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OutputFile {
    /// raw, qcow2, kernel or initrd.
    pub kind: String,
    /// File name, relative to the manifest's directory.
    pub file: String,
    pub size: u64,
    pub sha256: String,
}

/// A source-built artifact: where it came from and where it went.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BuiltArtifact {
    #[serde(flatten)]
    pub provenance: Provenance,
    /// The outputs installed as files in the image.
    pub paths: Vec<WrittenFile>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BakedImage {
    pub name: String,
    /// The reference containerd knows the image by.
    pub reference: String,
    /// `true`: the OCI archive is in the image (`archive`); `false`: the
    /// runtime pulls `pinned_digest` from its registry.
    pub baked: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digests: Option<ImageDigests>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned_digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<WrittenFile>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UnitInfo {
    pub name: String,
    /// master, minion, or absent for units every node runs.
    pub role: Option<String>,
    /// The role-marker conditions systemd reads for it (`ConditionPathExists=`
    /// values: its role's marker, or `|<marker>` per role for a unit every
    /// node with a role runs), none for a shared unit.
    #[serde(default)]
    pub conditions: Vec<String>,
    pub masked: bool,
}

impl Manifest {
    pub fn write(&self, path: &Path) -> Result<()> {
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }

    pub fn read(path: &Path) -> Result<Manifest> {
        let text =
            fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("parsing the manifest {}", path.display()))
    }

    pub fn output(&self, kind: &str) -> Option<&OutputFile> {
        self.outputs.iter().find(|o| o.kind == kind)
    }
}

/// SHA-256 (hex) of a file; holes of a sparse file are hashed without
/// being read (the digest is that of every byte).
pub fn sha256_file(path: &Path) -> Result<String> {
    crate::sparse::sha256_sparse(path)
}
