//! `kubebake userdata`: ready-to-use `#cloud-config` for a node.

use std::process::ExitCode;

use anyhow::{Context, Result};
use harness::userdata;
use serde_json::json;

use crate::cli::{GlobalArgs, UserdataArgs};
use crate::output::{out, print_json};

pub fn run(global: &GlobalArgs, args: &UserdataArgs) -> Result<ExitCode> {
    userdata::check_cluster(&args.cluster)?;
    if let Some(d) = &args.domain {
        userdata::check_domain(d)?;
    }
    let keys = match &args.ssh_key {
        Some(p) => vec![std::fs::read_to_string(p)
            .with_context(|| format!("reading SSH public key {}", p.display()))?
            .trim()
            .to_string()],
        None => Vec::new(),
    };
    let mut text = userdata::cloud_config(
        args.role,
        &args.cluster,
        args.domain.as_deref(),
        args.expected_minions,
        &keys,
    );
    if let Some(dir) = &args.secrets {
        let secrets = crate::cluster_secrets::load(dir)?;
        if secrets.info.name != args.cluster {
            anyhow::bail!(
                "the secrets in {} belong to cluster {:?}, not {:?}: pass --cluster {}",
                dir.display(),
                secrets.info.name,
                args.cluster,
                secrets.info.name
            );
        }
        if args.role == harness::Role::Master && args.api_server.is_some() {
            anyhow::bail!("--api-server is for minions: a master serves the API itself");
        }
        text.push_str(&secrets.userdata_section(args.role, args.api_server.as_deref())?);
    } else if args.api_server.is_some() {
        anyhow::bail!("--api-server needs --secrets DIR (the minion's credentials)");
    }
    if global.json {
        print_json(&json!({ "ok": true, "role": args.role, "user_data": text }))?;
    } else {
        out(&text)?;
    }
    Ok(ExitCode::SUCCESS)
}
