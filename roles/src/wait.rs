//! Waiting for things (with [`contract::retry`]): name resolution
//! (system resolver in production, a direct DNS query for tests) and the
//! API server probes behind `rolectl wait-master`.

use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
#[cfg(feature = "test-dns")]
use std::time::Instant;

use contract::retry::{Backoff, GaveUp};
#[cfg(feature = "test-dns")]
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
#[cfg(feature = "test-dns")]
use hickory_proto::rr::{Name, RData, RecordType};

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
    pub fn lookup(&self, host: &str) -> Result<Vec<IpAddr>, LookupError> {
        if let Some(ip) = ip_literal(host) {
            return Ok(vec![ip]);
        }
        let mut v = match self {
            Resolver::System => (host, 0)
                .to_socket_addrs()
                .map_err(|err| LookupError::Resolve {
                    host: host.to_string(),
                    err,
                })?
                .map(|sa| sa.ip())
                .collect::<Vec<_>>(),
            #[cfg(not(feature = "test-dns"))]
            Resolver::Direct(server) => return Err(LookupError::NoTestDns(*server)),
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
            return Err(LookupError::NoAddresses(host.to_string()));
        }
        Ok(v)
    }
}

/// Why a name gave no address.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("cannot resolve {host}: {err}")]
    Resolve { host: String, err: io::Error },
    #[error("{0} has no addresses")]
    NoAddresses(String),
    #[cfg(not(feature = "test-dns"))]
    #[error("cannot query {0}: rolectl was built without the test-dns feature")]
    NoTestDns(SocketAddr),
    #[cfg(feature = "test-dns")]
    #[error("invalid DNS name {host}: {err}")]
    DnsName {
        host: String,
        err: hickory_proto::ProtoError,
    },
    #[cfg(feature = "test-dns")]
    #[error("encoding DNS query: {0}")]
    DnsEncode(hickory_proto::ProtoError),
    #[cfg(feature = "test-dns")]
    #[error("DNS socket: {0}")]
    DnsSocket(io::Error),
    #[cfg(feature = "test-dns")]
    #[error("DNS server {server}: {err}")]
    DnsSend { server: SocketAddr, err: io::Error },
    #[cfg(feature = "test-dns")]
    #[error("DNS server {server}: no answer ({err})")]
    DnsNoAnswer { server: SocketAddr, err: io::Error },
    #[cfg(feature = "test-dns")]
    #[error("bad DNS answer: {0}")]
    DnsAnswer(hickory_proto::serialize::binary::DecodeError),
    #[cfg(feature = "test-dns")]
    #[error("DNS server {server} answered {code}")]
    DnsCode {
        server: SocketAddr,
        code: ResponseCode,
    },
}

#[cfg(feature = "test-dns")]
/// One DNS query over UDP with hickory-proto's message codec (no async
/// runtime needed). NXDOMAIN and empty answers are `Ok(vec![])`.
pub fn dns_query(
    server: SocketAddr,
    host: &str,
    rtype: RecordType,
) -> Result<Vec<IpAddr>, LookupError> {
    let name = Name::from_ascii(format!("{host}.")).map_err(|err| LookupError::DnsName {
        host: host.to_string(),
        err,
    })?;
    let id: u16 = (std::process::id() as u16) ^ (Instant::now().elapsed().subsec_nanos() as u16);
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(name, rtype));
    let bytes = msg.to_vec().map_err(LookupError::DnsEncode)?;
    let bind: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let sock = std::net::UdpSocket::bind(bind).map_err(LookupError::DnsSocket)?;
    sock.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(LookupError::DnsSocket)?;
    let send = |err| LookupError::DnsSend { server, err };
    sock.connect(server).map_err(send)?;
    sock.send(&bytes).map_err(send)?;
    let mut buf = [0u8; 4096];
    loop {
        let n = sock
            .recv(&mut buf)
            .map_err(|err| LookupError::DnsNoAnswer { server, err })?;
        let resp = Message::from_vec(&buf[..n]).map_err(LookupError::DnsAnswer)?;
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
            code => Err(LookupError::DnsCode { server, code }),
        };
    }
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
pub fn port_open(addrs: &[IpAddr], port: u16) -> Result<(), PortClosed> {
    let mut refused = Vec::new();
    for a in addrs {
        let sa = SocketAddr::new(*a, port);
        match std::net::TcpStream::connect_timeout(&sa, Duration::from_secs(3)) {
            Ok(_) => return Ok(()),
            Err(e) => refused.push((sa, e)),
        }
    }
    Err(PortClosed(refused))
}

