//! Fetching artifacts into a content-addressed cache.
//!
//! Layout: `<cache>/sha256/<hex>` or `<cache>/sha512/<hex>`, keyed by the
//! *declared* digest, plus `<cache>/tmp/` for downloads in progress. A
//! download is hashed while it streams into a temp file; only on a digest
//! match is it fsynced and renamed into place, so nothing is ever stored under
//! a hash it does not have. Cached files are re-hashed when used; a corrupt
//! one is reported and fetched again (unless offline).
//!
//! Transient failures (connect errors, timeouts, 5xx, 429, bodies cut short)
//! are retried with exponential backoff; other 4xx and digest mismatches are
//! not.

// FetchError carries typed digests and URLs for precise messages; it is only
// built on the cold failure path, so its size does not matter.
#![allow(clippy::result_large_err)]

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::{stream, StreamExt};
use indicatif::ProgressBar;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use url::Url;

use crate::definition::{Definition, Download};
use crate::digest::{Digest, DualHasher, Hashed};
use crate::progress::Progress;

/// One artifact present and verified in the cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fetched {
    pub name: String,
    /// The verified file in the cache.
    pub path: PathBuf,
    /// SHA-256 of the content (recorded in the manifest for every artifact).
    pub sha256: Digest,
    /// The digest declared in the definition.
    pub digest: Digest,
    pub size: u64,
}

/// Bounded retry with exponential backoff: the workspace's one retry
/// policy (`kubebake-contract`'s, rolectl's too; downloads sleep on tokio
/// between its delays).
pub use contract::retry::Backoff as RetryPolicy;

#[derive(Debug, Clone)]
pub struct FetchOptions {
    pub cache_dir: PathBuf,
    /// Refuse any network access; only the cache and `file://` URLs are used.
    pub offline: bool,
    /// Parallel downloads.
    pub concurrency: usize,
    pub retry: RetryPolicy,
    pub connect_timeout: Duration,
    /// Longest silence while reading a response.
    pub read_timeout: Duration,
    pub progress: Progress,
}

impl FetchOptions {
    pub fn new(cache_dir: PathBuf) -> Self {
        FetchOptions {
            cache_dir,
            offline: false,
            concurrency: 4,
            retry: RetryPolicy::exponential(Duration::from_millis(500), Duration::from_secs(8))
                .attempts(4),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            progress: Progress::hidden(),
        }
    }
}

/// `$XDG_CACHE_HOME/kubebake`, else `~/.cache/kubebake`.
pub fn default_cache_dir() -> Option<PathBuf> {
    directories::BaseDirs::new().map(|d| d.cache_dir().join("kubebake"))
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(
        "{artifact}: digest mismatch for {url}: expected {expected}, computed {actual} ({size} bytes); nothing was cached. Check the URL and the digest in the definition"
    )]
    Mismatch {
        artifact: String,
        url: Url,
        expected: Digest,
        actual: Digest,
        size: u64,
    },
    #[error("{artifact}: {url} answered HTTP {status}; not retried: check the URL")]
    Status {
        artifact: String,
        url: Url,
        status: u16,
    },
    #[error("{artifact}: fetching {url} failed after {attempts} attempt(s): {message}")]
    Transfer {
        artifact: String,
        url: Url,
        attempts: u32,
        message: String,
    },
    #[error("{}", offline_message(missing, definition, cache))]
    Offline {
        /// (artifact name, URL, why: "missing" or "corrupt")
        missing: Vec<(String, Url, String)>,
        definition: PathBuf,
        cache: PathBuf,
    },
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
    #[error("{}", many_message(.0))]
    Many(Vec<FetchError>),
}

fn offline_message(missing: &[(String, Url, String)], definition: &Path, cache: &Path) -> String {
    let mut s = format!(
        "offline: {} artifact(s) not available in the cache {}:",
        missing.len(),
        cache.display()
    );
    for (name, url, why) in missing {
        s.push_str(&format!("\n  {name} ({why}): {url}"));
    }
    s.push_str(&format!(
        "\nOn a machine with network access run `kubebake fetch {} --cache {}` and copy that cache directory here (or drop --offline).",
        definition.display(),
        cache.display()
    ));
    s
}

