//! kubebake: bakes one golden, verified Kubernetes node disk image from a
//! declarative image definition.

pub mod bench;
pub mod boot;
pub mod build;
pub mod cli;
pub mod cluster_secrets;
pub mod commands;
pub mod definition;
pub mod digest;
pub mod fetch;
pub mod hostcmd;
pub mod inspect;
pub mod manifest;
pub mod oci;
pub mod progress;
pub mod render;
pub mod stages;
pub mod vm;
