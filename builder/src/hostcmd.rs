//! Running host tools (mmdebstrap, mkfs, syslinux, qemu-img, …) with errors
//! that say which command failed and what it printed.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use anyhow::{bail, Context, Result};

use crate::children;

/// A host tool the build needs, with the Debian package that provides it.
pub struct Tool {
    pub program: &'static str,
    pub package: &'static str,
}

/// Every host tool `kubebake build` runs.
pub const BUILD_TOOLS: &[Tool] = &[
    Tool {
        program: "mmdebstrap",
        package: "mmdebstrap",
    },
    Tool {
        program: "tar",
        package: "tar",
    },
    Tool {
        program: "mkfs.ext4",
        package: "e2fsprogs",
    },
    Tool {
        program: "mkfs.vfat",
        package: "dosfstools",
    },
    Tool {
        program: "mcopy",
        package: "mtools",
    },
    Tool {
        program: "syslinux",
        package: "syslinux",
    },
    Tool {
        program: "qemu-img",
        package: "qemu-utils",
    },
    Tool {
        program: "systemctl",
        package: "systemd",
    },
    Tool {
        program: "dpkg-query",
        package: "dpkg",
    },
];

/// Finds `program` on PATH.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Fails early, before any work, naming every missing tool and its package.
pub fn require(tools: &[Tool]) -> Result<()> {
    let missing: Vec<String> = tools
        .iter()
        .filter(|t| which(t.program).is_none())
        .map(|t| format!("{} (Debian package {})", t.program, t.package))
        .collect();
    if !missing.is_empty() {
        bail!(
            "missing host tools: {}; run `sudo scripts/setup-host.sh` to install them",
            missing.join(", ")
        );
    }
    Ok(())
}

/// Renders a command line for messages.
pub fn display(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(cmd.get_args().map(shell_word));
    parts.join(" ")
}

fn shell_word(arg: &OsStr) -> String {
    let s = arg.to_string_lossy();
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+%".contains(c))
    {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Runs `cmd` to completion; on failure the error holds the command line and
/// the last lines of its stderr.
pub fn run(cmd: &mut Command) -> Result<Output> {
    let line = display(cmd);
    tracing::debug!("running {line}");
    // In a process group of its own, tied to the build (children.rs).
    let output = children::spawn(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
    .and_then(|child| child.wait_with_output())
    .with_context(|| format!("running `{line}`"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!("`{line}` failed ({}):\n{}", output.status, tail.join("\n"));
    }
    Ok(output)
}

/// Runs `cmd` and returns its stdout as text.
pub fn stdout(cmd: &mut Command) -> Result<String> {
    let output = run(cmd)?;
    String::from_utf8(output.stdout).context("command printed non-UTF-8 output")
}

/// Whether libguestfs may use KVM. Nested KVM kills guests with "KVM internal
/// error" on some hosts, so TCG is the default unless KUBEBAKE_TRUST_KVM=1.
pub fn kvm_usable() -> bool {
    std::env::var("KUBEBAKE_TRUST_KVM").is_ok_and(|v| v == "1")
}
