//! Where user-data comes from: rolectl reads it itself, as early as the
//! platform allows, instead of waiting for cloud-init's two Python stages
//! (`cloud-init-local` + `cloud-init`: 35 s of a 42 s boot under TCG).
//!
//! The image supports the datasources its `cloud.cfg.d` lists for cloud-init
//! (`NoCloud`, `Ec2`), and rolectl looks for them in the same order:
//!
//! 1. **NoCloud seed**: a vfat volume labelled `CIDATA`/`cidata` (found
//!    with `blkid`, read with the `fatfs` crate: no mount, no network, no
//!    udev). Its `user-data` file is the user-data.
//! 2. **NoCloud-net**: `ds=nocloud-net;s=URL` (or `ds=nocloud;s=http…`) in
//!    the SMBIOS system serial or on the kernel command line, as cloud-init
//!    reads it; `URL` + `user-data` is fetched once the network is up.
//! 3. **EC2 instance metadata** (the DMI vendor says `Amazon EC2`, or the
//!    product UUID starts with `ec2`): IMDSv2 first (a session token from
//!    `PUT /latest/api/token`), IMDSv1 when the service refuses tokens.
//!
//! Network sources are retried with a short capped backoff (0.25 s doubling
//! to 2 s, with jitter) until an address is up and the service answers, for
//! at most the network timeout; every attempt is counted. A 404 for the
//! user-data means "this instance has none", not an error. When no source is
//! configured, or none answers in time, the caller falls back to cloud-init's
//! own copy and otherwise leaves the host unassigned, with every reason kept
//! in `rolectl status` ([`Discovery::tried`]).
//!
//! ISO 9660 `cidata` volumes are not read here (cloud-init's copy covers
//! them: rolectl-cloud-init.service).

use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use contract::retry::Backoff;

use crate::marker;
use crate::userdata::gzip;

/// EC2's link-local instance metadata service.
pub const EC2_IMDS: &str = "http://169.254.169.254";

/// How long network datasources are retried by default: long enough for a
/// TCG guest next to two others to configure its network (cloud-init-local
/// + ifupdown took up to 100 s there), short enough to end in the unit's
///   start timeout.
pub const NETWORK_TIMEOUT: Duration = Duration::from_secs(300);

/// IMDSv2 session token lifetime asked for (the token is used at once).
const IMDS_TOKEN_TTL: &str = "60";

/// Where to look; every path is under `root`, so tests use a tree.
#[derive(Debug, Clone)]
pub struct Platform {
    pub root: PathBuf,
    /// Probe block devices for a CIDATA volume (only on the live root: the
    /// devices are not under a test tree).
    pub probe_devices: bool,
    /// `blkid` (util-linux).
    pub blkid: PathBuf,
    /// EC2 metadata endpoint (scheme://host[:port], no path).
    pub imds: String,
    /// Longest wait for a network datasource.
    pub network_timeout: Duration,
    /// Retry schedule of network datasources (bounded by `network_timeout`).
    pub retry: Backoff,
}

impl Platform {
    pub fn new(root: &Path) -> Self {
        Platform {
            root: root.to_path_buf(),
            probe_devices: root == Path::new("/"),
            blkid: PathBuf::from("/usr/sbin/blkid"),
            imds: EC2_IMDS.to_string(),
            network_timeout: NETWORK_TIMEOUT,
            retry: Backoff::exponential(Duration::from_millis(250), Duration::from_secs(2))
                .with_jitter(),
        }
    }
}

/// User-data as one datasource gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// None: the datasource answered and has no user-data for this instance.
    pub data: Option<Vec<u8>>,
    /// Which datasource and where, for people: "NoCloud seed /dev/vdb".
    pub origin: String,
    /// Requests it took (1 for a seed).
    pub attempts: u32,
}

/// The outcome of looking for user-data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovery {
    /// The first datasource that answered.
    pub found: Option<Fetched>,
    /// Every datasource looked at before, and why it gave nothing.
    pub tried: Vec<String>,
}

