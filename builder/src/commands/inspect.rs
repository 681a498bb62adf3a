//! `kubebake inspect IMAGE`: the image against its manifest.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{GlobalArgs, InspectArgs};
use crate::inspect::{inspect, InspectReport};
use crate::output::emit;

pub fn run(global: &GlobalArgs, args: &InspectArgs) -> Result<ExitCode> {
    let report = inspect(&args.image, args.manifest.as_deref())?;
    emit(global, &report, text)?;
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn text(r: &InspectReport) -> String {
    let mut s = format!(
        "{} (manifest {})\n",
        r.image.display(),
        r.manifest.display()
    );
    let passed = r.checks.len() - r.failures;
    for c in r.checks.iter().filter(|c| !c.ok) {
        s.push_str(&format!("  MISMATCH {}: {}\n", c.what, c.detail));
    }
    s.push_str(&format!(
        "  {passed} of {} checks passed\n\n  units:\n",
        r.checks.len()
    ));
    for u in &r.units {
        let cond = if u.masked {
            "masked".to_string()
        } else if u.conditions.is_empty() {
            "every node".to_string()
        } else {
            format!("ConditionPathExists={}", u.conditions.join(", "))
        };
        s.push_str(&format!(
            "    {:<28} {:<7} {cond}\n",
            u.unit,
            u.role.as_deref().unwrap_or("-")
        ));
    }
    s.push_str(if r.ok() {
        "\nOK: the image matches its manifest\n"
    } else {
        "\nFAILED: the image does not match its manifest\n"
    });
    s
}
