//! The shared vocabulary: pure types with no I/O. Digests, repository names and tags, media
//! types, manifest parsing, and the spec's error codes.

pub mod digest;
pub mod error;
pub mod hashstate;
pub mod manifest;
pub mod media;
pub mod name;

pub use digest::{Algorithm, Digest};
pub use error::{ErrorCode, RegistryError};
pub use name::{Reference, RepoName, Tag};
