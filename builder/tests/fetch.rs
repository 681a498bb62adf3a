#![allow(clippy::unwrap_used)]
//! Fetcher tests against a loopback HTTP server written here for precise
//! control over status codes, truncation and dropped connections.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kubebake::definition::{self, Definition, LoadOptions};
use kubebake::digest::{Algorithm, Digest};
use kubebake::fetch::{fetch_artifacts, FetchError, FetchOptions, RetryPolicy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Clone)]
enum Reply {
    /// 200 with the whole body.
    Full(Vec<u8>),
    /// A bare status with a short body.
    Status(u16),
    /// Content-Length says `declared` but only `body` is sent, then FIN.
    Truncated { body: Vec<u8>, declared: usize },
    /// Chunked body; the connection drops after the first chunk.
    DropMidBody(Vec<u8>),
}

struct Server {
    base: String,
    hits: Arc<AtomicUsize>,
}

impl Server {
    /// `script(n)` answers the n-th request (0-based).
    async fn start(script: impl Fn(usize) -> Reply + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let script = Arc::new(script);
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let n = counter.fetch_add(1, Ordering::SeqCst);
                let reply = script(n);
                tokio::spawn(async move {
                    let mut req = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => req.extend_from_slice(&buf[..k]),
                        }
                    }
                    let _ = write_reply(&mut sock, reply).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        Server {
            base: format!("http://{addr}"),
            hits,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn write_reply(sock: &mut tokio::net::TcpStream, reply: Reply) -> std::io::Result<()> {
    match reply {
        Reply::Full(body) => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            sock.write_all(head.as_bytes()).await?;
            sock.write_all(&body).await
        }
        Reply::Status(code) => {
            let head = format!(
                "HTTP/1.1 {code} Nope\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnope"
            );
            sock.write_all(head.as_bytes()).await
        }
        Reply::Truncated { body, declared } => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {declared}\r\nConnection: close\r\n\r\n"
            );
            sock.write_all(head.as_bytes()).await?;
            sock.write_all(&body).await
        }
        Reply::DropMidBody(body) => {
            let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
            sock.write_all(head.as_bytes()).await?;
            sock.write_all(format!("{:x}\r\n", body.len()).as_bytes())
                .await?;
            sock.write_all(&body).await?;
            sock.write_all(b"\r\n").await
        }
    }
}

fn content(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

fn sha256(data: &[u8]) -> Digest {
    Digest::of_bytes(Algorithm::Sha256, data)
}

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("images")).unwrap();
        Env { dir }
    }

    fn cache(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    /// A definition with artifacts (name, url, digest).
    fn definition(&self, artifacts: &[(&str, &str, Digest)]) -> Definition {
        self.try_definition(artifacts, true).unwrap()
    }

    fn try_definition(
        &self,
        artifacts: &[(&str, &str, Digest)],
        allow_insecure_urls: bool,
    ) -> Result<Definition, definition::DefinitionError> {
        let mut yaml = String::from(
            "name: t\nversion: \"1\"\nbase: { suite: bookworm, mirror: http://deb.debian.org/debian }\n\
             outputs: { raw: true, disk-size: 1GiB }\nartifacts:\n",
        );
        for (name, url, digest) in artifacts {
            yaml.push_str(&format!(
                "  - name: {name}\n    version: \"1\"\n    url: {url}\n    {}: {}\n    install: {{ binary: {{ path: /usr/local/bin/{name}, mode: \"0755\" }} }}\n",
                digest.algorithm(),
                digest.hex()
            ));
        }
        let path = self.dir.path().join("images/t.yaml");
        fs::write(&path, yaml).unwrap();
        definition::load(
            &path,
            &LoadOptions {
                data_root: None,
                allow_insecure_urls,
            },
        )
    }

    fn opts(&self) -> FetchOptions {
        let mut o = FetchOptions::new(self.cache());
        o.retry = RetryPolicy::exponential(Duration::from_millis(5), Duration::from_millis(20))
            .attempts(4);
        o.read_timeout = Duration::from_secs(5);
        o
    }

    fn offline(&self) -> FetchOptions {
        let mut o = self.opts();
        o.offline = true;
        o
    }

    fn tmp_entries(&self) -> usize {
        fs::read_dir(self.cache().join("tmp"))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

fn cached_path(cache: &Path, d: &Digest) -> PathBuf {
    cache.join(d.algorithm().name()).join(d.hex())
}

#[tokio::test]
async fn checksum_match_lands_in_cache_and_is_not_downloaded_again() {
    let env = Env::new();
    let body = content(300_000);
    let b = body.clone();
    let srv = Server::start(move |_| Reply::Full(b.clone())).await;
    let digest = sha256(&body);
    let def = env.definition(&[("kubelet", &srv.url("kubelet"), digest)]);

    let got = fetch_artifacts(&def, &env.opts()).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].name, "kubelet");
    assert_eq!(got[0].path, cached_path(&env.cache(), &digest));
    assert_eq!(got[0].size, body.len() as u64);
    assert_eq!(got[0].sha256, digest);
    assert_eq!(fs::read(&got[0].path).unwrap(), body);
    assert_eq!(srv.hits(), 1);
    assert_eq!(env.tmp_entries(), 0);

    let again = fetch_artifacts(&def, &env.opts()).await.unwrap();
    assert_eq!(again, got);
    assert_eq!(srv.hits(), 1, "cached artifact was downloaded again");
}

