//! lvrepo-fs: the lvrepo storage engine as a library.
//!
//! Layers, bottom up:
//! - [`digest`]: typed BLAKE3 ids (`b3:…`);
//! - [`object`]: object stores (packs + RocksDB index; verification, caching and
//!   layering as wrappers);
//! - [`chunker`] and [`tree`]: how files and directories become objects;
//! - [`repo`]: the repository directory, its format version and image refs;
//! - [`remote`]: a repository on an object store, cached by a local one;
//! - [`import`], [`export`], [`diff`], [`verify`], [`gc`], [`stats`]: operations.

pub mod audit;
pub mod backup;
pub mod chunker;
pub mod diff;
pub mod digest;
pub mod error;
pub mod export;
pub mod filecache;
pub mod fuse;
pub mod gc;
pub mod guest;
pub mod import;
pub mod merge;
pub mod nbd;
pub mod object;
pub mod overlay;
pub mod perms;
pub mod reach;
pub mod remote;
pub mod repo;
pub mod sign;
pub mod stats;
pub mod stream;
pub mod tree;
pub mod verify;
pub mod walk;

#[cfg(test)]
mod deep_tests;

pub use digest::{ChunkId, CheckpointId, Digest, FileId, ImageId, ObjectKind, TreeId};
pub use error::{Error, ErrorClass, Result};
pub use import::{ImportStats, ImportTarget, NoProgress, Progress};
pub use object::ObjectStore;
pub use repo::{ImageRecord, ImageRef, Repository};
pub use tree::{Content, Entry, Kind, Timestamp, Tree};
