//! Version manifests: what a node sends a peer so the peer can replicate a locked version. This
//! module owns the manifest format and the commit hash, so both sides compute the hash the same way.
//!
//! A manifest carries the repo's identity and instances, and the target version with all its
//! ancestors (metadata only: small). Objects travel separately, fetched by walking the roots.

use crate::catalog::Uuid;
use crate::tree::TreeRef;
use crate::types::InstanceSpec;
use crate::{ObjectId, Point, Result, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Largest encoded manifest accepted from a peer.
pub const MAX_MANIFEST_BYTES: usize = 16 << 20;

/// A data instance as replicated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceDef {
    pub name: String,
    pub data_uuid: Uuid,
    pub spec: InstanceSpec,
}

/// A locked version as replicated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VersionDef {
    pub uuid: Uuid,
    pub parents: Vec<Uuid>,
    pub branch: String,
    pub note: String,
    pub log: Vec<String>,
    pub created: String,
    pub updated: String,
    /// The instances it holds, by data UUID: those of its repo when it was committed.
    pub instances: Vec<Uuid>,
    /// Roots by instance data UUID.
    pub roots: BTreeMap<Uuid, TreeRef>,
    pub commit_hash: ObjectId,
    /// The signature of the node that locked it (checked by the receiver, which holds the crypto).
    pub seal: Option<Seal>,
}

/// The signature of the node that locked a version, over [`seal_message`]. `signer` is the
/// node's public key in libp2p's protobuf encoding, so the PeerId of the locker follows from it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seal {
    pub signer: Vec<u8>,
    pub signature: Vec<u8>,
}

/// Signs seal messages with the node's key (the store itself holds no crypto).
pub trait Sealer: Send + Sync {
    fn seal(&self, message: &[u8]) -> Seal;
}

/// Domain tag of seal messages, so a seal can never be taken for another signature of the key.
const SEAL_DOMAIN: &[u8] = b"dvid-version-seal-v1";

/// What a seal signs: the repo, the version, its parents and its commit hash (which covers the
/// parents' hashes, the instance roots and the branch).
pub fn seal_message(repo: Uuid, version: Uuid, parents: &[Uuid], commit_hash: ObjectId) -> Vec<u8> {
    let body = postcard::to_stdvec(&(repo, version, parents, commit_hash))
        .expect("seal content serializes");
    [SEAL_DOMAIN, &body].concat()
}

/// Everything a peer needs, besides objects, to replicate `target`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VersionManifest {
    pub repo_root: Uuid,
    pub alias: String,
    pub description: String,
    pub instances: Vec<InstanceDef>,
    /// The target and all its ancestors, parents before children.
    pub versions: Vec<VersionDef>,
    pub target: Uuid,
}

/// What a replicated version holds locally. Stored in version records by postcard, which writes the
/// variant index: append variants, never reorder or remove them (`catalog_enums_golden_bytes`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Replica {
    /// Created here, or pulled whole.
    Full,
    /// Pulled in parts only: each part is some instances and/or a region of voxels, and the
    /// replica holds their union (a second region pull adds to the first).
    Partial(Vec<Restriction>),
    /// Known only as an ancestor of a pulled version: metadata, no data.
    MetadataOnly,
}

impl Replica {
    /// True if this node holds some or all of `instance` in the version.
    pub fn holds_instance(&self, instance: &str) -> bool {
        match self {
            Replica::Full => true,
            Replica::MetadataOnly => false,
            Replica::Partial(parts) => parts.iter().any(|p| p.has_instance(instance)),
        }
    }

    /// The inclusive voxel boxes held of `instance`: `None` if all of it is, else their union
    /// (empty if none). The instance's type says what they cover of its index.
    pub fn regions(&self, instance: &str) -> Option<Vec<(Point, Point)>> {
        match self {
            Replica::Full => None,
            Replica::MetadataOnly => Some(vec![]),
            Replica::Partial(parts) => parts
                .iter()
                .filter(|p| p.has_instance(instance))
                .map(|p| p.region)
                .collect(),
        }
    }