/// Looks for user-data in the image's datasources, in order.
pub fn discover(p: &Platform) -> Discovery {
    let mut d = Discovery::default();
    if p.probe_devices {
        match find_seed(&p.blkid) {
            Ok(Some(dev)) => match read_seed(&dev) {
                Ok(data) => {
                    d.found = Some(Fetched {
                        data,
                        origin: format!("NoCloud seed {}", dev.display()),
                        attempts: 1,
                    });
                    return d;
                }
                Err(e) => d.tried.push(format!("NoCloud seed {}: {e}", dev.display())),
            },
            Ok(None) => d
                .tried
                .push("NoCloud seed: no vfat volume labelled CIDATA".into()),
            Err(e) => d.tried.push(format!("NoCloud seed: {e}")),
        }
    } else {
        d.tried
            .push("NoCloud seed: block devices not probed (--root is not /)".into());
    }
    if let Some(base) = nocloud_net_url(&p.root) {
        let url = format!("{base}user-data");
        match fetch_with_retry(p, &url, || get_user_data(&url, None)) {
            Ok((data, attempts)) => {
                d.found = Some(Fetched {
                    data,
                    origin: format!("NoCloud-net {url}"),
                    attempts,
                });
                return d;
            }
            Err(e) => d.tried.push(format!("NoCloud-net {url}: {e}")),
        }
    } else {
        d.tried.push(
            "NoCloud-net: no ds=nocloud-net;s=URL in the SMBIOS serial or on the kernel command line"
                .into(),
        );
    }
    match ec2_platform(&p.root) {
        Some(why) => {
            let mut version = "IMDSv2";
            let res = fetch_with_retry(p, &p.imds, || {
                let (data, v) = imds_user_data(&p.imds)?;
                version = v;
                Ok(data)
            });
            match res {
                Ok((data, attempts)) => {
                    d.found = Some(Fetched {
                        data,
                        origin: format!("EC2 {version} {}/latest/user-data", p.imds),
                        attempts,
                    });
                    return d;
                }
                Err(e) => d.tried.push(format!("EC2 ({why}) {}: {e}", p.imds)),
            }
        }
        None => d.tried.push(
            "EC2: not an EC2 instance (DMI sys_vendor is not \"Amazon EC2\", product_uuid does not start with ec2)".into(),
        ),
    }
    d
}

/// Why one request to a network datasource gave no user-data.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("{url}: {err}")]
    Http { url: String, err: ureq::Error },
    #[error("{url}: reading the answer: {err}")]
    Read { url: String, err: ureq::Error },
    #[error("{url}: user-data is larger than {} bytes", gzip::MAX_SIZE)]
    TooLarge { url: String },
    #[error("{url} answered HTTP {code}")]
    Status { url: String, code: u16 },
    #[error("{url}: the token is not text")]
    Token { url: String },
}

impl RequestError {
    /// An answer that asking again will not change: stop at once.
    fn is_permanent(&self) -> bool {
        matches!(self, RequestError::TooLarge { .. })
    }
}

/// Why a network datasource gave no user-data.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Refused(RequestError),
    #[error("no answer after {attempts} attempts in {:.0} s: {last}", .waited.as_secs_f64())]
    NoAnswer {
        attempts: u32,
        waited: Duration,
        last: RequestError,
    },
}

/// Retries `op` until it answers, fails for good, or the network timeout
/// passes; the data and the number of attempts, or why it gave up.
fn fetch_with_retry(
    p: &Platform,
    what: &str,
    mut op: impl FnMut() -> Result<Option<Vec<u8>>, RequestError>,
) -> Result<(Option<Vec<u8>>, u32), FetchError> {
    let retry = p.retry.timeout(Some(p.network_timeout));
    let res = retry.run(
        |attempt| match op() {
            Ok(data) => Ok(Ok((data, attempt))),
            Err(e) if e.is_permanent() => Ok(Err(FetchError::Refused(e))),
            Err(e) => Err(e),
        },
        |n, e, next| {
            // One line at the first failure, then every 10th: a guest without
            // its address yet fails fast and often.
            if n == 1 || n % 10 == 0 || next.is_none() {
                eprintln!("rolectl: {what}: {e} (attempt {n})");
            }
        },
    );
    match res {
        Ok(answer) => answer,
        Err(g) => Err(FetchError::NoAnswer {
            attempts: g.attempts,
            waited: g.waited,
            last: g.last_error,
        }),
    }
}

/// The largest user-data read from a network datasource: one byte more than
/// the parser accepts, so that an oversize answer gets the parser's message.
fn body_limit() -> u64 {
    gzip::MAX_SIZE + 1
}

/// Plain HTTP, statuses as values (not errors), no redirects; each
/// metadata request gets 3 s (the service is one hop away).
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(3)))
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into()
}

fn read_body(
    resp: &mut ureq::http::Response<ureq::Body>,
    url: &str,
) -> Result<Vec<u8>, RequestError> {
    resp.body_mut()
        .with_config()
        .limit(body_limit())
        .read_to_vec()
        .map_err(|err| match err {
            ureq::Error::BodyExceedsLimit(_) => RequestError::TooLarge {
                url: url.to_string(),
            },
            err => RequestError::Read {
                url: url.to_string(),
                err,
            },
        })
}

