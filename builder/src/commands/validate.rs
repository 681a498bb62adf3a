//! `kubebake validate DEF`: check a definition; nothing is downloaded.

use std::process::ExitCode;

use anyhow::Result;
use harness::Role;
use serde::Serialize;

use crate::check::check_definition;
use crate::cli::{GlobalArgs, ValidateArgs};
use crate::definition::{Definition, FieldError};
use crate::output::{out, print_json};

pub fn run(global: &GlobalArgs, args: &ValidateArgs) -> Result<ExitCode> {
    let result = check_definition(&args.def.def, &global.load_options(&args.def));
    if global.json {
        #[derive(Serialize)]
        struct Out<'a> {
            ok: bool,
            errors: &'a [FieldError],
            definition: Option<&'a Definition>,
        }
        let (errors, definition): (&[FieldError], _) = match &result {
            Ok(c) => (&[], Some(&c.def)),
            Err(e) => (e.as_slice(), None),
        };
        print_json(&Out {
            ok: result.is_ok(),
            errors,
            definition,
        })?;
    } else {
        match &result {
            Ok(c) => out(&summary(&c.def))?,
            Err(errors) => {
                let mut text = format!(
                    "{} is not valid ({} error{}):\n",
                    args.def.def.display(),
                    errors.len(),
                    if errors.len() == 1 { "" } else { "s" }
                );
                for e in errors {
                    text.push_str(&format!("  {e}\n"));
                }
                use std::io::Write;
                let _ = std::io::stderr().write_all(text.as_bytes());
            }
        }
    }
    Ok(if result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Human summary of a valid definition.
pub fn summary(d: &Definition) -> String {
    let pinned = d
        .base
        .packages
        .iter()
        .filter(|p| p.version.is_some())
        .count();
    let count = |r: Option<Role>| d.units.iter().filter(|u| u.role == r).count();
    let mut outputs = Vec::new();
    if d.outputs.raw {
        outputs.push("raw");
    }
    if d.outputs.qcow2 {
        outputs.push("qcow2");
    }
    let mut s = format!("{} {}: valid ({})\n", d.name, d.version, d.source.display());
    s.push_str(&format!(
        "  base:      {} from {}, {} packages ({} pinned)\n",
        d.base.suite,
        d.base.mirror,
        d.base.packages.len(),
        pinned
    ));
    s.push_str(&format!("  artifacts: {}\n", d.artifacts.len()));
    for a in &d.artifacts {
        s.push_str(&format!(
            "    {} {} ({})\n",
            a.name,
            a.version,
            a.digest.algorithm()
        ));
    }
    s.push_str(&format!("  builds:    {}\n", d.builds.len()));
    for b in &d.builds {
        let how = match &b.kind {
            crate::definition::BuildKind::Recipe(r) => format!(
                "{}, {} source(s), {} patch entr{}",
                r.recipe,
                r.sources.len(),
                r.patches.len(),
                if r.patches.len() == 1 { "y" } else { "ies" }
            ),
            crate::definition::BuildKind::Go(g) => {
                format!("Go modules {}/go.sum, {}", g.module_dir, g.toolchain)
            }
        };
        s.push_str(&format!(
            "    {} {} ({how}, {} output(s))\n",
            b.name,
            b.version,
            b.outputs.len()
        ));
    }
    s.push_str(&format!(
        "  container images: {}\n",
        d.container_images.len()
    ));
    for c in &d.container_images {
        let how = match &c.content {
            crate::definition::ImageContent::Assembled { files, .. } => {
                format!("baked, {} file(s)", files.len())
            }
            crate::definition::ImageContent::Pinned { digest } => {
                format!("pinned {digest}, pulled by the runtime")
            }
        };
        s.push_str(&format!("    {} ({how})\n", c.reference));
    }
    s.push_str(&format!(
        "  units:     {} ({} master, {} minion, {} shared), {} masked\n",
        d.units.len(),
        count(Some(Role::Master)),
        count(Some(Role::Minion)),
        count(None),
        d.mask.len()
    ));
    s.push_str(&format!(
        "  files:     {} files, {} links, {} sysctl.d, {} modules-load.d\n",
        d.files.len(),
        d.links.len(),
        d.sysctl.len(),
        d.modules_load.len()
    ));
    s.push_str(&format!(
        "  outputs:   {}, disk {} MiB\n",
        outputs.join(" + "),
        d.outputs.disk_size >> 20
    ));
    s
}
