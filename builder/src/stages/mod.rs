//! The build stages, called in order by [`crate::build::build`]:
//! [`source_build`] → [`rootfs`] → [`overlay`] → [`generalize`] → [`disk`].

pub mod disk;
pub mod generalize;
pub mod go_build;
pub mod overlay;
pub mod rootfs;
pub mod source_build;
