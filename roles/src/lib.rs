//! rolectl: boot-time role activation for the kubebake golden image.
//!
//! `activate` reads the user-data (from the image's datasources itself, or
//! cloud-init's copy) and writes
//! `/etc/sysconfig/kubernetes-{master,minion}`; `wait-master`, `weave`,
//! `status` and `preflight` help the role units that the marker gates.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod cmd;
pub mod credentials;
pub mod datasource;
pub mod marker;
pub mod pki;
pub mod preflight;
pub mod role;
pub mod settings;
pub mod status;
pub mod userdata;
pub mod wait;
pub mod weave;
