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
    command_to(ns, key, ip, command)
        .stdin(Stdio::null())
        .output()
        .context("running ssh")
}

/// Like [`run`], with `input` as the command's standard input (e.g. an
/// image archive for `ctr images import -`).
pub fn run_with_input(
    ns: &str,
    key: &Path,
    ip: &str,
    command: &str,
    input: std::fs::File,
) -> Result<Output> {
    command_to(ns, key, ip, command)
        .stdin(Stdio::from(input))
        .output()
        .context("running ssh")
}

fn command_to(ns: &str, key: &Path, ip: &str, command: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, "ssh"])
        .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no"])
        .args(["-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"])
        .args(["-o", "ConnectTimeout=15", "-o", "ServerAliveInterval=5"])
        .arg("-i")
        .arg(key)
        .arg(format!("debian@{ip}"))
        .arg("--")
        .arg(command);
    c
}

/// True when ssh itself failed to set up the session (exit 255 and one of
/// its connection errors on stderr), so the remote command never started.
pub fn connection_failed(out: &Output) -> bool {
    const SETUP_ERRORS: &[&str] = &[
        "Connection timed out",
        "banner exchange",
        "Connection refused",
        "Connection reset",
        "kex_exchange_identification",
        "Connection closed by",
    ];
    out.status.code() == Some(255) && {
        let err = String::from_utf8_lossy(&out.stderr);
        SETUP_ERRORS.iter().any(|e| err.contains(e))
    }
}

#[cfg(test)]
mod tests {
    use super::connection_failed;
    use std::os::unix::process::ExitStatusExt;
    use std::process::{ExitStatus, Output};

    fn out(code: i32, stderr: &str) -> Output {
        Output {
            status: ExitStatus::from_raw(code << 8),
            stdout: Vec::new(),
            stderr: stderr.as_bytes().to_vec(),
        }
    }

    #[test]
    fn only_session_setup_failures_count() {
        assert!(connection_failed(&out(
            255,
            "Connection timed out during banner exchange"
        )));
        assert!(connection_failed(&out(
            255,
            "kex_exchange_identification: read: Connection reset by peer"
        )));
        // the remote command's own exit 255, or another exit with the text
        assert!(!connection_failed(&out(255, "rolectl: bad user-data")));
        assert!(!connection_failed(&out(1, "Connection timed out")));
        assert!(!connection_failed(&out(0, "")));
    }
}
