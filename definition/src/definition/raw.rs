//! Raw serde structs: the definition exactly as written, before validation.
//!
//! Every struct denies unknown fields and uses kebab-case keys. Values whose
//! YAML typing is ambiguous (modes, sizes, versions, sysctl values) are read as
//! [`Scalar`] so validation can tell a quoted string from an unquoted number
//! and say what to do about it.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawDefinition {
    pub name: String,
    pub version: Scalar,
    /// Kubernetes version the image's units target (`MAJOR.MINOR.PATCH`).
    #[serde(default)]
    pub kubernetes_version: Option<Scalar>,
    pub base: RawBase,
    #[serde(default)]
    pub artifacts: Vec<RawArtifact>,
    #[serde(default)]
    pub builds: Vec<RawBuild>,
    #[serde(default)]
    pub container_images: Vec<RawContainerImage>,
    #[serde(default)]
    pub units: Vec<RawUnit>,
    #[serde(default)]
    pub mask: Vec<String>,
    #[serde(default)]
    pub sysctl: BTreeMap<String, BTreeMap<String, Scalar>>,
    #[serde(default)]
    pub modules_load: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub files: Vec<RawFile>,
    #[serde(default)]
    pub links: Vec<RawLink>,
    #[serde(default)]
    pub variables: BTreeMap<String, Scalar>,
    pub outputs: RawOutputs,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawBase {
    pub suite: String,
    pub mirror: String,
    #[serde(default)]
    pub packages: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawArtifact {
    pub name: String,
    pub version: Scalar,
    pub url: String,
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub sha512: Option<String>,
    pub install: RawInstall,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawInstall {
    #[serde(default)]
    pub binary: Option<RawBinary>,
    #[serde(default)]
    pub archive: Option<Vec<RawMember>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawBinary {
    pub path: String,
    pub mode: Scalar,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawMember {
    pub member: String,
    pub path: String,
    pub mode: Scalar,
}

/// An artifact built here: by a recipe from pinned sources, or by `go`
/// from modules pinned by a `go.sum`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawBuild {
    pub name: String,
    pub version: Scalar,
    #[serde(default)]
    pub recipe: Option<String>,
    #[serde(default)]
    pub go: Option<RawGo>,
    #[serde(default)]
    pub toolchain: Vec<String>,
    #[serde(default)]
    pub sources: Vec<RawSource>,
    #[serde(default)]
    pub patches: Vec<RawPatch>,
    pub outputs: Vec<RawBuildOutput>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawGo {
    pub module_dir: String,
    pub toolchain: String,
    #[serde(default)]
    pub cgo: bool,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub ldflags: Vec<String>,
    #[serde(default)]
    pub stamps: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawSource {
    pub url: String,
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub sha512: Option<String>,
    #[serde(default)]
    pub unpack: Option<RawUnpack>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawUnpack {
    #[serde(default)]
    pub strip_components: Option<Scalar>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawPatch {
    #[serde(default)]
    pub file: Option<String>,
    #[serde(default)]
    pub series: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawBuildOutput {
    pub name: String,
    #[serde(default)]
    pub package: Option<String>,
    #[serde(default)]
    pub c_program: Option<RawCProgram>,
    #[serde(default)]
    pub module_file: Option<RawModuleFile>,
    #[serde(default)]
    pub test_package: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub mode: Option<Scalar>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawCProgram {
    pub module: String,
    pub file: String,
    #[serde(default)]
    pub cflags: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawModuleFile {
    pub module: String,
    pub file: String,
}

/// A container image the node needs without a registry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawContainerImage {
    pub name: String,
    #[serde(rename = "ref")]
    pub reference: String,
    #[serde(default)]
    pub digest: Option<String>,
    #[serde(default)]
    pub files: Option<Vec<RawLayerFile>>,
    #[serde(default)]
    pub entrypoint: Vec<String>,
    #[serde(default)]
    pub cmd: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawLayerFile {
    pub path: String,
    pub from: String,
    pub mode: Scalar,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawUnit {
    pub name: String,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub dropins: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawFile {
    pub path: String,
    pub mode: Scalar,
    pub content: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawLink {
    pub path: String,
    pub target: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawOutputs {
    #[serde(default)]
    pub raw: bool,
    #[serde(default)]
    pub qcow2: bool,
    pub disk_size: Scalar,
}

/// A YAML scalar, remembering whether it was a string or something YAML
/// typed for us (an unquoted `0755` is an integer, `1.10` a float).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar {
    Str(String),
    Int(i128),
    Float(f64),
    Bool(bool),
    Null,
}

impl Scalar {
    /// Short description used in "got ..." messages.
    pub fn describe(&self) -> String {
        match self {
            Scalar::Str(s) => format!("string {s:?}"),
            Scalar::Int(i) => format!("unquoted number {i}"),
            Scalar::Float(f) => format!("unquoted number {f}"),
            Scalar::Bool(b) => format!("boolean {b}"),
            Scalar::Null => "an empty value".to_string(),
        }
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a scalar (a quoted string)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Str(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
                Ok(Scalar::Str(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v.into()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v.into()))
            }
            fn visit_i128<E: de::Error>(self, v: i128) -> Result<Scalar, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar::Float(v))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar::Null)
            }
        }
        deserializer.deserialize_any(V)
    }
}
