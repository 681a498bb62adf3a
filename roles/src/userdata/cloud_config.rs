//! `#cloud-config` parts: the `kubernetes:` section.
//!
//! YAML is parsed with `serde-saphyr`: `serde_yaml` is deprecated and
//! unmaintained, serde-saphyr is its maintained, pure-Rust successor (no
//! unsafe libyaml binding), keeps source locations (`Spanned`) for error
//! messages, limits alias expansion (billion-laughs) and rejects duplicate
//! keys. serde-saphyr reads YAML 1.2, cloud-init reads YAML 1.1 (PyYAML), so
//! every plain scalar under `kubernetes:` is re-resolved with PyYAML's rules
//! (see `yaml11`) and forms the two disagree on are rejected with a message.
//! Keys other than `kubernetes:` belong to cloud-init and are ignored.

use std::fmt;

use contract::credentials::{self as schema, keys, BootstrapToken, Credential, Kind, PemKind};
use contract::role::Role;
use contract::values::{ClusterName, Domain, InvalidValue, WeavePassword};
use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::yaml11::{resolve_plain, Yaml11};
use super::UserDataError;
use crate::credentials::{
    self, CaCertHash, Credentials, Expiry, MasterCredentials, MinionCredentials, Pem, Pems,
    RoleCredentials,
};
use crate::settings::{
    parse_mtu, AddonsUrl, ApiServer, Cidr, ExpectedMinions, MasterEndpoint, Settings, WeaveOptions,
};

/// Keys under `kubernetes:` besides the credentials.
pub const SETTINGS_KEYS: &[&str] = &[
    "role",
    "cluster",
    "domain",
    "master_endpoint",
    "addons_url",
    "expected_minions",
    "weave",
];

/// Keys allowed under `kubernetes:`: the settings, the credentials of the
/// schema's table and `pki`.
pub fn kubernetes_keys() -> Vec<&'static str> {
    let mut v = SETTINGS_KEYS.to_vec();
    v.extend(schema::top_level_keys());
    v.push("pki");
    v
}

/// Keys allowed under `kubernetes: weave:`.
pub const WEAVE_KEYS: &[&str] = &[
    "password",
    "ipalloc_range",
    "mtu",
    "no_fastdp",
    "trusted_subnets",
];

/// What a `kubernetes:` section asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesSection {
    pub role: Role,
    pub settings: Settings,
    /// Cluster credentials (`bootstrap_token`, `pki:` …), if any were given.
    pub credentials: Option<Credentials>,
    pub line: u64,
}

