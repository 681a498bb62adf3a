//! The role marker `/etc/sysconfig/kubernetes-<role>`: a systemd
//! `EnvironmentFile=` written atomically (temp file in the same directory,
//! fsync, rename, fsync the directory), mode 0600 (it may hold a secret).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use contract::role::Role;
use contract::values::{ClusterName, Domain, InvalidValue, WeavePassword};

use crate::settings::{
    check_weave_arg, parse_mtu, AddonsUrl, ApiServer, Cidr, ExpectedMinions, MasterEndpoint,
    Settings, WeaveOptions,
};

/// Variable names in the marker (other units rely on them).
pub const VARS: &[&str] = &[
    "ROLE",
    "CLUSTER_NAME",
    "CLUSTER_DOMAIN",
    "MASTER_ENDPOINT",
    "ADDONS_URL",
    "EXPECTED_MINIONS",
    "WEAVE_PASSWORD",
    "WEAVE_EXTRA_ARGS",
    "API_SERVER",
];

/// Variables whose values are masked in `rolectl status`.
pub const SECRET_VARS: &[&str] = &["WEAVE_PASSWORD"];

#[derive(Debug, thiserror::Error)]
pub enum MarkerError {
    #[error("reading marker {path}: {err}")]
    Read { path: PathBuf, err: io::Error },
    #[error("writing {path}: {err}")]
    Write { path: PathBuf, err: io::Error },
    #[error("marker {path} line {line}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("no role marker ({} or {}); run `rolectl activate` first", Role::Minion.marker_path(), Role::Master.marker_path())]
    Missing,
}

/// `root` joined with an absolute path such as `/etc/sysconfig/x`.
pub fn under(root: &Path, abs: &str) -> PathBuf {
    root.join(abs.trim_start_matches('/'))
}

/// The marker file for `role` under `root`.
pub fn path(root: &Path, role: Role) -> PathBuf {
    under(root, role.marker_path())
}

/// Renders the marker content. Every value is a validated newtype, so no
/// quoting is needed (and none is used).
pub fn render(role: Role, s: &Settings) -> String {
    let mut out =
        String::from("# Written by rolectl activate from cloud-init user-data. Do not edit.\n");
    let mut kv = |k: &str, v: &str| {
        out.push_str(k);
        out.push('=');
        out.push_str(v);
        out.push('\n');
    };
    kv("ROLE", role.as_str());
    kv("CLUSTER_NAME", s.cluster.as_str());
    kv("CLUSTER_DOMAIN", s.domain.as_str());
    if let Some(e) = &s.master_endpoint {
        kv("MASTER_ENDPOINT", e.as_str());
    }
    if let Some(u) = &s.addons_url {
        kv("ADDONS_URL", u.as_str());
    }
    if let Some(n) = s.expected_minions {
        kv("EXPECTED_MINIONS", &n.get().to_string());
    }
    if let Some(p) = &s.weave.password {
        kv("WEAVE_PASSWORD", p.expose());
    }
    let extra = s.weave.extra_args();
    if !extra.is_empty() {
        kv("WEAVE_EXTRA_ARGS", &extra.join(" "));
    }
    if let Some(a) = &s.api_server {
        kv("API_SERVER", a.as_str());
    }
    out
}

/// A marker read back from disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    pub role: Role,
    pub path: PathBuf,
    /// `None` for an empty file (the seed's `touch` left it; rolectl fills it in).
    pub settings: Option<Settings>,
    /// The raw `KEY=value` pairs in file order.
    pub vars: Vec<(String, String)>,
}

/// Reads the marker for `role`, if present.
pub fn read(root: &Path, role: Role) -> Result<Option<Marker>, MarkerError> {
    let p = path(root, role);
    let text = match fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(MarkerError::Read { path: p, err }),
    };
    parse(role, &p, &text).map(Some)
}

/// The host's role and settings from its marker (the minion's first, then
/// the master's), for the commands that run after activation.
pub fn read_role(root: &Path) -> Result<(Role, Settings), MarkerError> {
    for role in [Role::Minion, Role::Master] {
        if let Some(m) = read(root, role)? {
            return Ok((role, m.settings.unwrap_or_default()));
        }
    }
    Err(MarkerError::Missing)
}

