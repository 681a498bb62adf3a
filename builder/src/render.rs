//! Strict handlebars rendering of units, drop-ins, extra files, sysctl.d and
//! modules-load.d, plus the build-time proof that role units are gated on
//! their role marker and shared units are not.
//!
//! Templates come from `<data_root>/units/<name>.hbs` and
//! `<data_root>/dropins/<x>.hbs`; `<data_root>/units/partials/<name>.hbs` are
//! handlebars partials any of them includes as `{{> name}}` (one copy of a
//! stanza several units share, such as the wait for the API server). The
//! context is `image.name`, `image.version`,
//! `kubernetes.{version,major,minor,patch}` (when the definition sets
//! `kubernetes-version:`; the numbers are JSON numbers for `lt`/`gte`), every key of `variables`, and for unit/drop-in templates
//! `unit`, `role` and (role units only) `marker`. Strict mode turns a missing
//! variable into an error naming the template file and the variable. HTML
//! escaping is off: these are config files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use handlebars::{Handlebars, RenderErrorReason};
use serde::Serialize;
use serde_json::{json, Map, Value};

use contract::unitfile;

use crate::definition::{Definition, FileEntry, ImageContent, ImagePath, RoleExt, Unit};

/// Directory of handlebars partials under the data root.
pub const PARTIALS_DIR: &str = "units/partials";

/// Systemd unit directory inside the image.
pub const UNIT_DIR: &str = "/etc/systemd/system";
/// Units and drop-ins kubebake renders: 0644, root-owned. Not the CIS
/// benchmark's 600 (1.1.1-1.1.8, 4.1.1): systemd warns at every boot for
/// each world-inaccessible unit file that this "has no effect as
/// configuration data is accessible via APIs without restrictions"
/// (`systemctl show`), and the files hold no secret.
pub const UNIT_MODE: u32 = 0o644;

/// A file to be written into the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RenderedFile {
    pub path: ImagePath,
    pub content: String,
    pub mode: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("reading template {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("template {template}: variable `{variable}` is not defined (strict mode): add it to `variables:` in {} or fix the template", definition.display())]
    MissingVariable {
        template: String,
        variable: String,
        definition: PathBuf,
    },
    #[error("template {template}: {message}")]
    Template { template: String, message: String },
}

/// Loads and renders the templates of one definition.
pub struct Renderer<'d> {
    def: &'d Definition,
    hbs: Handlebars<'static>,
    base: Map<String, Value>,
}

impl<'d> Renderer<'d> {
    /// Loads every template the definition references (units, role drop-ins,
    /// extra drop-ins) and checks their syntax.
    pub fn new(def: &'d Definition) -> Result<Self, RenderError> {
        let mut hbs = Handlebars::new();
        hbs.set_strict_mode(true);
        hbs.register_escape_fn(handlebars::no_escape);

        let mut base = Map::new();
        for (k, v) in &def.variables {
            base.insert(k.clone(), Value::String(v.clone()));
        }
        base.insert(
            "image".to_string(),
            json!({ "name": def.name, "version": def.version }),
        );
        // `kubernetes-version:`: the string, and the minor as a JSON number so
        // templates compare it with handlebars' built-in helpers:
        // `{{#if (lt kubernetes.minor 24)}}--flag-removed-in-1.24{{/if}}`.
        if let Some(k) = def.kubernetes_version {
            base.insert(
                "kubernetes".to_string(),
                json!({ "version": k.to_string(), "major": k.major, "minor": k.minor, "patch": k.patch }),
            );
        }
        // Baked container images, for the unit that imports them at boot.
        base.insert(
            "container_images".to_string(),
            def.container_images
                .iter()
                .filter(|c| matches!(c.content, ImageContent::Assembled { .. }))
                .map(|c| json!({ "name": c.name, "ref": c.reference, "archive": c.archive_path().as_str() }))
                .collect(),
        );

        let mut r = Renderer { def, hbs, base };
        r.register_partials()?;
        for unit in &def.units {
            r.register(&unit_template(&unit.name))?;
            if let Some(role) = unit.role {
                r.register(&format!("dropins/{}", role.dropin_template()))?;
            }
            for d in &unit.dropins {
                r.register(&dropin_template(d))?;
            }
        }
        Ok(r)
    }

