//! The catalog's records on disk: one per repo and one per version in the meta space, each written
//! as `[format byte][postcard body]`. This module owns that format and migrates data dirs of older
//! formats when they are opened, in one batch.
//!
//! The meta key `c/format` holds the format of the whole catalog: a data dir without it but with
//! records is a format-1 dir (dvid 0.1.0, which stored bare postcard bodies).

use crate::catalog::{Catalog, Instance, Repo, Uuid, Version};
use crate::engine::{BatchOp, OrderedStore, Space};
use crate::manifest::{Replica, Seal};
use crate::tree::TreeRef;
use crate::{ObjectId, Result, StoreError, keys};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The catalog format this build writes. 1: bare postcard records, versions without their instance
/// set. 2: every record prefixed by its format; versions record the instances they hold. 3:
/// instances name their type (format 2 wrote an enum index) and only voxel types keep block
/// geometry.
pub const CATALOG_FORMAT: u8 = 3;

/// Most instances of a repo for which migration searches every subset for the set a format-1
/// version was committed over (beyond it, only the prefixes in creation order are tried).
const MAX_SUBSET_SEARCH: usize = 16;

/// The write that stores `value` under `key` in this build's format.
pub(crate) fn put_record<T: Serialize>(key: Vec<u8>, value: &T) -> BatchOp {
    let mut bytes = vec![CATALOG_FORMAT];
    bytes.extend(postcard::to_stdvec(value).expect("records serialize"));
    BatchOp::Put(Space::Meta, key, bytes)
}

pub(crate) fn put_counter(next_id: u32) -> BatchOp {
    BatchOp::Put(
        Space::Meta,
        keys::NEXT_ID.to_vec(),
        next_id.to_be_bytes().to_vec(),
    )
}

fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T> {
    decode_format(key, bytes, CATALOG_FORMAT)
}

/// Decodes a record that must be of `format`.
fn decode_format<T: DeserializeOwned>(key: &[u8], bytes: &[u8], format: u8) -> Result<T> {
    match bytes.split_first() {
        Some((&f, body)) if f == format => postcard::from_bytes(body)
            .map_err(|e| StoreError::Corrupt(format!("record {key:02x?}: {e}"))),
        Some((other, _)) => Err(StoreError::Corrupt(format!(
            "record {key:02x?} has format {other}; expected format {format}"
        ))),
        None => Err(StoreError::Corrupt(format!("record {key:02x?} is empty"))),
    }
}

/// Decodes a format-1 record: a bare postcard body.
fn decode_bare<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Corrupt(format!("record {key:02x?}: {e}")))
}

/// Loads the catalog, migrating a format-1 data dir first. A data dir of a newer format is refused
/// (with the formats named) rather than misread.
pub(crate) fn load_catalog(meta: &dyn OrderedStore) -> Result<Catalog> {
    let format = match meta.get(Space::Meta, keys::FORMAT)? {
        Some(raw) => match raw.as_slice() {
            [f] => *f,
            _ => return Err(StoreError::Corrupt("catalog format is not one byte".into())),
        },
        None if meta.get(Space::Meta, keys::NEXT_ID)?.is_some() => 1,
        None => {
            meta.write(vec![format_op()])?;
            CATALOG_FORMAT
        }
    };
    match format {
        1 => {
            let c = read_catalog(
                meta,
                &|k, b| decode_bare::<legacy::Repo>(k, b)?.upgrade(),
                &|k, b| decode_bare::<legacy::VersionV1>(k, b).map(Version::from),
            )?;
            migrate(meta, fill_instance_sets(c)?, 1)
        }
        2 => {
            let c = read_catalog(
                meta,
                &|k, b| decode_format::<legacy::Repo>(k, b, 2)?.upgrade(),
                &|k, b| decode_format::<Version>(k, b, 2),
            )?;
            migrate(meta, c, 2)
        }
        CATALOG_FORMAT => read_catalog(meta, &decode::<Repo>, &decode::<Version>),
        newer => Err(StoreError::Corrupt(format!(
            "this data dir has catalog format {newer}, written by a newer dvid; this one reads formats 1 to {CATALOG_FORMAT}"
        ))),
    }
}

fn format_op() -> BatchOp {
    BatchOp::Put(Space::Meta, keys::FORMAT.to_vec(), vec![CATALOG_FORMAT])
}

