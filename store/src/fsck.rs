//! Offline integrity check of a whole store: every object re-hashed, every tree a version claims to
//! hold walked and checked, the version DAG and the working sets checked against the catalog.

use crate::catalog::{Catalog, Version};
use crate::engine::Space;
use crate::keys;
use crate::store::{Store, WorkingEntry, held_scope};
use crate::tree::{Node, Scope, TreeRef};
use crate::{ObjectId, Result};
use std::collections::HashSet;

/// Most problems listed one by one; beyond it they are only counted.
const MAX_LISTED: usize = 1000;

/// What [`Store::fsck`] checked and found.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct FsckReport {
    pub objects_checked: u64,
    pub object_bytes_checked: u64,
    pub tree_nodes_checked: u64,
    pub entries_checked: u64,
    pub versions_checked: u64,
    pub working_entries_checked: u64,
    /// Problems found, up to [`MAX_LISTED`]; `problem_count` has them all.
    pub problems: Vec<String>,
    pub problem_count: u64,
}

impl FsckReport {
    pub fn is_clean(&self) -> bool {
        self.problem_count == 0
    }

    /// Adds a problem found by a check outside the store (seals, which need the node's crypto).
    pub fn add_problem(&mut self, p: String) {
        self.problem(p);
    }

    fn problem(&mut self, p: String) {
        self.problem_count += 1;
        if self.problems.len() < MAX_LISTED {
            self.problems.push(p);
        }
    }
}

impl Store {
    /// Checks the whole store. Only errors that stop the check itself (the catalog cannot be read)
    /// are returned as `Err`; damage is reported in the report.
    pub fn fsck(&self) -> Result<FsckReport> {
        let _gate = self.gate.write();
        let mut report = FsckReport::default();
        self.check_objects(&mut report)?;
        let catalog = self.catalog.read().clone();
        check_dag(&catalog, &mut report);
        let mut walk = TreeWalk {
            store: self,
            seen: HashSet::new(),
        };
        for v in catalog.versions.values() {
            walk.check_version(&catalog, v, &mut report);
        }
        self.check_working(&catalog, &mut report)?;
        Ok(report)
    }

    fn check_objects(&self, report: &mut FsckReport) -> Result<()> {
        let mut ids = Vec::new();
        self.objects.for_each_object_id(&mut |id| {
            ids.push(*id);
            true
        })?;
        for id in ids {
            report.objects_checked += 1;
            match self.objects.get_object(&id) {
                Ok(Some(bytes)) => {
                    report.object_bytes_checked += bytes.len() as u64;
                    if ObjectId::of(&bytes) != id {
                        report.problem(format!(
                            "object {id}: its {} bytes hash to {}",
                            bytes.len(),
                            ObjectId::of(&bytes)
                        ));
                    }
                }
                Ok(None) => report.problem(format!("object {id}: listed but unreadable")),
                Err(e) => report.problem(format!("object {id}: {e}")),
            }
        }
        Ok(())
    }

    fn check_working(&self, catalog: &Catalog, report: &mut FsckReport) -> Result<()> {
        let mut entries = Vec::new();
        self.meta.scan(Space::Working, &[], None, &mut |k, v| {
            entries.push((k.to_vec(), v.to_vec()));
            true
        })?;
        for (k, v) in entries {
            report.working_entries_checked += 1;
            let Some((inst, vid)) = keys::parse_working(&k) else {
                report.problem(format!("working key {k:02x?} is too short"));
                continue;
            };
            let Ok(version) = catalog.version(vid) else {
                report.problem(format!("working entry of unknown version id {vid}"));
                continue;
            };
            if version.locked {
                report.problem(format!(
                    "working entry left behind by locked version {}",
                    version.uuid
                ));
            }
            let known = catalog
                .repos
                .get(&version.repo)
                .is_some_and(|r| r.instances.values().any(|i| i.id == inst));
            if !known {
                report.problem(format!(
                    "working entry of version {} names unknown instance id {inst}",
                    version.uuid
                ));
            }
            match postcard::from_bytes::<WorkingEntry>(&v) {
                Ok(WorkingEntry {
                    object: Some(id), ..
                }) => {
                    if !self.objects.has_object(&id).unwrap_or(false) {
                        report.problem(format!(
                            "working entry of version {} points to missing object {id}",
                            version.uuid
                        ));
                    }
                }
                Ok(_) => {}
                Err(e) => report.problem(format!(
                    "working entry of version {} does not decode: {e}",
                    version.uuid
                )),
            }
        }
        Ok(())
    }
}

