//! Raw definition -> validated [`Definition`], collecting every error:
//! [`validate`] runs one function per section of the definition, in the
//! order of the sections (so errors come out in that order); the field
//! helpers they share are in `fields.rs`, `builds:` and `container-images:`
//! in `builds.rs`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use url::Url;

use super::fields::{
    claim, image_path, is_file_name, is_image_name, one_digest, parse_mode, parse_package,
    parse_url, string_scalar, Ctx,
};
use super::raw::{
    RawArtifact, RawBase, RawDefinition, RawFile, RawInstall, RawLink, RawOutputs, RawUnit, Scalar,
};
use super::{
    key_path, ArchiveMember, Artifact, Base, Definition, DefinitionError, FileEntry, Install,
    KubernetesVersion, Link, LoadOptions, Outputs, RoleExt, Unit,
};

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;
const TIB: u64 = 1 << 40;

const UNIT_SUFFIXES: [&str; 5] = [".service", ".socket", ".timer", ".target", ".path"];

/// Who installs each image path so far (`claim`): the field that does.
type Owners = HashMap<String, String>;

/// The index in `units:` of each unit name.
type UnitNames = HashMap<String, usize>;

/// Validates every section of `raw`; all errors or the [`Definition`].
pub(super) fn validate(
    raw: RawDefinition,
    source: &Path,
    data_root: PathBuf,
    opts: &LoadOptions,
) -> Result<Definition, DefinitionError> {
    let mut cx = Ctx {
        file: source,
        errors: Vec::new(),
    };

    if !is_image_name(&raw.name) {
        cx.err(
            "name",
            format!(
                "invalid image name {:?}: use lowercase letters, digits and '-', starting with a letter or digit (it names the output files)",
                raw.name
            ),
        );
    }
    let version = string_scalar(&mut cx, "version", &raw.version).unwrap_or_default();
    let kubernetes_version = validate_kubernetes_version(&mut cx, raw.kubernetes_version.as_ref());
    let base = validate_base(&mut cx, raw.base);
    let mut owners = Owners::new();
    let artifacts = validate_artifacts(&mut cx, raw.artifacts, &mut owners, opts);
    // builds: and container-images: (builds.rs).
    let (builds, declared_outputs) =
        super::builds::validate_builds(&mut cx, raw.builds, source, &mut owners, opts);
    let container_images = super::builds::validate_container_images(
        &mut cx,
        raw.container_images,
        &declared_outputs,
        &mut owners,
    );
    let (units, unit_names) = validate_units(&mut cx, raw.units, &data_root);
    validate_mask(&mut cx, &raw.mask, &unit_names);
    let sysctl = validate_sysctl(&mut cx, raw.sysctl);
    let modules_load = validate_modules_load(&mut cx, raw.modules_load);
    let files = validate_files(&mut cx, raw.files, &mut owners);
    let links = validate_links(&mut cx, raw.links, &mut owners);
    let variables = validate_variables(&mut cx, raw.variables);
    let outputs = validate_outputs(&mut cx, raw.outputs);

    if !cx.errors.is_empty() {
        return Err(DefinitionError::Invalid {
            file: source.to_path_buf(),
            errors: cx.errors,
        });
    }
    let Some(base) = base else {
        // Unreachable: validate_base reports an error whenever it returns None.
        return Err(DefinitionError::Invalid {
            file: source.to_path_buf(),
            errors: vec![],
        });
    };
    Ok(Definition {
        source: source.to_path_buf(),
        data_root,
        name: raw.name,
        version,
        kubernetes_version,
        base,
        artifacts,
        builds,
        container_images,
        units,
        mask: raw.mask,
        sysctl,
        modules_load,
        files,
        links,
        variables,
        outputs,
    })
}

/// `kubernetes-version:` (optional): a quoted `MAJOR.MINOR.PATCH`.
fn validate_kubernetes_version(
    cx: &mut Ctx<'_>,
    raw: Option<&Scalar>,
) -> Option<KubernetesVersion> {
    match raw {
        None => None,
        Some(Scalar::Str(s)) => match KubernetesVersion::parse(s) {
            Ok(v) => Some(v),
            Err(msg) => {
                cx.err("kubernetes-version", msg);
                None
            }
        },
        Some(other) => {
            cx.err(
                "kubernetes-version",
                format!(
                    "must be a quoted string MAJOR.MINOR.PATCH, got {} (YAML may have changed it): quote it, e.g. \"1.36.4\"",
                    other.describe()
                ),
            );
            None
        }
    }
}

