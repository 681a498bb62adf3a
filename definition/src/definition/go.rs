//! Validation of Go builds (`builds[].go`): programs built from published Go
//! modules pinned by a `go.mod`/`go.sum` kept beside the definition.

use std::collections::BTreeMap;
use std::path::Path;

use super::fields::{relative_file, Ctx};
use super::raw::{RawCProgram, RawGo, RawModuleFile};
use super::{CProgram, GoBuild, ModuleFile, OutputFrom};

/// Placeholders a stamp value may use.
const STAMP_PLACEHOLDERS: [&str; 2] = ["{version}", "{date}"];

pub(super) fn validate_go(cx: &mut Ctx<'_>, p: &str, go: RawGo, def_dir: &Path) -> Option<GoBuild> {
    let before = cx.errors.len();
    let f = format!("{p}.go.module-dir");
    let module_dir_path = match relative_file(&go.module_dir) {
        Err(msg) => {
            cx.err(&f, msg);
            None
        }
        Ok(()) => {
            let dir = def_dir.join(&go.module_dir);
            let missing: Vec<&str> = ["go.mod", "go.sum"]
                .into_iter()
                .filter(|n| !dir.join(n).is_file())
                .collect();
            if missing.is_empty() {
                Some(dir)
            } else {
                cx.err(
                    &f,
                    format!(
                        "{} has no {}: keep the build's go.mod and go.sum there (write go.mod with `require` and `tool` lines, then run `go mod tidy` in it)",
                        dir.display(),
                        missing.join(" or ")
                    ),
                );
                None
            }
        }
    };
    if !is_go_toolchain(&go.toolchain) {
        cx.err(
            format!("{p}.go.toolchain"),
            format!(
                "invalid Go toolchain {:?}: write a released version `go1.N.P`, e.g. go1.26.5 (it is fetched from the module proxy as GOTOOLCHAIN)",
                go.toolchain
            ),
        );
    }
    for (j, t) in go.tags.iter().enumerate() {
        if t.is_empty()
            || !t
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.'))
        {
            cx.err(
                format!("{p}.go.tags[{j}]"),
                format!("invalid build tag {t:?}: letters, digits, '_' and '.' only"),
            );
        }
    }
    for (j, l) in go.ldflags.iter().enumerate() {
        let field = format!("{p}.go.ldflags[{j}]");
        if !l.starts_with('-')
            || l.chars()
                .any(|c| c.is_whitespace() || matches!(c, '\'' | '"'))
        {
            cx.err(
                &field,
                format!(
                    "invalid linker flag {l:?}: one flag starting with '-', no spaces or quotes"
                ),
            );
        } else if l == "-X" || l.starts_with("-X=") || l.starts_with("-buildid") {
            cx.err(
                &field,
                format!("{l:?} is set by kubebake: put version variables under `stamps:` (package.Variable: value); the build ID is always empty"),
            );
        }
    }
    check_stamps(cx, p, &go.stamps);
    if cx.errors.len() != before {
        return None;
    }
    Some(GoBuild {
        module_dir: go.module_dir,
        module_dir_path: module_dir_path?,
        toolchain: go.toolchain,
        cgo: go.cgo,
        tags: go.tags,
        ldflags: go.ldflags,
        stamps: go.stamps,
    })
}

fn check_stamps(cx: &mut Ctx<'_>, p: &str, stamps: &BTreeMap<String, String>) {
    for (var, value) in stamps {
        let field = format!("{p}.go.stamps.{var}");
        let var_ok = var
            .rsplit_once('.')
            .is_some_and(|(pkg, name)| is_import_path(pkg) && is_identifier(name));
        if !var_ok {
            cx.err(
                &field,
                format!("invalid variable {var:?}: write `<import path>.<Variable>`, e.g. k8s.io/component-base/version.gitVersion"),
            );
        }
        if value
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '\'' | '"'))
        {
            cx.err(
                &field,
                format!("invalid value {value:?}: no spaces or quotes"),
            );
            continue;
        }
        let mut rest = value.as_str();
        while let Some(open) = rest.find('{') {
            let tail = &rest[open..];
            match STAMP_PLACEHOLDERS.iter().find(|ph| tail.starts_with(**ph)) {
                Some(ph) => rest = &tail[ph.len()..],
                None => {
                    cx.err(
                        &field,
                        format!(
                            "unknown placeholder in {value:?}: only {} are replaced",
                            STAMP_PLACEHOLDERS.join(" and ")
                        ),
                    );
                    break;
                }
            }
        }
    }
}

