//! Waiting for things (with [`crate::retry`]): name resolution
//! (system resolver in production, a direct DNS query for tests) and the
//! master health check behind `rolectl wait-master`.

use std::io::Read;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
#[cfg(feature = "test-dns")]
use std::time::Instant;

use contract::retry::{Backoff, GaveUp};
use contract::role::Role;
#[cfg(feature = "test-dns")]
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
#[cfg(feature = "test-dns")]
use hickory_proto::rr::{Name, RData, RecordType};

use crate::marker;
use crate::settings::{ip_literal, Settings};

/// Formats a delay for log lines ("2s", "0.5s").
pub fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if (s - s.round()).abs() < 0.005 {
        format!("{}s", s.round() as u64)
    } else {
        format!("{s:.2}s")
    }
}

/// How names are resolved.
#[derive(Debug, Clone, Copy)]
pub enum Resolver {
    /// getaddrinfo (nsswitch, /etc/hosts, /etc/resolv.conf): production.
    System,
    /// Query this DNS server directly over UDP (tests: a server on a port
    /// the system resolver cannot be pointed at).
    Direct(SocketAddr),
}

impl Resolver {
    /// All addresses of `host`, sorted and deduplicated. A name that does
    /// not exist (yet) is an error whose text says so.
    pub fn lookup(&self, host: &str) -> Result<Vec<IpAddr>, String> {
        if let Some(ip) = ip_literal(host) {
            return Ok(vec![ip]);
        }
        let mut v = match self {
            Resolver::System => (host, 0)
                .to_socket_addrs()
                .map_err(|e| format!("cannot resolve {host}: {e}"))?
                .map(|sa| sa.ip())
                .collect::<Vec<_>>(),
            #[cfg(not(feature = "test-dns"))]
            Resolver::Direct(server) => {
                return Err(format!(
                    "cannot query {server}: rolectl was built without the test-dns feature"
                ))
            }
            #[cfg(feature = "test-dns")]
            Resolver::Direct(server) => {
                let mut v = dns_query(*server, host, RecordType::A)?;
                v.extend(dns_query(*server, host, RecordType::AAAA)?);
                v
            }
        };
        v.sort();
        v.dedup();
        if v.is_empty() {
            return Err(format!("{host} has no addresses"));
        }
        Ok(v)
    }
}

#[cfg(feature = "test-dns")]
/// One DNS query over UDP with hickory-proto's message codec (no async
/// runtime needed). NXDOMAIN and empty answers are `Ok(vec![])`.
pub fn dns_query(server: SocketAddr, host: &str, rtype: RecordType) -> Result<Vec<IpAddr>, String> {
    let name = Name::from_ascii(format!("{host}."))
        .map_err(|e| format!("invalid DNS name {host}: {e}"))?;
    let id: u16 = (std::process::id() as u16) ^ (Instant::now().elapsed().subsec_nanos() as u16);
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(name, rtype));
    let bytes = msg
        .to_vec()
        .map_err(|e| format!("encoding DNS query: {e}"))?;
    let bind: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let sock = std::net::UdpSocket::bind(bind).map_err(|e| format!("DNS socket: {e}"))?;
    sock.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| format!("DNS socket: {e}"))?;
    sock.connect(server)
        .map_err(|e| format!("DNS server {server}: {e}"))?;
    sock.send(&bytes)
        .map_err(|e| format!("DNS server {server}: {e}"))?;
    let mut buf = [0u8; 4096];
    loop {
        let n = sock
            .recv(&mut buf)
            .map_err(|e| format!("DNS server {server}: no answer ({e})"))?;
        let resp = Message::from_vec(&buf[..n]).map_err(|e| format!("bad DNS answer: {e}"))?;
        if resp.metadata.id != id {
            continue;
        }
        return match resp.metadata.response_code {
            ResponseCode::NoError => Ok(resp
                .answers
                .iter()
                .filter_map(|r| match &r.data {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                    _ => None,
                })
                .collect()),
            ResponseCode::NXDomain => Ok(Vec::new()),
            rc => Err(format!("DNS server {server} answered {rc}")),
        };
    }
}

