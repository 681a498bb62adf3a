//! Validated values that the builder, the VM harness and rolectl all check
//! the same way: cluster names, domains, DNS labels, the weave password.
//!
//! Every type here can only be built through `TryFrom<&str>`, so a value
//! that exists is safe: no quotes, whitespace, `$`, backslash, backtick, or
//! shell/path metacharacter can reach a unit, a marker or a file name.

use std::fmt;

/// A value was rejected; the message says what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {value:?} is invalid: {reason}")]
pub struct InvalidValue {
    pub what: &'static str,
    pub value: String,
    pub reason: String,
}

impl InvalidValue {
    /// `value` is shown cut to 80 characters.
    pub fn new(what: &'static str, value: &str, reason: impl Into<String>) -> InvalidValue {
        // Never echo control characters back into the journal verbatim.
        let shown: String = value.chars().take(80).collect();
        InvalidValue {
            what,
            value: shown,
            reason: reason.into(),
        }
    }
}

/// Checks one RFC 1123 label: `[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?`.
pub fn check_label(label: &str) -> Result<(), String> {
    if label.is_empty() {
        return Err("empty label".into());
    }
    if label.len() > 63 {
        return Err(format!(
            "label is {} characters, at most 63 allowed",
            label.len()
        ));
    }
    if let Some(c) = label
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(if c.is_ascii_uppercase() {
            format!("uppercase {c:?} not allowed (use lowercase)")
        } else {
            format!("character {c:?} not allowed (only a-z, 0-9 and -)")
        });
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err("must start and end with a letter or digit".into());
    }
    Ok(())
}

/// Checks a DNS name: dot-separated RFC 1123 labels, at most 253 characters.
pub fn check_dns_name(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("empty".into());
    }
    if s.len() > 253 {
        return Err(format!("{} characters, at most 253 allowed", s.len()));
    }
    if s.ends_with('.') {
        return Err("no trailing dot".into());
    }
    for label in s.split('.') {
        check_label(label).map_err(|r| format!("label {label:?}: {r}"))?;
    }
    Ok(())
}

/// A cluster name: one RFC 1123 DNS label, lowercase, at most 63 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClusterName(String);

impl ClusterName {
    /// The name used when user-data names a role but no cluster (script form).
    pub const DEFAULT: &'static str = "kubernetes";

    pub fn default_name() -> Self {
        ClusterName(Self::DEFAULT.to_string())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for ClusterName {
    type Error = InvalidValue;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        check_label(s).map_err(|r| {
            InvalidValue::new(
                "cluster name",
                s,
                format!("{r}; a cluster name is one DNS label (RFC 1123): lowercase a-z, 0-9, '-', at most 63"),
            )
        })?;
        Ok(ClusterName(s.to_string()))
    }
}

impl fmt::Display for ClusterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A DNS domain such as `k8s` or `example.internal`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Domain(String);

impl Domain {
    pub const DEFAULT: &'static str = "k8s";
    pub fn default_domain() -> Self {
        Domain(Self::DEFAULT.to_string())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for Domain {
    type Error = InvalidValue;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        check_dns_name(s).map_err(|r| {
            InvalidValue::new(
                "domain",
                s,
                format!("{r}; a domain is dot-separated lowercase DNS labels"),
            )
        })?;
        Ok(Domain(s.to_string()))
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The weave network password (a secret: masked in `status`, passed to weave
/// only through the environment; `kubebake cluster init` makes one per
/// cluster).
#[derive(Clone, PartialEq, Eq)]
pub struct WeavePassword(String);

impl fmt::Debug for WeavePassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WeavePassword(***)")
    }
}

impl WeavePassword {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for WeavePassword {
    type Error = InvalidValue;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        // Do not echo the secret in errors.
        let err = |r: &str| InvalidValue::new("weave password", "***", r);
        if s.len() < 8 || s.len() > 256 {
            return Err(err("must be 8 to 256 characters"));
        }
        if s.chars()
            .any(|c| !c.is_ascii_graphic() || "\"'\\$`".contains(c))
        {
            return Err(err(
                "only printable ASCII without spaces, quotes, backslash, '$' or '`' is allowed",
            ));
        }
        Ok(WeavePassword(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_names() {
        assert!(ClusterName::try_from("demo").is_ok());
        assert!(ClusterName::try_from("a").is_ok());
        assert!(ClusterName::try_from("0a-9").is_ok());
        assert!(ClusterName::try_from(&*"a".repeat(63)).is_ok());
        for bad in [
            "",
            "Demo",
            "-a",
            "a-",
            "a.b",
            "a_b",
            "a b",
            "a;b",
            "$x",
            "../x",
            "a/b",
            "a\nb",
            &"a".repeat(64),
        ] {
            assert!(ClusterName::try_from(bad).is_err(), "{bad:?} accepted");
        }
        let e = ClusterName::try_from("Demo").unwrap_err().to_string();
        assert!(e.contains("uppercase"), "{e}");
    }

    #[test]
    fn domains() {
        assert!(Domain::try_from("k8s").is_ok());
        assert!(Domain::try_from("a.example.internal").is_ok());
        for bad in [
            "",
            "k8s.",
            ".k8s",
            "a..b",
            "A.b",
            "a_b.c",
            &"a.".repeat(130),
        ] {
            assert!(Domain::try_from(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn weave_passwords() {
        assert!(WeavePassword::try_from("s3cret-pass").is_ok());
        let e = WeavePassword::try_from("has space in it")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("space in it"), "secret echoed: {e}");
        assert!(WeavePassword::try_from("short").is_err());
        assert!(WeavePassword::try_from("abc$defgh").is_err());
        let pw = WeavePassword::try_from("s3cret-pass").unwrap();
        assert!(!format!("{pw:?}").contains("s3cret"));
    }
}