fn read_counter(meta: &dyn OrderedStore) -> Result<u32> {
    let Some(raw) = meta.get(Space::Meta, keys::NEXT_ID)? else {
        return Ok(0);
    };
    let bytes: [u8; 4] = raw
        .as_slice()
        .try_into()
        .map_err(|_| StoreError::Corrupt("id counter is not 4 bytes".into()))?;
    Ok(u32::from_be_bytes(bytes))
}

/// Decodes one record of an older or the current format into this build's shape.
type Decoder<'a, T> = &'a dyn Fn(&[u8], &[u8]) -> Result<T>;

/// Reads every repo and version record with the given decoders.
fn read_catalog(
    meta: &dyn OrderedStore,
    repo: Decoder<'_, Repo>,
    version: Decoder<'_, Version>,
) -> Result<Catalog> {
    let mut c = Catalog::default();
    c.next_id = read_counter(meta)?;
    let mut err = None;
    for (prefix, is_repo) in [(keys::REPO_PREFIX, true), (keys::VERSION_PREFIX, false)] {
        let end = keys::prefix_end(prefix);
        meta.scan(Space::Meta, prefix, end.as_deref(), &mut |k, v| {
            let r = match is_repo {
                true => repo(k, v).map(|r| c.insert_repo(r)),
                false => version(k, v).map(|v| c.insert_version(v)),
            };
            match r {
                Ok(()) => true,
                Err(e) => {
                    err = Some(e);
                    false
                }
            }
        })?;
    }
    err.map_or(Ok(c), Err)
}

/// Rewrites every record of a catalog read from an older format, and the format, in one batch.
fn migrate(meta: &dyn OrderedStore, c: Catalog, from: u8) -> Result<Catalog> {
    let mut batch = vec![format_op()];
    batch.extend(c.repos.values().map(|r| put_record(keys::repo(r.id), r)));
    batch.extend(
        c.versions
            .values()
            .map(|v| put_record(keys::version(v.id), v)),
    );
    meta.write(batch)?;
    tracing::info!(
        repos = c.repos.len(),
        versions = c.versions.len(),
        "migrated the catalog from format {from} to {CATALOG_FORMAT}"
    );
    Ok(c)
}

/// Format 1 recorded no instance sets: finds the one each locked version was committed over.
fn fill_instance_sets(mut c: Catalog) -> Result<Catalog> {
    let locked: Vec<u32> = c
        .versions
        .values()
        .filter(|v| v.locked)
        .map(|v| v.id)
        .collect();
    for id in locked {
        let held = committed_instances(&c, id)?;
        let mut v = c.version(id)?.clone();
        v.instances = Some(held);
        c.insert_version(v);
    }
    Ok(c)
}

/// The instances a format-1 locked version was committed over: the set whose commit hash is the one
/// it carries. Format 1 hashed the repo's instances at commit time, and instances are never
/// removed, so that set is the instances made before the commit: a prefix of the instances in id
/// order when they were made here, some other subset when a pull brought them. If no set matches,
/// the version keeps every instance and fsck reports its hash, as format 1 did.
fn committed_instances(c: &Catalog, id: u32) -> Result<BTreeSet<u32>> {
    let v = c.version(id)?;
    let all: Vec<u32> = {
        let mut ids: Vec<u32> = c.repo_of(id)?.instances.values().map(|i| i.id).collect();
        ids.sort_unstable();
        ids
    };
    let Some(stored) = v.commit_hash else {
        return Ok(all.into_iter().collect());
    };
    let matches = |set: BTreeSet<u32>| -> Result<Option<BTreeSet<u32>>> {
        if !v.roots.keys().all(|r| set.contains(r)) {
            return Ok(None);
        }
        let mut candidate = v.clone();
        candidate.instances = Some(set);
        let hash = crate::store::commit_hash(c, c.repo_of(id)?, &candidate)?;
        Ok((hash == stored).then(|| candidate.instances.take().unwrap_or_default()))
    };
    for k in (0..=all.len()).rev() {
        if let Some(set) = matches(all[..k].iter().copied().collect())? {
            return Ok(set);
        }
    }
    if all.len() <= MAX_SUBSET_SEARCH {
        for mask in 0u32..(1 << all.len()) {
            let set = (0..all.len())
                .filter(|b| mask & (1 << b) != 0)
                .map(|b| all[b])
                .collect();
            if let Some(set) = matches(set)? {
                return Ok(set);
            }
        }
    }
    tracing::warn!(version = %v.uuid, "no instance set reproduces this version's commit hash: keeping all");
    Ok(all.into_iter().collect())
}

