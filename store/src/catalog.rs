//! The catalog: repos, their data instances and version DAGs. Small enough to keep in memory; every
//! change is written through to the ordered store as one record per repo and per version.

use crate::geometry::Point;
use crate::tree::TreeRef;
use crate::types::InstanceSpec;
use crate::{ObjectId, Result, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A version or repo UUID: 128 random bits, shown as 32 lowercase hex digits like DVID's. Binary
/// formats (postcard: records, the wire) carry it as a u128; text formats (JSON: the jobs file) as
/// its 32 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uuid(pub u128);

impl Serialize for Uuid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match s.is_human_readable() {
            true => s.serialize_str(&self.to_hex()),
            false => s.serialize_u128(self.0),
        }
    }
}

impl<'de> Deserialize<'de> for Uuid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match d.is_human_readable() {
            true => String::deserialize(d)?
                .parse()
                .map_err(|e: StoreError| serde::de::Error::custom(e.to_string())),
            false => u128::deserialize(d).map(Uuid),
        }
    }
}

impl std::str::FromStr for Uuid {
    type Err = StoreError;

    /// A full UUID: exactly 32 hexadecimal digits (prefixes are resolved by [`Catalog::resolve`]).
    fn from_str(text: &str) -> Result<Self> {
        let t = text.trim();
        match t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            true => u128::from_str_radix(t, 16)
                .map(Uuid)
                .map_err(|e| StoreError::BadRequest(format!("bad UUID {text:?}: {e}"))),
            false => Err(StoreError::BadRequest(format!(
                "{text:?} is not a full UUID: expected 32 hexadecimal digits"
            ))),
        }
    }
}

impl Uuid {
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4().as_u128())
    }

    pub fn to_hex(&self) -> String {
        format!("{:032x}", self.0)
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Uuid({})", self.to_hex())
    }
}

/// A data instance: a named, typed dataset living in every version of its repo from the one it
/// was created in.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Instance {
    pub id: u32,
    pub name: String,
    pub data_uuid: Uuid,
    pub spec: InstanceSpec,
    /// Inclusive voxel bounds of everything ever written, across versions (as DVID keeps them).
    pub extents: Option<(Point, Point)>,
}

/// A repo: alias, description, log, instances, and the ids of its versions.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Repo {
    pub id: u32,
    pub root: Uuid,
    pub alias: String,
    pub description: String,
    pub log: Vec<String>,
    pub instances: BTreeMap<String, Instance>,
    pub versions: Vec<u32>,
    pub created: String,
    pub updated: String,
    /// Peers (by PeerId text) that may fetch every locked version of this repo.
    pub shared_with: std::collections::BTreeSet<String>,
}

/// A node of the version DAG.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Version {
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
    /// Tree roots by instance id. For a locked version, its committed contents; for a mutable one,
    /// the base that its working set overlays.
    pub roots: BTreeMap<u32, TreeRef>,
    /// Set when locked: see [`crate::manifest::commit_hash`].
    pub commit_hash: Option<ObjectId>,
    /// Set when locked by a node with a key: see [`crate::manifest::Seal`].
    pub seal: Option<crate::manifest::Seal>,
    /// What of this version this node holds.
    pub replica: crate::manifest::Replica,
    /// Any peer may fetch this (locked) version.
    pub published: bool,
    /// The instances this version holds, by id, fixed when it is committed: the commit hash,
    /// manifests, fsck and reads use this set, so an instance added to the repo later never
    /// changes a locked version. `None` while mutable: a mutable version holds every instance of
    /// its repo (DVID adds instances only to mutable versions). Instance definitions never change
    /// after creation (only their extents, which no hash covers), so the ids pin name, type, data
    /// UUID and settings.
    pub instances: Option<BTreeSet<u32>>,
}

impl Version {
    /// True if the version holds the instance (a mutable version holds them all).
    pub fn has_instance(&self, id: u32) -> bool {
        self.instances.as_ref().is_none_or(|set| set.contains(&id))
    }
}