fn many_message(errors: &[FetchError]) -> String {
    let mut s = format!("{} artifacts failed:", errors.len());
    for e in errors {
        s.push_str("\n  ");
        s.push_str(&e.to_string().replace('\n', "\n    "));
    }
    s
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> FetchError {
    let context = context.into();
    move |source| FetchError::Io { context, source }
}

/// The content-addressed cache directory.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Cache { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<cache>/<algorithm>/<hex>`.
    pub fn path_for(&self, digest: &Digest) -> PathBuf {
        self.root.join(digest.algorithm().name()).join(digest.hex())
    }

    /// Where downloads in progress live.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Re-hashes a cached artifact. `Ok(None)`: not cached.
    /// `Err(actual)`: cached but corrupt.
    pub async fn verify(
        &self,
        digest: &Digest,
    ) -> Result<Option<Result<Hashed, Hashed>>, FetchError> {
        let path = self.path_for(digest);
        if !path.is_file() {
            return Ok(None);
        }
        let alg = digest.algorithm();
        let p = path.clone();
        let hashed = tokio::task::spawn_blocking(move || {
            std::fs::File::open(&p)
                .and_then(|f| DualHasher::hash_reader(alg, io::BufReader::new(f)))
        })
        .await
        .map_err(|e| FetchError::Io {
            context: format!("hashing {}", path.display()),
            source: io::Error::other(e),
        })?
        .map_err(io_err(format!("hashing cached file {}", path.display())))?;
        if hashed.declared == *digest && hashed.size > 0 {
            Ok(Some(Ok(hashed)))
        } else {
            Ok(Some(Err(hashed)))
        }
    }
}

/// Fetches every artifact and build source of `def` (bounded concurrency) and returns them in
/// definition order. All failures are reported, not only the first.
pub async fn fetch_artifacts(
    def: &Definition,
    opts: &FetchOptions,
) -> Result<Vec<Fetched>, FetchError> {
    let cache = Cache::new(&opts.cache_dir);
    for dir in [
        cache.tmp_dir(),
        cache.root().join("sha256"),
        cache.root().join("sha512"),
    ] {
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(io_err(format!(
                "creating cache directory {}",
                dir.display()
            )))?;
    }

    let downloads = def.downloads();
    // Offline: find everything missing up front and fail before any work.
    if opts.offline {
        let mut missing = Vec::new();
        for a in &downloads {
            if a.url.scheme() == "file" {
                continue;
            }
            match cache.verify(&a.digest).await? {
                Some(Ok(_)) => {}
                Some(Err(actual)) => missing.push((
                    a.label.clone(),
                    a.url.clone(),
                    format!(
                        "cached file {} is corrupt: computed {}",
                        cache.path_for(&a.digest).display(),
                        actual.declared
                    ),
                )),
                None => missing.push((a.label.clone(), a.url.clone(), "missing".to_string())),
            }
        }
        if !missing.is_empty() {
            return Err(FetchError::Offline {
                missing,
                definition: def.source.clone(),
                cache: cache.root().to_path_buf(),
            });
        }
    }

    let client = if opts.offline {
        None
    } else {
        Some(
            reqwest::Client::builder()
                .user_agent(concat!("kubebake/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(opts.connect_timeout)
                .read_timeout(opts.read_timeout)
                .build()
                .map_err(|e| FetchError::Io {
                    context: "creating the HTTP client".to_string(),
                    source: io::Error::other(e),
                })?,
        )
    };

    let results: Vec<Result<Fetched, FetchError>> = stream::iter(downloads.iter())
        .map(|a| fetch_one(a, &cache, client.as_ref(), opts))
        .buffered(opts.concurrency.max(1))
        .collect()
        .await;

    let mut fetched = Vec::new();
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(f) => fetched.push(f),
            Err(e) => errors.push(e),
        }
    }
    match errors.len() {
        0 => Ok(fetched),
        1 => Err(errors.remove(0)),
        _ => Err(FetchError::Many(errors)),
    }
}

/// [`fetch_artifacts`] on a runtime of its own, for synchronous callers.
pub fn fetch_artifacts_blocking(
    def: &Definition,
    opts: &FetchOptions,
) -> Result<Vec<Fetched>, FetchError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(io_err("starting the async runtime"))?;
    rt.block_on(fetch_artifacts(def, opts))
}