/// The records of formats 1 and 2, as dvid 0.1.0 and its successor wrote them.
mod legacy {
    use super::*;
    use crate::types::{BlockGeometry, InstanceSpec, by_name};
    use crate::{Codec, Point};

    /// Formats 1 and 2 stored an instance's type as the index of an enum variant, in this order.
    /// Frozen: later types are stored by name.
    const TYPE_BY_INDEX: [&str; 3] = ["uint8blk", "labelblk", "keyvalue"];

    #[derive(Deserialize)]
    pub struct Repo {
        id: u32,
        root: Uuid,
        alias: String,
        description: String,
        log: Vec<String>,
        instances: BTreeMap<String, Instance>,
        versions: Vec<u32>,
        created: String,
        updated: String,
        shared_with: BTreeSet<String>,
    }

    #[derive(Deserialize)]
    struct Instance {
        id: u32,
        name: String,
        data_uuid: Uuid,
        kind: u32,
        codec: Codec,
        block_size: Point,
        voxel_size: [f32; 3],
        voxel_units: [String; 3],
        extents: Option<(Point, Point)>,
        tags: BTreeMap<String, String>,
    }

    impl Repo {
        pub fn upgrade(self) -> Result<crate::catalog::Repo> {
            let instances = self
                .instances
                .into_iter()
                .map(|(name, i)| Ok((name, i.upgrade()?)))
                .collect::<Result<_>>()?;
            Ok(crate::catalog::Repo {
                id: self.id,
                root: self.root,
                alias: self.alias,
                description: self.description,
                log: self.log,
                instances,
                versions: self.versions,
                created: self.created,
                updated: self.updated,
                shared_with: self.shared_with,
            })
        }
    }

    impl Instance {
        /// The type by name; block fields kept only by voxel types (key-value instances carried
        /// made-up ones).
        fn upgrade(self) -> Result<super::Instance> {
            let name = TYPE_BY_INDEX.get(self.kind as usize).ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "instance {:?} has type index {}, unknown to format 2",
                    self.name, self.kind
                ))
            })?;
            let datatype = by_name(name)?;
            let geometry = datatype.voxel_bytes().map(|_| BlockGeometry {
                codec: self.codec,
                block_size: self.block_size,
                voxel_size: self.voxel_size,
                voxel_units: self.voxel_units,
            });
            Ok(super::Instance {
                id: self.id,
                name: self.name,
                data_uuid: self.data_uuid,
                spec: InstanceSpec {
                    datatype,
                    geometry,
                    tags: self.tags,
                },
                extents: self.extents,
            })
        }
    }

    /// A version record of format 1.
    #[derive(Deserialize)]
    pub struct VersionV1 {
        pub id: u32,
        pub uuid: Uuid,
        pub repo: u32,
        pub parents: Vec<u32>,
        pub children: Vec<u32>,
        pub branch: String,
        pub note: String,
        pub log: Vec<String>,
        pub locked: bool,
        pub created: String,
        pub updated: String,
        pub roots: BTreeMap<u32, TreeRef>,
        pub commit_hash: Option<ObjectId>,
        pub seal: Option<Seal>,
        pub replica: Replica,
        pub published: bool,
    }

    impl From<VersionV1> for crate::catalog::Version {
        fn from(v: VersionV1) -> Self {
            Self {
                id: v.id,
                uuid: v.uuid,
                repo: v.repo,
                parents: v.parents,
                children: v.children,
                branch: v.branch,
                note: v.note,
                log: v.log,
                locked: v.locked,
                created: v.created,
                updated: v.updated,
                roots: v.roots,
                commit_hash: v.commit_hash,
                seal: v.seal,
                replica: v.replica,
                published: v.published,
                // Set by the migration for locked versions; mutable ones hold every instance.
                instances: None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_golden_prefix() {
        let BatchOp::Put(Space::Meta, key, bytes) = put_counter(7) else {
            panic!("counter is a meta put");
        };
        assert_eq!(
            (key.as_slice(), bytes.as_slice()),
            (keys::NEXT_ID, &[0, 0, 0, 7][..])
        );
        let BatchOp::Put(_, _, bytes) = put_record(keys::repo(1), &(5u8, "ab")) else {
            panic!("records are puts");
        };
        // The format byte, then the postcard body: 5, then a 2-byte string.
        assert_eq!(bytes, [CATALOG_FORMAT, 5, 2, b'a', b'b']);
        assert_eq!(
            decode::<(u8, String)>(b"k", &bytes).unwrap(),
            (5, "ab".into())
        );
        assert!(decode::<(u8, String)>(b"k", &[9, 5]).is_err());
    }
}
