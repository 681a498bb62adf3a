//! Activation-time checks of the cluster credentials, done with the
//! `openssl` command-line tool: every PEM parses as its kind, each private
//! key matches its certificate (or public key), and the CA pin matches.
//!
//! Why a subprocess and not a crate: rolectl is baked into every image and
//! kept under 2 MB. An X.509 + RSA + ECDSA stack in Rust (ring or
//! RustCrypto, a DER/X.509 parser) would add hundreds of KB, while the
//! `openssl` binary is already in the image (ca-certificates depends on it)
//! and these checks run once per boot.
//!
//! Secrets reach openssl on stdin only: never on its command line (visible
//! in /proc) and never in a file. Error messages name the user-data key and
//! quote openssl's error line, never the material.

use std::ffi::OsStr;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use contract::credentials::keys;

use crate::credentials::{
    format_utc, Credentials, MasterCredentials, MinionCredentials, Pem, Pems, RoleCredentials,
};
use crate::userdata::UserDataError;

/// The openssl binary (absolute: no PATH lookup in a boot-time agent).
pub const OPENSSL: &str = "/usr/bin/openssl";

/// Runs the openssl command-line tool.
#[derive(Debug, Clone)]
pub struct Openssl {
    program: PathBuf,
}

struct Out {
    ok: bool,
    stdout: Vec<u8>,
    stderr: String,
}

impl Default for Openssl {
    fn default() -> Self {
        Openssl::new(OPENSSL)
    }
}

/// The first non-empty line of openssl's stderr, printable ASCII, short.
fn first_line(s: &str) -> String {
    let l = s
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let l: String = l
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { ' ' })
        .take(200)
        .collect();
    if l.is_empty() {
        "no error message".to_string()
    } else {
        l
    }
}

impl Openssl {
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Openssl {
            program: program.into(),
        }
    }

    /// Runs `openssl ARGS` with `input` on stdin (written from a thread, so
    /// a large output cannot deadlock). Err: openssl could not be run.
    fn run<S: AsRef<OsStr>>(&self, args: &[S], input: &[u8]) -> Result<Out, ToolError> {
        let mut child = Command::new(&self.program)
            .args(args)
            .env("LC_ALL", "C")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|err| ToolError::Spawn {
                program: self.program.clone(),
                err,
            })?;
        let stdin = child.stdin.take();
        let out = std::thread::scope(|s| {
            s.spawn(move || {
                if let Some(mut w) = stdin {
                    // EPIPE if openssl rejects the input early: its exit
                    // status and stderr say why.
                    let _ = w.write_all(input);
                }
            });
            child.wait_with_output()
        })
        .map_err(|err| ToolError::Run {
            program: self.program.clone(),
            err,
        })?;
        Ok(Out {
            ok: out.status.success(),
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Text output of a successful run; Err((run failed?, reason)).
    fn text<S: AsRef<OsStr>>(&self, args: &[S], input: &[u8]) -> Result<String, Failure> {
        let o = self.run(args, input).map_err(Failure::Tool)?;
        if !o.ok {
            return Err(Failure::Rejected(first_line(&o.stderr)));
        }
        Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
    }

    /// The public key (PEM SubjectPublicKeyInfo) of a certificate.
    pub fn cert_pubkey(&self, cert: &Pem) -> Result<String, Failure> {
        self.text(&["x509", "-noout", "-pubkey"], cert.expose().as_bytes())
    }

    /// The public key of a private key. `-passin pass:` so that an
    /// encrypted key fails instead of prompting on the console.
    pub fn key_pubkey(&self, key: &Pem) -> Result<String, Failure> {
        self.text(
            &["pkey", "-pubout", "-passin", "pass:"],
            key.expose().as_bytes(),
        )
    }

    /// A public key re-encoded by openssl (comparable with the above).
    pub fn pubkey(&self, public: &Pem) -> Result<String, Failure> {
        self.text(&["pkey", "-pubin", "-pubout"], public.expose().as_bytes())
    }

    /// `sha256:<hex>` of the DER SubjectPublicKeyInfo in `pubkey_pem`.
    pub fn spki_sha256(&self, pubkey_pem: &str) -> Result<String, Failure> {
        let der = self
            .run(
                &["pkey", "-pubin", "-outform", "DER"],
                pubkey_pem.as_bytes(),
            )
            .map_err(Failure::Tool)?;
        if !der.ok || der.stdout.is_empty() {
            return Err(Failure::Rejected(first_line(&der.stderr)));
        }
        let out = self.text(&["dgst", "-sha256", "-r"], &der.stdout)?;
        let hex = out.split_whitespace().next().unwrap_or("");
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Failure::Rejected(format!(
                "unexpected openssl dgst output {out:?}"
            )));
        }
        Ok(format!("sha256:{}", hex.to_ascii_lowercase()))
    }
}

