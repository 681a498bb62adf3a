//! One file per `kubebake` command, each with the same signature:
//! `pub fn run(global: &GlobalArgs, args: &XArgs) -> Result<ExitCode>`,
//! printing text or (`--json`) one JSON document through [`crate::output`].
//! The VM commands (`boot`, `up`, `down`, `status`, `userdata`, `bench-vm`)
//! are thin adapters over the harness crate.

pub mod bench;
pub mod bench_vm;
pub mod boot;
pub mod build;
pub mod clean;
pub mod cluster;
pub mod conformance;
pub mod down;
pub mod fetch;
pub mod inspect;
pub mod kube_bench;
pub mod status;
pub mod up;
pub mod userdata;
pub mod validate;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::cli::{DefArgs, GlobalArgs};
use crate::definition::LoadOptions;
use crate::fetch::{default_cache_dir, FetchOptions};
use crate::progress::Progress;

/// The global flags as the options of the modules the commands call (here
/// rather than in `cli.rs`, which holds clap types only).
impl GlobalArgs {
    /// `--cache` or the per-user default.
    pub fn cache_dir(&self) -> Result<PathBuf> {
        match &self.cache {
            Some(dir) => Ok(dir.clone()),
            None => default_cache_dir()
                .context("cannot find a cache directory ($HOME unset?): pass --cache DIR"),
        }
    }

    /// How to load the definition of `def`: its `--data-root` and
    /// `--allow-insecure-urls`.
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

    /// The cache, `--offline` and progress bars for `fetch`.
    pub fn fetch_options(&self) -> Result<FetchOptions> {
        let mut o = FetchOptions::new(self.cache_dir()?);
        o.offline = self.offline;
        o.progress = self.progress();
        Ok(o)
    }
}

/// `SOURCE_DATE_EPOCH` from the environment, checked.
pub fn source_date_epoch() -> Result<Option<i64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Err(_) => Ok(None),
        Ok(v) if v.is_empty() => Ok(None),
        Ok(v) => v.trim().parse::<i64>().map(Some).with_context(|| {
            format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds since 1970")
        }),
    }
}

/// `--rolectl PATH`, or `rolectl` beside this kubebake binary.
pub fn rolectl_path(given: Option<&Path>) -> Result<PathBuf> {
    match given {
        Some(p) => Ok(p.to_path_buf()),
        None => {
            let exe = std::env::current_exe().context("locating the kubebake binary")?;
            Ok(exe.with_file_name("rolectl"))
        }
    }
}

/// "master", "minion" or "-".
pub fn role_str(r: Option<harness::Role>) -> &'static str {
    r.map_or("-", |r| r.as_str())
}

/// One line per VM: name, role, address, stage (`up` and `status`).
pub fn vm_rows(vms: &[harness::state::VmStatus]) -> String {
    vms.iter()
        .map(|v| {
            let node = v
                .node
                .as_deref()
                .map_or(String::new(), |n| format!(" (node {n})"));
            format!(
                "  {:<10} {:<7} {:<12} {}{node}\n",
                v.name,
                role_str(v.role),
                v.ip,
                v.stage
            )
        })
        .collect()
}
