//! `dvid-store`: versioned, content-addressed storage for image volumes and key-value data.
//!
//! Layers, bottom up: [`engine`] (ordered key-value and object stores: fjall or memory), [`object`]
//! (BLAKE3 content addresses), [`tree`] (per-version Merkle tries), [`catalog`] (repos, instances,
//! the version DAG), [`Store`], and the data types on top ([`types`], one file each, one registry).

pub mod catalog;
pub mod codec;
pub mod diff;
pub mod engine;
mod error;
mod fsck;
pub mod geometry;
pub mod jpeg;
pub mod keys;
pub mod manifest;
pub mod object;
mod records;
mod replicate;
pub mod sharing;
mod store;
pub mod tree;
pub mod types;

pub use catalog::{Catalog, Instance, Repo, Uuid, Version};
pub use codec::Codec;
pub use engine::{FjallEngine, MemEngine, ObjectStore, OrderedStore};
pub use error::{Result, StoreError};
pub use fsck::FsckReport;
pub use geometry::{Point, Subvolume};
pub use manifest::{Replica, Restriction, Seal, Sealer, VersionManifest};
pub use object::ObjectId;
pub use store::{DataHandle, Store};
pub use types::{
    BlockGeometry, DataType, InstanceSpec, MAX_BLOCK_BYTES, MAX_BLOCK_EDGE, MAX_VALUE_BYTES,
    Settings, TypeRef,
};