    /// This replica after a pull of `part` of the version (`None`: all of it).
    pub fn with(&self, part: Option<&Restriction>) -> Replica {
        match (self, part) {
            (Replica::Full, _) | (_, None) => Replica::Full,
            (Replica::Partial(parts), Some(p)) if parts.contains(p) => self.clone(),
            (Replica::Partial(parts), Some(p)) => {
                Replica::Partial(parts.iter().chain([p]).cloned().collect())
            }
            (Replica::MetadataOnly, Some(p)) => Replica::Partial(vec![p.clone()]),
        }
    }
}

/// One part of a version pulled by a partial replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restriction {
    /// Instances pulled, by name; `None` is all.
    pub instances: Option<Vec<String>>,
    /// Inclusive voxel box pulled of block instances; `None` is everything.
    pub region: Option<(Point, Point)>,
}

impl Restriction {
    pub fn has_instance(&self, name: &str) -> bool {
        self.instances
            .as_ref()
            .is_none_or(|l| l.iter().any(|n| n == name))
    }

    /// The part of `instance`'s index this restriction covers (its type decides).
    pub fn scope(&self, instance: &InstanceDef) -> crate::tree::Scope {
        let spec = &instance.spec;
        spec.datatype
            .scope(spec, self.region.as_ref().map(std::slice::from_ref))
    }
}

/// What a commit hash covers: only what never changes after commit. Notes and logs may still be
/// edited on a locked version, so they are not part of it.
#[derive(Serialize)]
struct CommitContent<'a> {
    uuid: Uuid,
    parents: &'a [Option<ObjectId>],
    roots: &'a [(Uuid, &'a str, Option<ObjectId>)],
    branch: &'a str,
}

/// The commit hash of a version: BLAKE3 over its UUID, its parents' commit hashes (in parent order),
/// each instance's (data UUID, type name, root) in instance-name order, and its branch.
pub fn commit_hash(
    uuid: Uuid,
    parents: &[Option<ObjectId>],
    roots: &[(Uuid, &str, Option<ObjectId>)],
    branch: &str,
) -> ObjectId {
    let content = CommitContent {
        uuid,
        parents,
        roots,
        branch,
    };
    ObjectId::of(&postcard::to_stdvec(&content).expect("commit content serializes"))
}

/// One instance as a commit hash covers it.
pub struct HashedInstance<'a> {
    pub name: &'a str,
    pub data: Uuid,
    pub kind: &'a str,
    pub root: Option<ObjectId>,
}

/// The commit hash of version `uuid` holding `held`: the one builder of the hash input (instances in
/// name order), for the store's own versions and for manifests alike.
pub fn version_hash(
    uuid: Uuid,
    parents: &[Option<ObjectId>],
    mut held: Vec<HashedInstance<'_>>,
    branch: &str,
) -> ObjectId {
    held.sort_by(|a, b| a.name.cmp(b.name));
    let roots: Vec<(Uuid, &str, Option<ObjectId>)> =
        held.iter().map(|i| (i.data, i.kind, i.root)).collect();
    commit_hash(uuid, parents, &roots, branch)
}