/// Any YAML node, with scalars kept as the deserializer reported them; the
/// raw source text decides their YAML 1.1 type.
#[derive(Debug)]
enum Node {
    Scalar,
    Str(String),
    Map(Vec<(Spanned<String>, Spanned<Node>)>),
    Seq(Vec<Spanned<Node>>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a YAML value")
            }
            fn visit_str<E>(self, v: &str) -> Result<Node, E> {
                Ok(Node::Str(v.to_string()))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_i128<E>(self, _: i128) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_u128<E>(self, _: u128) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_unit<E>(self) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_none<E>(self) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_bytes<E>(self, _: &[u8]) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Node, A::Error> {
                let mut v = Vec::new();
                while let Some(k) = m.next_key::<Spanned<KeyText>>()? {
                    let key = Spanned::new(k.value.0, k.referenced, k.defined);
                    v.push((key, m.next_value()?));
                }
                Ok(Node::Map(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut m: A) -> Result<Node, A::Error> {
                let mut v = Vec::new();
                while let Some(e) = m.next_element()? {
                    v.push(e);
                }
                Ok(Node::Seq(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// A mapping key of any scalar type, as text.
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = KeyText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a scalar key")
            }
            fn visit_str<E>(self, v: &str) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_unit<E>(self) -> Result<KeyText, E> {
                Ok(KeyText("null".to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
struct Top {
    kubernetes: Option<Spanned<Node>>,
    // Every other key belongs to cloud-init; serde ignores them.
}

/// Any mapping (only used to tell "not a mapping" apart from bad YAML).
#[derive(Deserialize)]
struct IgnoredMap {}

/// A document that is not a mapping (or is empty) has no `kubernetes:` key.
#[derive(Deserialize)]
#[serde(untagged)]
enum Doc {
    Map(IgnoredMap),
    Other(IgnoredAny),
}

/// Parses one cloud-config document. `place` names the part for messages.
pub fn parse(text: &str, place: &str) -> Result<Option<KubernetesSection>, UserDataError> {
    let doc: Option<Top> = match serde_saphyr::from_str::<Option<Top>>(text) {
        Ok(t) => t,
        Err(e) => {
            // Not a mapping at all (a list, a scalar)? cloud-init rejects it
            // too, but it cannot hold `kubernetes:`; report it clearly.
            if let Ok(Some(Doc::Other(_))) = serde_saphyr::from_str::<Option<Doc>>(text) {
                return Err(UserDataError::new(
                    place,
                    "cloud-config must be a YAML mapping (key: value) at the top level",
                ));
            }
            return Err(UserDataError::new(
                place,
                format!("invalid YAML: {}", first_lines(&e.to_string())),
            ));
        }
    };
    let Some(section) = doc.and_then(|t| t.kubernetes) else {
        return Ok(None);
    };
    let cx = Cx { text, place };
    let line = section.referenced.line();
    let Node::Map(entries) = &section.value else {
        let what = cx.kind(&section);
        return Err(cx.err(
            &section,
            "kubernetes",
            format!("kubernetes: must be a mapping with at least `role:`, found {what}"),
        ));
    };
    let mut role: Option<Role> = None;
    let mut settings = Settings::default();
    // Credential keys as given (schema row, value); checked once the role is known.
    let mut creds: Vec<(&'static Credential, &Spanned<Node>)> = Vec::new();
    let mut pki_at: Option<&Spanned<Node>> = None;
    for (key, value) in entries {
        let k = key.value.as_str();
        let path = format!("kubernetes.{k}");
        match k {
            "role" => {
                let s = cx.string(value, &path)?;
                role = Some(Role::try_from(s.as_str()).map_err(|e| cx.invalid(value, &path, e))?);
            }
            "cluster" => {
                let s = cx.string(value, &path)?;
                settings.cluster =
                    ClusterName::try_from(s.as_str()).map_err(|e| cx.invalid(value, &path, e))?;
            }
            "domain" => {
                let s = cx.string(value, &path)?;
                settings.domain =
                    Domain::try_from(s.as_str()).map_err(|e| cx.invalid(value, &path, e))?;
            }
            "master_endpoint" => {
                let s = cx.string(value, &path)?;
                settings.master_endpoint = Some(
                    MasterEndpoint::try_from(s.as_str())
                        .map_err(|e| cx.invalid(value, &path, e))?,
                );
            }
            "addons_url" => {
                let s = cx.string(value, &path)?;
                settings.addons_url =
                    Some(AddonsUrl::try_from(s.as_str()).map_err(|e| cx.invalid(value, &path, e))?);
            }
            "expected_minions" => {
                let n = cx.integer(value, &path)?;
                let n = u64::try_from(n).unwrap_or(0);
                settings.expected_minions =
                    Some(ExpectedMinions::new(n).map_err(|e| cx.invalid(value, &path, e))?);
            }
            "weave" => settings.weave = cx.weave(value)?,
            "pki" => {
                pki_at = Some(value);
                let Node::Map(pki) = &value.value else {
                    let kind = cx.kind(value);
                    return Err(cx.err(
                        value,
                        &path,
                        format!("must be a mapping of PEM values (ca_crt: |, …), found {kind}"),
                    ));
                };
                for (pk, pv) in pki {
                    match schema::spec(&format!("{}{}", schema::PKI_PREFIX, pk.value)) {
                        Some(c) => creds.push((c, pv)),
                        None => {
                            return Err(cx.unknown_key(pk, "kubernetes.pki", &schema::pki_keys()))
                        }
                    }
                }
            }
            _ => match schema::spec(&path) {
                Some(c) if !c.in_pki() => creds.push((c, value)),
                _ => return Err(cx.unknown_key(key, "kubernetes", &kubernetes_keys())),
            },
        }
    }
    let Some(role) = role else {
        return Err(cx.err(
            &section,
            "kubernetes",
            "kubernetes: has no `role:` key; add `role: master` or `role: minion`",
        ));
    };
    let credentials = if creds.is_empty() && pki_at.is_none() {
        None
    } else {
        let c = cx.credentials(role, &settings, &creds, pki_at.unwrap_or(&section))?;
        settings.api_server = Some(match &c.role {
            RoleCredentials::Master(_) => {
                ApiServer::for_cluster(&settings.cluster, &settings.domain)
            }
            RoleCredentials::Minion(m) => m.api_server.clone(),
        });
        Some(c)
    };
    Ok(Some(KubernetesSection {
        role,
        settings,
        credentials,
        line,
    }))
}

fn first_lines(s: &str) -> String {
    s.lines().take(8).collect::<Vec<_>>().join("\n")
}

struct Cx<'a> {
    text: &'a str,
    place: &'a str,
}

/// How a scalar was written in the source.
enum Style {
    Plain(String),
    Quoted(String),
}

/// YAML that rolectl does not read under `kubernetes:`.
#[derive(Debug, thiserror::Error)]
enum Unsupported {
    #[error("YAML anchors and aliases are not supported under `kubernetes:`")]
    Alias,
    #[error("YAML tag {0} is not supported under `kubernetes:`; quote strings instead")]
    Tag(String),
}

impl Cx<'_> {
    fn err<T>(&self, at: &Spanned<T>, path: &str, msg: impl Into<String>) -> UserDataError {
        UserDataError::new(
            &format!("{} line {}, key {path}", self.place, at.referenced.line()),
            msg,
        )
    }

    fn invalid(&self, at: &Spanned<Node>, path: &str, e: InvalidValue) -> UserDataError {
        self.err(at, path, e.to_string())
    }

    /// An unknown key: a retired one says what replaced it, any other
    /// gets the closest known key as a hint and the list of known keys.
    fn unknown_key(&self, key: &Spanned<String>, parent: &str, known: &[&str]) -> UserDataError {
        let k = key.value.as_str();
        let path = format!("{parent}.{k}");
        if let Some(r) = schema::retired(&path) {
            return self.err(key, &path, r.reason());
        }
        let hint = match closest(k, known) {
            Some(c) => format!(" (did you mean `{c}`?)"),
            None => String::new(),
        };
        self.err(
            key,
            &path,
            format!(
                "unknown key `{k}` under {parent}:{hint}; known keys: {}",
                known.join(", ")
            ),
        )
    }

    fn raw(&self, at: &Spanned<Node>) -> &str {
        let span = at.referenced.span();
        match (span.byte_offset(), span.byte_len()) {
            (Some(o), Some(l)) => {
                let (o, l) = (o as usize, l as usize);
                self.text.get(o..o.saturating_add(l)).unwrap_or("")
            }
            _ => "",
        }
    }

    /// The token just before the node (tag, anchor or block indicator).
    fn token_before(&self, at: &Spanned<Node>) -> &str {
        let Some(o) = at.referenced.span().byte_offset() else {
            return "";
        };
        let before = self.text.get(..o as usize).unwrap_or("");
        let trimmed = before.trim_end();
        // Start after the last whitespace character (which may be multi-byte).
        let start = trimmed
            .char_indices()
            .rev()
            .find(|(_, c)| c.is_whitespace())
            .map_or(0, |(i, c)| i + c.len_utf8());
        &trimmed[start..]
    }

    fn kind(&self, at: &Spanned<Node>) -> &'static str {
        match &at.value {
            Node::Map(_) => "a mapping",
            Node::Seq(_) => "a list",
            Node::Str(_) | Node::Scalar => match self.style(at) {
                Ok(Style::Quoted(_)) => "a string",
                Ok(Style::Plain(p)) => resolve_plain(&p).describe(),
                Err(_) => "a tagged or aliased value",
            },
        }
    }

    fn style(&self, at: &Spanned<Node>) -> Result<Style, Unsupported> {
        let raw = self.raw(at);
        let before = self.token_before(at);
        if raw.starts_with('*') || before.starts_with('&') {
            return Err(Unsupported::Alias);
        }
        if before.starts_with('!') {
            if before == "!!str" {
                if let Node::Str(s) = &at.value {
                    return Ok(Style::Quoted(s.clone()));
                }
            }
            return Err(Unsupported::Tag(before.to_string()));
        }
        let block = before.starts_with('|') || before.starts_with('>');
        match &at.value {
            Node::Str(s) if raw.starts_with(['"', '\'']) || block => Ok(Style::Quoted(s.clone())),
            Node::Str(s) => Ok(Style::Plain(s.clone())),
            _ => Ok(Style::Plain(raw.trim().to_string())),
        }
    }

    /// A string value. Plain scalars that YAML 1.1 reads as something else
    /// are rejected: cloud-init would see a boolean/number, not this text.
    fn string(&self, at: &Spanned<Node>, path: &str) -> Result<String, UserDataError> {
        self.string_impl(at, path, false)
    }

    /// Like [`Self::string`], but messages never show the value.
    fn secret_string(&self, at: &Spanned<Node>, path: &str) -> Result<String, UserDataError> {
        self.string_impl(at, path, true)
    }

    fn string_impl(
        &self,
        at: &Spanned<Node>,
        path: &str,
        secret: bool,
    ) -> Result<String, UserDataError> {
        if matches!(at.value, Node::Map(_) | Node::Seq(_)) {
            let kind = self.kind(at);
            return Err(self.err(at, path, format!("must be a string, found {kind}")));
        }
        let s = match self
            .style(at)
            .map_err(|e| self.err(at, path, e.to_string()))?
        {
            Style::Quoted(s) => s,
            Style::Plain(p) => match resolve_plain(&p) {
                Yaml11::Str => p,
                Yaml11::Null => {
                    return Err(self.err(at, path, "has no value"));
                }
                other if secret => {
                    return Err(self.err(
                        at,
                        path,
                        format!(
                            "is {} in cloud-init (YAML 1.1), not a string; quote the value (the value is not shown: it is a secret)",
                            other.describe()
                        ),
                    ));
                }
                other => {
                    let key = path.rsplit('.').next().unwrap_or(path);
                    return Err(self.err(
                        at,
                        path,
                        format!(
                            "`{key}: {p}` is {} in cloud-init (YAML 1.1), not a string; quote it (`{key}: \"{p}\"`) if you mean the text",
                            other.describe()
                        ),
                    ));
                }
            },
        };
        if s.contains(['\n', '\r']) {
            return Err(self.err(at, path, "must be a single line"));
        }
        Ok(s)
    }

    /// An integer value written as a plain decimal; forms YAML 1.1 and 1.2
    /// read differently are rejected.
    fn integer(&self, at: &Spanned<Node>, path: &str) -> Result<i128, UserDataError> {
        let key = path.rsplit('.').next().unwrap_or(path);
        let p = match self
            .style(at)
            .map_err(|e| self.err(at, path, e.to_string()))?
        {
            Style::Quoted(s) => {
                return Err(self.err(
                    at,
                    path,
                    format!("must be a number, not the quoted string {s:?}; write `{key}: {s}`"),
                ))
            }
            Style::Plain(p) => p,
        };
        if matches!(at.value, Node::Map(_) | Node::Seq(_)) {
            let kind = self.kind(at);
            return Err(self.err(at, path, format!("must be a number, found {kind}")));
        }
        match resolve_plain(&p) {
            Yaml11::Int(v) => {
                let digits = p.strip_prefix(['-', '+']).unwrap_or(&p);
                let why = if digits.len() > 1
                    && digits.starts_with('0')
                    && !digits.starts_with("0x")
                    && !digits.starts_with("0b")
                {
                    Some(format!(
                        "`{key}: {p}` is octal in cloud-init (YAML 1.1: {}) but decimal in YAML 1.2 ({}); write it without the leading zero",
                        v.map_or("out of range".to_string(), |v| v.to_string()),
                        digits.trim_start_matches('0')
                    ))
                } else if p.contains('_') {
                    Some(format!(
                        "`{key}: {p}` is a number in YAML 1.1 but a string in YAML 1.2; write it without underscores"
                    ))
                } else if p.contains(':') {
                    Some(format!(
                        "`{key}: {p}` is a base-60 number in YAML 1.1 ({}) but a string in YAML 1.2; write a plain decimal",
                        v.map_or("out of range".to_string(), |v| v.to_string())
                    ))
                } else if digits.starts_with("0x") || digits.starts_with("0b") {
                    Some(format!("`{key}: {p}`: write a plain decimal number"))
                } else {
                    None
                };
                if let Some(why) = why {
                    return Err(self.err(at, path, why));
                }
                v.ok_or_else(|| self.err(at, path, "number out of range"))
            }
            Yaml11::Null => Err(self.err(at, path, "has no value")),
            other => Err(self.err(
                at,
                path,
                format!(
                    "must be a number; `{p}` is {} in cloud-init (YAML 1.1)",
                    other.describe()
                ),
            )),
        }
    }

    /// A boolean, spelled as cloud-init (YAML 1.1) accepts it.
    fn boolean(&self, at: &Spanned<Node>, path: &str) -> Result<bool, UserDataError> {
        match self
            .style(at)
            .map_err(|e| self.err(at, path, e.to_string()))?
        {
            Style::Plain(p) if !matches!(at.value, Node::Map(_) | Node::Seq(_)) => {
                match resolve_plain(&p) {
                    Yaml11::Bool(b) => Ok(b),
                    other => Err(self.err(
                        at,
                        path,
                        format!("must be true or false; `{p}` is {}", other.describe()),
                    )),
                }
            }
            _ => {
                let kind = self.kind(at);
                Err(self.err(
                    at,
                    path,
                    format!("must be true or false (unquoted), found {kind}"),
                ))
            }
        }
    }

    /// A PEM value: a literal block scalar (`key: |`) or a quoted string
    /// with `\n` escapes, holding one object of `kind`. Unlike
    /// [`Self::string`] it keeps newlines; messages never show the content.
    fn pem(&self, at: &Spanned<Node>, path: &str, kind: PemKind) -> Result<Pem, UserDataError> {
        let key = path.rsplit('.').next().unwrap_or(path);
        let block_hint = format!("write `{key}: |` and indent the PEM lines below it");
        if matches!(at.value, Node::Map(_) | Node::Seq(_)) {
            let found = self.kind(at);
            return Err(self.err(
                at,
                path,
                format!("must be {}, found {found}; {block_hint}", kind.describe()),
            ));
        }
        if self.token_before(at).starts_with('>') {
            return Err(self.err(
                at,
                path,
                format!("a folded block scalar (`>`) joins the PEM lines; {block_hint}"),
            ));
        }
        let text = match self
            .style(at)
            .map_err(|e| self.err(at, path, e.to_string()))?
        {
            Style::Quoted(s) => s,
            Style::Plain(p) if resolve_plain(&p) == Yaml11::Null => {
                return Err(self.err(at, path, "has no value"));
            }
            Style::Plain(_) => {
                return Err(self.err(
                    at,
                    path,
                    format!(
                        "must be {} in a block scalar; {block_hint}",
                        kind.describe()
                    ),
                ));
            }
        };
        Pem::parse(kind, &text).map_err(|e| self.err(at, path, e.to_string()))
    }

    /// Checks the credential keys given for `role`: none of the other
    /// role's keys, the role's full set, and each value's form.
    fn credentials(
        &self,
        role: Role,
        settings: &Settings,
        given: &[(&'static Credential, &Spanned<Node>)],
        at: &Spanned<Node>,
    ) -> Result<Credentials, UserDataError> {
        for (c, v) in given {
            if !c.allowed(role) {
                return Err(self.err(v, c.key, credentials::not_allowed_reason(role, c.key)));
            }
        }
        // Each value's form first (errors point at its line), then the set.
        let mut pems = Pems::default();
        for (c, v) in given {
            match c.kind {
                Kind::Token => drop(self.token(v)?),
                Kind::Expiry => drop(self.expiry(v)?),
                Kind::ApiServer => drop(self.api_server(v)?),
                Kind::CaCertHash => drop(self.ca_cert_hash(v)?),
                Kind::Pem(kind) => pems.set(c.key, self.pem(v, c.key, kind)?),
            }
        }
        let get = |p: &str| given.iter().find(|(c, _)| c.key == p).map(|(_, v)| *v);
        let required = schema::required(role);
        let missing: Vec<&str> = required
            .iter()
            .copied()
            .filter(|p| get(p).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(self.err(
                at,
                "kubernetes",
                format!(
                    "credentials for a {role} are incomplete: missing {}. A {role} given any credential key needs all of: {}",
                    missing.join(", "),
                    required.join(", ")
                ),
            ));
        }
        let req = |p: &'static str| get(p).ok_or_else(|| self.err(at, p, "is missing"));
        let token = self.token(req(keys::TOKEN)?)?;
        let role_creds = match role {
            Role::Master => RoleCredentials::Master(MasterCredentials {
                token,
                expires: self.expiry(req(keys::EXPIRES)?)?,
                pems,
            }),
            Role::Minion => RoleCredentials::Minion(MinionCredentials {
                token,
                api_server: match get(keys::API_SERVER) {
                    Some(v) => self.api_server(v)?,
                    None => ApiServer::for_cluster(&settings.cluster, &settings.domain),
                },
                ca_cert_hash: get(keys::CA_CERT_HASH)
                    .map(|v| self.ca_cert_hash(v))
                    .transpose()?,
                pems,
            }),
        };
        Ok(Credentials {
            role: role_creds,
            places: given
                .iter()
                .map(|(c, v)| {
                    (
                        c.key.to_string(),
                        format!("{} line {}", self.place, v.referenced.line()),
                    )
                })
                .collect(),
        })
    }

    fn token(&self, v: &Spanned<Node>) -> Result<BootstrapToken, UserDataError> {
        let s = self.secret_string(v, keys::TOKEN)?;
        BootstrapToken::try_from(s.as_str()).map_err(|e| self.invalid(v, keys::TOKEN, e))
    }

    fn expiry(&self, v: &Spanned<Node>) -> Result<Expiry, UserDataError> {
        let s = self.string(v, keys::EXPIRES)?;
        Expiry::try_from(s.as_str()).map_err(|e| self.invalid(v, keys::EXPIRES, e))
    }

    fn api_server(&self, v: &Spanned<Node>) -> Result<ApiServer, UserDataError> {
        let s = self.string(v, keys::API_SERVER)?;
        ApiServer::try_from(s.as_str()).map_err(|e| self.invalid(v, keys::API_SERVER, e))
    }

    fn ca_cert_hash(&self, v: &Spanned<Node>) -> Result<CaCertHash, UserDataError> {
        let s = self.string(v, keys::CA_CERT_HASH)?;
        CaCertHash::try_from(s.as_str()).map_err(|e| self.invalid(v, keys::CA_CERT_HASH, e))
    }

    fn weave(&self, at: &Spanned<Node>) -> Result<WeaveOptions, UserDataError> {
        let Node::Map(entries) = &at.value else {
            let kind = self.kind(at);
            return Err(self.err(
                at,
                "kubernetes.weave",
                format!("must be a mapping, found {kind}"),
            ));
        };
        let mut w = WeaveOptions::default();
        for (key, value) in entries {
            let k = key.value.as_str();
            let path = format!("kubernetes.weave.{k}");
            match k {
                "password" => {
                    let s = self.string(value, &path)?;
                    w.password = Some(
                        WeavePassword::try_from(s.as_str())
                            .map_err(|e| self.invalid(value, &path, e))?,
                    );
                }
                "ipalloc_range" => {
                    let s = self.string(value, &path)?;
                    w.ipalloc_range = Some(
                        Cidr::try_from(s.as_str()).map_err(|e| self.invalid(value, &path, e))?,
                    );
                }
                "mtu" => {
                    let n = self.integer(value, &path)?;
                    w.mtu = Some(
                        parse_mtu(&n.to_string())
                            .map_err(|e| self.err(value, &path, e.to_string()))?,
                    );
                }
                "no_fastdp" => w.no_fastdp = self.boolean(value, &path)?,
                "trusted_subnets" => {
                    let Node::Seq(items) = &value.value else {
                        return Err(self.err(value, &path, "must be a list of CIDRs"));
                    };
                    for item in items {
                        let s = self.string(item, &path)?;
                        w.trusted_subnets.push(
                            Cidr::try_from(s.as_str()).map_err(|e| self.invalid(item, &path, e))?,
                        );
                    }
                }
                _ => return Err(self.unknown_key(key, "kubernetes.weave", WEAVE_KEYS)),
            }
        }
        Ok(w)
    }
}

/// The closest known key, if it is plausibly a typo.
pub fn closest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    let norm = key.to_ascii_lowercase().replace('-', "_");
    known
        .iter()
        .map(|k| (strsim::levenshtein(&norm, k), *k))
        .filter(|(d, k)| *d <= (k.len() / 3).max(2))
        .min()
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(y: &str) -> String {
        parse(y, "user-data").unwrap_err().to_string()
    }

    #[test]
    fn full_section() {
        let y = "#cloud-config\nssh_authorized_keys: [x]\nruncmd:\n - [ls, -l]\nkubernetes:\n  role: minion\n  cluster: demo\n  domain: example.internal\n  master_endpoint: 10.0.0.1:8080\n  expected_minions: 3\n  weave:\n    password: 'pa55word!'\n    mtu: 1376\n    no_fastdp: yes\n    trusted_subnets: [10.0.0.0/8]\n";
        let k = parse(y, "user-data").unwrap().unwrap();
        assert_eq!(k.role, Role::Minion);
        assert_eq!(k.settings.cluster.as_str(), "demo");
        assert_eq!(k.settings.domain.as_str(), "example.internal");
        assert_eq!(k.settings.expected_minions.unwrap().get(), 3);
        assert!(k.settings.weave.no_fastdp);
        assert_eq!(k.settings.weave.mtu, Some(1376));
        assert_eq!(k.line, 6);
    }

    #[test]
    fn no_section_is_none() {
        assert_eq!(parse("#cloud-config\nusers: []\n", "u").unwrap(), None);
        assert_eq!(parse("#cloud-config\n", "u").unwrap(), None);
    }

    #[test]
    fn yaml11_differences_are_rejected() {
        let e = err("#cloud-config\nkubernetes:\n  role: master\n  cluster: yes\n");
        assert!(e.contains("boolean true in cloud-init"), "{e}");
        assert!(e.contains("line 4"), "{e}");
        let e = err("#cloud-config\nkubernetes:\n  role: minion\n  expected_minions: 0600\n");
        assert!(e.contains("octal") && e.contains("384"), "{e}");
        let e = err("#cloud-config\nkubernetes:\n  role: minion\n  expected_minions: 1_000\n");
        assert!(e.contains("underscores"), "{e}");
        let e = err("#cloud-config\nkubernetes:\n  role: minion\n  expected_minions: '3'\n");
        assert!(e.contains("quoted string"), "{e}");
        // Quoted, the same text is a plain string.
        let k = parse(
            "#cloud-config\nkubernetes:\n  role: master\n  cluster: \"yes\"\n",
            "u",
        )
        .unwrap()
        .unwrap();
        assert_eq!(k.settings.cluster.as_str(), "yes");
    }

    #[test]
    fn multibyte_whitespace_before_value() {
        // U+3000 is whitespace to Rust but not to YAML; must not panic.
        let _ = parse("#cloud-config\nkubernetes:\n  role: \u{3000}master\n", "u");
        let _ = parse("#cloud-config\nkubernetes:\n  role:\u{3000} master\n", "u");
    }

    #[test]
    fn unknown_keys_suggest() {
        let e = err("#cloud-config\nkubernetes:\n  role: master\n  clustr: demo\n");
        assert!(
            e.contains("`clustr`") && e.contains("did you mean `cluster`"),
            "{e}"
        );
        let e = err("#cloud-config\nkubernetes:\n  role: master\n  master-endpoint: x\n");
        assert!(e.contains("did you mean `master_endpoint`"), "{e}");
        let e = err("#cloud-config\nkubernetes:\n  role: master\n  weave: {pasword: abcdefghi}\n");
        assert!(e.contains("did you mean `password`"), "{e}");
    }

    const CERT: &str =
        "      -----BEGIN CERTIFICATE-----\n      MIIBfake\n      -----END CERTIFICATE-----\n";
    const KEY: &str =
        "      -----BEGIN PRIVATE KEY-----\n      MIGHsecret\n      -----END PRIVATE KEY-----\n";

    fn minion(extra: &str) -> String {
        format!("#cloud-config\nkubernetes:\n  role: minion\n  cluster: demo\n  bootstrap_token: \"abcdef.0123456789abcdef\"\n  pki:\n    ca_crt: |\n{CERT}{extra}")
    }

    #[test]
    fn credentials_minion() {
        let k = parse(&minion(""), "user-data").unwrap().unwrap();
        let c = k.credentials.unwrap();
        let RoleCredentials::Minion(m) = &c.role else {
            panic!("{c:?}")
        };
        assert_eq!(m.token.id(), "abcdef");
        assert_eq!(
            m.pems.get(keys::CA_CRT).unwrap().expose(),
            "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"
        );
        assert_eq!(m.api_server.as_str(), "https://masters.demo.k8s:6443");
        assert_eq!(
            k.settings.api_server.as_ref().map(ApiServer::as_str),
            Some("https://masters.demo.k8s:6443")
        );
        assert_eq!(
            c.place(keys::CA_CRT),
            "user-data line 8, key kubernetes.pki.ca_crt"
        );
        // Secrets never reach Debug output.
        let dbg = format!("{c:?}");
        assert!(
            !dbg.contains("MIGHsecret") && !dbg.contains("0123456789abcdef"),
            "{dbg}"
        );
        // Optional keys; a quoted PEM with \n escapes works too.
        let y = minion(&format!(
            "    ca_cert_hash: \"sha256:{}\"\n  api_server: https://10.0.0.1:6443\n",
            "a".repeat(64)
        ))
        .replace(
            &format!("    ca_crt: |\n{CERT}"),
            "    ca_crt: \"-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END CERTIFICATE-----\\n\"\n",
        );
        let k = parse(&y, "u").unwrap().unwrap();
        let RoleCredentials::Minion(m) = k.credentials.unwrap().role else {
            panic!()
        };
        assert_eq!(m.api_server.as_str(), "https://10.0.0.1:6443");
        assert!(m.ca_cert_hash.is_some());
        // No credential key at all: no credentials, no API_SERVER.
        let k = parse("#cloud-config\nkubernetes:\n  role: minion\n", "u")
            .unwrap()
            .unwrap();
        assert!(k.credentials.is_none() && k.settings.api_server.is_none());
    }

    #[test]
    fn credentials_errors() {
        let e = err(&minion(&format!("    ca_key: |\n{KEY}")));
        assert!(
            e.contains("key kubernetes.pki.ca_key: is a master's private key: a minion must never receive it"),
            "{e}"
        );
        assert!(!e.contains("MIGHsecret"), "{e}");
        let e = err(&minion(&format!("    ca_cert: |\n{CERT}")));
        assert!(e.contains("did you mean `ca_crt`"), "{e}");
        let e = err(&minion(&format!("    unused: |\n{CERT}")));
        assert!(
            e.contains("unknown key `unused` under kubernetes.pki:"),
            "{e}"
        );
        let e = err(&minion("").replace(
            &format!("    ca_crt: |\n{CERT}"),
            &format!("    ca_cert_hash: \"sha256:{}\"\n", "0".repeat(64)),
        ));
        assert!(
            e.contains("credentials for a minion are incomplete: missing kubernetes.pki.ca_crt"),
            "{e}"
        );
        let e = err(&minion("").replace("abcdef.0123456789abcdef", "abcdef.0123456789ABCDEF"));
        assert!(
            e.contains("key kubernetes.bootstrap_token: bootstrap token"),
            "{e}"
        );
        assert!(!e.contains("0123456789"), "secret echoed: {e}");
        let e = err(&minion("").replace("\"abcdef.0123456789abcdef\"", "123456.1234567890123456"));
        assert!(
            e.contains("floating-point") && !e.contains("1234567890"),
            "{e}"
        );
        let e = err(&minion("").replace("    ca_crt: |", "    ca_crt: >"));
        assert!(e.contains("folded"), "{e}");
        let e = err(&minion("").replace(
            &format!("    ca_crt: |\n{CERT}"),
            &format!("    ca_crt: |\n{KEY}"),
        ));
        assert!(
            e.contains("ca_crt: is a PEM PRIVATE KEY, expected a PEM certificate"),
            "{e}"
        );
        assert!(!e.contains("MIGHsecret"), "{e}");
        let e = err(&minion("  api_server: http://x:6443\n"));
        assert!(
            e.contains("key kubernetes.api_server") && e.contains("https://"),
            "{e}"
        );
        let e = err(&minion("    ca_cert_hash: sha256:abc\n"));
        assert!(e.contains("64 hex digits"), "{e}");
        let e = err("#cloud-config\nkubernetes:\n  role: master\n  bootstrap_token: \"abcdef.0123456789abcdef\"\n  api_server: https://x:6443\n");
        assert!(
            e.contains("key kubernetes.api_server: is for minions only"),
            "{e}"
        );
        let e = err("#cloud-config\nkubernetes:\n  role: master\n  pki: {}\n");
        assert!(e.contains("credentials for a master are incomplete: missing kubernetes.bootstrap_token, kubernetes.bootstrap_token_expires, kubernetes.pki.ca_crt"), "{e}");
        let e = err("#cloud-config\nkubernetes:\n  role: master\n  pki: x\n");
        assert!(e.contains("must be a mapping"), "{e}");
        let e = err("#cloud-config\nkubernetes:\n  role: master\n  bootstrap_token_expires: 2026-11-28T14:00:00Z\n");
        assert!(e.contains("a timestamp in cloud-init"), "{e}");
    }

    /// User-data made for an earlier release, with kube-proxy's shared
    /// client certificate: refused by name, for either role, never
    /// silently ignored, and never showing the key.
    #[test]
    fn retired_kube_proxy_keys_are_named() {
        for (key, value) in [("kube_proxy_crt", CERT), ("kube_proxy_key", KEY)] {
            let e = err(&minion(&format!("    {key}: |\n{value}")));
            assert!(
                e.contains(&format!("line 11, key kubernetes.pki.{key}: is no longer used: kube-proxy runs with the node's own kubelet credential (/etc/kubernetes/kubelet.conf")),
                "{e}"
            );
            assert!(
                !e.contains("did you mean") && !e.contains("MIGHsecret"),
                "{e}"
            );
            let e = err(&format!(
                "#cloud-config\nkubernetes:\n  role: master\n  pki:\n    {key}: |\n{value}"
            ));
            assert!(
                e.contains(&format!("key kubernetes.pki.{key}: is no longer used")),
                "{e}"
            );
        }
    }

    #[test]
    fn structure_errors() {
        assert!(err("#cloud-config\nkubernetes: master\n").contains("must be a mapping"));
        assert!(err("#cloud-config\nkubernetes:\n  cluster: x\n").contains("no `role:`"));
        assert!(err("#cloud-config\nkubernetes:\n  role: [master]\n").contains("must be a string"));
        assert!(err("#cloud-config\n- a\n").contains("mapping"));
        assert!(err("#cloud-config\nkubernetes: {role: master\n").contains("invalid YAML"));
        assert!(
            err("#cloud-config\nkubernetes:\n  role: master\n  role: minion\n")
                .contains("uplicate")
        );
    }
}
