//! How cloud-init (PyYAML, YAML 1.1) resolves a plain scalar, so that rolectl
//! never reads a value differently from cloud-init. serde-saphyr implements
//! YAML 1.2 core: `yes`, `on`, `0600`, `1_000` and `1:30` differ between the
//! two; rolectl resolves plain scalars itself with PyYAML's rules.

/// The type PyYAML's implicit resolver gives a plain scalar.
#[derive(Debug, Clone, PartialEq)]
pub enum Yaml11 {
    Str,
    Null,
    Bool(bool),
    /// An integer; `None` if it does not fit in i128.
    Int(Option<i128>),
    Float,
    Timestamp,
}

impl Yaml11 {
    pub fn describe(&self) -> &'static str {
        match self {
            Yaml11::Str => "a string",
            Yaml11::Null => "null (no value)",
            Yaml11::Bool(true) => "the boolean true",
            Yaml11::Bool(false) => "the boolean false",
            Yaml11::Int(_) => "an integer",
            Yaml11::Float => "a floating-point number",
            Yaml11::Timestamp => "a timestamp",
        }
    }
}

fn all(s: &str, f: impl Fn(u8) -> bool) -> bool {
    !s.is_empty() && s.bytes().all(f)
}

fn digits_underscore(s: &str) -> bool {
    all(s, |b| b.is_ascii_digit() || b == b'_')
}

/// Value of PyYAML's int forms (`0b`, `0x`, leading-0 octal, `_`, sexagesimal).
fn int_value(body: &str) -> Option<Option<i128>> {
    let (neg, b) = match body.as_bytes().first() {
        Some(b'-') => (true, &body[1..]),
        Some(b'+') => (false, &body[1..]),
        _ => (false, body),
    };
    let clean: String = b.chars().filter(|c| *c != '_').collect();
    let parsed = if let Some(x) = b.strip_prefix("0b") {
        if !all(x, |c| c == b'0' || c == b'1' || c == b'_') {
            return None;
        }
        i128::from_str_radix(&clean[2..], 2).ok()
    } else if let Some(x) = b.strip_prefix("0x") {
        if !all(x, |c| c.is_ascii_hexdigit() || c == b'_') {
            return None;
        }
        i128::from_str_radix(&clean[2..], 16).ok()
    } else if b == "0" {
        Some(0)
    } else if let Some(rest) = b.strip_prefix('0') {
        if !all(rest, |c| (b'0'..=b'7').contains(&c) || c == b'_') {
            return None;
        }
        i128::from_str_radix(&clean, 8).ok()
    } else if b.contains(':') {
        // sexagesimal: [1-9][0-9_]*(:[0-5]?[0-9])+
        let mut parts = b.split(':');
        let first = parts.next()?;
        if !first.starts_with(|c: char| ('1'..='9').contains(&c)) || !digits_underscore(first) {
            return None;
        }
        let mut v: i128 = first.replace('_', "").parse().ok()?;
        for p in parts {
            if p.is_empty() || p.len() > 2 || !all(p, |c| c.is_ascii_digit()) {
                return None;
            }
            if p.len() == 2 && p.as_bytes()[0] > b'5' {
                return None;
            }
            v = v.checked_mul(60)?.checked_add(p.parse().ok()?)?;
        }
        Some(v)
    } else {
        if !b.starts_with(|c: char| ('1'..='9').contains(&c)) || !digits_underscore(b) {
            return None;
        }
        clean.parse().ok()
    };
    Some(parsed.map(|v| if neg { -v } else { v }))
}

