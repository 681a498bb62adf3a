//! kubebake's VM harness: boots the golden image under QEMU inside a private
//! network namespace that looks like a small cloud VPC (bridge + gateway,
//! DHCP, DNS like Route53, an EC2-style metadata service, NoCloud seeds).
//!
//! It knows nothing of the image builder: it is handed a typed [`BootSpec`]
//! (disk, and for direct kernel boot the kernel, initrd and command line),
//! which `kubebake` builds from the image's manifest. No command line here
//! either: `kubebake up/down/status/userdata/bench-vm/boot` are thin adapters
//! over this crate, and the VM tests (crate `kubebake-vmtests`) use it
//! directly. Needs root (network namespaces, taps); a rootless variant via
//! user namespaces is possible but not implemented.

pub mod accel;
pub mod bench;
pub mod boot;
pub mod cluster;
pub mod dhcp;
pub mod dns;
pub mod imds;
pub mod kube;
pub mod net;
pub mod private;
pub mod process;
pub mod qemu;
pub mod seed;
pub mod spec;
pub mod ssh;
pub mod state;
pub mod up;
pub mod userdata;

pub use contract::role::Role;
pub use spec::{BootSpec, DirectKernel};

use std::time::Duration;

use contract::retry::Backoff;

/// Polls `op` every `interval` until it returns `Ok(Some(v))` or `timeout`
/// passes (the workspace's one retry policy, [`contract::retry`]); the last
/// error or "not yet" reason ends up in the timeout message.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut op: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    Backoff::every(interval)
        .timeout(Some(timeout))
        .run(
            |_| match op() {
                Ok(Some(v)) => Ok(v),
                Ok(None) => Err("condition never true".to_string()),
                Err(e) => Err(format!("{e:#}")),
            },
            |_, _, _| {},
        )
        .map_err(|g| {
            anyhow::anyhow!(
                "timed out after {:.0} s waiting for {what}: {}",
                timeout.as_secs_f64(),
                g.last_error
            )
        })
}
