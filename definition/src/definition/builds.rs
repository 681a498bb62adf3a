//! Validation of `builds:` (artifacts built here from pinned sources) and
//! `container-images:` (images baked in for nodes without a registry).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;

use super::fields::{
    claim, image_path, is_file_name, is_image_name, one_digest, parse_digest, parse_mode,
    parse_package, parse_url, relative_file, string_scalar, Ctx,
};
use super::go::{output_from, validate_go, OutputSource};
use super::raw::{RawBuild, RawContainerImage, RawPatch, RawSource, Scalar};
use super::{
    Build, BuildKind, BuildOutput, ContainerImage, ImageContent, LayerFile, LoadOptions, Patch,
    RecipeBuild, Source, Unpack,
};
use crate::digest::Algorithm;

/// `(build, output)` pairs declared in the definition, valid or not, so that
/// a reference to an output of a build with an unrelated error is not
/// reported twice.
pub(super) type DeclaredOutputs = BTreeSet<(String, String)>;

/// Suffixes the builder can unpack (GNU tar detects the compression).
const TARBALL_SUFFIXES: [&str; 6] = [".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tar"];

pub(super) fn validate_builds(
    cx: &mut Ctx<'_>,
    raw: Vec<RawBuild>,
    source: &Path,
    owners: &mut HashMap<String, String>,
    opts: &LoadOptions,
) -> (Vec<Build>, DeclaredOutputs) {
    let def_dir = std::path::absolute(source)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let mut declared = DeclaredOutputs::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut builds = Vec::new();
    for (i, b) in raw.into_iter().enumerate() {
        let p = format!("builds[{i}]");
        for o in &b.outputs {
            declared.insert((b.name.clone(), o.name.clone()));
        }
        if let Some(prev) = names.insert(b.name.clone(), i) {
            cx.err(
                format!("{p}.name"),
                format!(
                    "duplicate build name {:?} (also builds[{prev}]): give each build a unique name",
                    b.name
                ),
            );
        }
        if let Some(build) = validate_build(cx, &p, b, &def_dir, owners, opts) {
            builds.push(build);
        }
    }
    (builds, declared)
}

