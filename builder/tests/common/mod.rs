//! Shared by the builder's integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The cache `kubebake build` uses by default (or `KUBEBAKE_CACHE`), so the
/// tests reuse the base root filesystem the README's test command built.
pub fn shared_cache() -> PathBuf {
    std::env::var_os("KUBEBAKE_CACHE")
        .map(PathBuf::from)
        .or_else(kubebake::fetch::default_cache_dir)
        .expect("a cache directory ($HOME or KUBEBAKE_CACHE)")
}

/// The rolectl release binary baked into test images.
pub fn rolectl() -> PathBuf {
    let p = repo_root().join("target/release/rolectl");
    assert!(
        p.is_file(),
        "{} is missing: run `cargo build --release -p rolectl` (scripts/test.sh does)",
        p.display()
    );
    p
}

/// A scratch directory under target/ (same filesystem as the outputs).
pub fn scratch() -> tempfile::TempDir {
    let base = repo_root().join("target/test-builds");
    std::fs::create_dir_all(&base).expect("create target/test-builds");
    tempfile::tempdir_in(&base).expect("tempdir")
}

/// Serves `files` (path → body) over HTTP on 127.0.0.1 until the test ends;
/// returns `http://127.0.0.1:PORT`. Unknown paths get 404.
pub fn serve(files: Vec<(String, Vec<u8>)>) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok() && line.trim() != "" {
                line.clear();
            }
            let path = request.split_whitespace().nth(1).unwrap_or("").to_string();
            let (status, body) = match files.iter().find(|(p, _)| *p == path) {
                Some((_, body)) => ("200 OK", body.clone()),
                None => ("404 Not Found", Vec::new()),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(&body);
        }
    });
    format!("http://{addr}")
}
