//! Stage 4: the bootable disk, assembled without loop or device-mapper
//! mounts and without root-only tools:
//!
//! ```text
//! sector 0        MBR: syslinux mbr.bin boot code + partition table (mbrman)
//! 1 MiB           p1 FAT32 (active): syslinux (ldlinux.sys), syslinux.cfg, vmlinuz, initrd.img
//! 1 MiB + boot    p2 ext4 root: `mkfs.ext4 -d <root>` written straight at its offset
//! ```
//!
//! Every identifier (disk signature, FAT volume id, ext4 UUID and hash seed)
//! is derived from the image name and version, and every timestamp from
//! SOURCE_DATE_EPOCH, so the same inputs give the same bytes.

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use sha2::{Digest as _, Sha256};

use crate::hostcmd;

const MIB: u64 = 1024 * 1024;
const SECTOR: u64 = 512;
/// syslinux's MBR boot code: jumps to the active partition's boot sector.
const SYSLINUX_MBR: &str = "/usr/lib/syslinux/mbr/mbr.bin";
/// Kernel command line: serial console first so logs reach QEMU's serial.
const CMDLINE_CONSOLE: &str =
    "console=tty0 console=ttyS0,115200n8 earlyprintk=ttyS0,115200 consoleblank=0";

/// Deterministic identities of one image.
#[derive(Debug, Clone)]
pub struct Identity {
    pub root_uuid: String,
    pub disk_signature: [u8; 4],
    pub fat_volume_id: String,
}

impl Identity {
    /// Derives the identifiers from the image name and version.
    pub fn derive(name: &str, version: &str) -> Identity {
        let h = Sha256::digest(format!("kubebake\0{name}\0{version}").as_bytes());
        let mut u = [0u8; 16];
        u.copy_from_slice(&h[..16]);
        u[6] = (u[6] & 0x0f) | 0x40; // version 4 layout
        u[8] = (u[8] & 0x3f) | 0x80; // RFC 4122 variant
        let x = hex::encode(u);
        Identity {
            root_uuid: format!(
                "{}-{}-{}-{}-{}",
                &x[0..8],
                &x[8..12],
                &x[12..16],
                &x[16..20],
                &x[20..32]
            ),
            disk_signature: [h[16], h[17], h[18], h[19]],
            fat_volume_id: hex::encode(&h[20..24]),
        }
    }
}

/// The kernel and initrd found in the image's /boot.
pub struct BootFiles {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub version: String,
}

/// Finds the one installed kernel and its initrd.
pub fn find_kernel(root: &Path) -> Result<BootFiles> {
    let boot = root.join("boot");
    let mut versions: Vec<String> = fs::read_dir(&boot)
        .with_context(|| format!("reading {}", boot.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_prefix("vmlinuz-")
                .map(str::to_string)
        })
        .collect();
    versions.sort();
    let version = match versions.as_slice() {
        [one] => one.clone(),
        [] => bail!(
            "the image has no kernel in /boot; add a kernel package (e.g. linux-image-cloud-amd64) \
             to base.packages"
        ),
        many => bail!(
            "the image has several kernels in /boot ({}); keep one",
            many.join(", ")
        ),
    };
    let kernel = boot.join(format!("vmlinuz-{version}"));
    let initrd = boot.join(format!("initrd.img-{version}"));
    if !initrd.is_file() {
        bail!(
            "{} is missing: the kernel package's initramfs was not generated (is initramfs-tools installed?)",
            initrd.display()
        );
    }
    Ok(BootFiles {
        kernel,
        initrd,
        version,
    })
}

/// The kernel command line for both BIOS boot and direct kernel boot.
pub fn kernel_cmdline(id: &Identity) -> String {
    format!("root=UUID={} ro {CMDLINE_CONSOLE}", id.root_uuid)
}

/// Layout of the disk in bytes.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub boot_offset: u64,
    pub boot_size: u64,
    pub root_offset: u64,
    pub root_size: u64,
    pub total: u64,
}