impl VersionManifest {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("manifests serialize")
    }

    /// The commit hash of `v`'s contents, given its parents' commit hashes: over the instances it
    /// holds, in name order. Instances the manifest does not define are left out (verify refuses them).
    pub fn content_hash(&self, v: &VersionDef, parents: &[Option<ObjectId>]) -> ObjectId {
        let held = self
            .instances
            .iter()
            .filter(|i| v.instances.contains(&i.data_uuid))
            .map(|i| HashedInstance {
                name: &i.name,
                data: i.data_uuid,
                kind: i.spec.datatype.name(),
                root: v.roots.get(&i.data_uuid).map(|r| r.id),
            })
            .collect();
        version_hash(v.uuid, parents, held, &v.branch)
    }

    /// Decodes untrusted bytes and checks every commit hash in the chain.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(StoreError::BadRequest(format!(
                "manifest of {} bytes exceeds {MAX_MANIFEST_BYTES}",
                bytes.len()
            )));
        }
        let m: Self = postcard::from_bytes(bytes)
            .map_err(|e| StoreError::BadRequest(format!("undecodable manifest: {e}")))?;
        m.verify()?;
        Ok(m)
    }

    /// Checks that the chain is closed (every parent listed before its child), ends at the target,
    /// and that each version's commit hash matches its contents.
    pub fn verify(&self) -> Result<()> {
        let bad = |m: String| StoreError::BadRequest(format!("manifest of {}: {m}", self.target));
        for i in &self.instances {
            i.spec
                .check()
                .map_err(|e| bad(format!("instance {:?}: {e}", i.name)))?;
        }
        let mut seen: BTreeMap<Uuid, ObjectId> = BTreeMap::new();
        for v in &self.versions {
            let mut parents = Vec::with_capacity(v.parents.len());
            for p in &v.parents {
                let h = seen
                    .get(p)
                    .ok_or_else(|| bad(format!("version {} names parent {p} before it", v.uuid)))?;
                parents.push(Some(*h));
            }
            let defined = |d: &Uuid| self.instances.iter().any(|i| i.data_uuid == *d);
            if !v.instances.iter().all(defined) {
                return Err(bad(format!(
                    "version {} holds an instance the manifest does not define",
                    v.uuid
                )));
            }
            if v.roots.keys().any(|d| !v.instances.contains(d)) {
                return Err(bad(format!(
                    "version {} has a root for an instance it does not hold",
                    v.uuid
                )));
            }
            let expected = self.content_hash(v, &parents);
            if expected != v.commit_hash {
                return Err(bad(format!(
                    "version {} claims commit hash {} but its contents hash to {expected}",
                    v.uuid, v.commit_hash
                )));
            }
            if seen.insert(v.uuid, v.commit_hash).is_some() {
                return Err(bad(format!("version {} is listed twice", v.uuid)));
            }
        }
        if self.versions.last().map(|v| v.uuid) != Some(self.target) {
            return Err(bad("the chain does not end at the target".into()));
        }
        Ok(())
    }

    /// The message each version's seal must sign.
    pub fn seal_message_of(&self, v: &VersionDef) -> Vec<u8> {
        seal_message(self.repo_root, v.uuid, &v.parents, v.commit_hash)
    }

    /// The target version's definition.
    pub fn target_def(&self) -> &VersionDef {
        self.versions
            .last()
            .expect("verified manifests end at the target")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_commit_hash_and_seal_message_golden() {
        // Changing either changes every commit hash or seal ever made: these bytes are pinned.
        let roots = [
            (Uuid(7), "uint8blk", Some(ObjectId([3; 32]))),
            (Uuid(8), "keyvalue", None),
        ];
        let hash = commit_hash(Uuid(1), &[Some(ObjectId([2; 32])), None], &roots, "master");
        assert_eq!(
            hash.to_hex(),
            "341c0c4adfeb708d369906885d376059f0f23b532c7f2d67069701128fc6ee31"
        );
        let msg = seal_message(Uuid(5), Uuid(1), &[Uuid(4)], ObjectId([9; 32]));
        assert_eq!(&msg[..SEAL_DOMAIN.len()], b"dvid-version-seal-v1");
        // repo, version and the parent list (1 UUID) as varints, then the 32 hash bytes.
        assert_eq!(
            &msg[SEAL_DOMAIN.len()..SEAL_DOMAIN.len() + 4],
            &[5, 1, 1, 4]
        );
        assert_eq!(&msg[SEAL_DOMAIN.len() + 4..], &[9; 32]);
    }
}