/// GET `url` (with an IMDSv2 token if given): 200 is the user-data, 404 is
/// "none", anything else is retried.
fn get_user_data(url: &str, token: Option<&str>) -> Result<Option<Vec<u8>>, RequestError> {
    let mut req = agent().get(url);
    if let Some(t) = token {
        req = req.header("X-aws-ec2-metadata-token", t);
    }
    let mut resp = req.call().map_err(|err| RequestError::Http {
        url: url.to_string(),
        err,
    })?;
    match resp.status().as_u16() {
        200 => read_body(&mut resp, url).map(Some),
        404 => Ok(None),
        code => Err(RequestError::Status {
            url: url.to_string(),
            code,
        }),
    }
}

/// One IMDS round: a session token, then the user-data with it; without a
/// token when the service does not issue them (IMDSv1: 403/404/405 to the
/// PUT). The data and the protocol that got it.
fn imds_user_data(base: &str) -> Result<(Option<Vec<u8>>, &'static str), RequestError> {
    let token_url = format!("{base}/latest/api/token");
    let user_data_url = format!("{base}/latest/user-data");
    let mut resp = agent()
        .put(&token_url)
        .header("X-aws-ec2-metadata-token-ttl-seconds", IMDS_TOKEN_TTL)
        .send_empty()
        .map_err(|err| RequestError::Http {
            url: token_url.clone(),
            err,
        })?;
    match resp.status().as_u16() {
        200 => {
            let token = read_body(&mut resp, &token_url)?;
            let token = String::from_utf8(token).map_err(|_| RequestError::Token {
                url: token_url.clone(),
            })?;
            get_user_data(&user_data_url, Some(token.trim())).map(|d| (d, "IMDSv2"))
        }
        403..=405 => get_user_data(&user_data_url, None).map(|d| (d, "IMDSv1")),
        code => Err(RequestError::Status {
            url: token_url,
            code,
        }),
    }
}

/// The NoCloud-net seed URL (ending in `/`) from the SMBIOS system serial or
/// the kernel command line, as cloud-init reads them: `ds=nocloud-net;s=URL`
/// (`seedfrom=` is the long form; `ds=nocloud` with an http(s) seed too).
pub fn nocloud_net_url(root: &Path) -> Option<String> {
    let serial = read_text(root, "/sys/class/dmi/id/product_serial");
    let cmdline = read_text(root, "/proc/cmdline");
    serial.as_deref().and_then(parse_ds).or_else(|| {
        cmdline
            .as_deref()
            .and_then(|c| c.split_whitespace().find_map(parse_ds))
    })
}

/// `ds=nocloud-net;s=http://host/path/` -> the http(s) seed URL with a
/// trailing `/`.
pub fn parse_ds(text: &str) -> Option<String> {
    let rest = text.trim().strip_prefix("ds=")?;
    let mut parts = rest.split(';');
    let name = parts.next()?.trim().to_ascii_lowercase();
    if name != "nocloud-net" && name != "nocloud" {
        return None;
    }
    let url = parts.find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        matches!(k.trim(), "s" | "seedfrom").then(|| v.trim().to_string())
    })?;
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return None;
    }
    Some(if url.ends_with('/') {
        url
    } else {
        format!("{url}/")
    })
}

/// Why this looks like EC2, if it does (cloud-init's ds-identify checks).
pub fn ec2_platform(root: &Path) -> Option<String> {
    let vendor = read_text(root, "/sys/class/dmi/id/sys_vendor").unwrap_or_default();
    if vendor.trim() == "Amazon EC2" {
        return Some("DMI sys_vendor Amazon EC2".into());
    }
    let uuid = read_text(root, "/sys/class/dmi/id/product_uuid").unwrap_or_default();
    if uuid.trim().to_ascii_lowercase().starts_with("ec2") {
        return Some("DMI product_uuid ec2…".into());
    }
    let hv = read_text(root, "/sys/hypervisor/uuid").unwrap_or_default();
    if hv.trim().to_ascii_lowercase().starts_with("ec2") {
        return Some("Xen hypervisor uuid ec2…".into());
    }
    None
}

fn read_text(root: &Path, abs: &str) -> Option<String> {
    fs::read_to_string(marker::under(root, abs)).ok()
}

/// Why the NoCloud seed could not be found or read.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("running {blkid}: {err}")]
    Blkid { blkid: PathBuf, err: io::Error },
    #[error("{blkid} failed: {stderr}")]
    BlkidFailed { blkid: PathBuf, stderr: String },
    #[error("opening {dev}: {err}")]
    Open { dev: PathBuf, err: io::Error },
    #[error("{dev} is not a readable FAT volume: {err}")]
    NotFat { dev: PathBuf, err: io::Error },
    #[error("{dev}: opening user-data: {err}")]
    OpenUserData { dev: PathBuf, err: io::Error },
    #[error("{dev}: reading user-data: {err}")]
    ReadUserData { dev: PathBuf, err: io::Error },
}