/// `base:`: the Debian suite, mirror and packages.
fn validate_base(cx: &mut Ctx<'_>, b: RawBase) -> Option<Base> {
    let before = cx.errors.len();
    if b.suite.trim().is_empty() {
        cx.err(
            "base.suite",
            "suite is empty: name a Debian suite, e.g. bookworm",
        );
    }
    let mirror = match Url::parse(&b.mirror) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
        Ok(u) => {
            cx.err(
                "base.mirror",
                format!(
                    "mirror must be an http:// or https:// URL, got scheme {:?}: e.g. http://deb.debian.org/debian",
                    u.scheme()
                ),
            );
            None
        }
        Err(e) => {
            cx.err(
                "base.mirror",
                format!("invalid mirror URL {:?}: {e}", b.mirror),
            );
            None
        }
    };
    let mut packages = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, spec) in b.packages.iter().enumerate() {
        let f = format!("base.packages[{i}]");
        match parse_package(spec) {
            Ok(p) => {
                if let Some(prev) = seen.insert(p.name.clone(), i) {
                    cx.err(
                        &f,
                        format!(
                            "package {:?} is listed twice (also base.packages[{prev}]): list it once",
                            p.name
                        ),
                    );
                }
                packages.push(p);
            }
            Err(msg) => cx.err(&f, msg),
        }
    }
    if cx.errors.len() != before {
        return None;
    }
    Some(Base {
        suite: b.suite,
        mirror: mirror?,
        packages,
    })
}

/// `artifacts:`: unique names, each artifact (`validate_artifact`), and the
/// image paths it installs claimed in `owners`.
fn validate_artifacts(
    cx: &mut Ctx<'_>,
    raw: Vec<RawArtifact>,
    owners: &mut Owners,
    opts: &LoadOptions,
) -> Vec<Artifact> {
    let mut artifacts = Vec::new();
    let mut artifact_names: HashMap<String, usize> = HashMap::new();
    for (i, a) in raw.into_iter().enumerate() {
        let p = format!("artifacts[{i}]");
        if let Some(prev) = artifact_names.insert(a.name.clone(), i) {
            cx.err(
                format!("{p}.name"),
                format!(
                    "duplicate artifact name {:?} (also artifacts[{prev}]): give each artifact a unique name",
                    a.name
                ),
            );
        }
        if let Some(art) = validate_artifact(cx, &p, a, opts) {
            for (j, path) in art.install.paths().into_iter().enumerate() {
                let field = match &art.install {
                    Install::Binary { .. } => format!("{p}.install.binary.path"),
                    Install::Archive(_) => format!("{p}.install.archive[{j}].path"),
                };
                claim(cx, owners, path, field);
            }
            artifacts.push(art);
        }
    }
    artifacts
}

/// One entry of `artifacts:`: name, version, URL, digest, install.
fn validate_artifact(
    cx: &mut Ctx<'_>,
    p: &str,
    a: RawArtifact,
    opts: &LoadOptions,
) -> Option<Artifact> {
    let before = cx.errors.len();
    if !is_image_name(&a.name) {
        cx.err(
            format!("{p}.name"),
            format!(
                "invalid artifact name {:?}: use lowercase letters, digits and '-'",
                a.name
            ),
        );
    }
    let version = string_scalar(cx, &format!("{p}.version"), &a.version);

    let url = parse_url(cx, &format!("{p}.url"), &a.url, opts);

    let digest = one_digest(cx, p, a.sha256.as_deref(), a.sha512.as_deref());

    let is_tar = url.as_ref().is_some_and(|u| {
        let path = u.path();
        path.ends_with(".tar.gz") || path.ends_with(".tgz")
    });
    let install = validate_install(cx, p, a.install, is_tar);

    if cx.errors.len() != before {
        return None;
    }
    Some(Artifact {
        name: a.name,
        version: version?,
        url: url?,
        digest: digest?,
        install: install?,
    })
}