fn is_float(s: &str) -> bool {
    let b = s.strip_prefix(['-', '+']).unwrap_or(s);
    if matches!(b, ".inf" | ".Inf" | ".INF") || matches!(s, ".nan" | ".NaN" | ".NAN") {
        return true;
    }
    // [0-9][0-9_]*\.[0-9_]*([eE][-+][0-9]+)?  |  \.[0-9_]+([eE][-+][0-9]+)?
    let (mant, exp) = match b.find(['e', 'E']) {
        Some(i) => (&b[..i], Some(&b[i + 1..])),
        None => (b, None),
    };
    if let Some(e) = exp {
        let Some(d) = e.strip_prefix(['-', '+']) else {
            return false;
        };
        if !all(d, |c| c.is_ascii_digit()) {
            return false;
        }
    }
    if let Some((i, f)) = mant.split_once('.') {
        if f.contains('.') {
            return false;
        }
        if i.is_empty() {
            return all(f, |c| c.is_ascii_digit() || c == b'_');
        }
        if i.contains(':') {
            // sexagesimal float
            return exp.is_none()
                && int_value(i).is_some()
                && (f.is_empty() || digits_underscore(f));
        }
        return i.as_bytes()[0].is_ascii_digit()
            && digits_underscore(i)
            && (f.is_empty() || digits_underscore(f));
    }
    false
}

fn is_timestamp(s: &str) -> bool {
    // [0-9]{4}-[0-9]{1,2}-[0-9]{1,2} (optionally followed by a time)
    let date = s.split(['T', 't', ' ']).next().unwrap_or_default();
    let p: Vec<&str> = date.split('-').collect();
    p.len() == 3
        && p[0].len() == 4
        && all(p[0], |c| c.is_ascii_digit())
        && (1..=2).contains(&p[1].len())
        && all(p[1], |c| c.is_ascii_digit())
        && (1..=2).contains(&p[2].len())
        && all(p[2], |c| c.is_ascii_digit())
}

/// Resolves a plain (unquoted) scalar like PyYAML does.
pub fn resolve_plain(s: &str) -> Yaml11 {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Yaml11::Null,
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Yaml11::Bool(true)
        }
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Yaml11::Bool(false)
        }
        _ => {}
    }
    if let Some(v) = int_value(s) {
        return Yaml11::Int(v);
    }
    if is_float(s) {
        return Yaml11::Float;
    }
    if is_timestamp(s) {
        return Yaml11::Timestamp;
    }
    Yaml11::Str
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pyyaml_resolution() {
        assert_eq!(resolve_plain("yes"), Yaml11::Bool(true));
        assert_eq!(resolve_plain("Off"), Yaml11::Bool(false));
        assert_eq!(resolve_plain("y"), Yaml11::Str);
        assert_eq!(resolve_plain("0600"), Yaml11::Int(Some(384)));
        assert_eq!(resolve_plain("1_000"), Yaml11::Int(Some(1000)));
        assert_eq!(resolve_plain("1:30"), Yaml11::Int(Some(90)));
        assert_eq!(resolve_plain("0x1F"), Yaml11::Int(Some(31)));
        assert_eq!(resolve_plain("0b101"), Yaml11::Int(Some(5)));
        assert_eq!(resolve_plain("-12"), Yaml11::Int(Some(-12)));
        // `089` is not octal and PyYAML's float form needs a dot: a string.
        assert_eq!(resolve_plain("089"), Yaml11::Str);
        assert_eq!(resolve_plain("1.5"), Yaml11::Float);
        assert_eq!(resolve_plain("1e5"), Yaml11::Str);
        assert_eq!(resolve_plain("1.0e+5"), Yaml11::Float);
        assert_eq!(resolve_plain(".inf"), Yaml11::Float);
        assert_eq!(resolve_plain("2024-01-02"), Yaml11::Timestamp);
        assert_eq!(resolve_plain("~"), Yaml11::Null);
        assert_eq!(resolve_plain("demo"), Yaml11::Str);
        assert_eq!(resolve_plain("demo-1"), Yaml11::Str);
        assert_eq!(resolve_plain("10.0.0.1"), Yaml11::Str);
        assert_eq!(resolve_plain("k8s"), Yaml11::Str);
    }
}
