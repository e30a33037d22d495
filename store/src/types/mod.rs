//! The data types, as packages. Each type's file owns its settings, its index and how a region
//! prunes it, how its keys read in conflicts and diffs, and its store operations. [`REGISTRY`] is
//! the only list of types: records and manifests name a type by [`DataType::name`], never by index.

mod keyvalue;
mod labelblk;
pub mod labelmap;
mod multiscale;
pub mod staging;
mod uint8blk;
mod voxels;

pub use keyvalue::MAX_VALUE_BYTES;
pub use multiscale::{Level, MAX_LEVELS};
pub use voxels::{BlockGeometry, Downsample, MAX_BLOCK_BYTES, MAX_BLOCK_EDGE, VoxelType, Voxels};

use crate::diff::KeyChange;
use crate::tree::Scope;
use crate::{Point, Result, StoreError};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

/// Every data type this build serves. A new type is a file in this folder and a line here (and
/// one in the node's HTTP registry).
pub static REGISTRY: &[&dyn DataType] = &[
    &uint8blk::UINT8BLK,
    &labelblk::LABELBLK,
    &labelmap::LABELMAP,
    &keyvalue::KEYVALUE,
];

/// What the core (catalog, trees, commit, merge, sync, fsck, diff) asks of a data type.
pub trait DataType: Send + Sync {
    /// DVID's type name ("uint8blk"): the type's identity in records, manifests and the API.
    fn name(&self) -> &'static str;

    /// The settings it takes at creation, as DVID names them (for messages).
    fn setting_names(&self) -> &'static [&'static str];

    /// Reads its settings out of a create request (the core has taken its own); returns the
    /// instance's block geometry, which only voxel types have.
    fn parse_settings(&self, settings: &mut Settings) -> Result<Option<BlockGeometry>>;

    /// Bytes per voxel, for voxel types: their instances carry block geometry and read and write
    /// subvolumes.
    fn voxel_bytes(&self) -> Option<usize> {
        None
    }

    /// What every block edge of its instances must be a multiple of (voxel types).
    fn block_multiple(&self) -> i32 {
        1
    }

    /// The type of its multiscale levels' instances (a labelmap's levels are labelblk: they hold
    /// supervoxels, read through the labelmap's mapping).
    fn level_type(&self) -> &'static str {
        self.name()
    }

    /// Whether it keeps a label index that writes to its blocks update (labelmap).
    fn indexes_labels(&self) -> bool {
        false
    }

    /// How its multiscale levels are computed, for voxel types that have them.
    fn downsample(&self) -> Option<Downsample> {
        None
    }

    /// The part of an instance's index that the voxel `regions` cover (`None`: no region, all
    /// of it): what a region pull fetches, a partial replica holds, fsck checks and a diff reads.
    fn scope(&self, spec: &InstanceSpec, regions: Option<&[(Point, Point)]>) -> Scope;

    /// How an index key reads in a merge conflict: "block (1,2,3)", "key \"a\"".
    fn describe_key(&self, key: &[u8], name: &[u8]) -> String;

    /// The order a diff lists changes in, as a reader looks for them.
    fn diff_order(&self, a: &KeyChange, b: &KeyChange) -> Ordering;
}