/// An artifact's `install:`: one binary or archive members (a tarball URL).
fn validate_install(cx: &mut Ctx<'_>, p: &str, i: RawInstall, is_tar: bool) -> Option<Install> {
    match (i.binary, i.archive) {
        (Some(_), Some(_)) => {
            cx.err(
                format!("{p}.install"),
                "both `binary` and `archive` are set: use exactly one",
            );
            None
        }
        (None, None) => {
            cx.err(
                format!("{p}.install"),
                "nothing to install: add `binary: {path, mode}` or `archive: [{member, path, mode}]`",
            );
            None
        }
        (Some(b), None) => {
            let path = image_path(cx, &format!("{p}.install.binary.path"), &b.path);
            let mode = parse_mode(cx, &format!("{p}.install.binary.mode"), &b.mode);
            Some(Install::Binary {
                path: path?,
                mode: mode?,
            })
        }
        (None, Some(members)) => {
            let before = cx.errors.len();
            if !is_tar {
                cx.err(
                    format!("{p}.install.archive"),
                    "archive install needs a .tar.gz or .tgz URL: use `binary` for a single file",
                );
            }
            if members.is_empty() {
                cx.err(
                    format!("{p}.install.archive"),
                    "empty archive member list: list the members to install",
                );
            }
            let mut out = Vec::new();
            for (j, m) in members.into_iter().enumerate() {
                let mp = format!("{p}.install.archive[{j}]");
                let member_ok = !m.member.is_empty()
                    && !m.member.starts_with('/')
                    && !m.member.split('/').any(|c| c == "..")
                    && !m.member.contains(['\n', '\0']);
                if !member_ok {
                    cx.err(
                        format!("{mp}.member"),
                        format!("invalid archive member {:?}: give the relative path inside the archive, e.g. ./loopback (no leading '/', no '..')", m.member),
                    );
                }
                let path = image_path(cx, &format!("{mp}.path"), &m.path);
                let mode = parse_mode(cx, &format!("{mp}.mode"), &m.mode);
                if let (Some(path), Some(mode), true) = (path, mode, member_ok) {
                    out.push(ArchiveMember {
                        member: m.member,
                        path,
                        mode,
                    });
                }
            }
            (cx.errors.len() == before).then_some(Install::Archive(out))
        }
    }
}

/// `units:`: unit names and their templates, roles and their drop-in
/// templates, drop-ins; also returns the index of each unit name (for
/// `mask:`).
fn validate_units(cx: &mut Ctx<'_>, raw: Vec<RawUnit>, data_root: &Path) -> (Vec<Unit>, UnitNames) {
    let mut units = Vec::new();
    let mut unit_names = UnitNames::new();
    for (i, u) in raw.into_iter().enumerate() {
        let p = format!("units[{i}]");
        let name_ok = check_unit_name(cx, &format!("{p}.name"), &u.name);
        if let Some(prev) = unit_names.insert(u.name.clone(), i) {
            cx.err(
                format!("{p}.name"),
                format!(
                    "duplicate unit {:?} (also units[{prev}]): list each unit once",
                    u.name
                ),
            );
        }
        if name_ok {
            let tpl = data_root.join("units").join(format!("{}.hbs", u.name));
            if !tpl.is_file() {
                cx.err(
                    format!("{p}.name"),
                    format!(
                        "unit template {} does not exist: create units/{}.hbs under the data root {} or remove the unit",
                        tpl.display(),
                        u.name,
                        data_root.display()
                    ),
                );
            }
        }
        let role = match u.role.as_deref() {
            None => None,
            Some(r) => match super::parse_role(r) {
                Ok(role) => Some(role),
                Err(msg) => {
                    cx.err(format!("{p}.role"), msg);
                    None
                }
            },
        };
        if let Some(role) = role {
            let tpl = data_root.join("dropins").join(role.dropin_template());
            if !tpl.is_file() {
                cx.err(
                    format!("{p}.role"),
                    format!(
                        "unit {:?} has role {role} but the role drop-in template {} does not exist: create dropins/{} under the data root",
                        u.name,
                        tpl.display(),
                        role.dropin_template()
                    ),
                );
            }
        }
        let mut dropins = Vec::new();
        let mut seen = HashSet::new();
        for (j, d) in u.dropins.iter().enumerate() {
            let f = format!("{p}.dropins[{j}]");
            let name = d.strip_suffix(".hbs").unwrap_or(d);
            if !is_file_name(name) || !name.ends_with(".conf") {
                cx.err(
                    &f,
                    format!("invalid drop-in name {d:?}: use a file name like `tuning.conf` ([0-9A-Za-z._-], ending in .conf) whose template is dropins/<name>.hbs"),
                );
                continue;
            }
            if name == "role.conf" {
                cx.err(
                    &f,
                    "drop-in name role.conf is reserved for the role drop-in: rename it",
                );
                continue;
            }
            if !seen.insert(name.to_string()) {
                cx.err(
                    &f,
                    format!("drop-in {name:?} is listed twice: list it once"),
                );
                continue;
            }
            let tpl = data_root.join("dropins").join(format!("{name}.hbs"));
            if !tpl.is_file() {
                cx.err(
                    &f,
                    format!(
                        "drop-in template {} does not exist: create dropins/{name}.hbs under the data root {} or remove the entry",
                        tpl.display(),
                        data_root.display()
                    ),
                );
            }
            dropins.push(name.to_string());
        }
        units.push(Unit {
            name: u.name,
            role,
            dropins,
        });
    }
    (units, unit_names)
}

