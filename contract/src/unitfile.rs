//! The one systemd unit-file reader of the workspace: the builder's
//! build-time role proof, `kubebake inspect` and `rolectl status` all decide
//! a unit's role condition with it, so they cannot disagree.
//!
//! It knows what these three need: `[Section]`, `Key=Value` (whitespace
//! trimmed), `#`/`;` comments, trailing-backslash continuation, and that
//! systemd reads a unit, then its drop-ins (`<unit>.d/*.conf`) sorted by file
//! name, where an empty `ConditionPathExists=` resets the list.

use crate::role::{Role, MARKER_PREFIX};

/// (section, key, value) in file order.
pub fn parse(content: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut section = String::new();
    let mut logical = String::new();
    let mut continuing = false;
    for raw in content.lines() {
        let line = raw.trim();
        if continuing {
            // Comment lines inside a continuation are skipped, as systemd does.
            if line.starts_with('#') || line.starts_with(';') {
                continue;
            }
        } else {
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if line.starts_with('[') && line.ends_with(']') {
                section = line[1..line.len() - 1].trim().to_string();
                continue;
            }
        }
        if let Some(stripped) = line.strip_suffix('\\') {
            logical.push_str(stripped);
            logical.push(' ');
            continuing = true;
            continue;
        }
        logical.push_str(line);
        continuing = false;
        push_assignment(&mut out, &section, &logical);
        logical.clear();
    }
    if continuing {
        push_assignment(&mut out, &section, &logical);
    }
    out
}

fn push_assignment(out: &mut Vec<(String, String, String)>, section: &str, line: &str) {
    if let Some((k, v)) = line.split_once('=') {
        out.push((
            section.to_string(),
            k.trim().to_string(),
            v.trim().to_string(),
        ));
    }
}

/// Whether a drop-in directory entry is read by systemd (`*.conf`).
pub fn is_dropin(file_name: &str) -> bool {
    file_name.ends_with(".conf") && !file_name.contains('/')
}

/// The effective `ConditionPathExists=` values of a unit, given its files in
/// systemd's order (unit first, then drop-ins sorted by name) as
/// `(label, content)`; each value comes with the label of its file.
pub fn path_conditions<'a>(files: &[(&'a str, &str)]) -> Vec<(String, &'a str)> {
    let mut conds = Vec::new();
    for (label, content) in files {
        for (section, key, value) in parse(content) {
            if section != "Unit" || key != "ConditionPathExists" {
                continue;
            }
            if value.is_empty() {
                conds.clear();
            } else {
                conds.push((value, *label));
            }
        }
    }
    conds
}

/// Whether a `ConditionPathExists=` value tests a role marker (also negated
/// `!` or triggering `|`).
pub fn is_marker_condition(value: &str) -> bool {
    value
        .trim_start_matches(['!', '|'])
        .starts_with(MARKER_PREFIX)
}

/// The role whose marker a condition value names exactly, if any.
pub fn marker_role(value: &str) -> Option<Role> {
    let path = value.trim_start_matches(['!', '|']);
    Role::ALL.into_iter().find(|r| r.marker_path() == path)
}

/// The effective role-marker conditions of a unit (see [`path_conditions`]).
pub fn marker_conditions<'a>(files: &[(&'a str, &str)]) -> Vec<(String, &'a str)> {
    path_conditions(files)
        .into_iter()
        .filter(|(v, _)| is_marker_condition(v))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_and_continuations() {
        let text = "# c\n[Unit]\n; c\nDescription=a \\\n  b\nConditionPathExists = /x\n[Service]\nExecStart=/bin/true\n";
        assert_eq!(
            parse(text),
            vec![
                ("Unit".into(), "Description".into(), "a  b".into()),
                ("Unit".into(), "ConditionPathExists".into(), "/x".into()),
                ("Service".into(), "ExecStart".into(), "/bin/true".into()),
            ]
        );
    }

    #[test]
    fn dropins_reset_and_add_conditions() {
        let unit = "[Unit]\nConditionPathExists=/etc/sysconfig/kubernetes-minion\n";
        let reset =
            "[Unit]\nConditionPathExists=\nConditionPathExists=/etc/sysconfig/kubernetes-master\n";
        let other = "[Service]\nConditionPathExists=/ignored\n[Unit]\nConditionPathExists=/srv/x\n";
        let got = path_conditions(&[("u", unit), ("a.conf", reset), ("b.conf", other)]);
        assert_eq!(
            got,
            vec![
                ("/etc/sysconfig/kubernetes-master".to_string(), "a.conf"),
                ("/srv/x".to_string(), "b.conf"),
            ]
        );
        let m = marker_conditions(&[("u", unit), ("a.conf", reset), ("b.conf", other)]);
        assert_eq!(m.len(), 1);
        assert_eq!(marker_role(&m[0].0), Some(Role::Master));
        assert!(is_marker_condition("!/etc/sysconfig/kubernetes-etcd"));
        assert_eq!(marker_role("/etc/sysconfig/kubernetes-etcd"), None);
        assert!(is_dropin("role.conf") && !is_dropin("role.conf.bak"));
    }
}
