//! `kubebake boot IMAGE`: one boot under QEMU on a throw-away overlay, to the
//! login prompt (or until the guest powers off); proves the golden image was
//! not modified.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};
use harness::boot::{BootOptions, BootReport, Until};
use serde::Serialize;

use crate::cli::{BootArgs, GlobalArgs};
use crate::layout::boot_spec;
use crate::manifest::sha256_file;
use crate::output::emit;

#[derive(Serialize)]
struct Report {
    #[serde(flatten)]
    boot: BootReport,
    golden_unchanged: bool,
}

pub fn run(global: &GlobalArgs, args: &BootArgs) -> Result<ExitCode> {
    let spec = boot_spec(&args.image)?;
    let before = sha256_file(&spec.disk)?;
    let boot = harness::boot::boot(
        &spec,
        &BootOptions {
            direct_kernel: args.direct_kernel,
            until: if args.until_login {
                Until::Login
            } else {
                Until::Poweroff
            },
            timeout: Duration::from_secs(args.timeout),
            memory_mib: args.memory,
            log_dir: args.log_dir.clone(),
        },
    )?;
    if sha256_file(&spec.disk)? != before {
        bail!(
            "the golden image {} changed during the boot",
            spec.disk.display()
        );
    }
    let report = Report {
        boot,
        golden_unchanged: true,
    };
    emit(global, &report, |r| {
        let b = &r.boot;
        format!(
            "{}: {} after {:.1} s ({}, {}); golden image unchanged; serial log {}\n",
            b.image.display(),
            match b.until {
                Until::Login => "login prompt",
                Until::Poweroff => "powered off",
            },
            b.seconds,
            b.boot,
            b.accelerator,
            b.serial_log.display()
        )
    })?;
    Ok(ExitCode::SUCCESS)
}
