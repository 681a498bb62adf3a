//! `kubebake clean [OUT_DIR...]`: remove what interrupted builds left, in
//! the output directories and the cache (sweep.rs); a build still running
//! keeps its files.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{CleanArgs, GlobalArgs};
use crate::output::{emit, human_size};
use crate::sweep::{self, SweepReport};

pub fn run(global: &GlobalArgs, args: &CleanArgs) -> Result<ExitCode> {
    let out_dirs = if args.out_dirs.is_empty() {
        vec![PathBuf::from("out")]
    } else {
        args.out_dirs.clone()
    };
    let report = sweep::clean(&out_dirs, &global.cache_dir()?)?;
    emit(global, &report, summary)?;
    Ok(ExitCode::SUCCESS)
}

fn summary(r: &SweepReport) -> String {
    let mut s = String::new();
    for swept in &r.removed {
        s.push_str(&format!(
            "removed {:>10}  {}\n",
            human_size(swept.bytes),
            swept.path.display()
        ));
    }
    for kept in &r.kept {
        s.push_str(&format!(
            "kept (its build is running)  {}\n",
            kept.display()
        ));
    }
    s.push_str(&format!(
        "{} removed ({}), {} kept\n",
        r.removed.len(),
        human_size(r.bytes()),
        r.kept.len()
    ));
    s
}
