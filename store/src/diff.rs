//! Version diff: the keys (block coordinates or key-value keys) of one instance that differ between
//! two versions of a repo, by tree diff, so the cost follows the number of differences, not the
//! size of the volume. A mutable version's working set is laid over its base first.

use crate::catalog::{Instance, Uuid};
use crate::store::{DataHandle, held_scope};
use crate::tree::Entry;
use crate::{Result, Store, StoreError};
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
    pub instance: Instance,
    /// Set when a version is a partial replica: the diff covers only what this node holds of both.
    pub partial: bool,
    pub changes: Vec<KeyChange>,
}

impl Store {
    /// What differs in an instance from version `from` to version `to` (handles of one repo). Of a
    /// partial replica, only what this node holds of both versions is compared.
    pub fn diff(&self, from: &DataHandle, to: &DataHandle) -> Result<VersionDiff> {
        let _gate = self.gate.read();
        let (va, inst_a) = self.readable(from)?;
        let (vb, inst_b) = self.readable(to)?;
        if va.repo != vb.repo || inst_a.id != inst_b.id {
            return Err(StoreError::BadRequest(format!(
                "versions {} and {} are not in the same repo",
                va.uuid, vb.uuid
            )));
        }
        let inst = inst_b;
        let (scope_a, scope) = (held_scope(&va, &inst), held_scope(&vb, &inst));
        if scope_a != scope {
            return Err(StoreError::BadRequest(format!(
                "versions {} and {} hold different parts of {:?} here (partial replicas): pull the same region of both to diff them",
                va.uuid, vb.uuid, inst.name
            )));
        }
        let base = self.trees.diff(
            va.roots.get(&inst.id).copied(),
            vb.roots.get(&inst.id).copied(),
            &scope,
        )?;
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
        for key in overlaid.into_iter().filter(|k| scope.keeps(k)) {
            let (a, b) = (
                self.lookup(&inst, &va, &key)?,
                self.lookup(&inst, &vb, &key)?,
            );
            changes.extend(KeyChange::new(key, a, b));
        }
        let datatype = inst.spec.datatype;
        changes.sort_by(|x, y| datatype.diff_order(x, y));
        Ok(VersionDiff {
            from: va.uuid,
            to: vb.uuid,
            partial: scope != crate::tree::Scope::All,
            instance: inst,
            changes,
        })
    }
}