/// No address accepted a connection: each address and its error.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.iter().map(|(a, e)| format!("{a}: {e}")).collect::<Vec<_>>().join("; "))]
pub struct PortClosed(pub Vec<(SocketAddr, io::Error)>);

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
    pub fn ready(&self) -> Result<(), ProbeError> {
        let url = format!("{}/readyz", self.server.trim_end_matches('/'));
        let out = Command::new(&self.curl)
            .args(["--silent", "--show-error", "--max-time", "10", "--cacert"])
            .arg(&self.ca)
            .args(["--output", "/dev/null", "--write-out", "%{http_code}"])
            .arg(&url)
            .stdin(Stdio::null())
            .output()
            .map_err(|err| ProbeError::CannotRun {
                program: self.curl.clone(),
                err,
            })?;
        let code = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && code == "200" {
            return Ok(());
        }
        Err(if out.status.success() {
            ProbeError::Status { url, code }
        } else {
            let message = summary(&String::from_utf8_lossy(&out.stderr));
            ProbeError::Failed { url, message }
        })
    }
}

/// Why a probe of the API server (curl or kubectl) did not say "ready".
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The program could not be run: a broken image, not a waiting matter.
    #[error("cannot run {program}: {err}")]
    CannotRun { program: PathBuf, err: io::Error },
    #[error("{url} answered HTTP {code}")]
    Status { url: String, code: String },
    /// curl's first line.
    #[error("{url}: {message}")]
    Failed { url: String, message: String },
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

/// `rolectl wait-master --resolve-only`: wait until the master's name
/// resolves; its addresses and the attempt it took.
pub fn wait_resolve(
    host: &str,
    resolver: Resolver,
    retry: Backoff,
) -> Result<(Vec<IpAddr>, u32), GaveUp<LookupError>> {
    retry.run(
        |attempt| resolver.lookup(host).map(|a| (a, attempt)),
        |n, reason, next| match next {
            Some(d) => eprintln!(
                "waiting for master {host}: {reason} (attempt {n}, next in {})",
                secs(d)
            ),
            None => eprintln!("waiting for master {host}: {reason} (attempt {n}, giving up)"),
        },
    )
}

/// Why the node's own kubeconfig is not there yet (`wait-master
/// --node-kubeconfig`): the line logged, and the reason given on timeout.
#[derive(Debug, thiserror::Error)]
pub enum NotWritten {
    #[error("{0} does not exist yet (the kubelet writes it once the master has signed the node's client certificate)")]
    Absent(PathBuf),
    #[error("{0} is empty (the kubelet is writing it)")]
    Empty(PathBuf),
    #[error("{0} is not a regular file")]
    NotAFile(PathBuf),
    #[error("cannot read {path}: {err}")]
    Unreadable { path: PathBuf, err: io::Error },
}

/// Whether `file` exists and holds something.
fn written(file: &Path) -> Result<(), NotWritten> {
    match std::fs::metadata(file) {
        Ok(m) if m.is_file() && m.len() > 0 => Ok(()),
        Ok(m) if m.is_file() => Err(NotWritten::Empty(file.to_path_buf())),
        Ok(_) => Err(NotWritten::NotAFile(file.to_path_buf())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err(NotWritten::Absent(file.to_path_buf()))
        }
        Err(err) => Err(NotWritten::Unreadable {
            path: file.to_path_buf(),
            err,
        }),
    }
}