/// `mask:`: unit names, none both installed (`units:`) and masked, none
/// twice.
fn validate_mask(cx: &mut Ctx<'_>, mask: &[String], unit_names: &UnitNames) {
    let mut masked = HashSet::new();
    for (i, m) in mask.iter().enumerate() {
        let f = format!("mask[{i}]");
        if check_unit_name(cx, &f, m) {
            if let Some(u) = unit_names.get(m) {
                cx.err(
                    &f,
                    format!(
                        "unit {m:?} is both installed (units[{u}]) and masked: do one or the other"
                    ),
                );
            }
            if !masked.insert(m.clone()) {
                cx.err(&f, format!("unit {m:?} is masked twice: list it once"));
            }
        }
    }
}

/// `sysctl:`: sysctl.d file names, each with keys and one-line values.
fn validate_sysctl(
    cx: &mut Ctx<'_>,
    raw: BTreeMap<String, BTreeMap<String, Scalar>>,
) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut sysctl = BTreeMap::new();
    for (file, entries) in raw {
        let fp = key_path("sysctl", &file);
        if !is_conf_file_name(&file) {
            cx.err(
                &fp,
                format!("invalid sysctl.d file name {file:?}: use [0-9A-Za-z._-] ending in .conf, e.g. 90-kubernetes.conf"),
            );
        }
        if entries.is_empty() {
            cx.err(
                &fp,
                "no settings: add `key: \"value\"` entries or remove the file",
            );
        }
        let mut out = BTreeMap::new();
        for (key, value) in entries {
            let kp = key_path(&fp, &key);
            if key.is_empty()
                || !key
                    .chars()
                    .all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_' | '.' | '-'))
            {
                cx.err(
                    &kp,
                    format!(
                        "invalid sysctl key {key:?}: use [a-z0-9_.-], e.g. net.ipv4.ip_forward"
                    ),
                );
            }
            let v = match &value {
                Scalar::Str(s) => Some(s.clone()),
                Scalar::Int(i) => Some(i.to_string()),
                other => {
                    cx.err(
                        &kp,
                        format!(
                            "sysctl value must be a string, got {}: quote it, e.g. \"1\"",
                            other.describe()
                        ),
                    );
                    None
                }
            };
            if let Some(v) = v {
                if v.trim().is_empty() || v.contains(['\n', '\r']) {
                    cx.err(&kp, "sysctl value must be non-empty and on one line");
                }
                out.insert(key, v);
            }
        }
        sysctl.insert(file, out);
    }
    sysctl
}

/// `modules-load:`: modules-load.d file names, each with module names.
fn validate_modules_load(
    cx: &mut Ctx<'_>,
    raw: BTreeMap<String, Vec<String>>,
) -> BTreeMap<String, Vec<String>> {
    let mut modules_load = BTreeMap::new();
    for (file, modules) in raw {
        let fp = key_path("modules-load", &file);
        if !is_conf_file_name(&file) {
            cx.err(
                &fp,
                format!("invalid modules-load.d file name {file:?}: use [0-9A-Za-z._-] ending in .conf, e.g. kubernetes.conf"),
            );
        }
        if modules.is_empty() {
            cx.err(&fp, "no modules: list module names or remove the file");
        }
        for (i, m) in modules.iter().enumerate() {
            if m.is_empty()
                || !m
                    .chars()
                    .all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_' | '-'))
            {
                cx.err(
                    format!("{fp}[{i}]"),
                    format!("invalid module name {m:?}: use [a-z0-9_-], e.g. br_netfilter"),
                );
            }
        }
        modules_load.insert(file, modules);
    }
    modules_load
}

/// `files:`: image paths (claimed in `owners`) and modes.
fn validate_files(cx: &mut Ctx<'_>, raw: Vec<RawFile>, owners: &mut Owners) -> Vec<FileEntry> {
    let mut files = Vec::new();
    for (i, f) in raw.into_iter().enumerate() {
        let p = format!("files[{i}]");
        let path = image_path(cx, &format!("{p}.path"), &f.path);
        let mode = parse_mode(cx, &format!("{p}.mode"), &f.mode);
        if let (Some(path), Some(mode)) = (path, mode) {
            claim(cx, owners, &path, format!("{p}.path"));
            files.push(FileEntry {
                path,
                mode,
                content: f.content,
            });
        }
    }
    files
}

