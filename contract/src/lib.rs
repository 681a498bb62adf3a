//! The contract between kubebake's builder, its image definition, the VM
//! harness and rolectl (the boot agent baked into the image): every rule
//! that more than one of them applies lives here, once.
//!
//! - [`role`]: the two roles and their marker paths;
//! - [`values`]: validated names (cluster, domain, DNS labels) and the weave
//!   password, and [`validated_string!`], the string API every validated
//!   string type of the workspace gets (rolectl's too);
//! - [`unitfile`]: the unit-file `ConditionPathExists=` reader;
//! - [`retry`]: the one retry/backoff policy;
//! - [`console`]: the console lines rolectl prints and the harness waits for;
//! - [`credentials`]: the credential schema (one table: user-data key, kind,
//!   roles, required or optional, file of the cluster secrets directory,
//!   file on the node) and the bootstrap token.
//!
//! A leaf crate: it depends on no crate of the workspace and on nothing that
//! does I/O (rolectl is baked into every image and kept under 2 MB).

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod console;
pub mod credentials;
pub mod retry;
pub mod role;
pub mod unitfile;
pub mod values;
