//! The image layout: which files a build writes for an image called `name`
//! and where they are. The one place that knows the output file names:
//! `build` writes them, `inspect` finds the manifest, and `boot`/`up`/the VM
//! tests get their typed [`harness::BootSpec`] from the manifest beside the
//! image.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::manifest::Manifest;

/// Output file names for an image called `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputNames {
    pub raw: String,
    pub qcow2: String,
    pub kernel: String,
    pub initrd: String,
    pub manifest: String,
}

impl OutputNames {
    pub fn new(name: &str) -> OutputNames {
        OutputNames {
            raw: format!("{name}.raw"),
            qcow2: format!("{name}.qcow2"),
            kernel: format!("{name}.vmlinuz"),
            initrd: format!("{name}.initrd"),
            manifest: format!("{name}.manifest.json"),
        }
    }
}

/// The outputs of one image in one directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageLayout {
    pub dir: PathBuf,
    pub name: String,
    pub files: OutputNames,
}

impl ImageLayout {
    pub fn new(dir: &Path, name: &str) -> Self {
        ImageLayout {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            files: OutputNames::new(name),
        }
    }

    /// The layout an image file (`<dir>/<name>.raw` or `.qcow2`) belongs to.
    pub fn of_image(image: &Path) -> Result<Self> {
        let name = match image.extension().and_then(|e| e.to_str()) {
            Some("raw" | "qcow2") => image.file_stem().and_then(|s| s.to_str()),
            _ => None,
        };
        let Some(name) = name else {
            bail!(
                "{}: not an image written by `kubebake build` (<name>.raw or <name>.qcow2)",
                image.display()
            );
        };
        let dir = image.parent().unwrap_or_else(|| Path::new("."));
        Ok(Self::new(dir, name))
    }

    pub fn raw(&self) -> PathBuf {
        self.dir.join(&self.files.raw)
    }
    pub fn qcow2(&self) -> PathBuf {
        self.dir.join(&self.files.qcow2)
    }
    pub fn kernel(&self) -> PathBuf {
        self.dir.join(&self.files.kernel)
    }
    pub fn initrd(&self) -> PathBuf {
        self.dir.join(&self.files.initrd)
    }
    pub fn manifest(&self) -> PathBuf {
        self.dir.join(&self.files.manifest)
    }
}

/// The typed boot spec of a built image: the disk, and the kernel, initrd
/// and command line its manifest records (without a manifest, BIOS boot
/// only).
pub fn boot_spec(image: &Path) -> Result<harness::BootSpec> {
    let layout = ImageLayout::of_image(image)?;
    let manifest_path = layout.manifest();
    let direct_kernel = if manifest_path.is_file() {
        let m = Manifest::read(&manifest_path)?;
        let file = |kind: &str| -> Result<PathBuf> {
            let o = m.output(kind).with_context(|| {
                format!("the manifest {} lists no {kind}", manifest_path.display())
            })?;
            Ok(layout.dir.join(&o.file))
        };
        Some(harness::DirectKernel {
            kernel: file("kernel")?,
            initrd: file("initrd")?,
            cmdline: m.boot.cmdline.clone(),
        })
    } else {
        None
    };
    harness::BootSpec::new(image, direct_kernel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_of_an_image() {
        let l = ImageLayout::of_image(Path::new("/o/k8s-node.qcow2")).expect("layout");
        assert_eq!(l.name, "k8s-node");
        assert_eq!(l.manifest(), PathBuf::from("/o/k8s-node.manifest.json"));
        assert_eq!(l.raw(), PathBuf::from("/o/k8s-node.raw"));
        assert_eq!(l.kernel(), PathBuf::from("/o/k8s-node.vmlinuz"));
        assert_eq!(l.initrd(), PathBuf::from("/o/k8s-node.initrd"));
        assert!(ImageLayout::of_image(Path::new("/o/k8s-node.img")).is_err());
    }
}
