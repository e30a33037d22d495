//! Version diff: the keys (block coordinates or key-value keys) of one instance that differ between
//! two versions of a repo, by tree diff, so the cost follows the number of differences, not the
//! size of the volume. A mutable version's working set is laid over its base first.

use crate::catalog::{DataKind, Uuid};
use crate::tree::Entry;
use crate::{Replica, Result, Store, StoreError};
use std::collections::BTreeSet;

/// How a key differs from one version to the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// Present only in the later (`to`) version.
    Added,
    /// Present only in the earlier (`from`) version.
    Removed,
    /// Present in both, with other contents.
    Modified,
}

impl ChangeKind {
    /// How an entry changed from `a` to `b`; `None` if it did not.
    fn between(a: &Option<Entry>, b: &Option<Entry>) -> Option<Self> {
        match (a, b) {
            (None, None) => None,
            (Some(x), Some(y)) if x.object == y.object => None,
            (None, Some(_)) => Some(Self::Added),
            (Some(_), None) => Some(Self::Removed),
            _ => Some(Self::Modified),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Added => "added",
            Self::Removed => "removed",
            Self::Modified => "modified",
        }
    }
}

/// One differing key: its index key and, for key-value data, the key's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyChange {
    pub index: Vec<u8>,
    pub name: Vec<u8>,
    pub change: ChangeKind,
}

impl KeyChange {
    /// The change of the entry at `index` from `a` to `b`, if it changed.
    fn new(index: Vec<u8>, a: Option<Entry>, b: Option<Entry>) -> Option<Self> {
        let change = ChangeKind::between(&a, &b)?;
        let name = b.or(a).map(|e| e.name).unwrap_or_default();
        Some(Self {
            index,
            name,
            change,
        })
    }
}

/// The differences of one instance between two versions: blocks in index order, keys by name.
#[derive(Clone, Debug)]
pub struct VersionDiff {
    pub from: Uuid,
    pub to: Uuid,
    pub instance: String,
    pub kind: DataKind,
    pub block_size: crate::Point,
    pub changes: Vec<KeyChange>,
}

impl Store {
    /// What differs in instance `data` from version `from` to version `to` (same repo).
    pub fn diff(&self, from: &str, to: &str, data: &str) -> Result<VersionDiff> {
        let _gate = self.gate.read();
        let (va, inst_a) = self.readable(from, data)?;
        let (vb, inst_b) = self.readable(to, data)?;
        if va.repo != vb.repo || inst_a.id != inst_b.id {
            return Err(StoreError::BadRequest(format!(
                "versions {} and {} are not in the same repo",
                va.uuid, vb.uuid
            )));
        }
        let inst = inst_b;
        let partial = va.replica != Replica::Full || vb.replica != Replica::Full;
        let base = self
            .trees
            .diff(
                va.roots.get(&inst.id).copied(),
                vb.roots.get(&inst.id).copied(),
            )
            .map_err(|e| match (partial, e) {
                // Unchanged parts are skipped by hash, so only differences outside what a partial
                // replica holds reach a node this store lacks.
                (true, StoreError::Corrupt(m)) => StoreError::NotFound(format!(
                    "the differences reach outside what this node holds of a partial replica ({m}): pull the versions whole to diff them"
                )),
                (_, e) => e,
            })?;
        // Keys written or deleted in a mutable version's working set differ from its base: those
        // are compared by lookup, the rest come from the tree diff.
        let mut overlaid = BTreeSet::new();
        for v in [&va, &vb].into_iter().filter(|v| !v.locked) {
            self.scan_working(inst.id, v.id, &mut |_, index, _| {
                overlaid.insert(index.to_vec());
            })?;
        }
        let mut changes: Vec<KeyChange> = base
            .into_iter()
            .filter(|d| !overlaid.contains(&d.key))
            .filter_map(|d| KeyChange::new(d.key, d.a, d.b))
            .collect();
        for key in overlaid {
            let (a, b) = (
                self.lookup(&inst, &va, &key)?,
                self.lookup(&inst, &vb, &key)?,
            );
            changes.extend(KeyChange::new(key, a, b));
        }
        // Blocks in index (Morton) order; keys by name, as a reader looks for them (their index is
        // a hash).
        match inst.kind {
            DataKind::KeyValue => changes.sort_by(|x, y| x.name.cmp(&y.name)),
            _ => changes.sort_by(|x, y| x.index.cmp(&y.index)),
        }
        Ok(VersionDiff {
            from: va.uuid,
            to: vb.uuid,
            instance: inst.name.clone(),
            kind: inst.kind,
            block_size: inst.block_size,
            changes,
        })
    }
}
