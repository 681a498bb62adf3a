//! Load and check a definition: the one place `validate`, `build` and
//! `bench` turn a definition file into a definition they may act on. Parsed
//! and validated (every error, with field paths), every template rendered
//! (strict), and the role proof run, so template mistakes surface before
//! anything is downloaded.

use std::path::Path;

use crate::definition::{self, Definition, FieldError, LoadOptions};
use crate::render::{self, RenderedFile};

/// A definition that passed every check, with its rendered files.
#[derive(Debug)]
pub struct Checked {
    pub def: Definition,
    pub rendered: Vec<RenderedFile>,
}

/// Every problem found, for `validate` (text or JSON).
pub fn check_definition(path: &Path, opts: &LoadOptions) -> Result<Checked, Vec<FieldError>> {
    let def = definition::load(path, opts).map_err(|e| e.field_errors())?;
    let problem = |message: String| FieldError {
        file: def.source.clone(),
        field: "units".to_string(),
        message,
    };
    let rendered = render::render_all(&def).map_err(|e| vec![problem(e.to_string())])?;
    if let Err(e) = render::check_role_conditions(&def, &rendered) {
        return Err(e.problems.into_iter().map(problem).collect());
    }
    Ok(Checked { def, rendered })
}

/// For a command that goes on to do work: all problems become one error.
pub fn load_checked(path: &Path, opts: &LoadOptions) -> anyhow::Result<Checked> {
    check_definition(path, opts).map_err(|errors| {
        anyhow::anyhow!(
            "{} is not a valid image definition:\n  {}",
            path.display(),
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n  ")
        )
    })
}

/// The rolectl binary to bake in must exist (checked before any work).
pub fn require_rolectl(path: &Path) -> anyhow::Result<()> {
    if !path.is_file() {
        anyhow::bail!(
            "the rolectl binary {} does not exist; build it with `cargo build --release -p rolectl` \
             or pass --rolectl PATH",
            path.display()
        );
    }
    Ok(())
}
