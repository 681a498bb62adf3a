//! Validated values that the builder, the VM harness and rolectl all check
//! the same way: cluster names, domains, DNS labels, the weave password.
//!
//! Every type here can only be built through its `parse` (as
//! `TryFrom<&str>` or `FromStr`, see [`crate::validated_string!`]), so a
//! value that exists is safe: no quotes, whitespace, `$`, backslash,
//! backtick, or shell/path metacharacter can reach a unit, a marker or a
//! file name.

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

/// Why a DNS label or name is not valid (RFC 1123); the caller says what
/// the name was for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("empty label")]
    EmptyLabel,
    #[error("label is {0} characters, at most 63 allowed")]
    LongLabel(usize),
    #[error("uppercase {0:?} not allowed (use lowercase)")]
    Uppercase(char),
    #[error("character {0:?} not allowed (only a-z, 0-9 and -)")]
    Character(char),
    #[error("must start and end with a letter or digit")]
    Hyphen,
    #[error("empty")]
    EmptyName,
    #[error("{0} characters, at most 253 allowed")]
    LongName(usize),
    #[error("no trailing dot")]
    TrailingDot,
    #[error("label {label:?}: {error}")]
    InName {
        label: String,
        error: Box<NameError>,
    },
}

/// Checks one RFC 1123 label: `[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?`.
pub fn check_label(label: &str) -> Result<(), NameError> {
    if label.is_empty() {
        return Err(NameError::EmptyLabel);
    }
    if label.len() > 63 {
        return Err(NameError::LongLabel(label.len()));
    }
    if let Some(c) = label
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(if c.is_ascii_uppercase() {
            NameError::Uppercase(c)
        } else {
            NameError::Character(c)
        });
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(NameError::Hyphen);
    }
    Ok(())
}

/// Checks a DNS name: dot-separated RFC 1123 labels, at most 253 characters.
pub fn check_dns_name(s: &str) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::EmptyName);
    }
    if s.len() > 253 {
        return Err(NameError::LongName(s.len()));
    }
    if s.ends_with('.') {
        return Err(NameError::TrailingDot);
    }
    for label in s.split('.') {
        check_label(label).map_err(|e| NameError::InName {
            label: label.to_string(),
            error: Box::new(e),
        })?;
    }
    Ok(())
}

/// Gives a validated string type its string API, the same for every such
/// type of the workspace (cf. Bottlerocket's `string_impls_for!`). The type
/// writes its rule once, as `fn parse(s: &str) -> Result<Self,
/// InvalidValue>`, and keeps the text as given in the field `$text`; the
/// macro adds `as_str`, `AsRef<str>`, `Display`, `TryFrom<&str>` and
/// `FromStr` (both call `parse`). No `Deref<Target = str>`: a
/// `MasterEndpoint` is read through `host()`/`port()`, not split as text.
///
/// `validated_string!(secret Type, field)` is the form for a secret: only
/// `expose()`, `TryFrom<&str>` and `FromStr`, and a `Debug` that shows
/// `Type(***)`; no `Display` or `AsRef`, so it cannot be formatted by
/// accident.
#[macro_export]
macro_rules! validated_string {
    ($name:ident, $text:tt) => {
        impl $name {
            /// The value as given (it passed [`Self::parse`]).
            pub fn as_str(&self) -> &str {
                &self.$text
            }
        }
        impl ::std::convert::AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }
        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
        $crate::validated_string!(@parse $name);
    };
    (secret $name:ident, $text:tt) => {
        impl $name {
            /// The secret itself: for the one place that must pass it on.
            pub fn expose(&self) -> &str {
                &self.$text
            }
        }
        impl ::std::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(concat!(stringify!($name), "(***)"))
            }
        }
        $crate::validated_string!(@parse $name);
    };
    (@parse $name:ident) => {
        impl ::std::convert::TryFrom<&str> for $name {
            type Error = $crate::values::InvalidValue;
            fn try_from(s: &str) -> ::std::result::Result<Self, Self::Error> {
                Self::parse(s)
            }
        }
        impl ::std::str::FromStr for $name {
            type Err = $crate::values::InvalidValue;
            fn from_str(s: &str) -> ::std::result::Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
    };
}

/// A cluster name: one RFC 1123 DNS label, lowercase, at most 63 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClusterName(String);

crate::validated_string!(ClusterName, 0);

impl ClusterName {
    /// The name used when user-data names a role but no cluster (script form).
    pub const DEFAULT: &'static str = "kubernetes";

    pub fn default_name() -> Self {
        ClusterName(Self::DEFAULT.to_string())
    }

    fn parse(s: &str) -> Result<Self, InvalidValue> {
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

/// A DNS domain such as `k8s` or `example.internal`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Domain(String);

crate::validated_string!(Domain, 0);

impl Domain {
    pub const DEFAULT: &'static str = "k8s";
    pub fn default_domain() -> Self {
        Domain(Self::DEFAULT.to_string())
    }

    fn parse(s: &str) -> Result<Self, InvalidValue> {
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

/// The weave network password (a secret: masked in `status`, passed to weave
/// only through the environment; `kubebake cluster init` makes one per
/// cluster).
#[derive(Clone, PartialEq, Eq)]
pub struct WeavePassword(String);

crate::validated_string!(secret WeavePassword, 0);

impl WeavePassword {
    fn parse(s: &str) -> Result<Self, InvalidValue> {
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
    fn the_string_api_is_the_same_for_every_value() {
        let c: ClusterName = "demo".parse().unwrap();
        assert_eq!(c, ClusterName::try_from("demo").unwrap());
        assert_eq!(
            (c.as_str(), c.as_ref(), c.to_string()),
            ("demo", "demo", "demo".into())
        );
        assert!("Demo".parse::<Domain>().is_err());
        let pw: WeavePassword = "s3cret-pass".parse().unwrap();
        assert_eq!(format!("{pw:?}"), "WeavePassword(***)");
        assert_eq!(pw.expose(), "s3cret-pass");
        let e = Domain::try_from("a.B").unwrap_err().to_string();
        assert!(e.contains(r#"label "B": uppercase 'B' not allowed"#), "{e}");
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
