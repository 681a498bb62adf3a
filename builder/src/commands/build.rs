//! `kubebake build DEF`: the golden image, kernel, initrd and manifest.

use std::process::ExitCode;

use anyhow::Result;

use super::{rolectl_path, source_date_epoch};
use crate::build::{build, BuildOptions, BuildReport};
use crate::cli::{BuildArgs, GlobalArgs};
use crate::output::{emit, human_size};

pub fn run(global: &GlobalArgs, args: &BuildArgs) -> Result<ExitCode> {
    let report = build(&BuildOptions {
        definition: args.def.def.clone(),
        out_dir: args.out.clone(),
        cache_dir: global.cache_dir()?,
        offline: global.offline,
        load: global.load_options(&args.def),
        rolectl: rolectl_path(args.rolectl.as_deref())?,
        source_date_epoch: source_date_epoch()?,
        progress: global.progress(),
        no_wait: args.no_wait,
    })?;
    emit(global, &report, summary)?;
    Ok(ExitCode::SUCCESS)
}

/// The one-screen summary printed after a build.
pub fn summary(r: &BuildReport) -> String {
    let mut s = format!("\nbuilt {} in {:.1}s", r.image, r.total_seconds);
    if r.rootfs_reused {
        s.push_str(" (base root filesystem from cache)");
    }
    s.push_str("\n\n");
    for o in &r.outputs {
        s.push_str(&format!(
            "  {:<7} {:>10}  {}\n          sha256 {}\n",
            o.kind,
            human_size(o.size),
            r.out_dir.join(&o.file).display(),
            o.sha256
        ));
    }
    s.push_str(&format!("  manifest {}\n\n  stages:", r.manifest.display()));
    for st in &r.stages {
        s.push_str(&format!("  {} {:.1}s", st.stage, st.seconds));
    }
    s.push('\n');
    s
}
