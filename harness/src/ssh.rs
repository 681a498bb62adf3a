//! SSH into VMs from inside the cluster namespace (`ip netns exec`), as the
//! image's default user `debian` with a per-cluster throwaway key.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{bail, Context, Result};

pub struct SshKey {
    pub private: PathBuf,
    pub public: String,
}

impl SshKey {
    /// Generates an ed25519 key pair in `dir`.
    pub fn generate(dir: &Path) -> Result<Self> {
        let private = dir.join("id_ed25519");
        let _ = std::fs::remove_file(&private);
        let _ = std::fs::remove_file(dir.join("id_ed25519.pub"));
        let out = Command::new("ssh-keygen")
            .args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "kubebake-harness",
                "-f",
            ])
            .arg(&private)
            .output()
            .context("running ssh-keygen (install openssh-client)")?;
        if !out.status.success() {
            bail!(
                "ssh-keygen failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let public = std::fs::read_to_string(dir.join("id_ed25519.pub"))
            .context("reading the generated public key")?
            .trim()
            .to_string();
        Ok(SshKey { private, public })
    }
}

/// Runs `command` as `debian@ip` (with sudo available) inside namespace `ns`.
pub fn run(ns: &str, key: &Path, ip: &str, command: &str) -> Result<Output> {
    Command::new("ip")
        .args(["netns", "exec", ns, "ssh"])
        .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no"])
        .args(["-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"])
        .args(["-o", "ConnectTimeout=5", "-o", "ServerAliveInterval=5"])
        .arg("-i")
        .arg(key)
        .arg(format!("debian@{ip}"))
        .arg("--")
        .arg(command)
        .stdin(Stdio::null())
        .output()
        .context("running ssh")
}