impl Layout {
    pub fn plan(disk_size: u64, kernel_bytes: u64) -> Result<Layout> {
        // Room for the kernel and initrd twice over, at least 64 MiB.
        let boot_size = ((2 * kernel_bytes).div_ceil(MIB) + 16).max(64) * MIB;
        let boot_offset = MIB;
        let root_offset = boot_offset + boot_size;
        let total = disk_size.div_ceil(MIB) * MIB;
        if total < root_offset + 512 * MIB {
            bail!(
                "outputs.disk-size {} bytes leaves less than 512 MiB for the root filesystem; \
                 raise outputs.disk-size",
                disk_size
            );
        }
        Ok(Layout {
            boot_offset,
            boot_size,
            root_offset,
            root_size: total - root_offset,
            total,
        })
    }
}

/// Builds the raw disk at `raw` from the staging `root`.
pub fn build_raw(
    root: &Path,
    boot: &BootFiles,
    id: &Identity,
    disk_size: u64,
    source_date_epoch: i64,
    work: &Path,
    raw: &Path,
) -> Result<Layout> {
    let kernel_bytes = fs::metadata(&boot.kernel)?.len() + fs::metadata(&boot.initrd)?.len();
    let layout = Layout::plan(disk_size, kernel_bytes)?;

    let fat = work.join("boot.fat");
    make_boot_fat(&fat, boot, id, layout.boot_size, source_date_epoch, work)?;

    let mut disk = fs::File::create(raw).with_context(|| format!("creating {}", raw.display()))?;
    disk.set_len(layout.total)?;
    write_mbr(&mut disk, id, &layout)?;
    copy_at(&fat, &mut disk, layout.boot_offset)?;
    // No fsync: mkfs.ext4 reads and writes the same page cache, and the
    // outputs are published by rename, not made durable (an fsync here
    // waited for the disk, seconds while other builds wrote).
    drop(disk);
    fs::remove_file(&fat).ok();

    // mke2fs writes the filesystem straight into the disk file at the root
    // partition's offset: no intermediate copy, no loop device.
    let blocks = layout.root_size / 4096;
    hostcmd::run(
        Command::new("mkfs.ext4")
            .env("E2FSPROGS_FAKE_TIME", source_date_epoch.to_string())
            .arg("-q")
            .arg("-F")
            .args(["-b", "4096", "-I", "256", "-L", "kubebake-root"])
            .args(["-U", &id.root_uuid])
            .arg("-E")
            .arg(format!(
                "offset={},hash_seed={},root_owner=0:0,lazy_itable_init=0,nodiscard",
                layout.root_offset, id.root_uuid
            ))
            .arg("-d")
            .arg(root)
            .arg(raw)
            .arg(blocks.to_string()),
    )
    .context("making the ext4 root filesystem")?;
    clamp_inode_times(raw, layout.root_offset, source_date_epoch, work)?;
    let len = fs::metadata(raw)?.len();
    if len != layout.total {
        bail!(
            "{} is {len} bytes after mkfs, expected {}",
            raw.display(),
            layout.total
        );
    }
    Ok(layout)
}

/// `mkfs.ext4 -d` copies each source file's ctime and atime into its inode.
/// ctime cannot be set from user space, so it is the time the staging tree
/// was written, different in every build. This pass sets ctime and atime of
/// every used inode to SOURCE_DATE_EPOCH with debugfs (about 0.1 s for the
/// offline image's 18,000 inodes), which makes the filesystem reproducible.
fn clamp_inode_times(raw: &Path, offset: u64, epoch: i64, work: &Path) -> Result<()> {
    let device = format!("{}?offset={offset}", raw.display());
    let listing = hostcmd::stdout(Command::new("dumpe2fs").arg(&device))
        .context("reading the inode bitmaps of the root filesystem")?;
    let used = used_inodes(&listing)?;
    let mut script = String::with_capacity(used.len() * 64);
    for ino in used.into_iter().filter(|&i| i == 2 || i >= 11) {
        script.push_str(&format!(
            "sif <{ino}> ctime @{epoch}\nsif <{ino}> atime @{epoch}\n"
        ));
    }
    let cmds = work.join("clamp-times.debugfs");
    fs::write(&cmds, script)?;
    // debugfs stamps the superblock's write time: fake it too.
    hostcmd::run(
        Command::new("debugfs")
            .env("E2FSPROGS_FAKE_TIME", epoch.to_string())
            .arg("-w")
            .arg("-f")
            .arg(&cmds)
            .arg(&device),
    )
    .context("setting inode times with debugfs")?;
    Ok(())
}