fn validate_build(
    cx: &mut Ctx<'_>,
    p: &str,
    b: RawBuild,
    def_dir: &Path,
    owners: &mut HashMap<String, String>,
    opts: &LoadOptions,
) -> Option<Build> {
    let before = cx.errors.len();
    if !is_image_name(&b.name) {
        cx.err(
            format!("{p}.name"),
            format!(
                "invalid build name {:?}: use lowercase letters, digits and '-'",
                b.name
            ),
        );
    }
    let version = string_scalar(cx, &format!("{p}.version"), &b.version);

    let mut toolchain = Vec::new();
    for (j, spec) in b.toolchain.iter().enumerate() {
        let f = format!("{p}.toolchain[{j}]");
        match parse_package(spec) {
            Ok(pkg) if pkg.version.is_some() => toolchain.push(pkg),
            Ok(pkg) => cx.err(
                &f,
                format!(
                    "toolchain package {:?} is not pinned: write `{}=<version>` (the build cache and the manifest record the exact toolchain)",
                    pkg.name, pkg.name
                ),
            ),
            Err(msg) => cx.err(&f, msg),
        }
    }

    // Outputs are checked against the kind written, even when its own
    // fields are invalid.
    let is_go = b.go.is_some() && b.recipe.is_none();
    let kind = match (b.recipe, b.go) {
        (Some(recipe), None) => validate_recipe(cx, p, recipe, b.sources, b.patches, def_dir, opts)
            .map(BuildKind::Recipe),
        (None, Some(go)) => {
            if !b.sources.is_empty() {
                cx.err(
                    format!("{p}.sources"),
                    "a Go build has no sources: `go` fetches the modules its go.sum pins; remove `sources`",
                );
            }
            if !b.patches.is_empty() {
                cx.err(
                    format!("{p}.patches"),
                    "a Go build takes no patches: published modules are built as their go.sum pins them; remove `patches`",
                );
            }
            validate_go(cx, p, go, def_dir).map(BuildKind::Go)
        }
        (Some(_), Some(_)) => {
            cx.err(
                p,
                "a build is either a recipe (`recipe:` with `sources:`) or Go modules (`go:`): set exactly one",
            );
            None
        }
        (None, None) => {
            cx.err(
                p,
                "no way to build: give `recipe: <script beside the definition>` with `sources:`, or `go: {module-dir, toolchain}`",
            );
            None
        }
    };

    if b.outputs.is_empty() {
        cx.err(
            format!("{p}.outputs"),
            "no outputs: list the files the recipe writes into $KUBEBAKE_OUT",
        );
    }
    let mut outputs = Vec::new();
    let mut seen = HashSet::new();
    for (j, o) in b.outputs.into_iter().enumerate() {
        let op = format!("{p}.outputs[{j}]");
        if !is_file_name(&o.name) {
            cx.err(
                format!("{op}.name"),
                format!(
                    "invalid output name {:?}: a plain file name ([A-Za-z0-9._-]) the recipe writes into $KUBEBAKE_OUT",
                    o.name
                ),
            );
            continue;
        }
        if !seen.insert(o.name.clone()) {
            cx.err(
                format!("{op}.name"),
                format!("output {:?} is declared twice: declare it once", o.name),
            );
            continue;
        }
        let from = output_from(
            cx,
            &op,
            is_go,
            OutputSource {
                package: o.package,
                c_program: o.c_program,
                module_file: o.module_file,
                test_package: o.test_package,
            },
        );
        let install = match (o.path, o.mode) {
            (None, None) => None,
            (Some(path), Some(mode)) => {
                let path = image_path(cx, &format!("{op}.path"), &path);
                let mode = parse_mode(cx, &format!("{op}.mode"), &mode);
                if let Some(path) = &path {
                    claim(cx, owners, path, format!("{op}.path"));
                }
                path.zip(mode)
            }
            (Some(_), None) => {
                cx.err(
                    format!("{op}.mode"),
                    "an installed output needs a mode: add `mode: \"0755\"`",
                );
                None
            }
            (None, Some(_)) => {
                cx.err(
                    format!("{op}.path"),
                    "`mode` without `path`: add the image path to install the output at, or drop `mode`",
                );
                None
            }
        };
        if let Some(from) = from {
            outputs.push(BuildOutput {
                name: o.name,
                from,
                install,
            });
        }
    }

    if cx.errors.len() != before {
        return None;
    }
    Some(Build {
        name: b.name,
        version: version?,
        toolchain,
        kind: kind?,
        outputs,
    })
}

