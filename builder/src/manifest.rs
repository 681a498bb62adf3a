//! The manifest written beside the image: everything baked in, with digests,
//! so that `kubebake inspect` can prove the image is what the build says.
//!
//! Every type of the manifest's JSON is here; the stages fill them
//! (`stages::overlay` the artifacts and files, `stages::rootfs` the packages,
//! `stages::source_build` and `stages::go_build` the builds' [`Provenance`],
//! which is also each build cache entry's `provenance.json`, `oci` the
//! container images' [`ImageDigests`]; `build` assembles the [`Manifest`]).

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

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

/// An artifact as installed, for the manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InstalledArtifact {
    pub name: String,
    pub version: String,
    pub url: String,
    pub sha256: String,
    /// The digest the definition pinned (sha256:… or sha512:…).
    pub pinned: String,
    pub paths: Vec<WrittenFile>,
}

/// A file kubebake wrote into the image, for the manifest and for inspect.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WrittenFile {
    pub path: String,
    pub sha256: String,
    pub mode: String,
}

/// A source-built artifact: where it came from and where it went.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BuiltArtifact {
    #[serde(flatten)]
    pub provenance: Provenance,
    /// The outputs installed as files in the image.
    pub paths: Vec<WrittenFile>,
}

/// Provenance of one built artifact, as recorded in the cache entry and the
/// image manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Provenance {
    pub name: String,
    pub version: String,
    /// Hash of every input (see the `stages::source_build` module documentation).
    pub cache_key: String,
    /// Recipe builds: the recipe, its sources and patches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipe: Option<RecipeInfo>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceInfo>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<PatchInfo>,
    /// Go builds: go.mod/go.sum, toolchain and flags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub go: Option<GoInfo>,
    pub toolchain: Vec<ToolchainPackage>,
    pub source_date_epoch: Option<i64>,
    pub outputs: Vec<OutputInfo>,
    /// How long the recipe ran when this entry was made.
    pub build_seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RecipeInfo {
    pub path: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SourceInfo {
    pub url: String,
    /// The pinned digest (`sha256:…` or `sha512:…`), verified when fetched.
    pub digest: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PatchInfo {
    /// `debian/patches/x.patch` (from a series in the tree) or the file
    /// beside the definition.
    pub path: String,
    pub sha256: String,
}

/// Provenance of a Go build (the manifest's `builds[].go`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GoInfo {
    /// The directory of go.mod and go.sum, relative to the definition.
    pub module_dir: String,
    pub go_mod_sha256: String,
    pub go_sum_sha256: String,
    /// `GOTOOLCHAIN`, and what `go env GOVERSION` said under it.
    pub toolchain: String,
    pub go_version: String,
    pub cgo: bool,
    /// The `go build` flags every binary was built with.
    pub flags: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ToolchainPackage {
    pub package: String,
    pub version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OutputInfo {
    pub name: String,
    pub sha256: String,
    pub size: u64,
    /// Go builds: the package or C file, its module, version and `h1:` hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub go: Option<GoOutputInfo>,
}

/// Where one output of a Go build came from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GoOutputInfo {
    /// The main package (`go build`), `module/file.c` (`cc`) or
    /// `module/file` (copied).
    pub source: String,
    /// The module that provides it, at the version of the build list.
    pub module: String,
    pub version: String,
    /// The module's `h1:` hash from go.sum (checkable against the public
    /// checksum database).
    pub sum: String,
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

/// The digests of an assembled image, for the manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageDigests {
    /// `sha256:…` of the image manifest: what containerd reports as the
    /// image's digest (`ctr images ls`, `crictl images --digests`).
    pub manifest: String,
    pub config: String,
    /// `sha256:…` of the image's own (uncompressed) layer: its diff ID.
    pub layer: String,
}

/// One installed Debian package, as dpkg records it in the image.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InstalledPackage {
    pub name: String,
    pub version: String,
    pub architecture: String,
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