/// Parses marker text (strictly: only rolectl's own variables).
pub fn parse(role: Role, p: &Path, text: &str) -> Result<Marker, MarkerError> {
    let bad = |line: usize, message: String| MarkerError::Invalid {
        path: p.to_path_buf(),
        line,
        message,
    };
    let mut vars: Vec<(String, String)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| bad(i + 1, "expected KEY=value".into()))?;
        if !VARS.contains(&k) {
            return Err(bad(i + 1, format!("unknown variable {k}")));
        }
        if vars.iter().any(|(x, _)| x == k) {
            return Err(bad(i + 1, format!("{k} given twice")));
        }
        vars.push((k.to_string(), v.to_string()));
    }
    if vars.is_empty() {
        return Ok(Marker {
            role,
            path: p.to_path_buf(),
            settings: None,
            vars,
        });
    }
    let get = |k: &str| vars.iter().find(|(x, _)| x == k).map(|(_, v)| v.as_str());
    let line_of = |k: &str| {
        text.lines()
            .position(|l| l.trim().starts_with(&format!("{k}=")))
            .map_or(0, |n| n + 1)
    };
    let check =
        |k: &str, r: Result<(), InvalidValue>| r.map_err(|e| bad(line_of(k), e.to_string()));
    match get("ROLE") {
        Some(r) if r == role.as_str() => {}
        Some(r) => {
            return Err(bad(
                line_of("ROLE"),
                format!("ROLE={r} in the {role} marker"),
            ))
        }
        None => return Err(bad(0, "no ROLE= line".into())),
    }
    let mut s = Settings::default();
    let cluster = get("CLUSTER_NAME").ok_or_else(|| bad(0, "no CLUSTER_NAME= line".into()))?;
    s.cluster =
        ClusterName::try_from(cluster).map_err(|e| bad(line_of("CLUSTER_NAME"), e.to_string()))?;
    if let Some(d) = get("CLUSTER_DOMAIN") {
        s.domain =
            Domain::try_from(d).map_err(|e| bad(line_of("CLUSTER_DOMAIN"), e.to_string()))?;
    }
    if let Some(v) = get("MASTER_ENDPOINT") {
        s.master_endpoint = Some(
            MasterEndpoint::try_from(v)
                .map_err(|e| bad(line_of("MASTER_ENDPOINT"), e.to_string()))?,
        );
    }
    if let Some(v) = get("ADDONS_URL") {
        s.addons_url =
            Some(AddonsUrl::try_from(v).map_err(|e| bad(line_of("ADDONS_URL"), e.to_string()))?);
    }
    if let Some(v) = get("EXPECTED_MINIONS") {
        s.expected_minions = Some(
            ExpectedMinions::try_from(v)
                .map_err(|e| bad(line_of("EXPECTED_MINIONS"), e.to_string()))?,
        );
    }
    let mut w = WeaveOptions::default();
    if let Some(v) = get("WEAVE_PASSWORD") {
        w.password = Some(
            WeavePassword::try_from(v)
                .map_err(|e| bad(line_of("WEAVE_PASSWORD"), e.to_string()))?,
        );
    }
    if let Some(v) = get("WEAVE_EXTRA_ARGS") {
        for a in v.split_whitespace() {
            check("WEAVE_EXTRA_ARGS", check_weave_arg(a))?;
            if a == "--no-fastdp" {
                w.no_fastdp = true;
            } else if let Some(r) = a.strip_prefix("--ipalloc-range=") {
                w.ipalloc_range = Cidr::try_from(r).ok();
            } else if let Some(m) = a.strip_prefix("--mtu=") {
                w.mtu = parse_mtu(m).ok();
            } else if let Some(t) = a.strip_prefix("--trusted-subnets=") {
                w.trusted_subnets = t
                    .split(',')
                    .filter_map(|c| Cidr::try_from(c).ok())
                    .collect();
            }
        }
    }
    s.weave = w;
    if let Some(v) = get("API_SERVER") {
        s.api_server =
            Some(ApiServer::try_from(v).map_err(|e| bad(line_of("API_SERVER"), e.to_string()))?);
    }
    Ok(Marker {
        role,
        path: p.to_path_buf(),
        settings: Some(s),
        vars,
    })
}

/// Writes `content` to `path` atomically with `mode`: a temp file in the
/// same directory, fsync, rename over `path`, fsync the directory.
pub fn write_atomic(path: &Path, content: &[u8], mode: u32) -> Result<(), MarkerError> {
    let werr = |err: io::Error| MarkerError::Write {
        path: path.to_path_buf(),
        err,
    };
    let dir = path.parent().ok_or_else(|| {
        werr(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no parent directory",
        ))
    })?;
    fs::create_dir_all(dir).map_err(werr)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.rolectl-{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(content)?;
        // mode() is filtered by the umask; set it exactly.
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(werr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn render_parse_roundtrip() {
        let mut s = Settings {
            cluster: ClusterName::try_from("demo").unwrap(),
            ..Settings::default()
        };
        s.expected_minions = Some(ExpectedMinions::new(2).unwrap());
        s.weave.mtu = Some(1400);
        s.weave.no_fastdp = true;
        s.weave.password = Some(WeavePassword::try_from("secret123").unwrap());
        s.api_server = Some(ApiServer::try_from("https://10.0.0.1:6443").unwrap());
        let text = render(Role::Minion, &s);
        assert!(
            text.contains("\nROLE=minion\nCLUSTER_NAME=demo\nCLUSTER_DOMAIN=k8s\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "WEAVE_EXTRA_ARGS=--mtu=1400 --no-fastdp\nAPI_SERVER=https://10.0.0.1:6443\n"
            ),
            "{text}"
        );
        let m = parse(Role::Minion, Path::new("m"), &text).unwrap();
        assert_eq!(m.settings, Some(s));
        assert!(parse(Role::Master, Path::new("m"), &text).is_err());
        assert!(parse(
            Role::Minion,
            Path::new("m"),
            "ROLE=minion\nCLUSTER_NAME=a b\n"
        )
        .is_err());
        assert!(parse(Role::Minion, Path::new("m"), "ROLE=minion\nFOO=1\n").is_err());
        assert_eq!(
            parse(Role::Minion, Path::new("m"), "").unwrap().settings,
            None
        );
    }

    #[test]
    fn atomic_write_mode() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("etc/sysconfig/kubernetes-master");
        write_atomic(&p, b"ROLE=master\n", 0o600).unwrap();
        write_atomic(&p, b"ROLE=master\nCLUSTER_NAME=x\n", 0o600).unwrap();
        assert_eq!(
            fs::read_to_string(&p).unwrap(),
            "ROLE=master\nCLUSTER_NAME=x\n"
        );
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let left: Vec<_> = fs::read_dir(p.parent().unwrap()).unwrap().collect();
        assert_eq!(left.len(), 1, "temp file left behind");
    }
}