/// Why an openssl check failed.
#[derive(Debug)]
pub enum Failure {
    /// openssl could not be run (not a problem of the user-data).
    Tool(ToolError),
    /// openssl rejected the input; its error line.
    Rejected(String),
}

/// openssl could not be run.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("cannot run {program}: {err} (the image gets openssl with ca-certificates)")]
    Spawn {
        program: PathBuf,
        err: std::io::Error,
    },
    #[error("running {program}: {err}")]
    Run {
        program: PathBuf,
        err: std::io::Error,
    },
}

/// Checks credentials with openssl. `now` is the Unix time;
/// `check_expiry`: the bootstrap token must still be valid (first
/// activation; on a reboot the node has long joined and an expired token
/// is no error).
pub fn check(
    creds: &Credentials,
    now: i64,
    check_expiry: bool,
    ssl: &Openssl,
) -> Result<(), UserDataError> {
    let c = Checker { creds, ssl };
    match &creds.role {
        RoleCredentials::Master(m) => c.master(m, now, check_expiry),
        RoleCredentials::Minion(m) => c.minion(m),
    }
}

struct Checker<'a> {
    creds: &'a Credentials,
    ssl: &'a Openssl,
}

impl Checker<'_> {
    fn err(&self, key: &str, msg: impl Into<String>) -> UserDataError {
        UserDataError::new(&self.creds.place(key), msg)
    }

    fn failed(&self, key: &str, what: &str, f: Failure) -> UserDataError {
        match f {
            Failure::Tool(m) => self.err(key, format!("cannot check it: {m}")),
            Failure::Rejected(m) => self.err(key, format!("{what} (openssl: {m})")),
        }
    }

    /// The PEM value of `key` (user-data parsing makes sure it is there).
    fn pem<'p>(&self, pems: &'p Pems, key: &str) -> Result<&'p Pem, UserDataError> {
        pems.get(key).ok_or_else(|| self.err(key, "is missing"))
    }

    /// The public key of the certificate at `key`.
    fn cert(&self, pems: &Pems, key: &str) -> Result<String, UserDataError> {
        self.ssl
            .cert_pubkey(self.pem(pems, key)?)
            .map_err(|f| self.failed(key, "is not a valid PEM certificate", f))
    }

    /// The public key of the private key at `key`.
    fn key(&self, pems: &Pems, key: &str) -> Result<String, UserDataError> {
        self.ssl
            .key_pubkey(self.pem(pems, key)?)
            .map_err(|f| self.failed(key, "is not a valid unencrypted PEM private key", f))
    }

    /// `key_path`'s private key belongs to `cert_path`'s certificate.
    fn pair(&self, pems: &Pems, cert_path: &str, key_path: &str) -> Result<String, UserDataError> {
        let cert_pub = self.cert(pems, cert_path)?;
        let key_pub = self.key(pems, key_path)?;
        if cert_pub != key_pub {
            return Err(self.err(key_path, format!("does not match {cert_path}")));
        }
        Ok(cert_pub)
    }

    fn master(
        &self,
        m: &MasterCredentials,
        now: i64,
        check_expiry: bool,
    ) -> Result<(), UserDataError> {
        if check_expiry && m.expires.unix() <= now {
            return Err(self.err(
                keys::EXPIRES,
                format!(
                    "{} is not in the future (now {}): the bootstrap token has expired; give the master fresh user-data with a new bootstrap_token and bootstrap_token_expires",
                    m.expires.as_str(),
                    format_utc(now)
                ),
            ));
        }
        let pems = &m.pems;
        self.pair(pems, keys::CA_CRT, keys::CA_KEY)?;
        self.pair(pems, keys::FRONT_PROXY_CA_CRT, keys::FRONT_PROXY_CA_KEY)?;
        let from_key = self.key(pems, keys::SA_KEY)?;
        let public = self
            .ssl
            .pubkey(self.pem(pems, keys::SA_PUB)?)
            .map_err(|f| self.failed(keys::SA_PUB, "is not a valid PEM public key", f))?;
        if public != from_key {
            return Err(self.err(keys::SA_PUB, format!("does not match {}", keys::SA_KEY)));
        }
        Ok(())
    }

    /// The CA certificate parses and matches the pin. A minion gets no
    /// client certificate: kube-proxy uses the kubelet's own credential.
    fn minion(&self, m: &MinionCredentials) -> Result<(), UserDataError> {
        let ca_pub = self.cert(&m.pems, keys::CA_CRT)?;
        if let Some(pin) = &m.ca_cert_hash {
            let got = self
                .ssl
                .spki_sha256(&ca_pub)
                .map_err(|f| self.failed(keys::CA_CERT_HASH, "cannot hash the CA public key", f))?;
            if got != pin.as_str() {
                return Err(self.err(
                    keys::CA_CERT_HASH,
                    format!(
                        "does not match {}: its public key hashes to {got}, the pin is {}",
                        keys::CA_CRT,
                        pin.as_str()
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::Path;

    use crate::credentials::{CaCertHash, Expiry};
    use crate::settings::ApiServer;
    use contract::credentials::{for_role, BootstrapToken, Kept, PemKind};
    use contract::role::Role;

    /// A throw-away PKI generated with openssl by the fixture script.
    fn pki() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pki/make-pki.sh");
        let o = Command::new("bash")
            .arg(script)
            .arg(d.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        d
    }

    fn pem(d: &Path, name: &str, kind: PemKind) -> Pem {
        Pem::parse(kind, &fs::read_to_string(d.join(name)).unwrap()).unwrap()
    }

    /// Every PEM of `role`, from the file named as in a `kubebake cluster
    /// init` directory (the fixture script uses the same names).
    fn pems(d: &Path, role: Role) -> Pems {
        for_role(role)
            .filter_map(|c| match (c.pem_kind(), c.kept) {
                (Some(kind), Kept::File(f)) => Some((c.key, pem(d, f, kind))),
                _ => None,
            })
            .collect()
    }

    fn master(d: &Path) -> MasterCredentials {
        MasterCredentials {
            token: BootstrapToken::try_from("abcdef.0123456789abcdef").unwrap(),
            expires: Expiry::try_from("2099-01-01T00:00:00Z").unwrap(),
            pems: pems(d, Role::Master),
        }
    }

    fn minion(d: &Path) -> MinionCredentials {
        MinionCredentials {
            token: BootstrapToken::try_from("abcdef.0123456789abcdef").unwrap(),
            api_server: ApiServer::try_from("https://masters.demo.k8s:6443").unwrap(),
            ca_cert_hash: Some(
                CaCertHash::try_from(fs::read_to_string(d.join("ca.hash")).unwrap().trim())
                    .unwrap(),
            ),
            pems: pems(d, Role::Minion),
        }
    }

    fn run(role: RoleCredentials, now: i64, expiry: bool) -> Result<(), UserDataError> {
        let c = Credentials {
            role,
            places: vec![(keys::CA_KEY.to_string(), "user-data line 9".to_string())],
        };
        check(&c, now, expiry, &Openssl::default())
    }

    #[test]
    fn openssl_checks() {
        let d = pki();
        let p = d.path();
        let now = 1_800_000_000;
        run(RoleCredentials::Master(master(p)), now, true).unwrap();
        run(RoleCredentials::Minion(minion(p)), now, true).unwrap();

        let mut m = master(p);
        m.pems
            .set(keys::CA_KEY, pem(p, "other-ca.key", PemKind::PrivateKey));
        let e = run(RoleCredentials::Master(m), now, true)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "user-data line 9, key kubernetes.pki.ca_key: does not match kubernetes.pki.ca_crt"
        );
        // Nothing secret in any message.
        for key in ["ca.key", "other-ca.key"] {
            let secret = fs::read_to_string(p.join(key)).unwrap();
            assert!(!e.contains(secret.lines().nth(1).unwrap()), "{e}");
        }
        let mut m = master(p);
        m.pems.set(
            keys::SA_PUB,
            Pem::parse(
                PemKind::PublicKey,
                &Openssl::default()
                    .key_pubkey(&pem(p, "ca.key", PemKind::PrivateKey))
                    .unwrap(),
            )
            .unwrap(),
        );
        let e = run(RoleCredentials::Master(m), now, true)
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with("key kubernetes.pki.sa_pub: does not match kubernetes.pki.sa_key"),
            "{e}"
        );
        let mut m = master(p);
        m.expires = Expiry::try_from("2020-01-01T00:00:00Z").unwrap();
        let e = run(RoleCredentials::Master(m.clone()), now, true)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("2020-01-01T00:00:00Z is not in the future (now 2027-01-15T08:00:00Z)"),
            "{e}"
        );
        // On a reboot the expiry is not checked.
        run(RoleCredentials::Master(m), now, false).unwrap();
        // A structurally valid PEM that is no certificate.
        let mut m = master(p);
        m.pems.set(
            keys::FRONT_PROXY_CA_CRT,
            Pem::parse(
                PemKind::Certificate,
                "-----BEGIN CERTIFICATE-----\nMIIBAAAA\n-----END CERTIFICATE-----\n",
            )
            .unwrap(),
        );
        let e = run(RoleCredentials::Master(m), now, true)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(
                "key kubernetes.pki.front_proxy_ca_crt: is not a valid PEM certificate (openssl: "
            ),
            "{e}"
        );

        let mut n = minion(p);
        n.ca_cert_hash =
            Some(CaCertHash::try_from(&*format!("sha256:{}", "0".repeat(64))).unwrap());
        let e = run(RoleCredentials::Minion(n), now, true)
            .unwrap_err()
            .to_string();
        let want = fs::read_to_string(p.join("ca.hash")).unwrap();
        assert!(
            e.contains("key kubernetes.pki.ca_cert_hash: does not match kubernetes.pki.ca_crt: its public key hashes to ")
                && e.contains(want.trim()),
            "{e}"
        );
        // A minion's one PEM, the CA certificate, must parse.
        let mut n = minion(p);
        n.ca_cert_hash = None;
        n.pems.set(
            keys::CA_CRT,
            Pem::parse(
                PemKind::Certificate,
                "-----BEGIN CERTIFICATE-----\nMIIBAAAA\n-----END CERTIFICATE-----\n",
            )
            .unwrap(),
        );
        let e = run(RoleCredentials::Minion(n), now, true)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("key kubernetes.pki.ca_crt: is not a valid PEM certificate (openssl: "),
            "{e}"
        );
    }

    #[test]
    fn missing_openssl_is_reported() {
        let d = pki();
        let c = Credentials {
            role: RoleCredentials::Master(master(d.path())),
            places: Vec::new(),
        };
        let e = check(&c, 0, true, &Openssl::new("/nonexistent/openssl"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cannot check it: cannot run /nonexistent/openssl"),
            "{e}"
        );
    }
}