/// Reads the host's marker (minion first, then master).
pub fn marker_settings(root: &Path) -> Result<(Role, Settings), String> {
    for role in [Role::Minion, Role::Master] {
        match marker::read(root, role) {
            Ok(Some(m)) => match m.settings {
                Some(s) => return Ok((role, s)),
                None => return Ok((role, Settings::default())),
            },
            Ok(None) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Err(format!(
        "no role marker ({} or {}); run `rolectl activate` first",
        Role::Minion.marker_path(),
        Role::Master.marker_path()
    ))
}

/// The port the API server listens on: API_SERVER's, else 6443.
pub fn api_server_port(s: &Settings) -> u16 {
    s.api_server
        .as_ref()
        .map_or(crate::settings::ApiServer::PORT, |a| a.port())
}

/// Whether anything accepts a TCP connection on `port` of one of `addrs`.
/// A cheap first check: under emulation a kubectl run costs seconds of CPU
/// that the starting API server needs, so kubectl runs only once the port
/// is open.
pub fn port_open(addrs: &[IpAddr], port: u16) -> Result<(), String> {
    let mut errors = Vec::new();
    for a in addrs {
        let sa = SocketAddr::new(*a, port);
        match std::net::TcpStream::connect_timeout(&sa, Duration::from_secs(3)) {
            Ok(_) => return Ok(()),
            Err(e) => errors.push(format!("{sa}: {e}")),
        }
    }
    Err(errors.join("; "))
}

/// An anonymous `/readyz` probe with curl, verified against the cluster CA
/// (the API server grants `/readyz` to unauthenticated clients through
/// `system:public-info-viewer`). curl starts in milliseconds where kubectl,
/// a large Go binary, takes seconds of CPU under emulation, so the node
/// polls with curl and runs kubectl once, to check its credential.
#[derive(Debug, Clone)]
pub struct AnonProbe {
    pub curl: PathBuf,
    pub ca: PathBuf,
    /// `https://host:port` (the marker's API_SERVER).
    pub server: String,
}

impl AnonProbe {
    /// Ok(()) on HTTP 200, Err(what was seen) otherwise.
    pub fn ready(&self) -> Result<(), String> {
        let url = format!("{}/readyz", self.server.trim_end_matches('/'));
        let out = Command::new(&self.curl)
            .args(["--silent", "--show-error", "--max-time", "10", "--cacert"])
            .arg(&self.ca)
            .args(["--output", "/dev/null", "--write-out", "%{http_code}"])
            .arg(&url)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.curl.display()))?;
        let code = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && code == "200" {
            return Ok(());
        }
        let err = summary(&String::from_utf8_lossy(&out.stderr));
        Err(if out.status.success() {
            format!("{url} answered HTTP {code}")
        } else {
            format!("{url}: {err}")
        })
    }
}

/// The host that must resolve before the API server is probed:
/// API_SERVER's host if the marker has one, else [`master_host`].
pub fn api_server_host(s: &Settings) -> String {
    match &s.api_server {
        Some(a) => a.host().to_string(),
        None => master_host(s),
    }
}

/// The master host name (MASTER_ENDPOINT's host, else masters.<cluster>.<domain>).
pub fn master_host(s: &Settings) -> String {
    match &s.master_endpoint {
        Some(e) => e.host().to_string(),
        None => s.masters_name(),
    }
}

/// Validates a health URL: http:// only (the binary has no TLS stack).
pub fn check_health_url(url: &str) -> Result<(), String> {
    if !url.starts_with("http://") {
        return Err(format!(
            "health URL {url:?} must start with http:// (rolectl has no TLS; use the plain health endpoint, e.g. http://{{master}}:2379/health)"
        ));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("health URL {url:?} contains whitespace"));
    }
    Ok(())
}

/// `{master}` replaced by the address (IPv6 in brackets).
pub fn expand_url(url: &str, addr: IpAddr) -> String {
    let a = match addr {
        IpAddr::V4(v) => v.to_string(),
        IpAddr::V6(v) => format!("[{v}]"),
    };
    url.replace("{master}", &a)
}

/// GETs `url`; Ok(status) on 2xx, Err(reason) otherwise.
pub fn probe(agent: &ureq::Agent, url: &str) -> Result<u16, String> {
    match agent.get(url).call() {
        Ok(resp) => {
            let code = resp.status().as_u16();
            if (200..300).contains(&code) {
                Ok(code)
            } else {
                Err(format!("{url} answered HTTP {code}"))
            }
        }
        Err(e) => Err(format!("{url}: {e}")),
    }
}

pub fn http_agent() -> ureq::Agent {
    http_agent_with(Duration::from_secs(5))
}

/// Plain HTTP, statuses as values (not errors), no redirects, every request
/// bounded by `timeout`.
pub fn http_agent_with(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into()
}

/// `rolectl wait-master`: resolve the master and wait for a 2xx health answer;
/// the address that answered, its status code and the attempt it took.
pub fn wait_master(
    host: &str,
    url: &str,
    resolver: Resolver,
    retry: Backoff,
) -> Result<(IpAddr, u16, u32), GaveUp<String>> {
    let agent = http_agent();
    retry.run(
        |attempt| {
            let addrs = resolver.lookup(host)?;
            let mut last = String::new();
            for a in &addrs {
                match probe(&agent, &expand_url(url, *a)) {
                    Ok(code) => return Ok((*a, code, attempt)),
                    Err(e) => last = e,
                }
            }
            Err(last)
        },
        |n, reason, next| log_attempt(host, n, reason, next),
    )
}

