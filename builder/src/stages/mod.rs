//! The build stages, called in order by [`crate::build::build`]:
//! [`rootfs`] → [`overlay`] → [`generalize`] → [`disk`].

pub mod disk;
pub mod generalize;
pub mod overlay;
pub mod rootfs;