/// The first block device `blkid` reports as vfat labelled CIDATA
/// (cloud-init accepts the label in either case).
pub fn find_seed(blkid: &Path) -> Result<Option<PathBuf>, SeedError> {
    // -c /dev/null: probe the devices now, never a stale cache.
    let out = Command::new(blkid)
        .args(["-c", "/dev/null", "-o", "export"])
        .output()
        .map_err(|err| SeedError::Blkid {
            blkid: blkid.to_path_buf(),
            err,
        })?;
    // blkid exits 2 when it finds no device with a filesystem at all.
    if !out.status.success() && out.status.code() != Some(2) {
        return Err(SeedError::BlkidFailed {
            blkid: blkid.to_path_buf(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(seed_device(&String::from_utf8_lossy(&out.stdout)))
}

/// Picks the CIDATA vfat device from `blkid -o export` output (blocks of
/// `KEY=value` lines separated by blank lines).
pub fn seed_device(export: &str) -> Option<PathBuf> {
    export.split("\n\n").find_map(|block| {
        let get = |key: &str| {
            block.lines().find_map(|l| {
                l.strip_prefix(key)
                    .and_then(|r| r.strip_prefix('='))
                    .map(str::trim)
            })
        };
        let label = get("LABEL")?;
        (label.eq_ignore_ascii_case("cidata") && get("TYPE") == Some("vfat"))
            .then(|| get("DEVNAME").map(PathBuf::from))
            .flatten()
    })
}

/// Reads `user-data` from the vfat seed volume `dev` (a block device or an
/// image file), strictly read-only; None when the seed has no such file.
pub fn read_seed(dev: &Path) -> Result<Option<Vec<u8>>, SeedError> {
    let file = fs::File::open(dev).map_err(|err| SeedError::Open {
        dev: dev.to_path_buf(),
        err,
    })?;
    let volume =
        fatfs::FileSystem::new(ReadOnly(file), fatfs::FsOptions::new()).map_err(|err| {
            SeedError::NotFat {
                dev: dev.to_path_buf(),
                err,
            }
        })?;
    let root = volume.root_dir();
    let mut f = match root.open_file("user-data") {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => {
            return Err(SeedError::OpenUserData {
                dev: dev.to_path_buf(),
                err,
            })
        }
    };
    let mut data = Vec::new();
    (&mut f)
        .take(body_limit())
        .read_to_end(&mut data)
        .map_err(|err| SeedError::ReadUserData {
            dev: dev.to_path_buf(),
            err,
        })?;
    Ok(Some(data))
}

/// A device opened read-only: `fatfs` wants a writable stream, and gets one
/// that refuses every write, so the seed is never modified.
struct ReadOnly(fs::File);

impl Read for ReadOnly {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Seek for ReadOnly {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.0.seek(pos)
    }
}

impl Write for ReadOnly {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the seed volume is read-only",
        ))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ds_forms() {
        let want = Some("http://169.254.169.254/latest/".to_string());
        assert_eq!(
            parse_ds("ds=nocloud-net;s=http://169.254.169.254/latest/\n"),
            want
        );
        assert_eq!(
            parse_ds("ds=nocloud-net;s=http://169.254.169.254/latest"),
            want
        );
        assert_eq!(
            parse_ds("ds=NoCloud;seedfrom=http://169.254.169.254/latest/"),
            want
        );
        assert_eq!(parse_ds("ds=nocloud;s=file:///var/seed/"), None);
        assert_eq!(parse_ds("ds=ec2"), None);
        assert_eq!(parse_ds("Not Specified"), None);
    }

    #[test]
    fn blkid_export_picks_the_vfat_cidata_volume() {
        let out = "DEVNAME=/dev/vda1\nLABEL=BOOT\nTYPE=vfat\n\nDEVNAME=/dev/vda2\nUUID=x\nTYPE=ext4\n\nDEVNAME=/dev/sr0\nLABEL=cidata\nTYPE=iso9660\n\nDEVNAME=/dev/vdb\nSEC_TYPE=msdos\nLABEL_FATBOOT=CIDATA\nLABEL=CIDATA\nUUID=1234-ABCD\nTYPE=vfat\n";
        assert_eq!(seed_device(out), Some(PathBuf::from("/dev/vdb")));
        assert_eq!(
            seed_device("DEVNAME=/dev/sr0\nLABEL=cidata\nTYPE=iso9660\n"),
            None
        );
        assert_eq!(seed_device(""), None);
    }
}