/// The type named `name`, from the registry.
pub fn by_name(name: &str) -> Result<TypeRef> {
    REGISTRY
        .iter()
        .find(|t| t.name() == name)
        .map(|&t| TypeRef(t))
        .ok_or_else(|| {
            StoreError::BadRequest(format!(
                "unknown data type {name:?}: this node serves {}",
                REGISTRY
                    .iter()
                    .map(|t| t.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

/// A data type from the registry: stored and sent by name.
#[derive(Clone, Copy)]
pub struct TypeRef(&'static dyn DataType);

impl std::ops::Deref for TypeRef {
    type Target = dyn DataType;

    fn deref(&self) -> &Self::Target {
        self.0
    }
}

impl PartialEq for TypeRef {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl fmt::Debug for TypeRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for TypeRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for TypeRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        by_name(&name).map_err(|e| serde::de::Error::custom(e.to_string()))
    }
}

/// What an instance is, fixed when it is created: its type, the type's settings and its tags. The
/// same value is in catalog records, manifests and create requests.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceSpec {
    pub datatype: TypeRef,
    /// Block geometry: voxel types only.
    pub geometry: Option<BlockGeometry>,
    pub tags: BTreeMap<String, String>,
}

impl InstanceSpec {
    /// A spec of a type without settings (key-value data).
    pub fn plain(datatype: &str) -> Result<Self> {
        Self::parse(datatype, Settings::default())
    }

    /// A spec of a voxel type with cubic `edge`-voxel blocks of 8 nm voxels (for code: tests, the
    /// simulator, benchmarks).
    pub fn voxels(datatype: &str, codec: crate::Codec, edge: i32) -> Result<Self> {
        let spec = Self {
            datatype: by_name(datatype)?,
            geometry: Some(BlockGeometry {
                codec,
                block_size: [edge; 3],
                voxel_size: [8.0; 3],
                voxel_units: std::array::from_fn(|_| "nanometers".to_string()),
            }),
            tags: BTreeMap::new(),
        };
        spec.check()?;
        Ok(spec)
    }

    /// Parses a create request: the core's settings (`Versioned`, `Tags`), then the type's own. A
    /// setting neither takes is refused, naming those they do.
    pub fn parse(typename: &str, mut settings: Settings) -> Result<Self> {
        let datatype = by_name(typename)?;
        if settings
            .take("versioned")
            .is_some_and(|v| v.eq_ignore_ascii_case("false"))
        {
            return Err(StoreError::BadRequest(
                "unversioned instances are not supported: every instance is versioned".into(),
            ));
        }
        let mut tags = BTreeMap::new();
        for pair in settings.take("tags").unwrap_or_default().split(',') {
            if !pair.is_empty() {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                tags.insert(k.trim().to_string(), v.trim().to_string());
            }
        }
        let geometry = datatype.parse_settings(&mut settings)?;
        if let Some(other) = settings.0.keys().next() {
            return Err(StoreError::BadRequest(format!(
                "unknown instance setting {other:?} for a {} instance: it takes typename, dataname, Versioned, Tags{}",
                datatype.name(),
                datatype
                    .setting_names()
                    .iter()
                    .map(|n| format!(", {n}"))
                    .collect::<String>()
            )));
        }
        let spec = Self {
            datatype,
            geometry,
            tags,
        };
        spec.check()?;
        Ok(spec)
    }

    /// Checks a spec however it was made (a request, code, a peer's manifest): voxel types have a
    /// valid block geometry, other types none.
    pub fn check(&self) -> Result<()> {
        match (self.datatype.voxel_bytes(), &self.geometry) {
            (Some(vb), Some(g)) => {
                let m = self.datatype.block_multiple();
                if g.block_size.iter().any(|s| s % m != 0) {
                    return Err(StoreError::BadRequest(format!(
                        "BlockSize {:?}: a {} instance's block edges are multiples of {m}",
                        g.block_size,
                        self.datatype.name()
                    )));
                }
                g.check(vb)
            }
            (None, None) => Ok(()),
            (Some(_), None) => Err(StoreError::BadRequest(format!(
                "a {} instance needs a block geometry",
                self.datatype.name()
            ))),
            (None, Some(_)) => Err(StoreError::BadRequest(format!(
                "{} instances have no BlockSize, VoxelSize or Compression",
                self.datatype.name()
            ))),
        }
    }
}

/// The settings of a create request as DVID sends them: names case-insensitive, values as text.
#[derive(Clone, Debug, Default)]
pub struct Settings(BTreeMap<String, String>);

impl Settings {
    pub fn new(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect(),
        )
    }

    /// Takes the setting `name` (lowercase) out, if it was given.
    pub fn take(&mut self, name: &str) -> Option<String> {
        self.0.remove(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_registry_names_are_unique_and_round_trip() {
        let mut names: Vec<&str> = REGISTRY.iter().map(|t| t.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), REGISTRY.len());
        for name in names {
            let t = by_name(name).unwrap();
            // Stored by name: postcard writes the length, then the name's bytes.
            let bytes = postcard::to_stdvec(&t).unwrap();
            assert_eq!(bytes[0] as usize, name.len());
            assert_eq!(&bytes[1..], name.as_bytes());
            assert_eq!(postcard::from_bytes::<TypeRef>(&bytes).unwrap(), t);
        }
        assert!(postcard::from_bytes::<TypeRef>(&postcard::to_stdvec("nosuch").unwrap()).is_err());
    }

    #[test]
    fn types_parse_refuses_what_a_type_does_not_take() {
        let kv = |pairs: &[(&str, &str)]| {
            InstanceSpec::parse(
                "keyvalue",
                Settings::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()))),
            )
        };
        assert!(kv(&[("Tags", "a=b")]).unwrap().geometry.is_none());
        let e = kv(&[("BlockSize", "8,8,8")]).unwrap_err().to_string();
        assert!(e.contains("\"blocksize\"") && e.contains("keyvalue"), "{e}");
        assert!(kv(&[("versioned", "false")]).is_err());
        assert!(InstanceSpec::plain("nosuch").is_err());
        let g = InstanceSpec::parse(
            "uint8blk",
            Settings::new([("blocksize".to_string(), "16,16,16".to_string())]),
        )
        .unwrap();
        assert_eq!(g.geometry.unwrap().block_size, [16, 16, 16]);
    }
}
