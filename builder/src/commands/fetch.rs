//! `kubebake fetch DEF`: download and verify every artifact into the cache.

use std::process::ExitCode;

use anyhow::Result;
use serde_json::json;

use crate::check::load_checked;
use crate::cli::{FetchArgs, GlobalArgs};
use crate::fetch;
use crate::output::{human_size, out, print_json};

pub fn run(global: &GlobalArgs, args: &FetchArgs) -> Result<ExitCode> {
    let def = load_checked(&args.def.def, &global.load_options(&args.def))?.def;
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
