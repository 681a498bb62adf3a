//! Command-line interface: clap types shared by all subcommands and the
//! implementation of `validate` and `fetch`. `main.rs` only dispatches.
//!
//! To add a subcommand: add a variant to [`Command`] with its own `Args`
//! struct (flatten [`DefArgs`] if it takes a definition), write a
//! `pub fn name(global: &GlobalArgs, args: &NameArgs) -> Result<ExitCode>`
//! here, and one match arm in `main.rs`. Flags in [`GlobalArgs`] (`--json`,
//! `--cache`, `--offline`, `--allow-insecure-urls`) are accepted before or
//! after the subcommand.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use serde_json::json;

use crate::definition::{self, Definition, DefinitionError, FieldError, LoadOptions, Role};
use crate::fetch::{self, FetchOptions};
use crate::progress::Progress;
use crate::render;

#[derive(Debug, Parser)]
#[command(
    name = "kubebake",
    version,
    about = "Bakes one golden, verified Kubernetes node disk image from a declarative definition"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags shared by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Print machine-readable JSON on stdout (progress bars are hidden).
    #[arg(long, global = true)]
    pub json: bool,
    /// Artifact cache directory [default: $XDG_CACHE_HOME/kubebake or ~/.cache/kubebake].
    #[arg(long, global = true, value_name = "DIR", env = "KUBEBAKE_CACHE")]
    pub cache: Option<PathBuf>,
    /// Never touch the network: use only the cache (and file:// URLs).
    #[arg(long, global = true)]
    pub offline: bool,
    /// Accept http:// and file:// artifact URLs (digests are still verified).
    #[arg(long, global = true)]
    pub allow_insecure_urls: bool,
}

impl GlobalArgs {
    /// `--cache` or the per-user default.
    pub fn cache_dir(&self) -> Result<PathBuf> {
        match &self.cache {
            Some(dir) => Ok(dir.clone()),
            None => fetch::default_cache_dir()
                .context("cannot find a cache directory ($HOME unset?): pass --cache DIR"),
        }
    }

    pub fn load_options(&self, def: &DefArgs) -> LoadOptions {
        LoadOptions {
            data_root: def.data_root.clone(),
            allow_insecure_urls: self.allow_insecure_urls,
        }
    }

    /// Progress bars unless `--json` (and only on a terminal).
    pub fn progress(&self) -> Progress {
        Progress::new(!self.json)
    }

    pub fn fetch_options(&self) -> Result<FetchOptions> {
        let mut o = FetchOptions::new(self.cache_dir()?);
        o.offline = self.offline;
        o.progress = self.progress();
        Ok(o)
    }
}

/// The image definition argument.
#[derive(Debug, Clone, Args)]
pub struct DefArgs {
    /// Image definition (YAML), e.g. images/k8s-node.yaml.
    #[arg(value_name = "DEF")]
    pub def: PathBuf,
    /// Directory holding units/ and dropins/ [default: parent of the definition's directory].
    #[arg(long, value_name = "DIR")]
    pub data_root: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a definition (and render its templates) without downloading anything.
    Validate(ValidateArgs),
    /// Download and verify every artifact into the cache.
    Fetch(FetchArgs),
    /// Build the golden disk image (raw, qcow2, kernel, initrd, manifest).
    Build(crate::commands::BuildArgs),
    /// Verify a built image against its manifest (libguestfs, read-only).
    Inspect(crate::commands::InspectArgs),
    /// Boot the image once under QEMU to its login prompt (golden image untouched).
    Boot(crate::boot::BootArgs),
    /// Cold build, warm rebuild and image size against mmdebstrap + mkfs.ext4 -d.
    Bench(crate::commands::BenchArgs),
    /// Start a laptop cluster: VMs of the golden image in a private network.
    Up(crate::vm::cli::UpArgs),
    /// Stop a cluster started with `up --detach`; leaves no VM or namespace.
    Down(crate::vm::cli::DownArgs),
    /// Show the VMs of a cluster and the stage each has reached.
    Status(crate::vm::cli::StatusArgs),
    /// Print ready-to-use user-data (#cloud-config) for a node.
    Userdata(crate::vm::cli::UserdataArgs),
    /// Boot 1 master + 2 minions and time the boot stages.
    BenchVm(crate::vm::cli::BenchVmArgs),
    /// Cluster secrets: CAs, service-account keys, kube-proxy certificate,
    /// bootstrap token; made once per cluster, never baked into an image.
    #[command(subcommand)]
    Cluster(ClusterCommand),
}