#[tokio::test]
async fn sha512_artifact_also_gets_sha256() {
    let env = Env::new();
    let body = content(1000);
    let b = body.clone();
    let srv = Server::start(move |_| Reply::Full(b.clone())).await;
    let digest = Digest::of_bytes(Algorithm::Sha512, &body);
    let def = env.definition(&[("cni", &srv.url("cni"), digest)]);
    let got = fetch_artifacts(&def, &env.opts()).await.unwrap();
    assert_eq!(got[0].digest, digest);
    assert_eq!(got[0].sha256, sha256(&body));
    assert!(got[0].path.starts_with(env.cache().join("sha512")));
}

#[tokio::test]
async fn checksum_mismatch_stores_nothing() {
    let env = Env::new();
    let srv = Server::start(|_| Reply::Full(b"evil bytes".to_vec())).await;
    let expected = sha256(b"good bytes");
    let url = srv.url("kubelet");
    let def = env.definition(&[("kubelet", &url, expected)]);
    let err = fetch_artifacts(&def, &env.opts()).await.unwrap_err();
    assert!(matches!(err, FetchError::Mismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("kubelet"), "{msg}");
    assert!(msg.contains(&url), "{msg}");
    assert!(msg.contains(&expected.hex()), "{msg}");
    assert!(msg.contains(&sha256(b"evil bytes").hex()), "{msg}");
    assert!(!cached_path(&env.cache(), &expected).exists());
    assert_eq!(fs::read_dir(env.cache().join("sha256")).unwrap().count(), 0);
    assert_eq!(env.tmp_entries(), 0);
    assert_eq!(srv.hits(), 1, "a digest mismatch must not be retried");
}

#[tokio::test]
async fn truncated_body_is_retried_then_fails() {
    let env = Env::new();
    let body = content(5000);
    let b = body.clone();
    let srv = Server::start(move |_| Reply::Truncated {
        body: b[..2000].to_vec(),
        declared: 5000,
    })
    .await;
    let def = env.definition(&[("kubelet", &srv.url("kubelet"), sha256(&body))]);
    let err = fetch_artifacts(&def, &env.opts()).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, FetchError::Transfer { attempts: 4, .. }),
        "{msg}"
    );
    assert!(
        msg.contains("kubelet") && msg.contains("4 attempt"),
        "{msg}"
    );
    assert_eq!(srv.hits(), 4);
    assert_eq!(env.tmp_entries(), 0);
}

