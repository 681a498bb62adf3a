#![allow(clippy::unwrap_used)]
//! Faults of the build itself, with the `kubebake` binary as a user runs it:
//! builds killed at several stages (SIGINT, SIGTERM, SIGKILL), two builds
//! into one output directory, and a cache or output directory that is too
//! small (size-limited tmpfs mounts: the tests run as root, as CI does).
//!
//! Each test checks the output directory, the cache, the process table and
//! the build that follows. They build the k8s-node-source image from the shared
//! cache (warm after the README's test command) and run one at a time.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::Mutex;
use std::time::{Duration, Instant};

mod common;

use common::{repo_root, rolectl, scratch, shared_cache};
use sha2::{Digest as _, Sha256};

/// The heavy tests share two cores: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const IMAGE: &str = "k8s-node-source";

fn build_command(out: &Path, rolectl: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kubebake"));
    cmd.arg("--cache")
        .arg(shared_cache())
        .arg("build")
        .arg(repo_root().join(format!("images/{IMAGE}.yaml")))
        .arg("--out")
        .arg(out)
        .arg("--rolectl")
        .arg(rolectl)
        .args(extra)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .current_dir(repo_root());
    cmd
}

/// A build running in the background, its stderr lines arriving on a
/// channel (and kept, for messages).
struct Running {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn start(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits for a stderr line starting with `prefix`.
    fn wait_line(&mut self, prefix: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let hit = line.starts_with(prefix);
                    self.seen.push(line);
                    if hit {
                        return;
                    }
                }
                Err(_) => panic!(
                    "no line starting with {prefix:?} within {timeout:?}; stderr so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal} {}", self.pid());
    }

    /// Waits for the build to end; returns its exit code (None: a signal).
    fn finish(mut self) -> (Option<i32>, String) {
        let status = self.child.wait().unwrap();
        // The reader thread ends at EOF.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        (status.code(), self.seen.join("\n"))
    }
}

/// Processes whose command line mentions any of `markers`.
fn processes_mentioning(markers: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.parse::<u32>().is_err() {
            continue;
        }
        let Ok(raw) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        if markers.iter().any(|m| cmdline.contains(m.as_str())) {
            found.push(format!("{name}: {cmdline}"));
        }
    }
    found
}

/// Processes running the kubebake binary under test (builds, reapers).
fn kubebake_processes() -> Vec<String> {
    let exe = fs::canonicalize(env!("CARGO_BIN_EXE_kubebake")).unwrap();
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.parse::<u32>().is_err() {
            continue;
        }
        if fs::read_link(entry.path().join("exe")).is_ok_and(|p| p == exe) {
            found.push(name);
        }
    }
    found
}

/// Polls `check` until it returns an empty list or `timeout` passes.
fn settles<T: std::fmt::Debug>(timeout: Duration, check: impl Fn() -> Vec<T>) -> Vec<T> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = check();
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn stagings(out: &Path) -> Vec<String> {
    names_in(out)
        .into_iter()
        .filter(|n| n.starts_with(".kubebake-"))
        .collect()
}

/// In-memory root trees of the build with process id `pid`.
fn memory_roots(pid: i32) -> Vec<String> {
    names_in(Path::new("/dev/shm"))
        .into_iter()
        .filter(|n| n.starts_with(&format!("kubebake-{IMAGE}-root-{pid}-")))
        .collect()
}

/// Cache temporaries no running build holds.
fn stale_cache_temporaries() -> Vec<PathBuf> {
    kubebake::sweep::cache_temporaries(&shared_cache())
        .into_iter()
        .filter(|(_, held)| !held)
        .map(|(p, _)| p)
        .collect()
}

fn outputs() -> Vec<String> {
    let mut v: Vec<String> = ["initrd", "manifest.json", "qcow2", "raw", "vmlinuz"]
        .iter()
        .map(|ext| format!("{IMAGE}.{ext}"))
        .collect();
    v.sort();
    v
}

fn sha256_of(path: &Path) -> String {
    let mut f = fs::File::open(path).unwrap();
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).unwrap();
    hex::encode(h.finalize())
}