#[derive(Debug, Clone, Subcommand)]
pub enum ClusterCommand {
    /// Make the secrets of a new cluster in DIR (0700, files 0600); refuses
    /// a directory that already holds any of them.
    Init(ClusterInitArgs),
    /// Replace only the bootstrap token (and its expiry) of a cluster.
    Token(ClusterTokenArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ClusterInitArgs {
    /// Cluster name (one DNS label): nodes find masters.<name>.<domain>.
    pub name: String,
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// How long the bootstrap token is valid, e.g. 24h, 30m.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub token_ttl: std::time::Duration,
}

#[derive(Debug, Clone, Args)]
pub struct ClusterTokenArgs {
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub token_ttl: std::time::Duration,
}

/// `kubebake cluster init|token`: prints what was made (never a secret).
pub fn cluster(
    global: &GlobalArgs,
    cmd: &ClusterCommand,
) -> anyhow::Result<std::process::ExitCode> {
    use crate::cluster_secrets as cs;
    let secrets = match cmd {
        ClusterCommand::Init(a) => {
            let name = cs::ClusterName::try_from(a.name.as_str())?;
            cs::init(
                &name,
                &a.dir,
                &cs::InitOptions {
                    token_ttl: a.token_ttl,
                },
            )?
        }
        ClusterCommand::Token(a) => cs::new_token(&a.dir, a.token_ttl)?,
    };
    if global.json {
        println!("{}", serde_json::to_string_pretty(&secrets.info)?);
    } else {
        println!(
            "cluster {} secrets in {}\n  CA pin:          {}\n  bootstrap token: {}.<secret> (expires {})\n\
             next: kubebake userdata --role master --cluster {} --secrets {} > master.yaml\n      \
             kubebake userdata --role minion --cluster {} --secrets {} > minion.yaml",
            secrets.info.name,
            secrets.dir.display(),
            secrets.info.ca_cert_hash,
            secrets.token.id(),
            secrets.info.token_expiration,
            secrets.info.name,
            secrets.dir.display(),
            secrets.info.name,
            secrets.dir.display(),
        );
    }
    Ok(std::process::ExitCode::SUCCESS)
}

#[derive(Debug, Clone, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub def: DefArgs,
}

#[derive(Debug, Clone, Args)]
pub struct FetchArgs {
    #[command(flatten)]
    pub def: DefArgs,
}

/// Logging to stderr, filtered by `RUST_LOG` (default `warn`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Loads a definition and also renders its templates and runs the role
/// proof, so template mistakes surface before anything is downloaded.
/// Returns the definition or every problem found.
pub fn check_definition(
    global: &GlobalArgs,
    def: &DefArgs,
) -> std::result::Result<Definition, Vec<FieldError>> {
    let d = definition::load(&def.def, &global.load_options(def))
        .map_err(|e: DefinitionError| e.field_errors())?;
    let problem = |field: &str, message: String| FieldError {
        file: d.source.clone(),
        field: field.to_string(),
        message,
    };
    match render::render_all(&d) {
        Err(e) => return Err(vec![problem("units", e.to_string())]),
        Ok(files) => {
            if let Err(e) = render::check_role_conditions(&d, &files) {
                return Err(e
                    .problems
                    .into_iter()
                    .map(|p| problem("units", p))
                    .collect());
            }
        }
    }
    Ok(d)
}

/// Loads a definition for a command that goes on to do work: all problems
/// become one error.
pub fn load_checked(global: &GlobalArgs, def: &DefArgs) -> Result<Definition> {
    check_definition(global, def).map_err(|errors| {
        anyhow::anyhow!(
            "{} is not a valid image definition:\n  {}",
            def.def.display(),
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n  ")
        )
    })
}

/// `kubebake validate DEF`.
pub fn validate(global: &GlobalArgs, args: &ValidateArgs) -> Result<ExitCode> {
    let result = check_definition(global, &args.def);
    if global.json {
        #[derive(Serialize)]
        struct Out<'a> {
            ok: bool,
            errors: &'a [FieldError],
            definition: Option<&'a Definition>,
        }
        let (errors, definition): (&[FieldError], _) = match &result {
            Ok(d) => (&[], Some(d)),
            Err(e) => (e.as_slice(), None),
        };
        print_json(&Out {
            ok: result.is_ok(),
            errors,
            definition,
        })?;
    } else {
        match &result {
            Ok(d) => out(&summary(d))?,
            Err(errors) => {
                eprintln!(
                    "{} is not valid ({} error{}):",
                    args.def.def.display(),
                    errors.len(),
                    if errors.len() == 1 { "" } else { "s" }
                );
                for e in errors {
                    eprintln!("  {e}");
                }
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
        s.push_str(&format!(
            "    {} {} ({}, {} source(s), {} patch entr{}, {} output(s))\n",
            b.name,
            b.version,
            b.recipe,
            b.sources.len(),
            b.patches.len(),
            if b.patches.len() == 1 { "y" } else { "ies" },
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

/// `kubebake fetch DEF`.
pub fn fetch(global: &GlobalArgs, args: &FetchArgs) -> Result<ExitCode> {
    let def = load_checked(global, &args.def)?;
    let opts = global.fetch_options()?;
    let fetched = fetch::fetch_artifacts_blocking(&def, &opts)?;
    if global.json {
        print_json(&json!({
            "ok": true,
            "cache": opts.cache_dir,
            "artifacts": fetched,
        }))?;
    } else {
        let mut text = String::new();
        for f in &fetched {
            text.push_str(&format!(
                "{:<20} {} {:>10} {}\n",
                f.name,
                f.sha256,
                human_size(f.size),
                f.path.display()
            ));
        }
        text.push_str(&format!(
            "{} artifact(s) verified in {}\n",
            fetched.len(),
            opts.cache_dir.display()
        ));
        out(&text)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints a value as pretty JSON on stdout.
pub fn print_json<T: Serialize>(value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).context("serializing JSON output")?;
    text.push('\n');
    out(&text)
}

/// Writes to stdout; a closed pipe (`kubebake ... | head`) is not an error.
pub fn out(text: &str) -> Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("writing to stdout"),
        _ => Ok(()),
    }
}

/// Reports an error at the binary edge: JSON `{ok:false,error}` on stdout
/// with `--json`, `error: ...` on stderr otherwise.
pub fn report_error(global: &GlobalArgs, err: &anyhow::Error) -> ExitCode {
    if global.json {
        let _ = print_json(&json!({ "ok": false, "error": format!("{err:#}") }));
    } else {
        eprintln!("error: {err:#}");
    }
    ExitCode::FAILURE
}

pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}
