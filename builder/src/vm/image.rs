//! The golden image the harness boots: `<name>.qcow2` (or `.raw`) with the
//! exported `<name>.vmlinuz`, `<name>.initrd` and `<name>.manifest.json`
//! (for `boot.cmdline`) beside it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

#[derive(Debug, Clone)]
pub struct GoldenImage {
    pub disk: PathBuf,
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub cmdline: Option<String>,
}

impl GoldenImage {
    pub fn open(disk: &Path) -> Result<Self> {
        if !disk.is_file() {
            bail!(
                "golden image {} not found: build it with `scripts/main.sh` or `kubebake build images/k8s-node-offline.yaml --out out/`",
                disk.display()
            );
        }
        let disk = disk
            .canonicalize()
            .with_context(|| format!("resolving {}", disk.display()))?;
        let stem = disk.with_extension("");
        let beside = |ext: &str| {
            let p = PathBuf::from(format!("{}.{ext}", stem.display()));
            p.is_file().then_some(p)
        };
        let cmdline = match beside("manifest.json") {
            Some(m) => {
                let text = std::fs::read_to_string(&m)
                    .with_context(|| format!("reading {}", m.display()))?;
                let v: serde_json::Value = serde_json::from_str(&text)
                    .with_context(|| format!("parsing {}", m.display()))?;
                v.pointer("/boot/cmdline")
                    .and_then(|c| c.as_str())
                    .map(str::to_string)
            }
            None => None,
        };
        Ok(GoldenImage {
            kernel: beside("vmlinuz"),
            initrd: beside("initrd"),
            cmdline,
            disk,
        })
    }

    /// Direct kernel boot parameters, when kernel, initrd and cmdline exist.
    pub fn kernel_boot(&self) -> Option<super::qemu::Boot> {
        Some(super::qemu::Boot::Kernel {
            kernel: self.kernel.clone()?,
            initrd: self.initrd.clone()?,
            cmdline: self.cmdline.clone()?,
        })
    }

    pub fn sha256(&self) -> Result<String> {
        crate::manifest::sha256_file(&self.disk)
    }
}