/// Every output beside the manifest is the one the manifest describes.
fn manifest_matches(out: &Path) -> BTreeMap<String, String> {
    let m: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join(format!("{IMAGE}.manifest.json"))).unwrap())
            .unwrap();
    let mut shas = BTreeMap::new();
    for o in m["outputs"].as_array().unwrap() {
        let file = o["file"].as_str().unwrap();
        let got = sha256_of(&out.join(file));
        assert_eq!(
            o["sha256"].as_str().unwrap(),
            got,
            "{file} is not the file its manifest describes"
        );
        shas.insert(file.to_string(), got);
    }
    shas
}

/// (size, mtime, inode) of each output: unchanged means untouched.
fn identities(out: &Path) -> BTreeMap<String, (u64, i64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    outputs()
        .into_iter()
        .map(|n| {
            let m = fs::metadata(out.join(&n)).unwrap();
            (
                n,
                (m.len(), m.mtime_nsec() + m.mtime() * 1_000_000_000, m.ino()),
            )
        })
        .collect()
}

/// Kills a build at one stage and checks what is left: `delay` after the
/// previous stage ended, and once `child_marker` (a host tool of the stage)
/// runs, if given.
fn kill_at(
    out: &Path,
    after: &str,
    child_marker: Option<&str>,
    delay: Duration,
    signal: &str,
) -> i32 {
    let mut b = Running::start(build_command(out, &rolectl(), &[]));
    b.wait_line(&format!("✓ {after}"), Duration::from_secs(600));
    let pid = b.pid();
    let markers = vec![out.display().to_string(), format!("{IMAGE}-root-{pid}-")];
    if let Some(tool) = child_marker {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let procs = processes_mentioning(&markers);
            if procs.iter().any(|p| p.contains(tool)) {
                break;
            }
            assert!(Instant::now() < deadline, "{tool} never ran: {procs:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    std::thread::sleep(delay);
    b.signal(signal);
    let (code, stderr) = b.finish();
    eprintln!("killed with SIG{signal} after '{after}': exit {code:?}");
    match signal {
        "INT" => assert_eq!(code, Some(130), "{stderr}"),
        "TERM" => assert_eq!(code, Some(143), "{stderr}"),
        _ => assert_eq!(code, None, "{stderr}"),
    }
    // No child of the build is left, whatever the signal.
    let left = settles(Duration::from_secs(10), || processes_mentioning(&markers));
    assert!(
        left.is_empty(),
        "processes left behind by SIG{signal}: {left:?}"
    );
    let left = settles(Duration::from_secs(10), kubebake_processes);
    assert!(
        left.is_empty(),
        "kubebake processes (reaper?) left: {left:?}"
    );
    // Never anything that looks complete.
    assert!(
        !out.join(format!("{IMAGE}.manifest.json")).exists() || signal == "KILL",
        "a manifest appeared"
    );
    if signal != "KILL" {
        // Caught signals clean up at once (the reaper removes the files once
        // the build is gone): staging, memory tree, cache temporaries.
        let left = settles(Duration::from_secs(10), || stagings(out));
        assert!(left.is_empty(), "staging left: {left:?}");
        let left = settles(Duration::from_secs(10), || memory_roots(pid));
        assert!(left.is_empty(), "in-memory tree left: {left:?}");
        let left = settles(Duration::from_secs(10), stale_cache_temporaries);
        assert!(left.is_empty(), "cache temporaries left: {left:?}");
    }
    pid
}

#[test]
fn killed_and_concurrent_builds_leave_nothing_behind() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let dir = scratch();
    let out = dir.path().join("out");
    fs::create_dir_all(&out).unwrap();

    // 1. Killed at four moments of a first build (nothing published yet).
    kill_at(
        &out,
        "source-build",
        Some("tar"),
        Duration::from_millis(300),
        "INT",
    );
    kill_at(&out, "rootfs", None, Duration::from_secs(1), "TERM");
    // SIGTERM while mkfs.ext4 writes: the build's main thread unwinds from
    // the killed mkfs and removes the 1.3 GB tree while the handler exits;
    // the reaper must still remove what the main thread had not.
    kill_at(
        &out,
        "generalize",
        Some("mkfs"),
        Duration::from_millis(500),
        "TERM",
    );
    let killed = kill_at(
        &out,
        "generalize",
        Some("mkfs"),
        Duration::from_millis(500),
        "KILL",
    );
    // SIGKILL: the staging directory and the in-memory tree stay behind …
    assert_eq!(stagings(&out).len(), 1, "{:?}", names_in(&out));
    assert_eq!(memory_roots(killed).len(), 1);
    assert!(!out.join(format!("{IMAGE}.manifest.json")).exists());

    // 2. … until the next build, which removes them. Meanwhile a second
    // build with --no-wait is refused at once, and a third one waits.
    let mut a = Running::start(build_command(&out, &rolectl(), &[]));
    a.wait_line("✓ fetch", Duration::from_secs(600));
    let refused = build_command(&out, &rolectl(), &["--no-wait"])
        .output()
        .unwrap();
    let msg = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert_eq!(refused.status.code(), Some(1), "{msg}");
    assert!(
        msg.contains("another kubebake build is writing")
            && msg.contains(&out.display().to_string()),
        "{msg}"
    );
    // The third build bakes another rolectl (one more byte), so its outputs
    // differ from the first's: the final directory must hold one build's.
    let other_rolectl = dir.path().join("rolectl");
    let mut bytes = fs::read(rolectl()).unwrap();
    bytes.push(0);
    fs::write(&other_rolectl, bytes).unwrap();
    fs::set_permissions(
        &other_rolectl,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let mut c = Running::start(build_command(&out, &other_rolectl, &[]));
    c.wait_line(
        "waiting: another kubebake build is writing",
        Duration::from_secs(120),
    );
    let (code, stderr) = a.finish();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("removed") && stderr.contains("left by interrupted builds"),
        "the build did not report the sweep: {stderr}"
    );
    assert!(
        memory_roots(killed).is_empty(),
        "the killed build's tree is still in /dev/shm"
    );
    let (code, stderr) = c.finish();
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(names_in(&out), outputs());
    let first = manifest_matches(&out);
    let m: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join(format!("{IMAGE}.manifest.json"))).unwrap())
            .unwrap();
    assert!(
        m["files"].to_string().contains("rolectl"),
        "the manifest lists rolectl"
    );

    // 3. Killed while compressing the qcow2, with outputs in place: they
    // stay exactly as they were; `kubebake clean` removes the rest.
    let before = identities(&out);
    kill_at(&out, "disk", None, Duration::from_secs(2), "KILL");
    assert_eq!(
        identities(&out),
        before,
        "the previous outputs were touched"
    );
    assert_eq!(stagings(&out).len(), 1);
    let clean: Output = Command::new(env!("CARGO_BIN_EXE_kubebake"))
        .arg("--cache")
        .arg(shared_cache())
        .arg("clean")
        .arg(&out)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&clean.stdout).into_owned();
    assert!(clean.status.success(), "{text}");
    assert!(text.contains("removed"), "{text}");
    assert_eq!(names_in(&out), outputs());
    assert!(
        stale_cache_temporaries().is_empty(),
        "{:?}",
        stale_cache_temporaries()
    );
    assert_eq!(manifest_matches(&out), first);
}

