//! `kubebake cluster init|token`: make a cluster's secrets; prints what was
//! made (never a secret).

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{ClusterCommand, GlobalArgs};
use crate::cluster_secrets as cs;
use crate::output::{out, print_json};

pub fn run(global: &GlobalArgs, cmd: &ClusterCommand) -> Result<ExitCode> {
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
        print_json(&secrets.info)?;
    } else {
        let (name, dir) = (&secrets.info.name, secrets.dir.display());
        out(&format!(
            "cluster {name} secrets in {dir}\n  CA pin:          {}\n  bootstrap token: {}.<secret> (expires {})\n\
             next: kubebake userdata --role master --cluster {name} --secrets {dir} > master.yaml\n      \
             kubebake userdata --role minion --cluster {name} --secrets {dir} > minion.yaml\n",
            secrets.info.ca_cert_hash,
            secrets.token.id(),
            secrets.info.token_expiration,
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}