    /// Registers `<data_root>/<rel>` under the name `rel` (once).
    fn register(&mut self, rel: &str) -> Result<(), RenderError> {
        if self.hbs.has_template(rel) {
            return Ok(());
        }
        let path = self.def.data_root.join(rel);
        let text = read_template(&path)?;
        self.hbs
            .register_template_string(rel, text)
            .map_err(|e| syntax_error(&path, e))
    }

    /// Registers every `<data_root>/units/partials/<name>.hbs` as the partial
    /// `name`. No directory: no partials (a template that includes one then
    /// fails to render, naming the template and the partial).
    fn register_partials(&mut self) -> Result<(), RenderError> {
        let dir = self.def.data_root.join(PARTIALS_DIR);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => return Err(RenderError::Read { path: dir, source }),
        };
        let mut paths = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| RenderError::Read {
                path: dir.clone(),
                source,
            })?;
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "hbs") {
                paths.push(path);
            }
        }
        paths.sort();
        for path in paths {
            let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            let text = read_template(&path)?;
            self.hbs
                .register_partial(name, text)
                .map_err(|e| syntax_error(&path, e))?;
        }
        Ok(())
    }

    fn template_label(&self, rel: &str) -> String {
        self.def.data_root.join(rel).display().to_string()
    }

    fn unit_context(&self, unit: &Unit) -> Value {
        let mut ctx = self.base.clone();
        ctx.insert("unit".to_string(), Value::String(unit.name.clone()));
        if let Some(role) = unit.role {
            ctx.insert("role".to_string(), Value::String(role.as_str().to_string()));
            ctx.insert(
                "marker".to_string(),
                Value::String(role.marker_path().to_string()),
            );
        }
        Value::Object(ctx)
    }

    fn render_registered(&self, rel: &str, ctx: &Value) -> Result<String, RenderError> {
        self.hbs
            .render(rel, ctx)
            .map_err(|e| self.map_err(self.template_label(rel), e))
    }

    fn map_err(&self, template: String, e: handlebars::RenderError) -> RenderError {
        match e.reason() {
            RenderErrorReason::MissingVariable(var) => RenderError::MissingVariable {
                template,
                variable: var.clone().unwrap_or_else(|| "?".to_string()),
                definition: self.def.source.clone(),
            },
            _ => RenderError::Template {
                template,
                message: e.to_string(),
            },
        }
    }

    /// `units/<name>.hbs` -> `/etc/systemd/system/<name>`, mode [`UNIT_MODE`].
    pub fn render_unit(&self, unit: &Unit) -> Result<RenderedFile, RenderError> {
        let content =
            self.render_registered(&unit_template(&unit.name), &self.unit_context(unit))?;
        Ok(RenderedFile {
            path: ImagePath::from_validated(format!("{UNIT_DIR}/{}", unit.name)),
            content,
            mode: UNIT_MODE,
        })
    }

    /// `dropins/role-<role>.conf.hbs` -> `/etc/systemd/system/<unit>.d/role.conf`.
    pub fn render_role_dropin(&self, unit: &Unit) -> Result<RenderedFile, RenderError> {
        let Some(role) = unit.role else {
            return Err(RenderError::Template {
                template: format!("role drop-in of {}", unit.name),
                message: format!(
                    "unit {} has no role: only role units get a role drop-in",
                    unit.name
                ),
            });
        };
        let rel = format!("dropins/{}", role.dropin_template());
        let content = self.render_registered(&rel, &self.unit_context(unit))?;
        Ok(RenderedFile {
            path: ImagePath::from_validated(format!("{UNIT_DIR}/{}.d/role.conf", unit.name)),
            content,
            mode: UNIT_MODE,
        })
    }

    /// `dropins/<name>.hbs` -> `/etc/systemd/system/<unit>.d/<name>`
    /// (`name` may be given with or without `.hbs`).
    pub fn render_extra_dropin(
        &self,
        unit: &Unit,
        name: &str,
    ) -> Result<RenderedFile, RenderError> {
        let name = name.strip_suffix(".hbs").unwrap_or(name);
        let rel = dropin_template(name);
        let content = if self.hbs.has_template(&rel) {
            self.render_registered(&rel, &self.unit_context(unit))?
        } else {
            return Err(RenderError::Template {
                template: self.template_label(&rel),
                message: format!(
                    "drop-in {name} is not listed for unit {} in the definition",
                    unit.name
                ),
            });
        };
        Ok(RenderedFile {
            path: ImagePath::from_validated(format!("{UNIT_DIR}/{}.d/{name}", unit.name)),
            content,
            mode: UNIT_MODE,
        })
    }

    /// An extra file: `content` is an inline strict template.
    pub fn render_file(&self, file: &FileEntry) -> Result<RenderedFile, RenderError> {
        let label = format!("files entry {} in {}", file.path, self.def.source.display());
        let content = self
            .hbs
            .render_template(&file.content, &Value::Object(self.base.clone()))
            .map_err(|e| self.map_err(label, e))?;
        Ok(RenderedFile {
            path: file.path.clone(),
            content,
            mode: file.mode,
        })
    }
}

