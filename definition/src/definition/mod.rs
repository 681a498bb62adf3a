//! Image definitions: YAML in `images/`, parsed into raw serde structs
//! ([`raw`]), then checked and converted by an explicit validation pass
//! ([`validate`]: one function per section; `builds:` and
//! `container-images:` in [`builds`], Go builds in [`go`], the field helpers
//! they all share in [`fields`]) into the [`Definition`] model the rest of
//! the builder uses.
//!
//! YAML is read with `serde-saphyr` rather than `serde_yaml`: serde_yaml is
//! deprecated and unmaintained, while serde-saphyr is maintained, never
//! panics on malformed input (it has parse budgets against hostile documents),
//! and reports errors with line/column positions.
//!
//! Validation collects every problem before returning, and runs before
//! anything is downloaded. Every [`FieldError`] names the file, the field
//! path (`artifacts[2].sha256`) and what to do.

mod builds;
mod fields;
mod go;
mod raw;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use url::Url;

use crate::digest::Digest;

/// How to load a definition.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Where `units/` and `dropins/` live. Default: the parent of the
    /// definition file's directory (definitions live in `<root>/images/`).
    pub data_root: Option<PathBuf>,
    /// Also accept `http://` and `file://` artifact URLs.
    pub allow_insecure_urls: bool,
}

/// A validated image definition.
#[derive(Debug, Clone, Serialize)]
pub struct Definition {
    /// The definition file as given.
    pub source: PathBuf,
    /// Directory holding `units/` and `dropins/` (absolute).
    pub data_root: PathBuf,
    pub name: String,
    pub version: String,
    /// The Kubernetes version the units are written for (`kubernetes-version:`),
    /// exposed to templates as `kubernetes.version` / `kubernetes.minor`.
    pub kubernetes_version: Option<KubernetesVersion>,
    pub base: Base,
    pub artifacts: Vec<Artifact>,
    /// Artifacts built from pinned sources by recipes (see [`Build`]).
    pub builds: Vec<Build>,
    /// Container images baked into the image for nodes without a registry.
    pub container_images: Vec<ContainerImage>,
    pub units: Vec<Unit>,
    pub mask: Vec<String>,
    /// file name -> (key -> value), rendered to `/etc/sysctl.d/<file>`.
    pub sysctl: BTreeMap<String, BTreeMap<String, String>>,
    /// file name -> modules, rendered to `/etc/modules-load.d/<file>`.
    pub modules_load: BTreeMap<String, Vec<String>>,
    pub files: Vec<FileEntry>,
    pub links: Vec<Link>,
    pub variables: BTreeMap<String, String>,
    pub outputs: Outputs,
}

/// A Kubernetes release `MAJOR.MINOR.PATCH` (no leading `v`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct KubernetesVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl KubernetesVersion {
    /// Parses `1.36.4`: three dot-separated decimal numbers, no leading zeros.
    pub fn parse(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split('.').collect();
        let num = |p: &str| -> Option<u32> {
            if p.is_empty()
                || !p.bytes().all(|b| b.is_ascii_digit())
                || (p.len() > 1 && p.starts_with('0'))
            {
                return None;
            }
            p.parse().ok()
        };
        match parts.as_slice() {
            [a, b, c] => match (num(a), num(b), num(c)) {
                (Some(major), Some(minor), Some(patch)) => Ok(KubernetesVersion {
                    major,
                    minor,
                    patch,
                }),
                _ => Err(Self::hint(s)),
            },
            _ => Err(Self::hint(s)),
        }
    }

    fn hint(s: &str) -> String {
        let extra = if s.starts_with('v') {
            " without the leading `v`"
        } else {
            ""
        };
        format!("invalid Kubernetes version {s:?}: write MAJOR.MINOR.PATCH{extra}, quoted, e.g. \"1.36.4\"")
    }
}