/// The DAG: links both ways, lock rules, commit hashes, no cycles.
fn check_dag(catalog: &Catalog, report: &mut FsckReport) {
    for v in catalog.versions.values() {
        report.versions_checked += 1;
        let Some(repo) = catalog.repos.get(&v.repo) else {
            report.problem(format!("version {} belongs to no repo", v.uuid));
            continue;
        };
        if !repo.versions.contains(&v.id) {
            report.problem(format!(
                "version {} is missing from its repo's list",
                v.uuid
            ));
        }
        for p in &v.parents {
            match catalog.versions.get(p) {
                None => report.problem(format!("version {} has unknown parent id {p}", v.uuid)),
                Some(pv) if !pv.children.contains(&v.id) => report.problem(format!(
                    "version {} is not among the children of its parent {}",
                    v.uuid, pv.uuid
                )),
                Some(pv) if !pv.locked => report.problem(format!(
                    "version {} has a mutable parent {}",
                    v.uuid, pv.uuid
                )),
                Some(_) => {}
            }
        }
        for c in &v.children {
            match catalog.versions.get(c) {
                Some(cv) if cv.parents.contains(&v.id) => {}
                _ => report.problem(format!(
                    "version {} lists child id {c} that does not name it as parent",
                    v.uuid
                )),
            }
        }
        if v.parents
            .iter()
            .any(|p| ancestors_include(catalog, *p, v.id))
        {
            report.problem(format!("version {} is its own ancestor", v.uuid));
        }
        for inst in v.roots.keys() {
            if !repo.instances.values().any(|i| i.id == *inst) {
                report.problem(format!(
                    "version {} has a tree for unknown instance id {inst}",
                    v.uuid
                ));
            } else if !v.has_instance(*inst) {
                report.problem(format!(
                    "version {} has a tree for instance id {inst}, which it does not hold",
                    v.uuid
                ));
            }
        }
        match (&v.instances, v.locked) {
            (None, true) => report.problem(format!(
                "locked version {} does not record the instances it holds",
                v.uuid
            )),
            (Some(_), false) => report.problem(format!(
                "mutable version {} records a fixed instance set",
                v.uuid
            )),
            (Some(set), true) => {
                for id in set {
                    if !repo.instances.values().any(|i| i.id == *id) {
                        report
                            .problem(format!("version {} holds unknown instance id {id}", v.uuid));
                    }
                }
            }
            (None, false) => {}
        }
        match (v.locked, v.commit_hash) {
            (true, None) => report.problem(format!("locked version {} has no commit hash", v.uuid)),
            (false, Some(_)) => {
                report.problem(format!("mutable version {} has a commit hash", v.uuid))
            }
            (true, Some(h)) => match crate::store::commit_hash(catalog, repo, v) {
                Ok(again) if again == h => {}
                Ok(again) => report.problem(format!(
                    "version {}: commit hash {h} but its contents hash to {again}",
                    v.uuid
                )),
                Err(e) => report.problem(format!("version {}: {e}", v.uuid)),
            },
            (false, None) => {}
        }
    }
}

fn ancestors_include(catalog: &Catalog, from: u32, target: u32) -> bool {
    catalog.ancestors(from).is_ok_and(|a| a.contains(&target))
}

/// Walks trees once per (node, region) however many versions share them.
struct TreeWalk<'a> {
    store: &'a Store,
    /// Subtrees checked, with the scope they were checked for.
    seen: HashSet<(ObjectId, Scope)>,
}

impl TreeWalk<'_> {
    fn check_version(&mut self, catalog: &Catalog, v: &Version, report: &mut FsckReport) {
        let Some(repo) = catalog.repos.get(&v.repo) else {
            return;
        };
        for inst in repo.instances.values() {
            let Some(root) = v.roots.get(&inst.id) else {
                continue;
            };
            // Check only what this node claims to hold of the version.
            if !v.replica.holds_instance(&inst.name) {
                continue;
            }
            let scope = held_scope(v, inst);
            let place = format!("version {} instance {:?}", v.uuid, inst.name);
            self.check_node(*root, &[], 0, &scope, &place, report);
        }
    }

    /// Checks the subtree `at`, whose keys all start with the first `bits` bits of `prefix`.
    fn check_node(
        &mut self,
        at: TreeRef,
        prefix: &[u8],
        bits: usize,
        scope: &Scope,
        place: &str,
        report: &mut FsckReport,
    ) -> u64 {
        if !self.seen.insert((at.id, scope.clone())) {
            return at.count;
        }
        let node = match self.load(&at.id) {
            Ok(n) => n,
            Err(e) => {
                report.problem(format!("{place}: tree node {}: {e}", at.id));
                return at.count;
            }
        };
        report.tree_nodes_checked += 1;
        let count = match &node {
            Node::Leaf(entries) => {
                for e in entries {
                    if !has_prefix(&e.key, prefix, bits) {
                        report.problem(format!(
                            "{place}: leaf {} holds key {:02x?} outside its subtree",
                            at.id, e.key
                        ));
                    }
                    if !scope.keeps(&e.key) {
                        continue;
                    }
                    report.entries_checked += 1;
                    if !self.store.objects.has_object(&e.object).unwrap_or(false) {
                        report.problem(format!(
                            "{place}: entry {:02x?} points to missing object {}",
                            e.key, e.object
                        ));
                    }
                }
                entries.len() as u64
            }
            Node::Inner {
                depth, prefix: own, ..
            } => {
                let d = usize::from(*depth);
                if d < bits || !has_prefix(own, prefix, bits) {
                    report.problem(format!(
                        "{place}: inner node {} does not extend its parent's prefix",
                        at.id
                    ));
                    return at.count;
                }
                let mut sum = 0;
                for s in node.subtrees() {
                    sum += match scope.enters(&s.prefix, s.bits) {
                        true => {
                            self.check_node(s.child.tree, &s.prefix, s.bits, scope, place, report)
                        }
                        false => s.child.tree.count,
                    };
                }
                sum
            }
        };
        if count != at.count {
            report.problem(format!(
                "{place}: tree node {} holds {count} entries but its parent says {}",
                at.id, at.count
            ));
        }
        count
    }

    fn load(&self, id: &ObjectId) -> std::result::Result<Node, String> {
        let bytes = match self.store.objects.get_object(id) {
            Ok(Some(b)) => b,
            Ok(None) => return Err("missing".into()),
            Err(e) => return Err(e.to_string()),
        };
        if ObjectId::of(&bytes) != *id {
            return Err("fails its hash".into());
        }
        Node::decode(&bytes).map_err(|e| e.to_string())
    }
}

fn has_prefix(key: &[u8], prefix: &[u8], bits: usize) -> bool {
    (0..bits).all(|i| {
        let bit = |b: &[u8]| b.get(i / 8).map(|x| (x >> (7 - i % 8)) & 1);
        bit(key).is_some() && bit(key) == bit(prefix)
    })
}
