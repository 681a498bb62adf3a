//! `/run/rolectl/status.json` (written by every `activate`, success or not)
//! and `rolectl status` (role, settings, role units and their state).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use contract::credentials::{file_list, node};
use contract::role::Role;
use contract::unitfile;
use serde::{Deserialize, Serialize};

use crate::marker::{self, MarkerError};
use crate::settings::Settings;

pub const STATUS_PATH: &str = "/run/rolectl/status.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Activated,
    Unchanged,
    Unassigned,
    Error,
}

/// The machine-readable record of the last `rolectl activate`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActivationStatus {
    pub outcome: Outcome,
    pub role: Option<String>,
    pub cluster: Option<String>,
    pub domain: Option<String>,
    pub marker: Option<String>,
    /// Where the user-data came from: a file (absolute, relative to the
    /// root) or a datasource ("NoCloud seed /dev/vdb", "EC2 IMDSv2 …").
    pub user_data: String,
    /// Requests it took to get the user-data from a network datasource.
    #[serde(default)]
    pub attempts: Option<u32>,
    /// Datasources looked at before, and why each gave nothing.
    #[serde(default)]
    pub tried: Vec<String>,
    /// The user-data part and line that asked for the role.
    pub source: Option<String>,
    /// Why the host is unassigned / unchanged.
    pub reason: Option<String>,
    pub error: Option<String>,
    /// Where in user-data the error is (part, line, key).
    pub error_place: Option<String>,
    /// Time from start of activation to the marker being durable.
    pub elapsed_us: u64,
    pub time_unix: u64,
}

impl ActivationStatus {
    pub fn new(
        outcome: Outcome,
        role: Option<Role>,
        settings: Option<&Settings>,
        marker: Option<&Path>,
        user_data: &str,
    ) -> Self {
        ActivationStatus {
            outcome,
            role: role.map(|r| r.as_str().to_string()),
            cluster: settings.map(|s| s.cluster.as_str().to_string()),
            domain: settings.map(|s| s.domain.as_str().to_string()),
            marker: role
                .filter(|_| marker.is_some())
                .map(|r| r.marker_path().to_string()),
            user_data: user_data.to_string(),
            attempts: None,
            tried: Vec::new(),
            source: None,
            reason: None,
            error: None,
            error_place: None,
            elapsed_us: 0,
            time_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }
    }
}

/// Writes status.json atomically (mode 0644).
pub fn write_activation(root: &Path, st: &ActivationStatus) -> Result<(), MarkerError> {
    let mut json = serde_json::to_vec_pretty(st).unwrap_or_default();
    json.push(b'\n');
    marker::write_atomic(&marker::under(root, STATUS_PATH), &json, 0o644)
}

/// How the last `rolectl wait-master` ended (key `wait_master` of
/// status.json; written by wait-master, kept beside the activation record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitMasterStatus {
    /// ready | waiting | rejected | timeout | error
    pub outcome: String,
    /// `resolve` or `kubeconfig`.
    pub mode: String,
    /// The host waited for (DNS).
    pub host: String,
    /// The kubeconfig used (kubeconfig mode).
    pub kubeconfig: Option<String>,
    pub attempts: u32,
    /// What happened, for people.
    pub message: String,
    pub time_unix: u64,
}

/// Records the wait-master outcome in status.json (key `wait_master`),
/// keeping the activation record.
pub fn write_wait_master(root: &Path, w: &WaitMasterStatus) -> Result<(), MarkerError> {
    write_key(
        root,
        "wait_master",
        serde_json::to_value(w).unwrap_or_default(),
    )
}

/// Records the check of cloud-init's copy of the user-data (key
/// `cloud_init`), keeping the activation record.
pub fn write_cloud_init(root: &Path, st: &ActivationStatus) -> Result<(), MarkerError> {
    write_key(
        root,
        "cloud_init",
        serde_json::to_value(st).unwrap_or_default(),
    )
}