#[tokio::test]
async fn truncated_body_then_complete_succeeds() {
    let env = Env::new();
    let body = content(5000);
    let b = body.clone();
    let srv = Server::start(move |n| {
        if n < 2 {
            Reply::Truncated {
                body: b[..100].to_vec(),
                declared: 5000,
            }
        } else {
            Reply::Full(b.clone())
        }
    })
    .await;
    let def = env.definition(&[("kubelet", &srv.url("kubelet"), sha256(&body))]);
    let got = fetch_artifacts(&def, &env.opts()).await.unwrap();
    assert_eq!(fs::read(&got[0].path).unwrap(), body);
    assert_eq!(srv.hits(), 3);
    assert_eq!(env.tmp_entries(), 0);
}

#[tokio::test]
async fn dropped_connection_mid_body_is_retried() {
    let env = Env::new();
    let body = content(8000);
    let b = body.clone();
    let srv = Server::start(move |n| {
        if n == 0 {
            Reply::DropMidBody(b[..3000].to_vec())
        } else {
            Reply::Full(b.clone())
        }
    })
    .await;
    let def = env.definition(&[("kubelet", &srv.url("kubelet"), sha256(&body))]);
    let got = fetch_artifacts(&def, &env.opts()).await.unwrap();
    assert_eq!(got[0].size, 8000);
    assert_eq!(srv.hits(), 2);
}

#[tokio::test]
async fn dropped_connection_every_time_fails_clearly() {
    let env = Env::new();
    let body = content(8000);
    let b = body.clone();
    let srv = Server::start(move |_| Reply::DropMidBody(b[..10].to_vec())).await;
    let def = env.definition(&[("kubelet", &srv.url("kubelet"), sha256(&body))]);
    let err = fetch_artifacts(&def, &env.opts()).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("interrupted") && msg.contains("kubelet"),
        "{msg}"
    );
    assert_eq!(srv.hits(), 4);
    assert_eq!(env.tmp_entries(), 0);
}

#[tokio::test]
async fn not_found_is_not_retried() {
    let env = Env::new();
    let srv = Server::start(|_| Reply::Status(404)).await;
    let def = env.definition(&[("kubelet", &srv.url("kubelet"), sha256(b"x"))]);
    let err = fetch_artifacts(&def, &env.opts()).await.unwrap_err();
    assert!(
        matches!(err, FetchError::Status { status: 404, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("404"));
    assert_eq!(srv.hits(), 1);
}

#[tokio::test]
async fn server_errors_and_429_are_retried() {
    let env = Env::new();
    let body = content(100);
    let b = body.clone();
    let srv = Server::start(move |n| match n {
        0 => Reply::Status(500),
        1 => Reply::Status(429),
        _ => Reply::Full(b.clone()),
    })
    .await;
    let def = env.definition(&[("kubelet", &srv.url("kubelet"), sha256(&body))]);
    fetch_artifacts(&def, &env.opts()).await.unwrap();
    assert_eq!(srv.hits(), 3);
}

#[tokio::test]
async fn persistent_500_fails_after_bounded_attempts() {
    let env = Env::new();
    let srv = Server::start(|_| Reply::Status(503)).await;
    let def = env.definition(&[("kubelet", &srv.url("kubelet"), sha256(b"x"))]);
    let err = fetch_artifacts(&def, &env.opts()).await.unwrap_err();
    assert!(err.to_string().contains("503"), "{err}");
    assert_eq!(srv.hits(), 4);
}

#[tokio::test]
async fn offline_with_missing_artifact_names_it_and_touches_no_network() {
    let env = Env::new();
    let srv = Server::start(|_| Reply::Full(b"x".to_vec())).await;
    let def = env.definition(&[("kubelet", &srv.url("kubelet"), sha256(b"x"))]);
    let err = fetch_artifacts(&def, &env.offline()).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, FetchError::Offline { .. }), "{msg}");
    assert!(msg.contains("kubelet"), "{msg}");
    assert!(msg.contains("kubebake fetch"), "{msg}");
    assert!(msg.contains(&env.cache().display().to_string()), "{msg}");
    assert_eq!(srv.hits(), 0);
}

