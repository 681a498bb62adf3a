//! `rolectl activate`: decide this host's role from user-data and write the
//! marker, once. Policy (see README): a marker, once written, is never
//! changed by rolectl; user-data that disagrees with it is refused.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use contract::role::Role;

use crate::credentials::{Credentials, OutFile};
use crate::datasource::Fetched;
use crate::marker::{self, Marker, MarkerError};
use crate::pki::{self, Openssl};
use crate::settings::Settings;
use crate::status::{self, ActivationStatus, Outcome};
use crate::userdata::{self, Request, UserDataError};

/// Default user-data location (cloud-init's copy of the instance user-data).
pub const DEFAULT_USER_DATA: &str = "/var/lib/cloud/instance/user-data.txt";

/// Where this activation's user-data comes from.
#[derive(Debug, Clone)]
pub enum Input {
    /// A file: absolute, taken relative to the root. `must_exist`: the file
    /// was named explicitly and its absence is an error; only cloud-init's
    /// default location may be absent (no user-data: host unassigned).
    File { path: String, must_exist: bool },
    /// Read by rolectl from a datasource ([`crate::datasource`]).
    Fetched(Fetched),
    /// No datasource gave any: the host stays unassigned for `reason`.
    Missing { reason: String },
}

impl Input {
    /// Where the user-data came from, for status.json and messages.
    pub fn origin(&self) -> String {
        match self {
            Input::File { path, .. } => path.clone(),
            Input::Fetched(f) => f.origin.clone(),
            Input::Missing { .. } => "none".to_string(),
        }
    }
}

/// Which record of status.json this activation writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    /// The activation record (the early `rolectl.service`, or by hand).
    Main,
    /// The check of cloud-init's copy after cloud-init ran
    /// (`rolectl-cloud-init.service`): key `cloud_init`; it becomes the
    /// activation record only if it wrote the marker.
    CloudInit,
}

#[derive(Debug, Clone)]
pub struct ActivateOptions {
    pub root: PathBuf,
    pub input: Input,
    /// Datasources looked at before, and why they gave nothing.
    pub tried: Vec<String>,
    pub record: Record,
    /// Checks credentials (see [`crate::pki`]).
    pub openssl: Openssl,
}

#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    #[error("reading user-data {path}: {err}")]
    ReadUserData { path: PathBuf, err: io::Error },
    // No #[from]/#[source]: the message already carries the inner text, and
    // anyhow's `{:#}` would print it twice.
    #[error("invalid user-data: {0}")]
    UserData(UserDataError),
    #[error(transparent)]
    Marker(#[from] MarkerError),
    #[error("both {master} and {minion} exist; a host has one role. Remove the wrong one (the host was provisioned twice?)")]
    BothMarkers { master: PathBuf, minion: PathBuf },
    #[error("this host is already a {existing} (marker {path}); {source_place} asks for role {requested}. Roles are never changed on an activated host: reprovision it, or remove the marker by hand")]
    RoleConflict {
        existing: Role,
        requested: Role,
        path: PathBuf,
        source_place: String,
    },
    #[error("this host is a {role} with {var}={existing_value} (in {path}); {source_place} asks for {var}={requested_value}. The marker is never rewritten: reprovision the host, or remove the marker by hand")]
    SettingConflict {
        role: Role,
        var: String,
        existing_value: String,
        requested_value: String,
        path: PathBuf,
        source_place: String,
    },
}

impl From<UserDataError> for ActivateError {
    fn from(e: UserDataError) -> Self {
        ActivateError::UserData(e)
    }
}

/// What activation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Activated {
    /// Marker written now.
    Written {
        role: Role,
        settings: Settings,
        path: PathBuf,
        /// The user-data part (and line) that asked for the role.
        source: String,
        /// Credential files in place (absolute, relative to the root).
        files: Vec<String>,
    },
    /// Marker already present and user-data agrees (or has no role).
    Unchanged {
        role: Role,
        settings: Option<Settings>,
        path: PathBuf,
        note: String,
        /// Credential files (re)written from user-data.
        files: Vec<String>,
    },
    /// No role requested; host stays unassigned.
    Unassigned { reason: String },
}