/// Used inode numbers, from dumpe2fs's per-group "Free inodes:" ranges.
fn used_inodes(dumpe2fs: &str) -> Result<Vec<u32>> {
    let per_group: u32 = dumpe2fs
        .lines()
        .find_map(|l| l.strip_prefix("Inodes per group:"))
        .and_then(|v| v.trim().parse().ok())
        .context("dumpe2fs printed no `Inodes per group`")?;
    let mut used = Vec::new();
    let mut group: Option<u32> = None;
    for line in dumpe2fs.lines() {
        if let Some(rest) = line.strip_prefix("Group ") {
            group = rest.split(':').next().and_then(|g| g.trim().parse().ok());
        } else if let (Some(g), Some(free)) = (group, line.trim().strip_prefix("Free inodes:")) {
            let first = g * per_group + 1;
            let last = (g + 1) * per_group;
            let mut is_free = vec![false; per_group as usize];
            for range in free.split(',').map(str::trim).filter(|r| !r.is_empty()) {
                let (a, b) = range.split_once('-').unwrap_or((range, range));
                let (a, b): (u32, u32) = (
                    a.trim()
                        .parse()
                        .with_context(|| format!("bad inode range {range:?}"))?,
                    b.trim()
                        .parse()
                        .with_context(|| format!("bad inode range {range:?}"))?,
                );
                for i in a.max(first)..=b.min(last) {
                    is_free[(i - first) as usize] = true;
                }
            }
            used.extend((first..=last).filter(|i| !is_free[(i - first) as usize]));
            group = None;
        }
    }
    Ok(used)
}

fn make_boot_fat(
    fat: &Path,
    boot: &BootFiles,
    id: &Identity,
    size: u64,
    epoch: i64,
    work: &Path,
) -> Result<()> {
    let _ = fs::remove_file(fat);
    hostcmd::run(
        Command::new("mkfs.vfat")
            .arg("--invariant")
            .args(["-i", &id.fat_volume_id, "-n", "KUBEBAKE", "-C"])
            .arg(fat)
            .arg((size / 1024).to_string()),
    )
    .context("making the FAT boot filesystem")?;
    let cfg = work.join("syslinux.cfg");
    fs::write(
        &cfg,
        format!(
            "# Written by kubebake.\nDEFAULT linux\nPROMPT 0\nTIMEOUT 0\nLABEL linux\n  LINUX /vmlinuz\n  INITRD /initrd.img\n  APPEND {}\n",
            kernel_cmdline(id)
        ),
    )?;
    let kernel = work.join("vmlinuz");
    let initrd = work.join("initrd.img");
    fs::copy(&boot.kernel, &kernel)?;
    fs::copy(&boot.initrd, &initrd)?;
    let when = filetime::FileTime::from_unix_time(epoch, 0);
    for f in [&cfg, &kernel, &initrd] {
        filetime::set_file_times(f, when, when)?;
    }
    hostcmd::run(
        Command::new("mcopy")
            .env("MTOOLS_SKIP_CHECK", "1")
            .env("SOURCE_DATE_EPOCH", epoch.to_string())
            .arg("-m")
            .arg("-i")
            .arg(fat)
            .args([&cfg, &kernel, &initrd])
            .arg("::/"),
    )
    .context("copying the kernel into the boot filesystem")?;
    // syslinux writes ldlinux.sys/.c32 through mtools, which stamps them
    // with the wall clock unless SOURCE_DATE_EPOCH is set in its
    // environment (the build's epoch may come from options, not the env).
    hostcmd::run(
        Command::new("syslinux")
            .env("SOURCE_DATE_EPOCH", epoch.to_string())
            .arg("--install")
            .arg(fat),
    )
    .context("installing syslinux into the boot filesystem")?;
    for f in [&cfg, &kernel, &initrd] {
        fs::remove_file(f).ok();
    }
    Ok(())
}

