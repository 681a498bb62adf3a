//! `rolectl preflight`: the node's prerequisites, PASS or FAIL, each with
//! its fix ([`crate::preflight`]). The bootstrap VM test runs it on every
//! node.

use std::path::PathBuf;

use anyhow::{Context, Result};
use contract::role::Role;
use lexopt::Arg::Long;

use super::{exit, unknown, Argv, Stop, Subcommand};
use crate::{marker, preflight};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub root: PathBuf,
    /// The role to check for; default: the marker's, else every check.
    pub role: Option<Role>,
    pub json: bool,
}

impl Subcommand for Args {
    const NAME: &'static str = "preflight";

    fn parse(argv: &mut Argv) -> Result<Self, Stop> {
        let mut args = Args {
            root: PathBuf::from("/"),
            role: None,
            json: false,
        };
        while let Some(arg) = argv.next_arg()? {
            match arg {
                Long("root") => args.root = argv.path()?,
                Long("role") => {
                    let v = argv.string("--role")?;
                    let role = Role::try_from(v.as_str())
                        .map_err(|e| Stop::Usage(format!("--role: {e}")))?;
                    args.role = Some(role);
                }
                Long("json") => args.json = true,
                arg => return Err(unknown(Self::NAME, arg)),
            }
        }
        argv.no_tail(Self::NAME)?;
        Ok(args)
    }

    fn run(self) -> Result<u8> {
        let root = &self.root;
        let role = self.role.or_else(|| {
            Role::ALL
                .into_iter()
                .find(|r| marker::path(root, *r).exists())
        });
        let r = preflight::run(root, role);
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&r).context("encoding report")?
            );
        } else {
            print!("{}", preflight::render(&r));
        }
        Ok(if r.ok { exit::OK } else { exit::ERROR })
    }
}
