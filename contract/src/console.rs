//! The console lines rolectl prints (stderr, which its units copy to the
//! console) that others wait for: the VM harness reads a VM's stage and
//! `bench-vm`'s timings from the serial log, the VM tests wait for them.

use crate::role::Role;

/// `rolectl: ` followed by a literal, at compile time.
macro_rules! rolectl_line {
    ($rest:literal) => {
        concat!("rolectl: ", $rest)
    };
}

/// Every line rolectl prints starts with this.
pub const PREFIX: &str = rolectl_line!("");
/// `rolectl: activated as <role> of cluster …`: the marker is written.
pub const ACTIVATED_AS: &str = rolectl_line!("activated as");
/// `rolectl: already a <role>; …`: a later boot found its marker.
pub const ALREADY_A: &str = rolectl_line!("already a");
/// `rolectl: host stays unassigned: <reason>`.
pub const UNASSIGNED: &str = rolectl_line!("host stays unassigned");
/// `rolectl: weave launch with N peer(s), ipalloc-init …`: `rolectl weave`
/// knows the minions and starts the router.
pub const WEAVE_LAUNCH: &str = rolectl_line!("weave launch");
/// The context of a failed activation's error: the console line is
/// [`PREFIX`], this, `: ` and the cause ([`activation_failed`]).
pub const NO_MARKER: &str = "activation failed; no marker written";

/// `rolectl: activated as <role>`.
pub fn activated(role: Role) -> String {
    format!("{ACTIVATED_AS} {role}")
}

/// `rolectl: already a <role>`.
pub fn already(role: Role) -> String {
    format!("{ALREADY_A} {role}")
}

/// `rolectl: activation failed; no marker written`.
pub fn activation_failed() -> String {
    format!("{PREFIX}{NO_MARKER}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        assert_eq!(activated(Role::Master), "rolectl: activated as master");
        assert_eq!(already(Role::Minion), "rolectl: already a minion");
        assert_eq!(
            activation_failed(),
            "rolectl: activation failed; no marker written"
        );
        assert!([ACTIVATED_AS, ALREADY_A, UNASSIGNED, WEAVE_LAUNCH]
            .iter()
            .all(|l| l.starts_with(PREFIX)));
    }
}