/// Runs activation and always records `/run/rolectl/status.json`.
pub fn run(opts: &ActivateOptions) -> Result<Activated, ActivateError> {
    let started = Instant::now();
    let result = activate(opts);
    let origin = opts.input.origin();
    let elapsed_us = started.elapsed().as_micros() as u64;
    let st = match &result {
        Ok(Activated::Written {
            role,
            settings,
            path,
            source,
            ..
        }) => {
            let mut s = ActivationStatus::new(
                Outcome::Activated,
                Some(*role),
                Some(settings),
                Some(path),
                &origin,
            );
            s.source = Some(source.clone());
            s
        }
        Ok(Activated::Unchanged {
            role,
            settings,
            path,
            note,
            ..
        }) => {
            let mut s = ActivationStatus::new(
                Outcome::Unchanged,
                Some(*role),
                settings.as_ref(),
                Some(path),
                &origin,
            );
            s.reason = Some(note.clone());
            s
        }
        Ok(Activated::Unassigned { reason }) => {
            let mut s = ActivationStatus::new(Outcome::Unassigned, None, None, None, &origin);
            s.reason = Some(reason.clone());
            s
        }
        Err(e) => {
            let mut s = ActivationStatus::new(Outcome::Error, None, None, None, &origin);
            s.error = Some(e.to_string());
            match e {
                ActivateError::UserData(u) => s.error_place = Some(u.place.clone()),
                ActivateError::RoleConflict {
                    existing,
                    source_place,
                    ..
                } => {
                    s.role = Some(existing.as_str().to_string());
                    s.error_place = Some(source_place.clone());
                }
                ActivateError::SettingConflict {
                    role, source_place, ..
                } => {
                    s.role = Some(role.as_str().to_string());
                    s.error_place = Some(source_place.clone());
                }
                _ => {}
            }
            s
        }
    };
    let attempts = match &opts.input {
        Input::Fetched(f) => Some(f.attempts),
        _ => None,
    };
    let st = ActivationStatus {
        elapsed_us,
        attempts,
        tried: opts.tried.clone(),
        ..st
    };
    let written = match opts.record {
        Record::Main => status::write_activation(&opts.root, &st),
        Record::CloudInit => {
            let wrote_marker = matches!(result, Ok(Activated::Written { .. }));
            let main = if wrote_marker {
                // The early activation found nothing: this is the activation
                // now; keep what the early one tried.
                let earlier = status::read_activation(&opts.root).map(|a| a.tried);
                let st = ActivationStatus {
                    tried: earlier.unwrap_or_default(),
                    ..st.clone()
                };
                status::write_activation(&opts.root, &st)
            } else {
                Ok(())
            };
            main.and_then(|()| status::write_cloud_init(&opts.root, &st))
        }
    };
    if let Err(e) = written {
        eprintln!("rolectl: warning: {e}");
    }
    result
}

/// What the user-data asks for: parsed, or unassigned with the reason why
/// there is none.
fn request(opts: &ActivateOptions) -> Result<Request, ActivateError> {
    let data = match &opts.input {
        Input::File { path, must_exist } => {
            let p = marker::under(&opts.root, path);
            match fs::read(&p) {
                Ok(d) => d,
                Err(e) if e.kind() == io::ErrorKind::NotFound && !must_exist => {
                    return Ok(Request::Unassigned {
                        reason: format!("no user-data at {path}"),
                    })
                }
                Err(err) => return Err(ActivateError::ReadUserData { path: p, err }),
            }
        }
        Input::Fetched(f) => match &f.data {
            Some(d) => d.clone(),
            None => {
                return Ok(Request::Unassigned {
                    reason: format!("{} has no user-data for this instance", f.origin),
                })
            }
        },
        Input::Missing { reason } => {
            return Ok(Request::Unassigned {
                reason: reason.clone(),
            })
        }
    };
    Ok(userdata::parse(&data)?)
}

