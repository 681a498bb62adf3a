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
