//! VM harness: boots the golden image under QEMU inside a private network
//! namespace that looks like a small cloud VPC (bridge + gateway, DHCP, DNS
//! like Route53, an EC2-style metadata service, NoCloud seeds).
//!
//! Used by `kubebake up/down/status/bench-vm` and by the VM tests
//! (crate `kubebake-vmtests`). Needs root (network namespaces, taps); a
//! rootless variant via user namespaces is possible but not implemented.

pub mod accel;
pub mod cli;
pub mod cluster;
pub mod dhcp;
pub mod dns;
pub mod image;
pub mod imds;
pub mod net;
pub mod qemu;
pub mod seed;
pub mod ssh;
pub mod userdata;

use std::time::{Duration, Instant};

/// Polls `op` until it returns `Ok(Some(v))` or `timeout` passes; the last
/// error/"not yet" reason ends up in the timeout message.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut op: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let start = Instant::now();
    let mut last = String::from("condition never true");
    loop {
        match op() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = format!("{e:#}"),
        }
        if start.elapsed() >= timeout {
            anyhow::bail!(
                "timed out after {:.0} s waiting for {what}: {last}",
                timeout.as_secs_f64()
            );
        }
        std::thread::sleep(interval);
    }
}