#[allow(clippy::too_many_arguments)]
fn validate_recipe(
    cx: &mut Ctx<'_>,
    p: &str,
    recipe: String,
    sources_raw: Vec<RawSource>,
    patches_raw: Vec<RawPatch>,
    def_dir: &Path,
    opts: &LoadOptions,
) -> Option<RecipeBuild> {
    let before = cx.errors.len();
    let recipe_path = match relative_file(&recipe) {
        Err(msg) => {
            cx.err(format!("{p}.recipe"), msg);
            None
        }
        Ok(()) => {
            let path = def_dir.join(&recipe);
            if path.is_file() {
                Some(path)
            } else {
                cx.err(
                    format!("{p}.recipe"),
                    format!(
                        "recipe {} does not exist: write the build script there (relative to the definition's directory {}) or fix the path",
                        path.display(),
                        def_dir.display()
                    ),
                );
                None
            }
        }
    };
    if sources_raw.is_empty() {
        cx.err(
            format!("{p}.sources"),
            "no sources: list at least one `{url, sha256}` to build from",
        );
    }
    let mut sources = Vec::new();
    let mut file_names = HashSet::new();
    for (j, s) in sources_raw.into_iter().enumerate() {
        let sp = format!("{p}.sources[{j}]");
        let url = parse_url(cx, &format!("{sp}.url"), &s.url, opts);
        let digest = one_digest(cx, &sp, s.sha256.as_deref(), s.sha512.as_deref());
        let file_name = url
            .as_ref()
            .and_then(|u| u.path_segments()?.next_back().map(str::to_string))
            .unwrap_or_default();
        if url.is_some() && !is_source_file_name(&file_name) {
            cx.err(
                format!("{sp}.url"),
                format!("the URL must end in a file name ([A-Za-z0-9._+~-]), got {file_name:?}"),
            );
        } else if url.is_some() && !file_names.insert(file_name.clone()) {
            cx.err(
                format!("{sp}.url"),
                format!("two sources are named {file_name:?}: each source needs its own file name"),
            );
        }
        let unpack = match s.unpack {
            None => None,
            Some(u) => {
                if url.is_some() && !TARBALL_SUFFIXES.iter().any(|x| file_name.ends_with(x)) {
                    cx.err(
                        format!("{sp}.unpack"),
                        format!(
                            "{file_name:?} is not a tarball ({}): remove `unpack` and read it from $KUBEBAKE_SOURCES in the recipe",
                            TARBALL_SUFFIXES.join(" ")
                        ),
                    );
                }
                let strip = match u.strip_components {
                    None => Some(0),
                    Some(Scalar::Int(n)) if (0..=16).contains(&n) => Some(n as u32),
                    Some(other) => {
                        cx.err(
                            format!("{sp}.unpack.strip-components"),
                            format!(
                                "strip-components must be a whole number from 0 to 16, got {}",
                                other.describe()
                            ),
                        );
                        None
                    }
                };
                strip.map(|strip_components| Unpack { strip_components })
            }
        };
        if let (Some(url), Some(digest)) = (url, digest) {
            sources.push(Source {
                url,
                digest,
                file_name,
                unpack,
            });
        }
    }
    let mut patches = Vec::new();
    for (j, RawPatch { file, series }) in patches_raw.into_iter().enumerate() {
        let f = format!("{p}.patches[{j}]");
        match (file, series) {
            (Some(file), None) => match relative_file(&file) {
                Err(msg) => cx.err(format!("{f}.file"), msg),
                Ok(()) => {
                    let path = def_dir.join(&file);
                    if path.is_file() {
                        patches.push(Patch::File { file, path });
                    } else {
                        cx.err(
                            format!("{f}.file"),
                            format!(
                                "patch {} does not exist: put the patch beside the definition or fix the path",
                                path.display()
                            ),
                        );
                    }
                }
            },
            (None, Some(series)) => match relative_file(&series) {
                Err(msg) => cx.err(format!("{f}.series"), msg),
                Ok(()) => patches.push(Patch::Series { series }),
            },
            _ => cx.err(
                &f,
                "a patch is either `file: <path beside the definition>` or `series: <quilt series file in the unpacked tree>`: set exactly one",
            ),
        }
    }
    if cx.errors.len() != before {
        return None;
    }
    Some(RecipeBuild {
        recipe,
        recipe_path: recipe_path?,
        sources,
        patches,
    })
}