/// `rolectl wait-master --resolve-only`: wait until the master's name
/// resolves; its addresses and the attempt it took.
pub fn wait_resolve(
    host: &str,
    resolver: Resolver,
    retry: Backoff,
) -> Result<(Vec<IpAddr>, u32), GaveUp<String>> {
    retry.run(
        |attempt| resolver.lookup(host).map(|a| (a, attempt)),
        |n, reason, next| log_attempt(host, n, reason, next),
    )
}

/// One line per failed attempt of a wait for the master.
fn log_attempt(host: &str, n: u32, reason: &str, next: Option<Duration>) {
    match next {
        Some(d) => eprintln!(
            "waiting for master {host}: {reason} (attempt {n}, next in {})",
            secs(d)
        ),
        None => eprintln!("waiting for master {host}: {reason} (attempt {n}, giving up)"),
    }
}

/// What one `kubectl get --raw=/readyz` said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readyz {
    /// HTTP 200: the API server is ready and accepted the credential.
    Ready,
    /// 401: the credential was rejected (wrong or expired token).
    Rejected(String),
    /// Refused, timed out, 403/500 while starting, …: try again.
    NotReady(String),
}

/// kubectl gets this long in all (it has `--request-timeout=5s` itself):
/// starting the Go binary alone takes 10–20 s on a busy emulated CPU.
const KUBECTL_DEADLINE: Duration = Duration::from_secs(60);

/// How long a 401 counts as "not yet": a master whose API server just
/// became ready may not have created the bootstrap-token Secret yet
/// (kube-bootstrap runs after /readyz), so only a credential still refused
/// this long after the first refusal is rejected for good.
pub const REJECT_GRACE: Duration = Duration::from_secs(120);

/// The first non-empty line of kubectl's output, printable, short.
fn summary(text: &str) -> String {
    let l = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no output");
    l.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(240)
        .collect()
}

/// Classifies kubectl's exit status and output.
pub fn classify(success: bool, stdout: &str, stderr: &str) -> Readyz {
    if success {
        return Readyz::Ready;
    }
    let all = format!("{stderr}\n{stdout}");
    let line = summary(&all);
    if all.contains("Unauthorized") || all.contains("must be logged in") {
        Readyz::Rejected(line)
    } else {
        Readyz::NotReady(line)
    }
}

/// Runs `kubectl --kubeconfig FILE get --raw=/readyz --request-timeout=5s`:
/// TLS against the kubeconfig's CA and its credential in one request.
/// Err: kubectl could not be run (a broken image, not a waiting matter).
pub fn kubectl_readyz(kubectl: &Path, kubeconfig: &Path) -> Result<Readyz, String> {
    let mut child = Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["get", "--raw=/readyz", "--request-timeout=5s"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", kubectl.display()))?;
    let read = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(r) = r {
                let _ = r.take(64 * 1024).read_to_end(&mut v);
            }
            String::from_utf8_lossy(&v).into_owned()
        })
    };
    let out = read(
        child
            .stdout
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let err = read(
        child
            .stderr
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let start = std::time::Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) if start.elapsed() < KUBECTL_DEADLINE => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    Ok(match status {
        Some(st) => classify(st.success(), &stdout, &stderr),
        None => Readyz::NotReady(format!(
            "kubectl did not finish within {}",
            secs(KUBECTL_DEADLINE)
        )),
    })
}

/// Why `wait_api_server` stopped without the API server being ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiWaitError {
    /// The retry policy gave up (timeout).
    GaveUp(GaveUp<String>),
    /// The credential in `kubeconfig` was rejected; retrying cannot help.
    Rejected {
        kubeconfig: PathBuf,
        message: String,
        /// Attempts made, the refused ones included.
        attempts: u32,
    },
    /// No kubeconfig exists, or kubectl cannot run.
    Config(String),
}

/// The API server answered ready to `kubeconfig` at attempt `attempts`.
#[derive(Debug)]
pub struct ApiReady {
    pub kubeconfig: PathBuf,
    pub attempts: u32,
}

/// The first of `kubeconfigs` that exists.
pub fn first_existing(kubeconfigs: &[PathBuf]) -> Option<&PathBuf> {
    kubeconfigs.iter().find(|p| p.is_file())
}

/// What `wait-master --kubeconfig` waits for and how it asks.
#[derive(Debug, Clone)]
pub struct ApiTarget<'a> {
    /// The name that must resolve (API_SERVER's host).
    pub host: &'a str,
    pub port: u16,
    /// The cheap anonymous /readyz probe, when curl and the CA are there.
    pub anon: Option<&'a AnonProbe>,
    /// Tried in order; the first that exists is used.
    pub kubeconfigs: &'a [PathBuf],
    pub kubectl: &'a Path,
    /// How long a refused credential counts as "not yet" ([`REJECT_GRACE`]).
    pub grace: Duration,
}