/// A data root under `data` with a definition whose one artifact is a
/// file:// payload of `size` bytes; returns the definition's path.
fn payload_definition(data: &Path, size: u32) -> PathBuf {
    for d in ["images", "units", "dropins"] {
        fs::create_dir_all(data.join(d)).unwrap();
    }
    fs::write(data.join("units/rolectl.service.hbs"), "[Unit]\n").unwrap();
    let payload: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    fs::write(data.join("payload.bin"), &payload).unwrap();
    let url = url::Url::from_file_path(data.join("payload.bin")).unwrap();
    let yaml = format!(
        "name: payload\nversion: \"1\"\nbase: {{ suite: bookworm, mirror: http://deb.debian.org/debian, packages: [curl] }}\n\
         artifacts:\n  - name: payload\n    version: \"1\"\n    url: {url}\n    sha256: {}\n    install: {{ binary: {{ path: /usr/local/bin/payload, mode: \"0755\" }} }}\n\
         units:\n  - name: rolectl.service\noutputs: {{ qcow2: true, disk-size: 2GiB }}\n",
        hex::encode(Sha256::digest(&payload))
    );
    let def = data.join("images/payload.yaml");
    fs::write(&def, yaml).unwrap();
    def
}

#[test]
fn fetches_of_one_digest_at_once_share_the_cache_safely() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let dir = scratch();
    let cache = dir.path().join("cache");
    let def = payload_definition(&dir.path().join("data"), 64 << 20);
    let fetch = || {
        Command::new(env!("CARGO_BIN_EXE_kubebake"))
            .arg("--cache")
            .arg(&cache)
            .args(["--allow-insecure-urls", "fetch"])
            .arg(&def)
            .env("RUST_LOG", "kubebake=info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (fetch(), fetch());
    let mut copied = 0;
    for o in [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()] {
        let log = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "{log}");
        copied += log.matches("verified and cached").count();
    }
    // The entry lock: one process copies, the other waits and finds it.
    assert_eq!(copied, 1, "both fetches wrote the entry");
    // One verified entry, no temporaries.
    let entries = names_in(&cache.join("sha256"));
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = cache.join("sha256").join(&entries[0]);
    assert_eq!(sha256_of(&entry), entries[0]);
    assert_eq!(names_in(&cache.join("tmp")), Vec::<String>::new());
}