pub(super) fn validate_container_images(
    cx: &mut Ctx<'_>,
    raw: Vec<RawContainerImage>,
    declared: &DeclaredOutputs,
    owners: &mut HashMap<String, String>,
) -> Vec<ContainerImage> {
    let mut images = Vec::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut refs: HashMap<String, usize> = HashMap::new();
    for (i, c) in raw.into_iter().enumerate() {
        let p = format!("container-images[{i}]");
        let before = cx.errors.len();
        if !is_image_name(&c.name) {
            cx.err(
                format!("{p}.name"),
                format!(
                    "invalid image name {:?}: use lowercase letters, digits and '-' (it names the archive file)",
                    c.name
                ),
            );
        }
        if let Some(prev) = names.insert(c.name.clone(), i) {
            cx.err(
                format!("{p}.name"),
                format!(
                    "duplicate container image name {:?} (also container-images[{prev}])",
                    c.name
                ),
            );
        }
        if let Err(msg) = check_reference(&c.reference) {
            cx.err(format!("{p}.ref"), msg);
        }
        if let Some(prev) = refs.insert(c.reference.clone(), i) {
            cx.err(
                format!("{p}.ref"),
                format!(
                    "reference {:?} is also used by container-images[{prev}]",
                    c.reference
                ),
            );
        }
        let content = match (c.digest, c.files) {
            (Some(d), None) => {
                if !c.entrypoint.is_empty() || !c.cmd.is_empty() {
                    cx.err(
                        &p,
                        "`entrypoint`/`cmd` only apply to images assembled from `files`: a pinned registry image has its own",
                    );
                }
                let hex = d.strip_prefix("sha256:").unwrap_or("");
                if hex.is_empty() {
                    cx.err(
                        format!("{p}.digest"),
                        format!(
                            "digest {d:?} must be the image's manifest digest `sha256:<64 hex>`"
                        ),
                    );
                    None
                } else {
                    parse_digest(cx, &format!("{p}.digest"), Algorithm::Sha256, hex)
                        .map(|digest| ImageContent::Pinned { digest })
                }
            }
            (None, Some(files)) => {
                if files.is_empty() {
                    cx.err(format!("{p}.files"), "no files: list the layer's files");
                }
                let mut out = Vec::new();
                let mut paths = HashSet::new();
                for (j, f) in files.into_iter().enumerate() {
                    let fp = format!("{p}.files[{j}]");
                    let path_ok = container_path_ok(&f.path);
                    if !path_ok {
                        cx.err(
                            format!("{fp}.path"),
                            format!("invalid path {:?} inside the container image: absolute and normalized, e.g. /pause", f.path),
                        );
                    }
                    if path_ok && !paths.insert(f.path.clone()) {
                        cx.err(
                            format!("{fp}.path"),
                            format!("{:?} is listed twice", f.path),
                        );
                    }
                    let from = match f.from.split_once('/') {
                        Some((b, o)) if declared.contains(&(b.to_string(), o.to_string())) => {
                            Some((b.to_string(), o.to_string()))
                        }
                        Some((b, o)) => {
                            cx.err(
                                format!("{fp}.from"),
                                format!(
                                    "{:?} is not a declared build output: declare `{o}` in the outputs of build {b:?} under `builds:`",
                                    f.from
                                ),
                            );
                            None
                        }
                        None => {
                            cx.err(
                                format!("{fp}.from"),
                                format!("invalid source {:?}: write `<build>/<output>`, e.g. kubernetes/pause", f.from),
                            );
                            None
                        }
                    };
                    let mode = parse_mode(cx, &format!("{fp}.mode"), &f.mode);
                    if let (true, Some((build, output)), Some(mode)) = (path_ok, from, mode) {
                        out.push(LayerFile {
                            path: f.path,
                            build,
                            output,
                            mode,
                        });
                    }
                }
                if c.entrypoint.is_empty() {
                    cx.err(
                        format!("{p}.entrypoint"),
                        "no entrypoint: give the command the container runs, e.g. [\"/pause\"]",
                    );
                }
                Some(ImageContent::Assembled {
                    files: out,
                    entrypoint: c.entrypoint,
                    cmd: c.cmd,
                })
            }
            _ => {
                cx.err(
                    &p,
                    "a container image is either assembled from build outputs (`files:`) or pinned from a registry (`digest: sha256:…`): set exactly one",
                );
                None
            }
        };
        if cx.errors.len() != before {
            continue;
        }
        if let Some(content) = content {
            let image = ContainerImage {
                name: c.name,
                reference: c.reference,
                content,
            };
            if matches!(image.content, ImageContent::Assembled { .. }) {
                claim(cx, owners, &image.archive_path(), format!("{p}.name"));
            }
            images.push(image);
        }
    }
    images
}

fn container_path_ok(p: &str) -> bool {
    p.len() > 1
        && p.starts_with('/')
        && !p.contains(['\n', '\r', '\0'])
        && p[1..].split('/').all(|c| !matches!(c, "" | "." | ".."))
}

fn is_source_file_name(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+' | '~'))
}

/// A container image reference `[host[:port]/]path[:tag]`, lowercase path
/// components, a tag; no digest (the archive's digest is recorded instead).
fn check_reference(r: &str) -> Result<(), String> {
    let hint =
        "write a reference like `localhost/kubebake/pause:3.10.2` or `registry.example.org/pause:3.10`";
    let (name, tag) = match r.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, t),
        _ => return Err(format!("reference {r:?} has no tag: {hint}")),
    };
    let tag_ok = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    let parts: Vec<&str> = name.split('/').collect();
    let host_ok =
        parts.len() >= 2 && parts[0].contains(['.', ':']) || parts.first() == Some(&"localhost");
    let path_ok = parts.iter().skip(1).all(|c| {
        !c.is_empty()
            && c.chars().all(|ch| {
                ch.is_ascii_lowercase() || ch.is_ascii_digit() || matches!(ch, '.' | '_' | '-')
            })
    });
    if r.contains('@') || !tag_ok || !host_ok || !path_ok || parts.len() < 2 {
        return Err(format!(
            "invalid image reference {r:?}: a registry host, a lowercase path and a tag, no `@digest`: {hint}"
        ));
    }
    Ok(())
}