fn activate(opts: &ActivateOptions) -> Result<Activated, ActivateError> {
    let root = opts.root.as_path();
    let master = marker::read(root, Role::Master)?;
    let minion = marker::read(root, Role::Minion)?;
    let existing: Option<Marker> = match (master, minion) {
        (Some(a), Some(b)) => {
            return Err(ActivateError::BothMarkers {
                master: a.path,
                minion: b.path,
            })
        }
        (a, b) => a.or(b),
    };
    let request = request(opts)?;
    match (existing, request) {
        (None, Request::Unassigned { reason }) => Ok(Activated::Unassigned { reason }),
        (
            None,
            Request::Assign {
                role,
                settings,
                credentials,
                source,
            },
        ) => write(opts, role, settings, credentials.as_ref(), source),
        (Some(m), Request::Unassigned { reason }) => Ok(Activated::Unchanged {
            role: m.role,
            settings: m.settings,
            path: m.path,
            note: format!("keeping existing role; user-data names none ({reason})"),
            files: Vec::new(),
        }),
        (
            Some(m),
            Request::Assign {
                role,
                settings,
                credentials,
                source,
            },
        ) => {
            if m.role != role {
                return Err(ActivateError::RoleConflict {
                    existing: m.role,
                    requested: role,
                    path: m.path,
                    source_place: source,
                });
            }
            let Some(current) = &m.settings else {
                // An empty marker left by the seed's `touch`: fill it in.
                return write(opts, role, settings, credentials.as_ref(), source);
            };
            let want = marker::render(role, &settings);
            let want = marker::parse(role, &m.path, &want)?;
            for var in marker::VARS {
                let a = m
                    .vars
                    .iter()
                    .find(|(k, _)| k == var)
                    .map(|(_, v)| v.as_str());
                let b = want
                    .vars
                    .iter()
                    .find(|(k, _)| k == var)
                    .map(|(_, v)| v.as_str());
                if a != b {
                    let shown = |v: Option<&str>| match v {
                        None => "(unset)".to_string(),
                        Some(_) if marker::SECRET_VARS.contains(var) => "***".to_string(),
                        Some(v) => v.to_string(),
                    };
                    return Err(ActivateError::SettingConflict {
                        role,
                        var: var.to_string(),
                        existing_value: shown(a),
                        requested_value: shown(b),
                        path: m.path,
                        source_place: source,
                    });
                }
            }
            // A reboot: the same credentials are written again (identical
            // content), and a token that has expired since is no error.
            let files = credential_files(opts, credentials.as_ref(), &settings, false)?;
            Ok(Activated::Unchanged {
                role,
                settings: Some(current.clone()),
                path: m.path,
                note: "marker present and user-data agrees".to_string(),
                files,
            })
        }
    }
}

/// First activation: credentials checked and written, then the marker, so
/// that a role unit never sees the marker without its files.
fn write(
    opts: &ActivateOptions,
    role: Role,
    settings: Settings,
    credentials: Option<&Credentials>,
    source: String,
) -> Result<Activated, ActivateError> {
    let files = credential_files(opts, credentials, &settings, true)?;
    let path = marker::path(&opts.root, role);
    marker::write_atomic(&path, marker::render(role, &settings).as_bytes(), 0o600)?;
    Ok(Activated::Written {
        role,
        settings,
        path,
        source,
        files,
    })
}

/// Checks the credentials with openssl (the token expiry only if
/// `first_activation`) and writes their files.
fn credential_files(
    opts: &ActivateOptions,
    credentials: Option<&Credentials>,
    settings: &Settings,
    first_activation: bool,
) -> Result<Vec<String>, ActivateError> {
    let Some(c) = credentials else {
        return Ok(Vec::new());
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    pki::check(c, now, first_activation, &opts.openssl)?;
    let files = c.files(settings);
    write_files(&opts.root, &files)?;
    Ok(files.iter().map(|f| f.path.to_string()).collect())
}

/// Writes each file atomically with its mode (secrets 0600 from the first
/// byte: the temp file is created with the final mode). A file that already
/// has the content and mode is left alone.
pub fn write_files(root: &Path, files: &[OutFile]) -> Result<(), MarkerError> {
    use std::os::unix::fs::PermissionsExt;
    for f in files {
        let p = marker::under(root, f.path);
        let same = fs::read(&p).is_ok_and(|old| old == f.content.as_bytes())
            && fs::symlink_metadata(&p)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o7777 == f.mode);
        if !same {
            marker::write_atomic(&p, f.content.as_bytes(), f.mode)?;
        }
    }
    Ok(())
}