/// A size-limited tmpfs at `dir`, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mounting a tmpfs needs root (CI runs as root)");
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Regular files under `dir` with their contents, `locks/` aside (empty
/// lock files, see locks.rs).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .filter(|e| !e.path().starts_with(dir.join("locks")))
        .map(|e| (e.path().to_path_buf(), fs::read(e.path()).unwrap()))
        .collect()
}

#[test]
fn a_full_cache_or_output_directory_fails_naming_the_path_and_keeps_both() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let dir = scratch();

    // The cache: a 32 MiB artifact into a 16 MiB cache.
    let cache = dir.path().join("cache");
    let _cache_fs = Tmpfs::mount(&cache, "16m");
    fs::create_dir_all(cache.join("sha256")).unwrap();
    fs::write(cache.join("sha256/kept"), b"an earlier entry").unwrap();
    let before = snapshot(&cache);
    let def = payload_definition(&dir.path().join("data"), 32 << 20);
    let o = Command::new(env!("CARGO_BIN_EXE_kubebake"))
        .arg("--cache")
        .arg(&cache)
        .args(["--allow-insecure-urls", "fetch"])
        .arg(&def)
        .output()
        .unwrap();
    let msg = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{msg}");
    assert!(
        msg.contains(&format!(
            "not enough space in {}",
            cache.join("tmp").display()
        )) && msg.contains("32.00 MiB"),
        "{msg}"
    );
    assert_eq!(snapshot(&cache), before, "the cache changed");

    // The output directory: 256 MiB, far less than the images need. The
    // earlier file in it stays, nothing else is left.
    let out = dir.path().join("out");
    let _out_fs = Tmpfs::mount(&out, "256m");
    fs::write(out.join("earlier.txt"), b"from before").unwrap();
    let o = build_command(&out, &rolectl(), &[]).output().unwrap();
    let msg = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{msg}");
    assert!(
        msg.contains(&format!("not enough space in {}", out.display())) && msg.contains("needs"),
        "{msg}"
    );
    assert_eq!(names_in(&out), ["earlier.txt"]);
    assert_eq!(fs::read(out.join("earlier.txt")).unwrap(), b"from before");
    let left = settles(Duration::from_secs(10), kubebake_processes);
    assert!(left.is_empty(), "{left:?}");
}