async fn fetch_one(
    a: &Download,
    cache: &Cache,
    client: Option<&reqwest::Client>,
    opts: &FetchOptions,
) -> Result<Fetched, FetchError> {
    let dest = cache.path_for(&a.digest);
    // One fetch of a digest at a time across builds sharing the cache: a
    // second one waits, then finds it cached.
    let lock_root = cache.root().to_path_buf();
    let entry = entry_name(&a.digest);
    let _lock = tokio::task::spawn_blocking(move || crate::locks::entry(&lock_root, &entry))
        .await
        .map_err(io::Error::other)
        .and_then(|locked| locked.map_err(|e| io::Error::other(format!("{e:#}"))))
        .map_err(|source| FetchError::Io {
            context: format!("locking the cache entry of {}", a.label),
            source,
        })?;
    match cache.verify(&a.digest).await? {
        Some(Ok(h)) => {
            tracing::debug!(artifact = %a.name, path = %dest.display(), "cached");
            return Ok(fetched(a, dest, h));
        }
        Some(Err(actual)) => {
            tracing::warn!(
                "{}: cached file {} is corrupt (expected {}, computed {}, {} bytes); fetching it again",
                a.label,
                dest.display(),
                a.digest,
                actual.declared,
                actual.size
            );
            tokio::fs::remove_file(&dest).await.map_err(io_err(format!(
                "removing corrupt cache file {}",
                dest.display()
            )))?;
        }
        None => {}
    }

    let hashed = if a.url.scheme() == "file" {
        copy_file(a, cache, opts).await?
    } else {
        let Some(client) = client else {
            return Err(FetchError::Offline {
                missing: vec![(a.label.clone(), a.url.clone(), "missing".to_string())],
                definition: PathBuf::new(),
                cache: cache.root().to_path_buf(),
            });
        };
        download_with_retry(a, cache, client, opts).await?
    };
    Ok(fetched(a, dest, hashed))
}

fn fetched(a: &Download, path: PathBuf, h: Hashed) -> Fetched {
    Fetched {
        name: a.name.clone(),
        path,
        sha256: h.sha256,
        digest: a.digest,
        size: h.size,
    }
}

/// The name of a digest's cache entry in locks and temporaries: `sha256-<hex>`.
pub fn entry_name(digest: &Digest) -> String {
    format!("{}-{}", digest.algorithm().name(), digest.hex())
}

/// Streams bytes into a temp file under `<cache>/tmp`, hashing as it goes.
struct Sink {
    tmp: tempfile::TempPath,
    _interrupted: crate::children::Temporary,
    file: tokio::fs::File,
    hasher: DualHasher,
    bar: ProgressBar,
}

impl Sink {
    /// `size`: the length announced (HTTP Content-Length, a file's size),
    /// checked against the cache's free space before anything is written.
    async fn create(
        a: &Download,
        cache: &Cache,
        size: Option<u64>,
        bar: ProgressBar,
    ) -> Result<Self, FetchError> {
        if let Some(size) = size {
            crate::space::require(
                &cache.tmp_dir(),
                size,
                &format!("{} ({})", a.label, a.url),
                "free some space or use another --cache",
            )
            .map_err(|e| FetchError::Io {
                context: format!("{}: not fetched", a.label),
                source: io::Error::new(io::ErrorKind::StorageFull, format!("{e:#}")),
            })?;
        }
        let tmp = tempfile::Builder::new()
            .prefix(&crate::sweep::temp_prefix(&entry_name(&a.digest)))
            .suffix(".part")
            .tempfile_in(cache.tmp_dir())
            .map_err(io_err(format!(
                "creating a temp file in {}",
                cache.tmp_dir().display()
            )))?;
        let (std_file, path) = tmp.into_parts();
        Ok(Sink {
            _interrupted: crate::children::temporary(&path),
            tmp: path,
            file: tokio::fs::File::from_std(std_file),
            hasher: DualHasher::new(a.digest.algorithm()),
            bar,
        })
    }

    async fn write(&mut self, chunk: &[u8]) -> Result<(), FetchError> {
        self.hasher.update(chunk);
        self.bar.inc(chunk.len() as u64);
        let path = self.tmp.to_path_buf();
        self.file.write_all(chunk).await.map_err(|source| {
            let context = if crate::space::io_is_full(&source) {
                format!(
                    "writing {}: the cache ran out of space after {} bytes; free some space or use another --cache (the partial download was removed)",
                    path.display(),
                    self.hasher.size()
                )
            } else {
                format!("writing {}", path.display())
            };
            FetchError::Io { context, source }
        })
    }

    fn size(&self) -> u64 {
        self.hasher.size()
    }