/// `rolectl wait-master --kubeconfig`: wait until the host resolves
/// ("waiting for DNS"), its port accepts connections, the anonymous /readyz
/// answers 200, and then until kubectl's /readyz with the first existing
/// kubeconfig succeeds ("waiting for the API server"). A credential still
/// refused after the grace period ends the wait. Returns the kubeconfig used.
pub fn wait_api_server(
    target: &ApiTarget,
    resolver: Resolver,
    retry: Backoff,
) -> Result<ApiReady, ApiWaitError> {
    let ApiTarget {
        host,
        port,
        anon,
        kubeconfigs,
        kubectl,
        grace,
    } = *target;
    type Attempt = Result<ApiReady, ApiWaitError>;
    let mut first_refusal: Option<std::time::Instant> = None;
    let result = retry.run(
        |attempt| -> Result<Attempt, String> {
            let addrs = match resolver.lookup(host) {
                Ok(a) => a,
                Err(e) => return Err(format!("waiting for DNS: {e}")),
            };
            if let Err(e) = port_open(&addrs, port) {
                return Err(format!(
                    "waiting for the API server to listen on {host}:{port}: {e}"
                ));
            }
            if let Some(p) = anon {
                if let Err(e) = p.ready() {
                    return Err(format!("waiting for the API server: {e}"));
                }
            }
            let Some(kc) = first_existing(kubeconfigs) else {
                let list: Vec<String> = kubeconfigs.iter().map(|p| p.display().to_string()).collect();
                return Ok(Err(ApiWaitError::Config(format!(
                    "none of the kubeconfigs exists: {} (rolectl activate writes /etc/kubernetes/bootstrap-kubelet.conf when user-data has credentials)",
                    list.join(", ")
                ))));
            };
            match kubectl_readyz(kubectl, kc) {
                Err(e) => Ok(Err(ApiWaitError::Config(e))),
                Ok(Readyz::Ready) => Ok(Ok(ApiReady {
                    kubeconfig: kc.clone(),
                    attempts: attempt,
                })),
                Ok(Readyz::Rejected(m)) => {
                    let since = *first_refusal.get_or_insert_with(std::time::Instant::now);
                    if since.elapsed() >= grace {
                        Ok(Err(ApiWaitError::Rejected {
                            kubeconfig: kc.clone(),
                            message: m,
                            attempts: attempt,
                        }))
                    } else {
                        Err(format!(
                            "the API server refused the credential in {} ({m}); the master may not have created the token yet, trying again for {} more",
                            kc.display(),
                            secs(grace.saturating_sub(since.elapsed()))
                        ))
                    }
                }
                Ok(Readyz::NotReady(m)) => Err(format!(
                    "waiting for the API server (kubeconfig {}): {m}",
                    kc.display()
                )),
            }
        },
        |n, reason, next| match next {
            Some(d) => eprintln!("{reason} (attempt {n}, next in {})", secs(d)),
            None => eprintln!("{reason} (attempt {n}, giving up)"),
        },
    );
    match result {
        Ok(r) => r,
        Err(g) => Err(ApiWaitError::GaveUp(g)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_outcomes() {
        assert_eq!(classify(true, "ok", ""), Readyz::Ready);
        let r = classify(
            false,
            "",
            "error: You must be logged in to the server (Unauthorized)\n",
        );
        assert_eq!(
            r,
            Readyz::Rejected("error: You must be logged in to the server (Unauthorized)".into())
        );
        for (stderr, want) in [
            ("The connection to the server masters.demo.k8s:6443 was refused - did you specify the right host or port?", "was refused"),
            ("Error from server (Forbidden): forbidden: User \"system:anonymous\" cannot get path \"/readyz\"", "Forbidden"),
            ("Error from server (InternalError): an error on the server (\"[-]poststarthook/rbac/bootstrap-roles failed\") has prevented the request from succeeding", "InternalError"),
            ("Unable to connect to the server: net/http: TLS handshake timeout", "TLS handshake timeout"),
        ] {
            match classify(false, "", stderr) {
                Readyz::NotReady(m) => assert!(m.contains(want), "{m}"),
                other => panic!("{stderr}: {other:?}"),
            }
        }
    }

    #[test]
    fn urls() {
        assert!(check_health_url("https://x").is_err());
        assert_eq!(
            expand_url("http://{master}:2379/health", "10.0.0.1".parse().unwrap()),
            "http://10.0.0.1:2379/health"
        );
        assert_eq!(
            expand_url("http://{master}:1/", "::1".parse().unwrap()),
            "http://[::1]:1/"
        );
    }
}
