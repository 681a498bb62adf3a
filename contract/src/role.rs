//! The two roles a host can take and their markers.

use std::fmt;

use crate::values::InvalidValue;

/// The role markers are `/etc/sysconfig/kubernetes-<role>`: defined here
/// once; `Role::marker_path`, the builder's role proof, `inspect`, the
/// script form of user-data and the VM harness all derive from it.
macro_rules! marker_stem {
    () => {
        "/etc/sysconfig/kubernetes"
    };
}

/// The marker path without `-<role>` (what the script form looks for).
pub const MARKER_STEM: &str = marker_stem!();
/// Every role marker path starts with this.
pub const MARKER_PREFIX: &str = concat!(marker_stem!(), "-");

/// The two roles a host can take (also the builder's unit roles and the VM
/// harness's).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Master,
    Minion,
}

impl Role {
    pub const ALL: [Role; 2] = [Role::Master, Role::Minion];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Minion => "minion",
        }
    }

    /// The marker path relative to the root, as units reference it.
    pub fn marker_path(self) -> &'static str {
        match self {
            Role::Master => concat!(marker_stem!(), "-master"),
            Role::Minion => concat!(marker_stem!(), "-minion"),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::try_from(s)
    }
}

impl TryFrom<&str> for Role {
    type Error = InvalidValue;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        match s {
            "master" => Ok(Role::Master),
            "minion" => Ok(Role::Minion),
            "masters" | "minions" => Err(InvalidValue::new(
                "role",
                s,
                format!("must be master or minion (singular: {})", &s[..s.len() - 1]),
            )),
            _ => Err(InvalidValue::new("role", s, "must be master or minion")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_and_markers() {
        for r in Role::ALL {
            assert_eq!(Role::try_from(r.as_str()), Ok(r));
            assert_eq!(r.marker_path(), format!("{MARKER_PREFIX}{r}"));
        }
        assert_eq!(MARKER_PREFIX, format!("{MARKER_STEM}-"));
        let e = Role::try_from("masters").unwrap_err().to_string();
        assert!(e.contains("singular: master"), "{e}");
        assert!(Role::try_from("Master").is_err());
    }
}
