//! The seed's shell form: `touch /etc/sysconfig/kubernetes-master` (or
//! `-minion`), with or without a `#!` line. rolectl recognizes it without
//! executing anything. The script form carries only a role; the cluster name
//! is then `kubernetes` and the domain `k8s` (use `#cloud-config` for more).
//!
//! Lines that do not mention `/etc/sysconfig/kubernetes` are ignored (the
//! script belongs to cloud-init); a line that mentions it in any other form is
//! an error, so a typo never silently leaves a host unassigned.

use contract::role::{Role, MARKER_STEM as PREFIX};

use super::UserDataError;

/// Result of scanning a script: the role (if any) and the line it came from.
pub fn parse(text: &str, place: &str) -> Result<Option<(Role, usize)>, UserDataError> {
    let mut found: Option<(Role, usize)> = None;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.starts_with('#') || !line.contains(PREFIX) {
            continue;
        }
        let at = format!("{place} line {n}");
        let role = recognize(line).map_err(|m| UserDataError::new(&at, m.to_string()))?;
        match found {
            Some((r, first)) if r != role => {
                return Err(UserDataError::new(
                    &at,
                    format!(
                        "asks for role {role}, but line {first} asks for {r}; a host has one role"
                    ),
                ))
            }
            Some(_) => {}
            None => found = Some((role, n)),
        }
    }
    Ok(found)
}

/// What the seed's form is, for messages.
const USAGE: &str = "rolectl recognizes exactly `touch /etc/sysconfig/kubernetes-master` or `touch /etc/sysconfig/kubernetes-minion` on a line of its own; use #cloud-config `kubernetes:` for settings";

/// Why a script line that mentions the marker gives no role.
#[derive(Debug, thiserror::Error)]
enum Unrecognized {
    #[error("unrecognized use of the role marker: {0:?}; {USAGE}")]
    Use(String),
    #[error("marker {path} is misspelled: the marker is {PREFIX}{singular} (singular)")]
    Plural { path: String, singular: String },
    #[error("unknown role marker {0}; the role must be master or minion ({USAGE})")]
    Role(String),
}

fn recognize(line: &str) -> Result<Role, Unrecognized> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let [cmd, path] = words.as_slice() else {
        return Err(Unrecognized::Use(line.to_string()));
    };
    if *cmd != "touch" && *cmd != "/usr/bin/touch" && *cmd != "/bin/touch" {
        return Err(Unrecognized::Use(line.to_string()));
    }
    let suffix = path.strip_prefix(PREFIX).unwrap_or(path);
    match suffix {
        "-master" => Ok(Role::Master),
        "-minion" => Ok(Role::Minion),
        "-masters" | "-minions" => Err(Unrecognized::Plural {
            path: path.to_string(),
            singular: suffix[..suffix.len() - 1].to_string(),
        }),
        _ => Err(Unrecognized::Role(path.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_forms() {
        assert_eq!(
            parse("touch /etc/sysconfig/kubernetes-master", "u").unwrap(),
            Some((Role::Master, 1))
        );
        assert_eq!(
            parse(
                "#!/bin/sh\nset -e\ntouch /etc/sysconfig/kubernetes-minion\n",
                "u"
            )
            .unwrap(),
            Some((Role::Minion, 3))
        );
        assert_eq!(parse("#!/bin/sh\necho hi\n", "u").unwrap(), None);
    }

    #[test]
    fn errors() {
        let e = parse("touch /etc/sysconfig/kubernetes-minions", "u")
            .unwrap_err()
            .to_string();
        assert!(e.contains("singular") && e.contains("line 1"), "{e}");
        let e = parse("touch /etc/sysconfig/kubernetes-etcd", "u")
            .unwrap_err()
            .to_string();
        assert!(e.contains("master or minion"), "{e}");
        let e = parse("echo x > /etc/sysconfig/kubernetes-master", "u")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unrecognized"), "{e}");
        let e = parse(
            "touch /etc/sysconfig/kubernetes-master\ntouch /etc/sysconfig/kubernetes-minion",
            "u",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("line 2") && e.contains("line 1"), "{e}");
    }
}