/// The text of the template file at `path`.
fn read_template(path: &Path) -> Result<String, RenderError> {
    std::fs::read_to_string(path).map_err(|source| RenderError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// A template that does not parse, named by its file.
fn syntax_error(path: &Path, e: handlebars::TemplateError) -> RenderError {
    RenderError::Template {
        template: path.display().to_string(),
        message: e.to_string(),
    }
}

fn unit_template(name: &str) -> String {
    format!("units/{name}.hbs")
}

fn dropin_template(name: &str) -> String {
    format!("dropins/{name}.hbs")
}

/// `key = value` lines, sorted by key.
pub fn sysctl_content(entries: &BTreeMap<String, String>) -> String {
    entries
        .iter()
        .map(|(k, v)| format!("{k} = {v}\n"))
        .collect()
}

/// One module per line.
pub fn modules_load_content(modules: &[String]) -> String {
    modules.iter().map(|m| format!("{m}\n")).collect()
}

/// Every generated file: per unit the unit, its role drop-in and extra
/// drop-ins; then `files`, `/etc/sysctl.d/*` and `/etc/modules-load.d/*`.
pub fn render_all(def: &Definition) -> Result<Vec<RenderedFile>, RenderError> {
    let r = Renderer::new(def)?;
    let mut out = Vec::new();
    for unit in &def.units {
        out.push(r.render_unit(unit)?);
        if unit.role.is_some() {
            out.push(r.render_role_dropin(unit)?);
        }
        for d in &unit.dropins {
            out.push(r.render_extra_dropin(unit, d)?);
        }
    }
    for f in &def.files {
        out.push(r.render_file(f)?);
    }
    for (file, entries) in &def.sysctl {
        out.push(RenderedFile {
            path: ImagePath::from_validated(format!("/etc/sysctl.d/{file}")),
            content: sysctl_content(entries),
            mode: 0o644,
        });
    }
    for (file, modules) in &def.modules_load {
        out.push(RenderedFile {
            path: ImagePath::from_validated(format!("/etc/modules-load.d/{file}")),
            content: modules_load_content(modules),
            mode: 0o644,
        });
    }
    Ok(out)
}

/// Role units not gated exactly on their marker, or shared units gated on one.
#[derive(Debug, thiserror::Error)]
#[error("role condition check failed:\n  {}", problems.join("\n  "))]
pub struct RoleCheckError {
    pub problems: Vec<String>,
}

/// Proves from the rendered files that every role unit carries exactly one
/// `ConditionPathExists=<its marker>` (unit + drop-ins, in systemd's order,
/// honouring empty resets) and no other marker condition, and that a shared
/// unit has no `ConditionPathExists=` on a kubernetes marker, or exactly one
/// triggering `ConditionPathExists=|<marker>` per role (it runs on every
/// node with a role, e.g. the pod network).
pub fn check_role_conditions(
    def: &Definition,
    files: &[RenderedFile],
) -> Result<(), RoleCheckError> {
    let mut problems = Vec::new();
    for unit in &def.units {
        let Some((names, marker_conds)) = unit_files_conditions(&unit.name, files) else {
            problems.push(format!(
                "unit {}: {UNIT_DIR}/{} was not rendered",
                unit.name, unit.name
            ));
            continue;
        };

        match unit.role {
            None if gated_on_any_role(&marker_conds) => {}
            None => {
                for (v, file) in marker_conds.iter() {
                    problems.push(format!(
                        "shared unit {} must not be gated on one role's marker, but {file} has ConditionPathExists={v}: remove it, give the unit a role, or gate it on every role's marker with ConditionPathExists=|<marker> (one line per role: it runs on any node with a role)",
                        unit.name
                    ));
                }
            }
            Some(role) => {
                let own = role.marker_path();
                let exact = marker_conds.iter().filter(|(v, _)| v == own).count();
                if exact != 1 {
                    problems.push(format!(
                        "role unit {} ({role}) must have exactly one ConditionPathExists={own}, found {exact} across {names}",
                        unit.name
                    ));
                }
                for (v, file) in marker_conds.iter().filter(|(v, _)| v != own) {
                    let other = unitfile::marker_role(v)
                        .map(|r| format!("role {r}'s marker"))
                        .unwrap_or_else(|| "a marker condition".to_string());
                    problems.push(format!(
                        "role unit {} ({role}) has {other} in {file}: ConditionPathExists={v}; only ConditionPathExists={own} is allowed",
                        unit.name
                    ));
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(RoleCheckError { problems })
    }
}

/// The rendered files systemd reads for `unit` (the unit, then its
/// drop-ins sorted by file name), joined for messages, and the effective
/// role-marker conditions they set, each with the file it came from.
/// `None` if the unit was not rendered.
fn unit_files_conditions<'a>(
    unit: &str,
    files: &'a [RenderedFile],
) -> Option<(String, Vec<(String, &'a str)>)> {
    let unit_path = format!("{UNIT_DIR}/{unit}");
    let dropin_dir = format!("{UNIT_DIR}/{unit}.d/");
    let main = files.iter().find(|f| f.path.as_str() == unit_path)?;
    let mut dropins: Vec<&RenderedFile> = files
        .iter()
        .filter(|f| {
            f.path
                .as_str()
                .strip_prefix(&dropin_dir)
                .is_some_and(|rest| rest.ends_with(".conf") && !rest.contains('/'))
        })
        .collect();
    dropins.sort_by(|a, b| a.path.as_str().cmp(b.path.as_str()));
    let sources: Vec<&RenderedFile> = std::iter::once(main).chain(dropins).collect();
    let names = sources
        .iter()
        .map(|f| f.path.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let texts: Vec<(&str, &str)> = sources
        .iter()
        .map(|f| (f.path.as_str(), f.content.as_str()))
        .collect();
    Some((names, unitfile::marker_conditions(&texts)))
}

/// The role-marker conditions (`ConditionPathExists=` values, `|` kept)
/// systemd will read for `unit` from the rendered files: what the manifest
/// records and `kubebake inspect` finds again in the image.
pub fn unit_marker_conditions(unit: &str, files: &[RenderedFile]) -> Vec<String> {
    unit_files_conditions(unit, files)
        .map(|(_, c)| c.into_iter().map(|(v, _)| v).collect())
        .unwrap_or_default()
}

/// Whether a shared unit's marker conditions are exactly one triggering
/// (`|`) condition on each role's marker: systemd starts it when any of
/// them exists.
fn gated_on_any_role(conds: &[(String, &str)]) -> bool {
    let mut values: Vec<&str> = conds.iter().map(|(v, _)| v.as_str()).collect();
    values.sort_unstable();
    let mut every: Vec<String> = crate::definition::Role::ALL
        .iter()
        .map(|r| format!("|{}", r.marker_path()))
        .collect();
    every.sort_unstable();
    values == every
}

/// The workspace's one unit-file parser (`kubebake-contract`'s; `inspect`
/// and `rolectl status` use it too).
pub use contract::unitfile::parse as parse_unit_file;

/// Convenience for callers holding only a path.
pub fn template_path(def: &Definition, rel: &str) -> PathBuf {
    Path::new(&def.data_root).join(rel)
}