/// All repos and versions, indexed for lookup by id and by UUID.
#[derive(Default, Clone)]
pub struct Catalog {
    pub repos: BTreeMap<u32, Repo>,
    pub versions: BTreeMap<u32, Version>,
    by_uuid: BTreeMap<Uuid, u32>,
    pub next_id: u32,
}

impl Catalog {
    pub fn insert_repo(&mut self, repo: Repo) {
        self.repos.insert(repo.id, repo);
    }

    pub fn insert_version(&mut self, v: Version) {
        self.by_uuid.insert(v.uuid, v.id);
        self.versions.insert(v.id, v);
    }

    pub fn allocate_id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id
    }

    /// Resolves a full UUID or any unique prefix of one (as DVID does) to a version id.
    pub fn resolve(&self, text: &str) -> Result<u32> {
        let text = text.trim().to_ascii_lowercase();
        if text.is_empty() || text.len() > 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StoreError::BadRequest(format!(
                "{text:?} is not a UUID: expected 1 to 32 hexadecimal digits"
            )));
        }
        let pad = 32 - text.len();
        let lo = u128::from_str_radix(&format!("{text}{}", "0".repeat(pad)), 16)
            .map_err(|e| StoreError::BadRequest(format!("bad UUID {text:?}: {e}")))?;
        let hi = u128::from_str_radix(&format!("{text}{}", "f".repeat(pad)), 16)
            .map_err(|e| StoreError::BadRequest(format!("bad UUID {text:?}: {e}")))?;
        let mut hits = self.by_uuid.range(Uuid(lo)..=Uuid(hi));
        match (hits.next(), hits.next()) {
            (Some((_, &id)), None) => Ok(id),
            (None, _) => Err(StoreError::NotFound(format!(
                "no version matches UUID {text:?}"
            ))),
            (Some(_), Some(_)) => Err(StoreError::Ambiguous {
                prefix: text,
                matches: 2 + hits.count(),
            }),
        }
    }

    /// Resolves a full 32-digit UUID without prefix matching; `None` if unknown.
    pub fn exact(&self, uuid: Uuid) -> Option<u32> {
        self.by_uuid.get(&uuid).copied()
    }

    pub fn version(&self, id: u32) -> Result<&Version> {
        self.versions
            .get(&id)
            .ok_or_else(|| StoreError::Corrupt(format!("version id {id} is missing")))
    }

    pub fn repo_of(&self, version: u32) -> Result<&Repo> {
        let v = self.version(version)?;
        self.repos
            .get(&v.repo)
            .ok_or_else(|| StoreError::Corrupt(format!("repo id {} is missing", v.repo)))
    }

    /// The instance `name` as `version` holds it. An instance added to the repo after the version
    /// was committed did not exist at that version: not found, with a message that says so.
    pub fn instance(&self, version: u32, name: &str) -> Result<&Instance> {
        let repo = self.repo_of(version)?;
        let v = self.version(version)?;
        match repo.instances.get(name) {
            Some(inst) if v.has_instance(inst.id) => Ok(inst),
            Some(_) => Err(StoreError::NotFound(format!(
                "data instance {name:?} did not exist at version {}: it was added to repo {} after that version was committed, and exists from the versions made since",
                v.uuid, repo.root
            ))),
            None => Err(StoreError::NotFound(format!(
                "no data instance {name:?} in repo {} (it has: {})",
                repo.root,
                repo.instances
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// The instances `version` holds, in name order (the order the commit hash covers them in).
    pub fn instances_at(&self, version: u32) -> Result<Vec<&Instance>> {
        let repo = self.repo_of(version)?;
        let v = self.version(version)?;
        Ok(repo
            .instances
            .values()
            .filter(|i| v.has_instance(i.id))
            .collect())
    }

    /// Every ancestor of `id`, itself included.
    pub fn ancestors(&self, id: u32) -> Result<Vec<u32>> {
        let mut seen = std::collections::BTreeSet::new();
        let mut stack = vec![id];
        while let Some(v) = stack.pop() {
            if seen.insert(v) {
                stack.extend(self.version(v)?.parents.iter().copied());
            }
        }
        Ok(seen.into_iter().collect())
    }

    /// `id` and every version that descends from it (through `children`).
    pub fn descendants(&self, id: u32) -> Result<Vec<u32>> {
        let mut seen = std::collections::BTreeSet::new();
        let mut stack = vec![id];
        while let Some(v) = stack.pop() {
            if seen.insert(v) {
                stack.extend(self.version(v)?.children.iter().copied());
            }
        }
        Ok(seen.into_iter().collect())
    }

    /// The versions of a branch (`master` names the root's unnamed branch), from its leaf back to
    /// the repo's root along first parents, with the other parents of merges listed before the
    /// parent ascended (DVID's order). Empty if no version of the repo is on the branch.
    pub fn branch_versions(&self, repo: u32, branch: &str) -> Result<Vec<Uuid>> {
        let on_branch =
            |v: &Version| v.branch == branch || (branch == "master" && v.branch.is_empty());
        let repo = self
            .repos
            .get(&repo)
            .ok_or_else(|| StoreError::NotFound("repo".into()))?;
        let Some(mut cur) = repo
            .versions
            .iter()
            .filter_map(|id| self.versions.get(id))
            .find(|v| on_branch(v))
        else {
            return Ok(vec![]);
        };
        // Down to the branch's leaf: a branch has at most one child on it.
        while let Some(child) = cur
            .children
            .iter()
            .filter_map(|id| self.versions.get(id))
            .find(|c| c.branch == cur.branch)
        {
            cur = child;
        }
        let mut out = vec![cur.uuid];
        while let Some((last, others)) = cur.parents.split_last() {
            for p in others {
                out.push(self.version(*p)?.uuid);
            }
            cur = self.version(*last)?;
            out.push(cur.uuid);
        }
        Ok(out)
    }

    /// A merge base of several versions: a common ancestor that is not an ancestor of another common
    /// ancestor; among several such (criss-cross histories), the newest.
    pub fn merge_base(&self, versions: &[u32]) -> Result<Option<u32>> {
        let mut common: Option<std::collections::BTreeSet<u32>> = None;
        for &v in versions {
            let a: std::collections::BTreeSet<u32> = self.ancestors(v)?.into_iter().collect();
            common = Some(match common {
                None => a,
                Some(c) => c.intersection(&a).copied().collect(),
            });
        }
        let common = common.unwrap_or_default();
        let mut best = None;
        for &c in common.iter().rev() {
            let dominated = common
                .iter()
                .any(|&o| o != c && self.ancestors(o).is_ok_and(|a| a.contains(&c)));
            if !dominated {
                best = Some(c);
                break;
            }
        }
        Ok(best)
    }
}

/// Current time in DVID's format (RFC 3339 with local offset).
pub fn now() -> String {
    chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(id: u32, uuid: u128, parents: Vec<u32>) -> Version {
        Version {
            id,
            uuid: Uuid(uuid),
            repo: 1,
            parents,
            children: vec![],
            branch: String::new(),
            note: String::new(),
            log: vec![],
            locked: true,
            created: now(),
            updated: now(),
            roots: BTreeMap::new(),
            commit_hash: None,
            seal: None,
            replica: crate::manifest::Replica::Full,
            published: false,
            instances: Some(BTreeSet::new()),
        }
    }

    #[test]
    fn catalog_resolves_unique_prefixes() {
        let mut c = Catalog::default();
        c.insert_version(version(1, 0xabc0 << 112, vec![]));
        c.insert_version(version(2, 0xabd0 << 112, vec![1]));
        assert_eq!(c.resolve("abc").unwrap(), 1);
        assert_eq!(c.resolve("ABD").unwrap(), 2);
        assert!(matches!(
            c.resolve("ab"),
            Err(StoreError::Ambiguous { matches: 2, .. })
        ));
        assert!(matches!(c.resolve("ff"), Err(StoreError::NotFound(_))));
        assert!(matches!(c.resolve("xyz"), Err(StoreError::BadRequest(_))));
        assert!(matches!(
            c.resolve(&"a".repeat(33)),
            Err(StoreError::BadRequest(_))
        ));
    }

    #[test]
    fn catalog_enums_golden_bytes() {
        // Postcard writes enum variant indexes: these bytes are on disk and on the wire.
        use crate::Codec;
        assert_eq!(enc(&Codec::Lz4), [0]);
        assert_eq!(enc(&Codec::Zstd(3)), [1, 6]); // zigzag varint of 3
        assert_eq!(enc(&Codec::Jpeg(80)), [2, 80]);
        assert_eq!(enc(&crate::Replica::Full), [0]);
        assert_eq!(enc(&crate::Replica::MetadataOnly), [2]);
        let part = crate::Restriction {
            instances: Some(vec!["g".into()]),
            region: Some(([0, 0, 0], [1, 1, 1])),
        };
        // Partial: variant 1, one part, Some(["g"]), Some(box of zigzag varints).
        assert_eq!(
            enc(&crate::Replica::Partial(vec![part])),
            [1, 1, 1, 1, 1, b'g', 1, 0, 0, 0, 2, 2, 2]
        );
    }

    #[test]
    fn catalog_instance_spec_golden_bytes() {
        // Types are stored by name; block geometry only on voxel types.
        let kv = InstanceSpec::plain("keyvalue").unwrap();
        let mut expected = vec![8];
        expected.extend(b"keyvalue");
        expected.extend([0, 0]); // no geometry, no tags
        assert_eq!(enc(&kv), expected);
        let g = crate::types::BlockGeometry {
            codec: crate::Codec::Lz4,
            block_size: [1, 2, 3],
            voxel_size: [1.0; 3],
            voxel_units: ["n".into(), "n".into(), "n".into()],
        };
        let gray = InstanceSpec {
            datatype: crate::types::by_name("uint8blk").unwrap(),
            geometry: Some(g),
            tags: BTreeMap::new(),
        };
        let mut expected = vec![8];
        expected.extend(b"uint8blk");
        expected.extend([1, 0, 2, 4, 6]); // Some, Lz4, zigzag 1 2 3
        expected.extend([0, 0, 0x80, 0x3f].repeat(3)); // 1.0f32 little-endian
        expected.extend([1, b'n'].repeat(3));
        expected.push(0);
        assert_eq!(enc(&gray), expected);
    }

    fn enc<T: Serialize>(v: &T) -> Vec<u8> {
        postcard::to_stdvec(v).unwrap()
    }

    #[test]
    fn catalog_uuid_is_hex_in_text_and_u128_in_postcard() {
        let u = Uuid(0xab << 120 | 7);
        let json = serde_json::to_string(&u).unwrap();
        assert_eq!(json, format!("\"{}\"", u.to_hex()));
        assert_eq!(serde_json::from_str::<Uuid>(&json).unwrap(), u);
        assert_eq!(enc(&Uuid(1)), [1]);
        assert_eq!(postcard::from_bytes::<Uuid>(&enc(&u)).unwrap(), u);
        assert!("abc".parse::<Uuid>().is_err());
        assert_eq!(u.to_hex().parse::<Uuid>().unwrap(), u);
    }

    #[test]
    fn catalog_merge_base_of_branches() {
        let mut c = Catalog::default();
        c.insert_version(version(1, 1, vec![]));
        c.insert_version(version(2, 2, vec![1]));
        c.insert_version(version(3, 3, vec![2]));
        c.insert_version(version(4, 4, vec![2]));
        c.insert_version(version(5, 5, vec![4]));
        assert_eq!(c.merge_base(&[3, 5]).unwrap(), Some(2));
        assert_eq!(c.merge_base(&[2, 5]).unwrap(), Some(2));
    }
}