/// `rolectl wait-master --node-kubeconfig FILE`: wait until the kubeconfig
/// the kubelet writes after its TLS bootstrap exists and is not empty; the
/// attempt it took. No DNS, no API server, no kubectl: the file exists only
/// once the master signed the node's certificate, and its user (kube-proxy)
/// retries the API server itself.
pub fn wait_written(file: &Path, retry: Backoff) -> Result<u32, GaveUp<NotWritten>> {
    retry.run(
        |attempt| written(file).map(|()| attempt),
        |n, reason, next| match next {
            Some(d) => eprintln!(
                "waiting for the node's kubeconfig: {reason} (attempt {n}, next in {})",
                secs(d)
            ),
            None => {
                eprintln!("waiting for the node's kubeconfig: {reason} (attempt {n}, giving up)")
            }
        },
    )
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
pub fn kubectl_readyz(kubectl: &Path, kubeconfig: &Path) -> Result<Readyz, ProbeError> {
    let mut child = Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["get", "--raw=/readyz", "--request-timeout=5s"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| ProbeError::CannotRun {
            program: kubectl.to_path_buf(),
            err,
        })?;
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

/// Why one attempt of [`wait_api_server`] found the API server not ready:
/// the line logged, and the reason given when the wait times out.
#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    #[error("waiting for DNS: {0}")]
    Dns(LookupError),
    #[error("waiting for the API server to listen on {host}:{port}: {closed}")]
    Closed {
        host: String,
        port: u16,
        closed: PortClosed,
    },
    /// The anonymous /readyz did not answer 200.
    #[error("waiting for the API server: {0}")]
    Anonymous(ProbeError),
    /// A 401 within the grace period ([`REJECT_GRACE`]).
    #[error("the API server refused the credential in {kubeconfig} ({message}); the master may not have created the token yet, trying again for {} more", secs(*.left))]
    Refused {
        kubeconfig: PathBuf,
        message: String,
        left: Duration,
    },
    /// kubectl's first line (refused, 403/500 while starting, …).
    #[error("waiting for the API server (kubeconfig {kubeconfig}): {message}")]
    Starting {
        kubeconfig: PathBuf,
        message: String,
    },
}

/// Why `wait_api_server` stopped without the API server being ready.
#[derive(Debug, thiserror::Error)]
pub enum ApiWaitError {
    /// The retry policy gave up (timeout).
    #[error("gave up after {} attempts: {}", .0.attempts, .0.last_error)]
    GaveUp(GaveUp<NotReady>),
    /// The credential in `kubeconfig` was rejected; retrying cannot help.
    #[error("the credential in {kubeconfig} was rejected: {message}")]
    Rejected {
        kubeconfig: PathBuf,
        message: String,
        /// Attempts made, the refused ones included.
        attempts: u32,
    },
    /// No kubeconfig exists, or kubectl cannot run: not a waiting matter.
    #[error(transparent)]
    Config(ApiConfigError),
}

/// `wait-master --kubeconfig` cannot ask the API server at all.
#[derive(Debug, thiserror::Error)]
pub enum ApiConfigError {
    #[error("none of the kubeconfigs exists: {} (rolectl activate writes /etc/kubernetes/bootstrap-kubelet.conf when user-data has credentials)", list(.0))]
    NoKubeconfig(Vec<PathBuf>),
    #[error(transparent)]
    Kubectl(ProbeError),
}

fn list(paths: &[PathBuf]) -> String {
    let v: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    v.join(", ")
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
        |attempt| -> Result<Attempt, NotReady> {
            let addrs = resolver.lookup(host).map_err(NotReady::Dns)?;
            port_open(&addrs, port).map_err(|closed| NotReady::Closed {
                host: host.to_string(),
                port,
                closed,
            })?;
            if let Some(p) = anon {
                p.ready().map_err(NotReady::Anonymous)?;
            }
            let Some(kc) = first_existing(kubeconfigs) else {
                return Ok(Err(ApiWaitError::Config(ApiConfigError::NoKubeconfig(
                    kubeconfigs.to_vec(),
                ))));
            };
            match kubectl_readyz(kubectl, kc) {
                Err(e) => Ok(Err(ApiWaitError::Config(ApiConfigError::Kubectl(e)))),
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
                        Err(NotReady::Refused {
                            kubeconfig: kc.clone(),
                            message: m,
                            left: grace.saturating_sub(since.elapsed()),
                        })
                    }
                }
                Ok(Readyz::NotReady(m)) => Err(NotReady::Starting {
                    kubeconfig: kc.clone(),
                    message: m,
                }),
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
    fn node_kubeconfig_must_exist_and_hold_something() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("kubelet.conf");
        let e = written(&f).unwrap_err().to_string();
        assert!(e.ends_with("kubelet.conf does not exist yet (the kubelet writes it once the master has signed the node's client certificate)"), "{e}");
        std::fs::write(&f, "").unwrap();
        assert!(matches!(written(&f), Err(NotWritten::Empty(_))));
        assert!(matches!(written(d.path()), Err(NotWritten::NotAFile(_))));
        std::fs::write(&f, "apiVersion: v1\n").unwrap();
        written(&f).unwrap();
        let retry = Backoff::every(Duration::from_millis(10)).attempts(3);
        assert_eq!(wait_written(&f, retry).unwrap(), 1);
        let gone = d.path().join("never.conf");
        let g = wait_written(&gone, retry).unwrap_err();
        assert_eq!(g.attempts, 3);
        assert!(matches!(g.last_error, NotWritten::Absent(_)));
    }

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
}