/// What a build output names as its origin (at most one for a Go build,
/// none for a recipe build).
pub(super) struct OutputSource {
    pub package: Option<String>,
    pub c_program: Option<RawCProgram>,
    pub module_file: Option<RawModuleFile>,
    pub test_package: Option<String>,
}

/// The output's origin: a Go package, a test binary, a C program or a
/// module's file for Go builds, the recipe's `$KUBEBAKE_OUT` otherwise.
pub(super) fn output_from(
    cx: &mut Ctx<'_>,
    op: &str,
    is_go: bool,
    src: OutputSource,
) -> Option<OutputFrom> {
    let named = [
        src.package.is_some(),
        src.c_program.is_some(),
        src.module_file.is_some(),
        src.test_package.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if !is_go {
        if named == 0 {
            return Some(OutputFrom::Recipe);
        }
        cx.err(
            op,
            "`package`, `test-package`, `c-program` and `module-file` name what a Go build makes: a recipe build's outputs are the files the recipe writes",
        );
        return None;
    }
    if named != 1 {
        cx.err(
            op,
            if named == 0 {
                "a Go build's output needs `package: <main package import path>` (or `test-package:` for a package's test binary, `c-program:` for a C file in a module, `module-file:` for a file copied from a module)"
            } else {
                "set one of `package`, `test-package`, `c-program` and `module-file`"
            },
        );
        return None;
    }
    for (key, pkg, what) in [
        (
            "package",
            &src.package,
            "a main package's import path, e.g. k8s.io/kubernetes/cmd/kubelet",
        ),
        (
            "test-package",
            &src.test_package,
            "the import path of a package with tests, e.g. k8s.io/kubernetes/test/e2e",
        ),
    ] {
        if let Some(pkg) = pkg {
            if is_import_path(pkg) {
                return Some(if key == "package" {
                    OutputFrom::Package(pkg.clone())
                } else {
                    OutputFrom::TestPackage(pkg.clone())
                });
            }
            cx.err(
                format!("{op}.{key}"),
                format!("invalid package {pkg:?}: {what}"),
            );
            return None;
        }
    }
    let before = cx.errors.len();
    if let Some(f) = src.module_file {
        module_and_file(cx, &format!("{op}.module-file"), &f.module, &f.file);
        return (cx.errors.len() == before).then_some(OutputFrom::ModuleFile(ModuleFile {
            module: f.module,
            file: f.file,
        }));
    }
    let c = src.c_program?;
    let cp = format!("{op}.c-program");
    module_and_file(cx, &cp, &c.module, &c.file);
    if cx.errors.len() == before && !c.file.ends_with(".c") {
        cx.err(
            format!("{cp}.file"),
            format!("{:?} is not a C file (.c)", c.file),
        );
    }
    for (j, flag) in c.cflags.iter().enumerate() {
        if !flag.starts_with('-') || flag.chars().any(char::is_whitespace) {
            cx.err(
                format!("{cp}.cflags[{j}]"),
                format!("invalid compiler flag {flag:?}: one flag starting with '-', no spaces"),
            );
        }
    }
    (cx.errors.len() == before).then_some(OutputFrom::C(CProgram {
        module: c.module,
        file: c.file,
        cflags: c.cflags,
    }))
}

/// A module path of the build list and a file relative to its root.
fn module_and_file(cx: &mut Ctx<'_>, at: &str, module: &str, file: &str) {
    if !is_import_path(module) {
        cx.err(
            format!("{at}.module"),
            format!("invalid module path {module:?}: a module of the build's go.mod, e.g. k8s.io/kubernetes"),
        );
    }
    if let Err(msg) = relative_file(file) {
        cx.err(
            format!("{at}.file"),
            msg.replace("the definition's directory", "the module's root"),
        );
    }
}

/// `go1.N.P` (a released toolchain, as GOTOOLCHAIN takes it).
fn is_go_toolchain(s: &str) -> bool {
    let Some(v) = s.strip_prefix("go") else {
        return false;
    };
    let parts: Vec<&str> = v.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 4 && p.bytes().all(|b| b.is_ascii_digit()))
        && parts[0] == "1"
}

/// A Go import path: `/`-separated elements of letters, digits and `._~-`.
fn is_import_path(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 512
        && s.split('/').all(|e| {
            !e.is_empty()
                && e != "."
                && e != ".."
                && e.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | '-'))
        })
}

fn is_identifier(s: &str) -> bool {
    s.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}
