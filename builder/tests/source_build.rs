//! Artifacts built from pinned sources (`builds:`), with small sources served
//! on loopback HTTP and shell recipes: unpack + patch + recipe contract, the
//! cache (reuse, key changes, nothing cached on failure), the checks on
//! outputs and toolchain, provenance, and a tampered source failing the whole
//! build with no cache entry.

use std::path::{Path, PathBuf};

mod common;

use common::{repo_root, rolectl, serve};
use kubebake::build::{build, BuildOptions};
use kubebake::definition::{self, LoadOptions};
use kubebake::fetch::{fetch_artifacts_blocking, FetchOptions};
use kubebake::progress::Progress;
use kubebake::stages::source_build::{build_all, Built};
use sha2::{Digest as _, Sha256};

const EPOCH: i64 = 1_700_000_000;

/// `hello-1.0/greeting.txt` and `hello-1.0/debian/patches/{series,fix.patch}`.
fn source_tarball() -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    let files: [(&str, &[u8]); 3] = [
        ("hello-1.0/greeting.txt", b"hello\n"),
        (
            "hello-1.0/debian/patches/series",
            b"# applied in order\nfix.patch\n",
        ),
        (
            "hello-1.0/debian/patches/fix.patch",
            b"--- a/greeting.txt\n+++ b/greeting.txt\n@@ -1 +1 @@\n-hello\n+hello, patched by the series\n",
        ),
    ];
    for (path, body) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(EPOCH as u64);
        header.set_cksum();
        builder
            .append_data(&mut header, path, body)
            .expect("append");
    }
    builder.into_inner().expect("tar").finish().expect("gzip")
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn installed_version(package: &str) -> String {
    let out = std::process::Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", package])
        .output()
        .expect("dpkg-query");
    String::from_utf8(out.stdout).expect("utf-8")
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    base: String,
    tarball: Vec<u8>,
    extra: Vec<u8>,
}

const RECIPE: &str = r#"set -euo pipefail
# the patched tree is the working directory
cp greeting.txt "$KUBEBAKE_OUT/greeting"
cp "$KUBEBAKE_SOURCES/notes.txt" "$KUBEBAKE_OUT/notes"
{ echo "version=$KUBEBAKE_VERSION"; echo "epoch=$SOURCE_DATE_EPOCH"; env | sort | cut -d= -f1 | tr '\n' ' '; } > "$KUBEBAKE_OUT/env"
echo recipe ran
"#;

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().to_path_buf();
        for d in ["units", "dropins"] {
            std::os::unix::fs::symlink(repo_root().join(d), root.join(d)).expect("symlink");
        }
        std::fs::create_dir_all(root.join("images/recipes")).expect("mkdir");
        std::fs::write(root.join("images/recipes/hello.sh"), RECIPE).expect("recipe");
        std::fs::write(
            root.join("images/recipes/local.patch"),
            "--- a/greeting.txt\n+++ b/greeting.txt\n@@ -1 +1,2 @@\n hello, patched by the series\n+and by a local patch\n",
        )
        .expect("patch");
        let tarball = source_tarball();
        let extra = b"some notes\n".to_vec();
        let base = serve(vec![
            ("/hello-1.0.tar.gz".into(), tarball.clone()),
            ("/notes.txt".into(), extra.clone()),
        ]);
        Fixture {
            _dir: dir,
            root,
            base,
            tarball,
            extra,
        }
    }

    /// the source-built definition with `builds:` replaced by one build whose
    /// recipe, outputs and toolchain are given.
    fn definition(&self, tarball_sha: &str, outputs: &str, toolchain: &str) -> PathBuf {
        let offline =
            std::fs::read_to_string(repo_root().join("images/k8s-node-source.yaml")).expect("read");
        let start = offline
            .find("\nbuilds:\n")
            .expect("offline definition has builds:");
        let end = offline[start + 1..]
            .find("\n\n")
            .map(|i| start + 1 + i)
            .expect("end of builds:");
        let build = format!(
            "\nbuilds:\n  - name: hello\n    version: \"1.0\"\n    recipe: recipes/hello.sh\n    toolchain: [{toolchain}]\n    sources:\n      - url: {base}/hello-1.0.tar.gz\n        sha256: {tarball_sha}\n        unpack: {{ strip-components: 1 }}\n      - url: {base}/notes.txt\n        sha256: {extra}\n    patches:\n      - series: debian/patches/series\n      - file: recipes/local.patch\n    outputs:\n{outputs}",
            base = self.base,
            extra = sha(&self.extra),
        );
        let mut text = offline.clone();
        text.replace_range(start..end, &build);
        // the source-built image's container images use the kubernetes build.
        let text = match text.find("\ncontainer-images:\n") {
            Some(s) => {
                let e = text[s + 1..]
                    .find("\n\n")
                    .map(|i| s + 1 + i)
                    .unwrap_or(text.len());
                let mut t = text.clone();
                t.replace_range(s..e, "\ncontainer-images: []");
                t
            }
            None => text,
        };
        let path = self.root.join("images/k8s-node-source.yaml");
        std::fs::write(&path, text).expect("write definition");
        path
    }

    fn default_definition(&self) -> PathBuf {
        self.definition(
            &sha(&self.tarball),
            "      - { name: greeting, path: /usr/local/share/greeting, mode: \"0644\" }\n      - { name: notes }\n      - { name: env }",
            &format!("\"bash={}\"", installed_version("bash")),
        )
    }
}