fn write_mbr(disk: &mut fs::File, id: &Identity, layout: &Layout) -> Result<()> {
    let code = fs::read(SYSLINUX_MBR)
        .with_context(|| format!("reading {SYSLINUX_MBR} (Debian package syslinux-common)"))?;
    if code.len() > 440 {
        bail!(
            "{SYSLINUX_MBR} is {} bytes, more than the 440 of an MBR",
            code.len()
        );
    }
    let mut mbr = mbrman::MBR::new_from(disk, SECTOR as u32, id.disk_signature)
        .context("creating the partition table")?;
    mbr.header.bootstrap_code[..code.len()].copy_from_slice(&code);
    let sectors = |bytes: u64| u32::try_from(bytes / SECTOR).context("disk too large for MBR");
    mbr[1] = mbrman::MBRPartitionEntry {
        boot: mbrman::BOOT_ACTIVE,
        first_chs: mbrman::CHS::empty(),
        sys: 0x0c, // FAT32 LBA
        last_chs: mbrman::CHS::empty(),
        starting_lba: sectors(layout.boot_offset)?,
        sectors: sectors(layout.boot_size)?,
    };
    mbr[2] = mbrman::MBRPartitionEntry {
        boot: mbrman::BOOT_INACTIVE,
        first_chs: mbrman::CHS::empty(),
        sys: 0x83, // Linux
        last_chs: mbrman::CHS::empty(),
        starting_lba: sectors(layout.root_offset)?,
        sectors: sectors(layout.root_size)?,
    };
    mbr.write_into(disk)
        .context("writing the partition table")?;
    Ok(())
}

fn copy_at(src: &Path, disk: &mut fs::File, offset: u64) -> Result<()> {
    let mut input = fs::File::open(src)?;
    disk.seek(SeekFrom::Start(offset))?;
    std::io::copy(&mut input, disk).with_context(|| format!("copying {}", src.display()))?;
    disk.flush()?;
    Ok(())
}

/// Copies the kernel and initrd beside the image for direct kernel boot.
pub fn export_boot_files(boot: &BootFiles, kernel: &Path, initrd: &Path) -> Result<()> {
    fs::copy(&boot.kernel, kernel).with_context(|| format!("writing {}", kernel.display()))?;
    fs::copy(&boot.initrd, initrd).with_context(|| format!("writing {}", initrd.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn used_inodes_are_the_complement_of_free_ranges() {
        let listing = "Inodes per group:         10\n\
            Group 0: (Blocks 0-99)\n  Free inodes: \n\
            Group 1: (Blocks 100-199)\n  Free inodes: 14-15, 18-20\n\
            Group 2: (Blocks 200-299)\n  Free inodes: 21-30\n";
        let used = used_inodes(listing).expect("parse");
        let mut want: Vec<u32> = (1..=10).collect();
        want.extend([11, 12, 13, 16, 17]);
        assert_eq!(used, want);
    }

    #[test]
    fn identity_is_derived_and_stable() {
        let a = Identity::derive("k8s-node", "1.0");
        let b = Identity::derive("k8s-node", "1.0");
        let c = Identity::derive("k8s-node", "1.1");
        assert_eq!(a.root_uuid, b.root_uuid);
        assert_ne!(a.root_uuid, c.root_uuid);
        assert_eq!(a.root_uuid.len(), 36);
        assert_eq!(&a.root_uuid[14..15], "4");
    }

    #[test]
    fn layout_rejects_a_disk_too_small_for_the_root() {
        assert!(Layout::plan(500 * MIB, 30 * MIB).is_err());
        let l = Layout::plan(3 * 1024 * MIB, 30 * MIB).expect("plan");
        assert_eq!(l.boot_offset, MIB);
        assert_eq!(l.root_offset, l.boot_offset + l.boot_size);
        assert_eq!(l.root_offset + l.root_size, l.total);
    }
}
