//! kubebake: bakes one golden, verified Kubernetes node disk image from a
//! declarative image definition.

pub mod definition;
pub mod digest;
pub mod fetch;
pub mod progress;
