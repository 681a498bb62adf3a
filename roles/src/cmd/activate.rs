//! `rolectl activate`: the role marker from user-data ([`crate::role`]).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use contract::console;
use lexopt::Arg::Long;

use super::{exit, unknown, Argv, Stop, Subcommand};
use crate::role::{self, ActivateOptions, Activated, Input, Record};
use crate::{datasource, marker, pki, status};

/// Where `activate` gets the user-data.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// `--user-data FILE` (then it must exist).
    File(String),
    /// `--cloud-init`: cloud-init's copy, checked against the marker.
    CloudInit,
    /// The image's datasources ([`crate::datasource`]), then cloud-init's copy.
    Datasources {
        network_timeout: Duration,
        imds_url: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Args {
    pub root: PathBuf,
    pub source: Source,
}

impl Subcommand for Args {
    const NAME: &'static str = "activate";

    fn parse(argv: &mut Argv) -> Result<Self, Stop> {
        let mut root = PathBuf::from("/");
        let mut user_data = None;
        let mut cloud_init = false;
        let mut network_timeout = None;
        let mut imds_url = None;
        while let Some(arg) = argv.next_arg()? {
            match arg {
                Long("root") => root = argv.path()?,
                Long("user-data") => user_data = Some(argv.string("--user-data")?),
                Long("cloud-init") => cloud_init = true,
                Long("network-timeout") => network_timeout = Some(argv.secs("--network-timeout")?),
                Long("imds-url") => {
                    let v = argv.string("--imds-url")?;
                    if !(v.starts_with("http://") || v.starts_with("https://")) || v.ends_with('/')
                    {
                        return Err(Stop::Usage(format!(
                            "--imds-url: {v:?} must be an http(s) URL without a trailing slash, e.g. http://169.254.169.254"
                        )));
                    }
                    imds_url = Some(v);
                }
                arg => return Err(unknown(Self::NAME, arg)),
            }
        }
        argv.no_tail(Self::NAME)?;
        let network_only = network_timeout.is_some() || imds_url.is_some();
        let source = match (user_data, cloud_init) {
            (Some(_), true) => {
                return Err(Stop::Usage(
                    "activate: give --user-data FILE or --cloud-init, not both".into(),
                ))
            }
            (Some(f), false) => Source::File(f),
            (None, true) => Source::CloudInit,
            (None, false) => Source::Datasources {
                network_timeout: network_timeout.unwrap_or(datasource::NETWORK_TIMEOUT),
                imds_url: imds_url.unwrap_or_else(|| datasource::EC2_IMDS.into()),
            },
        };
        if network_only && !matches!(source, Source::Datasources { .. }) {
            return Err(Stop::Usage(
                "activate: --network-timeout and --imds-url go with the datasources, not with --user-data or --cloud-init"
                    .into(),
            ));
        }
        Ok(Args { root, source })
    }

    fn run(self) -> Result<u8> {
        let Args { root, source } = self;
        let started = Instant::now();
        let cloud_init_copy = || Input::File {
            path: role::DEFAULT_USER_DATA.to_string(),
            must_exist: false,
        };
        let (input, tried, record) = match source {
            Source::File(path) => (
                Input::File {
                    path,
                    must_exist: true,
                },
                Vec::new(),
                Record::Main,
            ),
            Source::CloudInit => (cloud_init_copy(), Vec::new(), Record::CloudInit),
            Source::Datasources {
                network_timeout,
                imds_url,
            } => {
                let mut platform = datasource::Platform::new(&root);
                platform.network_timeout = network_timeout;
                platform.imds = imds_url;
                let d = datasource::discover(&platform);
                let input = match d.found {
                    Some(f) => Input::Fetched(f),
                    // A reboot where the seed is gone, or a datasource only
                    // cloud-init knows: its copy from an earlier run.
                    None if marker::under(&root, role::DEFAULT_USER_DATA).is_file() => {
                        cloud_init_copy()
                    }
                    None => Input::Missing {
                        reason: format!("no datasource gave user-data: {}", d.tried.join("; ")),
                    },
                };
                (input, d.tried, Record::Main)
            }
        };
        let origin = input.origin();
        let opts = ActivateOptions {
            root: root.clone(),
            input,
            tried,
            record,
            openssl: pki::Openssl::default(),
        };
        match role::run(&opts).context(console::NO_MARKER)? {
            Activated::Written {
                role,
                settings,
                files,
                ..
            } => {
                let creds = if files.is_empty() {
                    String::new()
                } else {
                    format!(" after {} credential files", files.len())
                };
                eprintln!(
                    "{} {role} of cluster {} (domain {}) from {origin}: wrote {}{creds} in {:.2} ms",
                    console::ACTIVATED_AS,
                    settings.cluster,
                    settings.domain,
                    role.marker_path(),
                    started.elapsed().as_secs_f64() * 1000.0
                );
                if record == Record::CloudInit && root == Path::new("/") {
                    // The role units' start jobs ran (and were skipped) after
                    // the early activation found nothing: queue them again.
                    start_role_units(&root);
                }
            }
            Activated::Unchanged {
                role, note, files, ..
            } => {
                let creds = if files.is_empty() {
                    String::new()
                } else {
                    format!("; {} credential files in place", files.len())
                };
                eprintln!(
                    "{} {role}; {note} ({origin}); {} untouched{creds}",
                    console::ALREADY_A,
                    role.marker_path()
                );
            }
            Activated::Unassigned { reason } => {
                eprintln!("{}: {reason}", console::UNASSIGNED);
            }
        }
        Ok(exit::OK)
    }
}

/// `systemctl start --no-block` for the role units whose marker condition
/// now holds and that are not running.
fn start_role_units(root: &Path) {
    let units: Vec<String> = status::report(root)
        .units
        .into_iter()
        .filter(|u| u.condition_met && u.active_state != "active")
        .map(|u| u.unit)
        .collect();
    if units.is_empty() {
        return;
    }
    match Command::new("systemctl")
        .args(["start", "--no-block"])
        .args(&units)
        .status()
    {
        Ok(s) if s.success() => eprintln!("rolectl: queued {}", units.join(" ")),
        Ok(s) => eprintln!(
            "rolectl: warning: systemctl start {} exited {s}",
            units.join(" ")
        ),
        Err(e) => eprintln!("rolectl: warning: running systemctl: {e}"),
    }
}