    /// Verifies the digest; on a match fsyncs and renames into the cache.
    /// On a mismatch the temp file is removed (dropping `TempPath`).
    async fn finish(mut self, a: &Download, cache: &Cache) -> Result<Hashed, FetchError> {
        self.bar.finish_and_clear();
        let hashed = self.hasher.finish();
        if hashed.declared != a.digest {
            return Err(FetchError::Mismatch {
                artifact: a.label.clone(),
                url: a.url.clone(),
                expected: a.digest,
                actual: hashed.declared,
                size: hashed.size,
            });
        }
        let tmp_path = self.tmp.to_path_buf();
        self.file
            .flush()
            .await
            .map_err(io_err(format!("writing {}", tmp_path.display())))?;
        self.file
            .sync_all()
            .await
            .map_err(io_err(format!("syncing {}", tmp_path.display())))?;
        drop(self.file);
        let dest = cache.path_for(&a.digest);
        self.tmp.persist(&dest).map_err(|e| FetchError::Io {
            context: format!("moving {} to {}", tmp_path.display(), dest.display()),
            source: e.error,
        })?;
        if let Some(dir) = dest.parent() {
            // Make the rename durable.
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        tracing::info!(artifact = %a.name, path = %dest.display(), size = hashed.size, "verified and cached");
        Ok(hashed)
    }
}

async fn copy_file(a: &Download, cache: &Cache, opts: &FetchOptions) -> Result<Hashed, FetchError> {
    let src = a.url.to_file_path().map_err(|()| FetchError::Transfer {
        artifact: a.label.clone(),
        url: a.url.clone(),
        attempts: 1,
        message: "not a local file path".to_string(),
    })?;
    let mut f = tokio::fs::File::open(&src).await.map_err(io_err(format!(
        "{}: opening {}",
        a.label,
        src.display()
    )))?;
    let total = f.metadata().await.ok().map(|m| m.len());
    let mut sink = Sink::create(a, cache, total, opts.progress.transfer(&a.name, total)).await?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).await.map_err(io_err(format!(
            "{}: reading {}",
            a.label,
            src.display()
        )))?;
        if n == 0 {
            break;
        }
        sink.write(&buf[..n]).await?;
    }
    sink.finish(a, cache).await
}

/// One failed attempt.
enum AttemptError {
    /// Worth another try.
    Transient(String),
    /// Final.
    Fatal(Box<FetchError>),
}

impl fmt::Display for AttemptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttemptError::Transient(m) => f.write_str(m),
            AttemptError::Fatal(e) => e.fmt(f),
        }
    }
}

async fn download_with_retry(
    a: &Download,
    cache: &Cache,
    client: &reqwest::Client,
    opts: &FetchOptions,
) -> Result<Hashed, FetchError> {
    let max = opts.retry.max_attempts.unwrap_or(u32::MAX);
    let started = std::time::Instant::now();
    let mut attempt = 1;
    loop {
        match download_once(a, cache, client, opts).await {
            Ok(h) => return Ok(h),
            Err(AttemptError::Fatal(e)) => return Err(*e),
            Err(AttemptError::Transient(message)) => {
                let Some(delay) = opts.retry.next_delay(attempt, started.elapsed()) else {
                    return Err(FetchError::Transfer {
                        artifact: a.label.clone(),
                        url: a.url.clone(),
                        attempts: attempt,
                        message,
                    });
                };
                tracing::warn!(
                    "{}: attempt {attempt}/{max} failed: {message}; retrying in {delay:?}",
                    a.label
                );
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
        }
    }
}

async fn download_once(
    a: &Download,
    cache: &Cache,
    client: &reqwest::Client,
    opts: &FetchOptions,
) -> Result<Hashed, AttemptError> {
    let resp = client
        .get(a.url.clone())
        .send()
        .await
        .map_err(|e| AttemptError::Transient(format!("request failed: {}", error_chain(&e))))?;
    let status = resp.status();
    if !status.is_success() {
        if status.is_server_error()
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS
            || status == reqwest::StatusCode::REQUEST_TIMEOUT
        {
            return Err(AttemptError::Transient(format!("HTTP {status}")));
        }
        return Err(AttemptError::Fatal(Box::new(FetchError::Status {
            artifact: a.label.clone(),
            url: a.url.clone(),
            status: status.as_u16(),
        })));
    }
    let expected_len = resp.content_length();
    let mut sink = Sink::create(
        a,
        cache,
        expected_len,
        opts.progress.transfer(&a.name, expected_len),
    )
    .await
    .map_err(fatal)?;
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| {
            AttemptError::Transient(format!(
                "download interrupted after {} bytes: {}",
                sink.size(),
                error_chain(&e)
            ))
        })?;
        sink.write(&chunk).await.map_err(fatal)?;
    }
    if let Some(n) = expected_len {
        if sink.size() != n {
            return Err(AttemptError::Transient(format!(
                "truncated body: got {} of {n} bytes",
                sink.size()
            )));
        }
    }
    sink.finish(a, cache).await.map_err(fatal)
}

fn fatal(e: FetchError) -> AttemptError {
    AttemptError::Fatal(Box::new(e))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        s.push_str(": ");
        s.push_str(&src.to_string());
        cur = src.source();
    }
    s
}
