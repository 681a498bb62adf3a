//! kubebake's image definition (`images/*.yaml`): the parser, its
//! validation with field paths, and the digests artifacts are pinned by.
//! The builder re-exports both modules as `kubebake::definition` and
//! `kubebake::digest`.

pub mod definition;
pub mod digest;