impl fmt::Display for KubernetesVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Base {
    pub suite: String,
    pub mirror: Url,
    pub packages: Vec<Package>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Package {
    pub name: String,
    /// Pinned version (`name=version`), if any.
    pub version: Option<String>,
}

impl Package {
    /// `name` or `name=version`, as apt and mmdebstrap take it.
    pub fn spec(&self) -> String {
        match &self.version {
            Some(v) => format!("{}={}", self.name, v),
            None => self.name.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Artifact {
    pub name: String,
    pub version: String,
    pub url: Url,
    pub digest: Digest,
    pub install: Install,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Install {
    /// The artifact itself is the file.
    Binary { path: ImagePath, mode: u32 },
    /// Members of a `.tar.gz` / `.tgz` artifact.
    Archive(Vec<ArchiveMember>),
}

impl Install {
    /// Every image path this install writes.
    pub fn paths(&self) -> Vec<&ImagePath> {
        match self {
            Install::Binary { path, .. } => vec![path],
            Install::Archive(members) => members.iter().map(|m| &m.path).collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArchiveMember {
    /// Path inside the archive, e.g. `./loopback`.
    pub member: String,
    pub path: ImagePath,
    pub mode: u32,
}

/// Something to download and verify: an artifact or a build's source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Download {
    /// `artifact` for artifacts, `build/file` for build sources.
    pub name: String,
    /// For messages: `artifact kubelet`, `source x.tar.gz of build kubernetes`.
    pub label: String,
    pub url: Url,
    pub digest: Digest,
}

impl Definition {
    /// Every download the build needs: artifacts, then build sources.
    pub fn downloads(&self) -> Vec<Download> {
        let artifacts = self.artifacts.iter().map(|a| Download {
            name: a.name.clone(),
            label: format!("artifact {}", a.name),
            url: a.url.clone(),
            digest: a.digest,
        });
        let sources = self.builds.iter().flat_map(|b| {
            b.sources().iter().map(|s| Download {
                name: format!("{}/{}", b.name, s.file_name),
                label: format!("source {} of build {}", s.file_name, b.name),
                url: s.url.clone(),
                digest: s.digest,
            })
        });
        artifacts.chain(sources).collect()
    }

    pub fn build(&self, name: &str) -> Option<&Build> {
        self.builds.iter().find(|b| b.name == name)
    }
}

/// An artifact built on the build host from pinned inputs: a recipe over
/// pinned source tarballs, or Go packages from modules pinned by `go.sum`.
///
/// Recipe builds: the builder fetches and verifies the sources, unpacks the
/// tarballs into a fresh tree, applies the patches in order, checks the
/// pinned toolchain packages, and runs the recipe with a cleared
/// environment; the recipe writes the declared outputs into `$KUBEBAKE_OUT`
/// (`stages/source_build.rs`). Go builds: the `go` command fetches the
/// modules of a `go.mod`/`go.sum` kept beside the definition through the
/// module proxy, checksum-verified, with a pinned toolchain, and builds each
/// output's package (`stages/go_build.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Build {
    pub name: String,
    pub version: String,
    /// Debian packages that must be installed at these versions on the host.
    pub toolchain: Vec<Package>,
    pub kind: BuildKind,
    pub outputs: Vec<BuildOutput>,
}

impl Build {
    pub fn output(&self, name: &str) -> Option<&BuildOutput> {
        self.outputs.iter().find(|o| o.name == name)
    }

    /// The sources to download (recipe builds; Go modules are fetched by `go`).
    pub fn sources(&self) -> &[Source] {
        match &self.kind {
            BuildKind::Recipe(r) => &r.sources,
            BuildKind::Go(_) => &[],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BuildKind {
    Recipe(RecipeBuild),
    Go(GoBuild),
}

/// A recipe run over pinned source tarballs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecipeBuild {
    /// The recipe as written (relative to the definition's directory).
    pub recipe: String,
    /// The recipe file on the host (absolute).
    pub recipe_path: PathBuf,
    pub sources: Vec<Source>,
    pub patches: Vec<Patch>,
}

/// Go programs built from published modules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GoBuild {
    /// The directory holding `go.mod` and `go.sum`, as written (relative to
    /// the definition's directory).
    pub module_dir: String,
    /// That directory on the host (absolute).
    pub module_dir_path: PathBuf,
    /// The Go toolchain, `go1.N.P` (`GOTOOLCHAIN`; fetched as a module).
    pub toolchain: String,
    /// `CGO_ENABLED=1` (C compiler and headers from `toolchain:` packages).
    pub cgo: bool,
    /// `go build -tags`.
    pub tags: Vec<String>,
    /// Extra linker flags (e.g. `-s`, `-w`); kubebake adds `-buildid=`.
    pub ldflags: Vec<String>,
    /// Version stamps, `-X <package>.<variable>=<value>`; values may use
    /// `{version}` (the build's version) and `{date}` (`SOURCE_DATE_EPOCH`
    /// as `YYYY-MM-DDTHH:MM:SSZ`).
    pub stamps: BTreeMap<String, String>,
}

impl GoBuild {
    /// Whether any stamp depends on `SOURCE_DATE_EPOCH`.
    pub fn uses_date(&self) -> bool {
        self.stamps.values().any(|v| v.contains("{date}"))
    }
}

/// Where a build output comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutputFrom {
    /// Written by the recipe into `$KUBEBAKE_OUT`.
    Recipe,
    /// `go build` of this main package.
    Package(String),
    /// One C file inside a module of the build list, compiled by the host's
    /// `cc` (e.g. Kubernetes' `build/pause/linux/pause.c`).
    C(CProgram),
    /// One file of a module of the build list, copied as it is (Weave
    /// Net's `weave` script).
    ModuleFile(ModuleFile),
    /// `go test -c` of this package: a test binary (Kubernetes'
    /// `e2e.test`).
    TestPackage(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModuleFile {
    /// A module of the build's `go.mod` build list.
    pub module: String,
    /// The file, relative to the module's root.
    pub file: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CProgram {
    /// A module of the build's `go.mod` build list.
    pub module: String,
    /// The C file, relative to the module's root.
    pub file: String,
    /// Compiler flags, e.g. `-Os -static`.
    pub cflags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Source {
    pub url: Url,
    pub digest: Digest,
    /// The last segment of the URL: the name the recipe sees in
    /// `$KUBEBAKE_SOURCES`.
    pub file_name: String,
    /// Unpack this tarball into the build tree (`None`: only copied into
    /// `$KUBEBAKE_SOURCES`).
    pub unpack: Option<Unpack>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Unpack {
    pub strip_components: u32,
}

/// A patch applied with `patch -p1` from the tree root, in definition order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Patch {
    /// A patch file kept beside the definition.
    File { file: String, path: PathBuf },
    /// A quilt series inside the unpacked tree (e.g. `debian/patches/series`):
    /// every patch it lists, in order, relative to the series' directory.
    Series { series: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildOutput {
    /// File name of the output (in `$KUBEBAKE_OUT` for recipes).
    pub name: String,
    pub from: OutputFrom,
    /// Where it is installed in the image (`None`: used by other sections,
    /// e.g. `container-images`, but not installed as a file).
    pub install: Option<(ImagePath, u32)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerImage {
    pub name: String,
    /// The image reference containerd knows it by, e.g.
    /// `localhost/kubebake/pause:1.36.4`.
    pub reference: String,
    pub content: ImageContent,
}

impl ContainerImage {
    /// Where the OCI archive of a baked image lives in the node image.
    pub fn archive_path(&self) -> ImagePath {
        ImagePath::from_validated(format!("{}/{}.oci.tar", CONTAINER_IMAGE_DIR, self.name))
    }
}

/// Directory of the baked OCI archives inside the node image; a boot unit
/// imports every `*.oci.tar` here into containerd.
pub const CONTAINER_IMAGE_DIR: &str = "/var/lib/kubebake/images";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageContent {
    /// One layer assembled from build outputs, written as an OCI archive.
    Assembled {
        files: Vec<LayerFile>,
        entrypoint: Vec<String>,
        cmd: Vec<String>,
    },
    /// A registry image pinned by manifest digest: not baked, the node's
    /// runtime pulls exactly this digest (needs a registry).
    Pinned { digest: Digest },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerFile {
    /// Absolute path inside the container image.
    pub path: String,
    pub build: String,
    pub output: String,
    pub mode: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unit {
    pub name: String,
    pub role: Option<Role>,
    /// Extra drop-in names (`x.conf`), template `dropins/x.conf.hbs`.
    pub dropins: Vec<String>,
}

impl Unit {
    /// `/etc/systemd/system/<name>`.
    pub fn install_path(&self) -> String {
        format!("/etc/systemd/system/{}", self.name)
    }
}

/// Node role a unit belongs to: the same type rolectl activates (from the
/// shared `kubebake-contract` crate), so the marker paths the units are
/// conditioned on have one definition.
pub use contract::role::Role;

/// What the builder knows about a role beyond rolectl.
pub trait RoleExt {
    /// Role drop-in template file name under `dropins/`.
    fn dropin_template(self) -> &'static str;
}

impl RoleExt for Role {
    fn dropin_template(self) -> &'static str {
        match self {
            Role::Master => "role-master.conf.hbs",
            Role::Minion => "role-minion.conf.hbs",
        }
    }
}

/// Parses a unit's `role:` value.
pub fn parse_role(s: &str) -> Result<Role, String> {
    Role::try_from(s).map_err(|_| {
        format!("unknown role {s:?}: use `master` or `minion`, or omit `role` for a unit shared by both")
    })
}

/// An absolute, normalized path inside the image (no `..`, no `//`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ImagePath(String);

impl ImagePath {
    /// Checks that `p` is absolute, normalized (no `//`, `.`, `..`), not `/`
    /// and not under `/proc`, `/sys`, `/dev`, `/run` or `/tmp`.
    pub fn new(p: &str) -> Result<Self, String> {
        fields::check_image_path(p).map(|()| ImagePath(p.to_string()))
    }

    /// For paths built from already validated parts (the renderer joins
    /// validated unit and file names onto fixed directories); anything
    /// else goes through [`ImagePath::new`].
    pub fn from_validated(p: String) -> Self {
        ImagePath(p)
    }

    /// The path as written, starting with `/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path without its leading `/`.
    pub fn relative(&self) -> &str {
        self.0.trim_start_matches('/')
    }

    /// This path below an image root directory on the host.
    pub fn in_root(&self, root: &Path) -> PathBuf {
        root.join(self.relative())
    }
}

impl fmt::Display for ImagePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileEntry {
    pub path: ImagePath,
    pub mode: u32,
    /// Strict handlebars template.
    pub content: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Link {
    pub path: ImagePath,
    pub target: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Outputs {
    pub raw: bool,
    pub qcow2: bool,
    /// Disk size in bytes.
    pub disk_size: u64,
}

/// One problem in a definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub file: PathBuf,
    /// Field path such as `artifacts[2].sha256`; `.` for the whole document.
    pub field: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: {}",
            self.file.display(),
            self.field,
            self.message
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    #[error("reading image definition {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", format_invalid(file, errors))]
    Invalid {
        file: PathBuf,
        errors: Vec<FieldError>,
    },
}

impl DefinitionError {
    /// The individual problems (one for a read error).
    pub fn field_errors(&self) -> Vec<FieldError> {
        match self {
            DefinitionError::Read { path, source } => vec![FieldError {
                file: path.clone(),
                field: ".".to_string(),
                message: format!("cannot read the file: {source}"),
            }],
            DefinitionError::Invalid { errors, .. } => errors.clone(),
        }
    }
}

fn format_invalid(file: &Path, errors: &[FieldError]) -> String {
    let mut s = format!(
        "{} is not a valid image definition ({} error{}):",
        file.display(),
        errors.len(),
        if errors.len() == 1 { "" } else { "s" }
    );
    for e in errors {
        s.push_str("\n  ");
        s.push_str(&e.to_string());
    }
    s
}

/// Reads, parses and validates a definition file.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Definition, DefinitionError> {
    let text = std::fs::read_to_string(path).map_err(|source| DefinitionError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_str(&text, path, opts)
}

/// Parses and validates definition text; `source` is used in messages and to
/// find the default data root.
pub fn parse_str(
    text: &str,
    source: &Path,
    opts: &LoadOptions,
) -> Result<Definition, DefinitionError> {
    let raw = parse_raw(text, source)?;
    let data_root = match &opts.data_root {
        Some(root) => absolute(root),
        None => default_data_root(source),
    };
    validate::validate(raw, source, data_root, opts)
}

/// `<dir of the definition>/..`, made absolute.
pub fn default_data_root(source: &Path) -> PathBuf {
    let abs = absolute(source);
    abs.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"))
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

fn parse_raw(text: &str, source: &Path) -> Result<raw::RawDefinition, DefinitionError> {
    let mut field: Option<String> = None;
    let result = serde_saphyr::with_deserializer_from_str(text, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            field = Some(format_serde_path(e.path()));
            e.into_inner()
        })
    });
    result.map_err(|e| {
        // serde-saphyr appends a source snippet; keep the first line, which
        // already carries the line and column.
        let full = e.to_string();
        let first = full.lines().next().unwrap_or_default();
        let message = first.strip_prefix("error: ").unwrap_or(first).to_string();
        let hint = parse_hint(&message);
        DefinitionError::Invalid {
            file: source.to_path_buf(),
            errors: vec![FieldError {
                file: source.to_path_buf(),
                field: field.unwrap_or_else(|| ".".to_string()),
                message: format!("{message}{hint}"),
            }],
        }
    })
}

fn parse_hint(message: &str) -> &'static str {
    if message.contains("unknown field") {
        " (remove the key or fix its spelling; keys are kebab-case)"
    } else if message.contains("missing field") {
        " (add the required key)"
    } else {
        ""
    }
}

/// Formats a serde path like our validation paths: `a.b[2]."x.y"`.
fn format_serde_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in path.iter() {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } => push_key(&mut out, key),
            Segment::Enum { variant } => push_key(&mut out, variant),
            Segment::Unknown => push_key(&mut out, "?"),
        }
    }
    if out.is_empty() {
        ".".to_string()
    } else {
        out
    }
}

/// Appends `.key`, quoting keys that contain anything but `[A-Za-z0-9_-]`.
pub(crate) fn push_key(out: &mut String, key: &str) {
    if !out.is_empty() {
        out.push('.');
    }
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        out.push_str(key);
    } else {
        out.push_str(&format!("{key:?}"));
    }
}

/// Builds a field path from a prefix and a map key: `sysctl."90-k8s.conf"`.
pub(crate) fn key_path(prefix: &str, key: &str) -> String {
    let mut s = prefix.to_string();
    push_key(&mut s, key);
    s
}

#[cfg(test)]
mod kubernetes_version_tests {
    use super::KubernetesVersion;

    #[test]
    fn parses_major_minor_patch() {
        let v = KubernetesVersion::parse("1.36.4").expect("valid");
        assert_eq!((v.major, v.minor, v.patch), (1, 36, 4));
        assert_eq!(v.to_string(), "1.36.4");
        assert!(KubernetesVersion::parse("1.37.0").expect("valid") > v);
        assert!(KubernetesVersion::parse("1.36.10").expect("valid") > v);
    }

    #[test]
    fn rejects_other_forms() {
        for bad in [
            "v1.36.4", "1.36", "1.36.4.1", "1.036.4", "1.x.2", "", "1..2",
        ] {
            let err = KubernetesVersion::parse(bad).expect_err(bad);
            assert!(err.contains("MAJOR.MINOR.PATCH"), "{err}");
        }
        assert!(KubernetesVersion::parse("v1.36.4")
            .expect_err("v")
            .contains("without the leading `v`"));
    }
}