#[tokio::test]
async fn offline_with_cached_artifact_succeeds() {
    let env = Env::new();
    let srv = Server::start(|_| Reply::Full(b"payload".to_vec())).await;
    let def = env.definition(&[("kubelet", &srv.url("kubelet"), sha256(b"payload"))]);
    fetch_artifacts(&def, &env.opts()).await.unwrap();
    let got = fetch_artifacts(&def, &env.offline()).await.unwrap();
    assert_eq!(fs::read(&got[0].path).unwrap(), b"payload");
    assert_eq!(srv.hits(), 1);
}

#[tokio::test]
async fn corrupt_cache_entry_is_refetched_online_and_refused_offline() {
    let env = Env::new();
    let srv = Server::start(|_| Reply::Full(b"payload".to_vec())).await;
    let digest = sha256(b"payload");
    let def = env.definition(&[("kubelet", &srv.url("kubelet"), digest)]);
    let path = cached_path(&env.cache(), &digest);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, b"rotten").unwrap();

    let err = fetch_artifacts(&def, &env.offline()).await.unwrap_err();
    assert!(err.to_string().contains("corrupt"), "{err}");
    assert_eq!(srv.hits(), 0);

    fetch_artifacts(&def, &env.opts()).await.unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"payload");
    assert_eq!(srv.hits(), 1);
}

#[tokio::test]
async fn file_url_with_allow_flag() {
    let env = Env::new();
    let src = env.dir.path().join("kubelet.bin");
    let body = content(70_000);
    fs::write(&src, &body).unwrap();
    let url = url::Url::from_file_path(&src).unwrap().to_string();
    let def = env.definition(&[("kubelet", &url, sha256(&body))]);
    // file:// is local: allowed offline too.
    let got = fetch_artifacts(&def, &env.offline()).await.unwrap();
    assert_eq!(fs::read(&got[0].path).unwrap(), body);

    let wrong = env.definition(&[("kubelet", &url, sha256(b"other"))]);
    let err = fetch_artifacts(&wrong, &env.opts()).await.unwrap_err();
    assert!(matches!(err, FetchError::Mismatch { .. }), "{err}");
    assert_eq!(env.tmp_entries(), 0);
}

#[test]
fn file_url_without_allow_flag_is_refused_at_validation() {
    let env = Env::new();
    let err = env
        .try_definition(&[("kubelet", "file:///srv/kubelet", sha256(b"x"))], false)
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("artifacts[0].url") && msg.contains("--allow-insecure-urls"),
        "{msg}"
    );
}

#[tokio::test]
async fn results_keep_definition_order_and_all_failures_are_reported() {
    let env = Env::new();
    let srv = Server::start(|_| Reply::Full(b"same".to_vec())).await;
    let bad = Server::start(|_| Reply::Status(403)).await;
    let ok: Vec<(String, String, Digest)> = (0..6)
        .map(|i| (format!("a{i}"), srv.url(&format!("a{i}")), sha256(b"same")))
        .collect();
    let refs: Vec<(&str, &str, Digest)> = ok
        .iter()
        .map(|(n, u, d)| (n.as_str(), u.as_str(), *d))
        .collect();
    let def = env.definition(&refs);
    let got = fetch_artifacts(&def, &env.opts()).await.unwrap();
    let names: Vec<_> = got.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["a0", "a1", "a2", "a3", "a4", "a5"]);

    let def = env.definition(&[
        ("first", &bad.url("first"), sha256(b"1")),
        ("second", &bad.url("second"), sha256(b"2")),
    ]);
    let msg = fetch_artifacts(&def, &env.opts())
        .await
        .unwrap_err()
        .to_string();
    assert!(msg.contains("first") && msg.contains("second"), "{msg}");
}