fn run(def: &Path, cache: &Path) -> anyhow::Result<Vec<Built>> {
    let def = definition::load(
        def,
        &LoadOptions {
            data_root: None,
            allow_insecure_urls: true,
        },
    )?;
    let fetched = fetch_artifacts_blocking(&def, &FetchOptions::new(cache.to_path_buf()))?;
    build_all(
        &def,
        &fetched,
        cache,
        Some(EPOCH),
        false,
        &Progress::hidden(),
    )
}

fn cache_entries(cache: &Path) -> Vec<String> {
    std::fs::read_dir(cache.join("builds"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn builds_from_patched_sources_and_reuses_the_cache() {
    let fx = Fixture::new();
    let def = fx.default_definition();
    let cache = fx.root.join("cache");

    let built = run(&def, &cache).expect("first build");
    assert_eq!(built.len(), 1);
    let b = &built[0];
    assert!(!b.reused, "the first build runs the recipe");
    let greeting = std::fs::read_to_string(b.output_path("greeting")).expect("greeting");
    assert_eq!(
        greeting, "hello, patched by the series\nand by a local patch\n",
        "the series patch, then the file patch, applied in order"
    );
    let env = std::fs::read_to_string(b.output_path("env")).expect("env");
    assert!(env.starts_with("version=1.0\nepoch=1700000000\n"), "{env}");
    // A cleared environment: only the contract's variables (bash adds a few
    // of its own: PWD, SHLVL, _ and OLDPWD).
    let names: Vec<&str> = env
        .lines()
        .nth(2)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    for n in &names {
        assert!(
            n.starts_with("KUBEBAKE_")
                || matches!(
                    *n,
                    "HOME"
                        | "TMPDIR"
                        | "PATH"
                        | "LANG"
                        | "SOURCE_DATE_EPOCH"
                        | "PWD"
                        | "SHLVL"
                        | "_"
                        | "OLDPWD"
                ),
            "unexpected variable {n} in the recipe's environment: {names:?}"
        );
    }
    assert_eq!(
        std::fs::read(b.output_path("notes")).expect("notes"),
        fx.extra
    );

    // Provenance: sources, every applied patch, recipe digest, toolchain,
    // every output's digest.
    let p = &b.provenance;
    assert_eq!(p.sources.len(), 2);
    assert_eq!(p.sources[0].sha256, sha(&fx.tarball));
    assert!(p.sources[0].url.ends_with("/hello-1.0.tar.gz"));
    let patches: Vec<&str> = p.patches.iter().map(|x| x.path.as_str()).collect();
    assert_eq!(patches, ["debian/patches/fix.patch", "recipes/local.patch"]);
    assert_eq!(
        p.recipe.as_ref().expect("recipe provenance").sha256,
        sha(RECIPE.as_bytes())
    );
    assert_eq!(p.toolchain[0].package, "bash");
    assert_eq!(p.toolchain[0].version, installed_version("bash"));
    let greeting_info = p
        .outputs
        .iter()
        .find(|o| o.name == "greeting")
        .expect("out");
    assert_eq!(greeting_info.sha256, sha(greeting.as_bytes()));
    let entries = cache_entries(&cache);
    assert_eq!(entries.len(), 1, "{entries:?}");

    // Same inputs: reused, not rebuilt.
    let again = run(&def, &cache).expect("second build");
    assert!(again[0].reused, "unchanged inputs reuse the cache entry");
    assert_eq!(again[0].provenance, b.provenance);

    // A damaged entry is rebuilt, not trusted.
    std::fs::write(b.output_path("greeting"), "tampered\n").expect("tamper");
    let rebuilt = run(&def, &cache).expect("rebuild after damage");
    assert!(!rebuilt[0].reused);
    assert_eq!(
        std::fs::read_to_string(rebuilt[0].output_path("greeting")).expect("greeting"),
        greeting
    );

    // A changed recipe is a new key and a new entry.
    std::fs::write(
        fx.root.join("images/recipes/hello.sh"),
        format!("{RECIPE}echo changed\n"),
    )
    .expect("recipe");
    let changed = run(&def, &cache).expect("build after a recipe change");
    assert!(!changed[0].reused);
    assert_ne!(changed[0].provenance.cache_key, b.provenance.cache_key);
    assert_eq!(cache_entries(&cache).len(), 2);
}

#[test]
fn failures_name_the_problem_and_cache_nothing() {
    let fx = Fixture::new();
    let cache = fx.root.join("cache");
    let bash = format!("\"bash={}\"", installed_version("bash"));

    // An output the recipe does not produce.
    let def = fx.definition(
        &sha(&fx.tarball),
        "      - { name: greeting }\n      - { name: notes }\n      - { name: env }\n      - { name: kubelet }",
        &bash,
    );
    let err = format!("{:#}", run(&def, &cache).expect_err("missing output"));
    assert!(
        err.contains("did not produce the declared output(s) kubelet"),
        "{err}"
    );
    assert!(
        cache_entries(&cache).is_empty(),
        "nothing cached after a failure"
    );

    // A file the recipe writes but the definition does not declare.
    let def = fx.definition(
        &sha(&fx.tarball),
        "      - { name: greeting }\n      - { name: notes }",
        &bash,
    );
    let err = format!("{:#}", run(&def, &cache).expect_err("undeclared output"));
    assert!(err.contains("undeclared file(s) [\"env\"]"), "{err}");
    assert!(cache_entries(&cache).is_empty());

    // A failing recipe: exit status, last lines, and a kept log.
    std::fs::write(
        fx.root.join("images/recipes/hello.sh"),
        "echo compiling; echo 'cc: error: no such file' >&2; exit 3\n",
    )
    .expect("recipe");
    let def = fx.default_definition();
    let err = format!("{:#}", run(&def, &cache).expect_err("failing recipe"));
    assert!(err.contains("exit status: 3"), "{err}");
    assert!(err.contains("cc: error: no such file"), "{err}");
    assert!(err.contains("full log is"), "{err}");
    assert!(cache_entries(&cache).is_empty());
    std::fs::write(fx.root.join("images/recipes/hello.sh"), RECIPE).expect("recipe");

    // A toolchain that is not installed at the pinned version.
    let def = fx.definition(
        &sha(&fx.tarball),
        "      - { name: greeting }\n      - { name: notes }\n      - { name: env }",
        "\"bash=0.0-not-this\", \"kubebake-no-such-package=1.0\"",
    );
    let err = format!("{:#}", run(&def, &cache).expect_err("toolchain"));
    assert!(
        err.contains(&format!(
            "bash is installed at {}, the definition pins 0.0-not-this",
            installed_version("bash")
        )),
        "{err}"
    );
    assert!(
        err.contains("kubebake-no-such-package is not installed"),
        "{err}"
    );
    assert!(cache_entries(&cache).is_empty());
}

#[test]
fn tampered_source_fails_the_build_and_leaves_no_cache_entry() {
    let fx = Fixture::new();
    let wrong = sha(b"the tarball the definition pinned");
    let def = fx.definition(
        &wrong,
        "      - { name: greeting }\n      - { name: notes }\n      - { name: env }",
        &format!("\"bash={}\"", installed_version("bash")),
    );
    let cache = fx.root.join("cache");
    let out = fx.root.join("out");
    let err = build(&BuildOptions {
        definition: def,
        out_dir: out.clone(),
        cache_dir: cache.clone(),
        offline: false,
        load: LoadOptions {
            data_root: None,
            allow_insecure_urls: true,
        },
        rolectl: rolectl(),
        source_date_epoch: Some(EPOCH),
        progress: Progress::hidden(),
        no_wait: false,
    })
    .expect_err("a tampered source must fail the build");
    let msg = format!("{err:#}");
    let url = format!("{}/hello-1.0.tar.gz", fx.base);
    for needle in [
        "source hello-1.0.tar.gz of build hello",
        url.as_str(),
        wrong.as_str(),
        sha(&fx.tarball).as_str(),
    ] {
        assert!(msg.contains(needle), "error {msg:?} does not name {needle}");
    }
    assert!(!cache.join("sha256").join(&wrong).exists());
    assert!(!cache.join("sha256").join(sha(&fx.tarball)).exists());
    assert!(cache_entries(&cache).is_empty());
    let left: Vec<_> = std::fs::read_dir(&out)
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "no output after a failed build: {left:?}");
}