/// The activation record of status.json, if there is one.
pub fn read_activation(root: &Path) -> Option<ActivationStatus> {
    let text = fs::read_to_string(marker::under(root, STATUS_PATH)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Sets one key of status.json, keeping the rest (read-modify-write,
/// atomic rename).
fn write_key(root: &Path, key: &str, value: serde_json::Value) -> Result<(), MarkerError> {
    let path = marker::under(root, STATUS_PATH);
    let mut v: serde_json::Value = fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .filter(serde_json::Value::is_object)
        .unwrap_or_else(|| serde_json::Value::Object(Default::default()));
    if let Some(o) = v.as_object_mut() {
        o.insert(key.to_string(), value);
    }
    let mut json = serde_json::to_vec_pretty(&v).unwrap_or_default();
    json.push(b'\n');
    marker::write_atomic(&path, &json, 0o644)
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A credential file activation writes, as found on this root.
#[derive(Debug, Clone, Serialize)]
pub struct CredentialFile {
    pub path: String,
    pub present: bool,
    /// Octal mode if present (`0600`); content is never read.
    pub mode: Option<String>,
    /// The mode activation gives it.
    pub expected_mode: String,
}

/// The credential files of `role` (both roles' if none), present or not.
pub fn credential_files(root: &Path, role: Option<Role>) -> Vec<CredentialFile> {
    use std::os::unix::fs::PermissionsExt;
    let mut list: Vec<(&str, u32)> = Vec::new();
    for r in role.map_or(Role::ALL.to_vec(), |r| vec![r]) {
        for (_, f) in file_list(r) {
            if !list.iter().any(|(p, _)| *p == f.path) {
                list.push((f.path, f.mode));
            }
        }
    }
    list.push((node::KUBELET_CONF, 0o600));
    list.into_iter()
        .map(|(path, mode)| {
            let meta = fs::symlink_metadata(marker::under(root, path)).ok();
            CredentialFile {
                path: path.to_string(),
                present: meta.is_some(),
                mode: meta.map(|m| format!("{:04o}", m.permissions().mode() & 0o7777)),
                expected_mode: format!("{mode:04o}"),
            }
        })
        .collect()
}

/// A unit gated by a role drop-in.
#[derive(Debug, Clone, Serialize)]
pub struct RoleUnit {
    pub unit: String,
    pub dropin: String,
    /// The role-marker `ConditionPathExists=` values of the unit and its
    /// drop-ins, as systemd reads them.
    pub conditions: Vec<String>,
    /// Whether the conditions hold on this root (marker present).
    pub condition_met: bool,
    /// From `systemctl show` when root is `/`; else "unknown".
    pub active_state: String,
    pub condition_result: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub role: Option<String>,
    pub marker: Option<String>,
    pub cluster: Option<String>,
    pub domain: Option<String>,
    /// Marker variables, secrets masked as `***`.
    pub settings: Vec<(String, String)>,
    pub last_activation: Option<ActivationStatus>,
    /// How the last `wait-master` ended (from status.json).
    pub last_wait_master: Option<WaitMasterStatus>,
    /// What cloud-init's copy of the user-data said, checked after
    /// cloud-init ran (rolectl-cloud-init.service).
    pub cloud_init_check: Option<ActivationStatus>,
    /// Credential files (presence and mode only).
    pub credentials: Vec<CredentialFile>,
    pub units: Vec<RoleUnit>,
    pub problems: Vec<String>,
}

/// Collects the status report for `root`.
pub fn report(root: &Path) -> StatusReport {
    let mut r = StatusReport {
        role: None,
        marker: None,
        cluster: None,
        domain: None,
        settings: Vec::new(),
        last_activation: None,
        last_wait_master: None,
        cloud_init_check: None,
        credentials: Vec::new(),
        units: Vec::new(),
        problems: Vec::new(),
    };
    for role in Role::ALL {
        match marker::read(root, role) {
            Ok(Some(m)) => {
                if r.role.is_some() {
                    r.problems
                        .push("both role markers exist; a host has one role".to_string());
                }
                r.role = Some(role.as_str().to_string());
                r.marker = Some(role.marker_path().to_string());
                if let Some(s) = &m.settings {
                    r.cluster = Some(s.cluster.as_str().to_string());
                    r.domain = Some(s.domain.as_str().to_string());
                }
                r.settings = m
                    .vars
                    .iter()
                    .map(|(k, v)| {
                        let v = if marker::SECRET_VARS.contains(&k.as_str()) {
                            "***".to_string()
                        } else {
                            v.clone()
                        };
                        (k.clone(), v)
                    })
                    .collect();
            }
            Ok(None) => {}
            Err(e) => r.problems.push(e.to_string()),
        }
    }
    if let Ok(text) = fs::read_to_string(marker::under(root, STATUS_PATH)) {
        match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(mut v) => {
                // wait-master may have written status.json before any activation.
                let wait = v.as_object_mut().and_then(|o| o.remove("wait_master"));
                let check = v.as_object_mut().and_then(|o| o.remove("cloud_init"));
                if let Some(c) = check {
                    match serde_json::from_value(c) {
                        Ok(c) => r.cloud_init_check = Some(c),
                        Err(e) => r
                            .problems
                            .push(format!("{STATUS_PATH}: cloud_init is unreadable: {e}")),
                    }
                }
                if v.get("outcome").is_some() {
                    match serde_json::from_value(v) {
                        Ok(s) => r.last_activation = Some(s),
                        Err(e) => r.problems.push(format!("{STATUS_PATH} is unreadable: {e}")),
                    }
                }
                if let Some(w) = wait {
                    match serde_json::from_value(w) {
                        Ok(w) => r.last_wait_master = Some(w),
                        Err(e) => r
                            .problems
                            .push(format!("{STATUS_PATH}: wait_master is unreadable: {e}")),
                    }
                }
            }
            Err(e) => r.problems.push(format!("{STATUS_PATH} is unreadable: {e}")),
        }
    }
    let role = r.role.as_deref().and_then(|x| Role::try_from(x).ok());
    r.credentials = credential_files(root, role);
    r.units = role_units(root);
    r
}

fn role_units(root: &Path) -> Vec<RoleUnit> {
    let dir = marker::under(root, "/etc/systemd/system");
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "d") && p.join("role.conf").is_file())
        .collect();
    dirs.sort();
    let live = root == Path::new("/") && which("systemctl");
    dirs.iter()
        .map(|d| {
            let unit = d
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let conditions = unit_marker_conditions(root, &unit, d);
            let condition_met = conditions.iter().all(|c| {
                let c = c.trim_start_matches('|');
                let (neg, p) = match c.strip_prefix('!') {
                    Some(p) => (true, p),
                    None => (false, c),
                };
                marker::under(root, p).exists() != neg
            });
            let (active_state, condition_result) = if live {
                systemctl_show(&unit)
            } else {
                ("unknown".to_string(), "unknown".to_string())
            };
            RoleUnit {
                dropin: format!("/etc/systemd/system/{unit}.d/role.conf"),
                unit,
                conditions,
                condition_met,
                active_state,
                condition_result,
            }
        })
        .collect()
}

/// The effective role-marker conditions of `unit` as systemd reads them:
/// the unit file, then its drop-ins in `dir` sorted by name.
fn unit_marker_conditions(root: &Path, unit: &str, dir: &Path) -> Vec<String> {
    let mut files = vec![marker::under(root, &format!("/etc/systemd/system/{unit}"))];
    let mut dropins: Vec<PathBuf> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| unitfile::is_dropin(&e.file_name().to_string_lossy()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    dropins.sort();
    files.extend(dropins);
    let texts: Vec<(String, String)> = files
        .iter()
        .map(|p| {
            let text = fs::read_to_string(p).unwrap_or_default();
            (p.display().to_string(), text)
        })
        .collect();
    let refs: Vec<(&str, &str)> = texts
        .iter()
        .map(|(l, t)| (l.as_str(), t.as_str()))
        .collect();
    unitfile::marker_conditions(&refs)
        .into_iter()
        .map(|(v, _)| v)
        .collect()
}

fn systemctl_show(unit: &str) -> (String, String) {
    let out = Command::new("systemctl")
        .args(["show", "-p", "ActiveState,ConditionResult", "--", unit])
        .output();
    let mut a = "unknown".to_string();
    let mut c = "unknown".to_string();
    if let Ok(o) = out {
        for l in String::from_utf8_lossy(&o.stdout).lines() {
            if let Some(v) = l.strip_prefix("ActiveState=") {
                a = v.to_string();
            } else if let Some(v) = l.strip_prefix("ConditionResult=") {
                c = v.to_string();
            }
        }
    }
    (a, c)
}

/// True if `prog` is an executable file on PATH.
pub fn which(prog: &str) -> bool {
    find_in_path(prog).is_some()
}

pub fn find_in_path(prog: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(prog))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// Human-readable rendering of the report.
pub fn render(r: &StatusReport) -> String {
    let mut o = String::new();
    match (&r.role, &r.marker) {
        (Some(role), Some(m)) => o.push_str(&format!("role: {role} (marker {m})\n")),
        _ => o.push_str("role: unassigned (no marker)\n"),
    }
    if let Some(c) = &r.cluster {
        o.push_str(&format!("cluster: {c}\n"));
    }
    if let Some(d) = &r.domain {
        o.push_str(&format!("domain: {d}\n"));
    }
    if !r.settings.is_empty() {
        o.push_str("settings:\n");
        for (k, v) in &r.settings {
            o.push_str(&format!("  {k}={v}\n"));
        }
    }
    match &r.last_activation {
        Some(a) => {
            let outcome = serde_json::to_value(a.outcome)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            o.push_str(&format!("last activation: {outcome}"));
            if let Some(e) = a.error.as_ref().or(a.reason.as_ref()) {
                o.push_str(&format!(" ({e})"));
            }
            o.push('\n');
            let attempts = a
                .attempts
                .map_or(String::new(), |n| format!(" after {n} attempt(s)"));
            o.push_str(&format!("user-data from: {}{attempts}\n", a.user_data));
            for t in &a.tried {
                o.push_str(&format!("  tried: {t}\n"));
            }
        }
        None => o.push_str(&format!("last activation: none ({STATUS_PATH} absent)\n")),
    }
    if let Some(c) = &r.cloud_init_check {
        let verdict = match c.outcome {
            Outcome::Unchanged => "agrees".to_string(),
            Outcome::Activated => "activated this host (no earlier datasource)".to_string(),
            Outcome::Unassigned => format!(
                "names no role ({})",
                c.reason.as_deref().unwrap_or("no reason")
            ),
            Outcome::Error => format!("disagrees: {}", c.error.as_deref().unwrap_or("error")),
        };
        o.push_str(&format!("cloud-init's copy ({}): {verdict}\n", c.user_data));
    }
    if let Some(w) = &r.last_wait_master {
        o.push_str(&format!(
            "last wait-master: {} ({}) after {} attempts\n",
            w.outcome, w.message, w.attempts
        ));
    }
    o.push_str("credential files:\n");
    for c in &r.credentials {
        let state = match &c.mode {
            Some(m) if *m == c.expected_mode => format!("present, mode {m}"),
            Some(m) => format!("present, mode {m} (expected {})", c.expected_mode),
            None => "absent".to_string(),
        };
        o.push_str(&format!("  {:<48} {state}\n", c.path));
    }
    if r.units.is_empty() {
        o.push_str("role units: none found under /etc/systemd/system/*.d/role.conf\n");
    } else {
        o.push_str("role units:\n");
        for u in &r.units {
            let verdict = if u.condition_met {
                "runs"
            } else {
                "skipped by condition"
            };
            o.push_str(&format!(
                "  {:<32} {:<22} active={} condition={} [{}]\n",
                u.unit,
                verdict,
                u.active_state,
                u.condition_result,
                u.conditions
                    .iter()
                    .map(|c| format!("ConditionPathExists={c}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
        }
    }
    for p in &r.problems {
        o.push_str(&format!("problem: {p}\n"));
    }
    o
}