/// `links:`: image paths (claimed in `owners`) and one-line targets.
fn validate_links(cx: &mut Ctx<'_>, raw: Vec<RawLink>, owners: &mut Owners) -> Vec<Link> {
    let mut links = Vec::new();
    for (i, l) in raw.into_iter().enumerate() {
        let p = format!("links[{i}]");
        let path = image_path(cx, &format!("{p}.path"), &l.path);
        if l.target.is_empty() || l.target.contains(['\n', '\0']) {
            cx.err(
                format!("{p}.target"),
                "link target must be a non-empty path on one line",
            );
        }
        if let Some(path) = path {
            claim(cx, owners, &path, format!("{p}.path"));
            links.push(Link {
                path,
                target: l.target,
            });
        }
    }
    links
}

/// `variables:`: handlebars identifiers the renderer does not reserve,
/// string values.
fn validate_variables(cx: &mut Ctx<'_>, raw: BTreeMap<String, Scalar>) -> BTreeMap<String, String> {
    let mut variables = BTreeMap::new();
    for (k, v) in raw {
        let kp = key_path("variables", &k);
        if !is_variable_name(&k) {
            cx.err(
                &kp,
                format!(
                    "invalid variable name {k:?}: use [a-z_][a-z0-9_]* (handlebars identifiers)"
                ),
            );
        }
        if matches!(
            k.as_str(),
            "image" | "unit" | "role" | "marker" | "container_images" | "kubernetes"
        ) {
            cx.err(
                &kp,
                format!("variable name {k:?} is reserved by the renderer: rename it"),
            );
        }
        match v {
            Scalar::Str(s) => {
                variables.insert(k, s);
            }
            other => cx.err(
                &kp,
                format!(
                    "variables must be strings, got {}: quote the value",
                    other.describe()
                ),
            ),
        }
    }
    variables
}

/// `outputs:`: at least one format, a disk size of at least 1 GiB.
fn validate_outputs(cx: &mut Ctx<'_>, o: RawOutputs) -> Outputs {
    if !o.raw && !o.qcow2 {
        cx.err(
            "outputs",
            "no output format selected: set `raw: true` and/or `qcow2: true`",
        );
    }
    let disk_size = match &o.disk_size {
        Scalar::Str(s) => match parse_size(s) {
            Ok(n) if n < GIB => {
                cx.err(
                    "outputs.disk-size",
                    format!("disk-size {s:?} is below the minimum of 1GiB: use e.g. \"4GiB\""),
                );
                0
            }
            Ok(n) => n,
            Err(msg) => {
                cx.err("outputs.disk-size", msg);
                0
            }
        },
        other => {
            cx.err(
                "outputs.disk-size",
                format!(
                    "disk-size must be a size with a unit like \"4GiB\", got {}",
                    other.describe()
                ),
            );
            0
        }
    };
    Outputs {
        raw: o.raw,
        qcow2: o.qcow2,
        disk_size,
    }
}

/// A systemd unit name with one of [`UNIT_SUFFIXES`] (for `units:` and
/// `mask:`).
fn check_unit_name(cx: &mut Ctx<'_>, field: &str, name: &str) -> bool {
    let chars_ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '.' | '@' | '-' | '\\'));
    let suffix_ok = UNIT_SUFFIXES
        .iter()
        .any(|s| name.ends_with(s) && name.len() > s.len());
    if !chars_ok || !suffix_ok {
        cx.err(
            field,
            format!(
                "invalid unit name {name:?}: use [A-Za-z0-9:_.@-] ending in one of {}",
                UNIT_SUFFIXES.join(" ")
            ),
        );
        return false;
    }
    true
}

fn is_conf_file_name(s: &str) -> bool {
    is_file_name(s) && s.len() > ".conf".len() && s.ends_with(".conf")
}

fn is_variable_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Parses `4GiB`, `512MiB`, `4G`, `1TiB` into bytes (M/G/T are binary units).
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit = unit.trim();
    let mult = match unit {
        "MiB" | "M" => MIB,
        "GiB" | "G" => GIB,
        "TiB" | "T" => TIB,
        _ => {
            return Err(format!(
                "invalid disk-size {s:?}: write a whole number with a unit MiB, GiB, TiB (or M, G, T), e.g. \"4GiB\""
            ))
        }
    };
    let n: u64 = num.parse().map_err(|_| {
        format!("invalid disk-size {s:?}: the number must be a whole number, e.g. \"4GiB\"")
    })?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("disk-size {s:?} is too large"))
}
