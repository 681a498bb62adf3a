//! What the harness boots: a typed boot spec handed in by its caller
//! (`kubebake` builds it from the image's manifest). The harness never reads
//! a manifest nor derives file names.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Direct kernel boot (`-kernel/-initrd/-append`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectKernel {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub cmdline: String,
}

/// The golden image to boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootSpec {
    /// The disk image (.qcow2 or .raw); VMs boot copy-on-write overlays of it.
    pub disk: PathBuf,
    /// Kernel, initrd and command line, when the caller has them (also used
    /// to probe KVM).
    pub direct_kernel: Option<DirectKernel>,
}

impl BootSpec {
    /// Checks that the files exist and makes the paths absolute.
    pub fn new(disk: &Path, direct_kernel: Option<DirectKernel>) -> Result<Self> {
        if !disk.is_file() {
            bail!(
                "golden image {} not found: build it with `scripts/main.sh` or `kubebake build images/k8s-node-source.yaml --out out/`",
                disk.display()
            );
        }
        let abs = |p: &Path| {
            p.canonicalize()
                .with_context(|| format!("resolving {}", p.display()))
        };
        let direct_kernel = match direct_kernel {
            Some(k) => Some(DirectKernel {
                kernel: abs(&k.kernel)?,
                initrd: abs(&k.initrd)?,
                cmdline: k.cmdline,
            }),
            None => None,
        };
        Ok(BootSpec {
            disk: abs(disk)?,
            direct_kernel,
        })
    }

    /// The kernel, for the accelerator probe.
    pub fn kernel(&self) -> Option<&Path> {
        self.direct_kernel.as_ref().map(|k| k.kernel.as_path())
    }

    /// Direct kernel boot parameters, or an error naming what is missing.
    pub fn kernel_boot(&self) -> Result<crate::qemu::Boot> {
        let k = self.direct_kernel.as_ref().with_context(|| {
            format!(
                "direct kernel boot needs the kernel, initrd and command line of {} (from its manifest)",
                self.disk.display()
            )
        })?;
        Ok(crate::qemu::Boot::Kernel {
            kernel: k.kernel.clone(),
            initrd: k.initrd.clone(),
            cmdline: k.cmdline.clone(),
        })
    }
}
