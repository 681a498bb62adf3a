//! kubebake: bakes one golden, verified Kubernetes node disk image from a
//! declarative image definition, and drives the VM harness over it.

pub mod bench;
pub mod build;
pub mod check;
pub mod children;
pub mod cli;
pub mod cluster_cache;
pub mod cluster_secrets;
pub mod commands;
pub mod conformance;
// The definition parser lives in its own crate (definition/), for its fuzz
// target; the builder's paths stay `crate::definition` / `crate::digest`.
pub use kubebake_definition::{definition, digest};
pub mod fetch;
pub mod hostcmd;
pub mod inspect;
pub mod kube_bench;
pub mod layout;
pub mod locks;
pub mod manifest;
pub mod memory_root;
pub mod oci;
pub mod output;
pub mod progress;
pub mod qcow2;
pub mod render;
pub mod space;
pub mod sparse;
pub mod stages;
pub mod sweep;
