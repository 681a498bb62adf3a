//! `kubebake down`: stop a detached cluster; nothing is left behind.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{state_dir, DownArgs, GlobalArgs};
use crate::output::emit;

pub fn run(global: &GlobalArgs, args: &DownArgs) -> Result<ExitCode> {
    let dir = state_dir(&args.cluster, args.state_dir.as_ref());
    let report = harness::state::down(&dir, args.all)?;
    emit(global, &report, |r| {
        let mut t = match &r.cluster {
            Some(c) => format!(
                "cluster {c}: {} VM(s) stopped, namespace(s) removed: {}\n",
                r.vms_stopped,
                r.namespaces_removed.join(", ")
            ),
            None => format!(
                "cluster {}: nothing to stop (no state in {})\n",
                args.cluster,
                dir.display()
            ),
        };
        if r.cluster.is_none() && !r.namespaces_removed.is_empty() {
            t.push_str(&format!(
                "removed leftover namespaces: {}\n",
                r.namespaces_removed.join(", ")
            ));
        }
        t
    })?;
    Ok(ExitCode::SUCCESS)
}
