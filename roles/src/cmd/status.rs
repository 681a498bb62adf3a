//! `rolectl status`: the role, its settings, the last activation and
//! wait-master, the credential files and the role units ([`crate::status`]).

use std::path::PathBuf;

use anyhow::{Context, Result};
use lexopt::Arg::Long;

use super::{exit, unknown, Argv, Stop, Subcommand};
use crate::status;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub root: PathBuf,
    pub json: bool,
}

impl Subcommand for Args {
    const NAME: &'static str = "status";

    fn parse(argv: &mut Argv) -> Result<Self, Stop> {
        let mut args = Args {
            root: PathBuf::from("/"),
            json: false,
        };
        while let Some(arg) = argv.next_arg()? {
            match arg {
                Long("root") => args.root = argv.path()?,
                Long("json") => args.json = true,
                arg => return Err(unknown(Self::NAME, arg)),
            }
        }
        argv.no_tail(Self::NAME)?;
        Ok(args)
    }

    fn run(self) -> Result<u8> {
        let r = status::report(&self.root);
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&r).context("encoding status")?
            );
        } else {
            print!("{}", status::render(&r));
        }
        Ok(if r.problems.is_empty() {
            exit::OK
        } else {
            exit::ERROR
        })
    }
}
