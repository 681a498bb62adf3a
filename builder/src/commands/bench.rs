//! `kubebake bench DEF`: build speed and size against mmdebstrap + mkfs.ext4 -d.

use std::process::ExitCode;

use anyhow::Result;

use super::{rolectl_path, source_date_epoch};
use crate::bench::{bench, text, BenchOptions};
use crate::cli::{BenchArgs, GlobalArgs};
use crate::output::emit;

pub fn run(global: &GlobalArgs, args: &BenchArgs) -> Result<ExitCode> {
    let report = bench(&BenchOptions {
        definition: args.def.def.clone(),
        load: global.load_options(&args.def),
        work: args.work.clone(),
        rolectl: rolectl_path(args.rolectl.as_deref())?,
        source_date_epoch: source_date_epoch()?,
        warm_only: args.warm_only,
        runs: args.runs as usize,
        cache: global.cache_dir()?,
    })?;
    emit(global, &report, text)?;
    Ok(ExitCode::SUCCESS)
}
