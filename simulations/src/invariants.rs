//! What should be true: the ground truth of every repo and version (creator, commit hash, objects,
//! readers), and the invariants nodes are checked against during a run and at its end.

use crate::net::{Micros, NodeId};
use crate::node::SimNode;
use dvid_store::catalog::Uuid;
use dvid_store::{ObjectId, Replica, Store, StoreError, VersionManifest};
use std::collections::{BTreeSet, HashMap, HashSet};

/// Who may read a repo's versions, by the intent of its owners.
#[derive(Clone, Debug)]
pub enum Readers {
    /// The repo is shared with these nodes.
    Shared(BTreeSet<NodeId>),
    /// Private: only versions published one by one are open, to everyone.
    PublishedOnly,
}

pub struct RepoTruth {
    pub root: Uuid,
    pub readers: Readers,
    /// Nodes that follow the repo: they must end with every version they may read.
    pub followers: Vec<NodeId>,
    /// Labels of its versions, in commit order.
    pub versions: Vec<usize>,
}

pub struct VersionTruth {
    pub uuid: Uuid,
    pub repo: usize,
    pub origin: NodeId,
    pub commit_hash: ObjectId,
    /// Every object reachable from its trees.
    pub objects: BTreeSet<ObjectId>,
    pub published: bool,
    /// As its creator exports it (used by probes to ask for real objects under real paths).
    pub manifest: VersionManifest,
    /// When followers could first learn of it (commit, or publication).
    pub available_at: Option<Micros>,
    /// Followers (other than its creator) that may read it, and how many hold it so far.
    pub expected: u64,
    pub reached: u64,
    /// Time from availability to each expected follower's import, in order.
    pub reached_after: Vec<Micros>,
}

/// The ground truth of a run. Versions are known by labels (their index) so that nothing in the run
/// depends on the store's random UUIDs.
#[derive(Default)]
pub struct Truth {
    pub repos: Vec<RepoTruth>,
    pub versions: Vec<VersionTruth>,
    by_uuid: HashMap<Uuid, usize>,
    held: HashSet<(NodeId, usize)>,
    /// (follower, version) pairs still to reach: the run has converged when this is zero.
    pub missing: u64,
}

impl Truth {
    pub fn add_repo(&mut self, root: Uuid, readers: Readers, followers: Vec<NodeId>) -> usize {
        self.repos.push(RepoTruth {
            root,
            readers,
            followers,
            versions: Vec::new(),
        });
        self.repos.len() - 1
    }

    pub fn label(&self, uuid: Uuid) -> Option<usize> {
        self.by_uuid.get(&uuid).copied()
    }

    /// Records a version just committed by `origin` in `store`.
    pub fn register(
        &mut self,
        store: &Store,
        origin: NodeId,
        repo: usize,
        uuid: Uuid,
        now: Micros,
    ) -> Result<usize, StoreError> {
        let hex = uuid.to_hex();
        let v = store.resolve(&hex)?;
        let mut ids = Vec::new();
        for root in v.roots.values() {
            store.trees().reachable(Some(*root), &mut ids)?;
        }
        let commit_hash = v
            .commit_hash
            .ok_or_else(|| StoreError::Corrupt(format!("version {hex} has no commit hash")))?;
        let label = self.versions.len();
        let shared = matches!(self.repos[repo].readers, Readers::Shared(_));
        self.versions.push(VersionTruth {
            uuid,
            repo,
            origin,
            commit_hash,
            objects: ids.into_iter().collect(),
            published: false,
            manifest: store.version_manifest(&hex)?,
            available_at: shared.then_some(now),
            expected: 0,
            reached: 0,
            reached_after: Vec::new(),
        });
        self.by_uuid.insert(uuid, label);
        self.repos[repo].versions.push(label);
        self.held.insert((origin, label));
        self.recount(label);
        Ok(label)
    }

    /// The version is published: everyone may read it from now on.
    pub fn set_published(&mut self, label: usize, now: Micros) {
        let v = &mut self.versions[label];
        v.published = true;
        v.available_at.get_or_insert(now);
        self.recount(label);
    }

    /// Whether `node` may read version `label` under its owners' policy.
    pub fn readable(&self, node: NodeId, label: usize) -> bool {
        let v = &self.versions[label];
        v.origin == node
            || v.published
            || matches!(&self.repos[v.repo].readers, Readers::Shared(s) if s.contains(&node))
    }

    /// Time from availability until `pct`% of the version's expected followers held it.
    pub fn reach(&self, label: usize, pct: f64) -> Option<Micros> {
        let v = &self.versions[label];
        let k = (pct / 100.0 * v.expected as f64).ceil() as usize;
        match k {
            0 => Some(0),
            _ => v.reached_after.get(k - 1).copied(),
        }
    }

    pub fn follows(&self, node: NodeId, label: usize) -> bool {
        self.repos[self.versions[label].repo]
            .followers
            .contains(&node)
    }

    /// `node` now holds `label` in full. Returns true the first time.
    pub fn imported(&mut self, node: NodeId, label: usize, now: Micros) -> bool {
        if !self.held.insert((node, label)) {
            return false;
        }
        if self.follows(node, label) && self.readable(node, label) {
            self.missing = self.missing.saturating_sub(1);
            let v = &mut self.versions[label];
            v.reached += 1;
            if let Some(t) = v.available_at {
                v.reached_after.push(now.saturating_sub(t));
            }
        }
        true
    }

    /// Whether `node` may hold object `id`: it is reachable from a version the node may read.
    pub fn allowed(&self, node: NodeId, id: &ObjectId) -> bool {
        (0..self.versions.len())
            .any(|l| self.versions[l].objects.contains(id) && self.readable(node, l))
    }

    /// Recomputes how many followers must reach `label`, adjusting `missing`.
    fn recount(&mut self, label: usize) {
        let v = &self.versions[label];
        let repo = &self.repos[v.repo];
        let expected = repo
            .followers
            .iter()
            .filter(|&&f| f != v.origin && self.readable(f, label))
            .count() as u64;
        let already = repo
            .followers
            .iter()
            .filter(|&&f| {
                f != v.origin && self.readable(f, label) && self.held.contains(&(f, label))
            })
            .count() as u64;
        let old_missing = v.expected.saturating_sub(v.reached);
        let v = &mut self.versions[label];
        v.expected = expected;
        v.reached = already;
        self.missing =
            (self.missing + expected.saturating_sub(already)).saturating_sub(old_missing);
    }
}

/// A version a node shows as complete must be complete: locked, every object present and readable
/// through its trees, and the commit hash its creator computed.
pub fn check_version(node: &SimNode, truth: &Truth, label: usize) -> Vec<String> {
    let t = &truth.versions[label];
    let mut out = Vec::new();
    let Ok(v) = node.store.resolve(&t.uuid.to_hex()) else {
        return vec![format!(
            "{} lost version {label} it had imported",
            node.name
        )];
    };
    if !(v.locked && v.replica == Replica::Full) {
        return out;
    }
    if v.commit_hash != Some(t.commit_hash) {
        out.push(format!(
            "{} shows version {label} with a commit hash its creator never computed",
            node.name
        ));
    }
    let objects = node.store.objects();
    if let Some(id) = t
        .objects
        .iter()
        .find(|id| !objects.has_object(id).unwrap_or(false))
    {
        out.push(format!(
            "{} shows version {label} as complete but lacks object {id}",
            node.name
        ));
    }
    let mut ids = Vec::new();
    for root in v.roots.values() {
        if let Err(e) = node.store.trees().reachable(Some(*root), &mut ids) {
            out.push(format!(
                "{} cannot walk version {label} it shows as complete: {e}",
                node.name
            ));
        }
    }
    out
}

/// At the end of a run: every version a node shows in full checks out, every object it holds hashes
/// to its name, and none is reachable only from versions the node may not read.
pub fn check_node(node: &SimNode, truth: &Truth) -> Vec<String> {
    let mut out = Vec::new();
    let catalog = node.store.catalog();
    for v in catalog.versions.values() {
        if !(v.locked && v.replica == Replica::Full) {
            continue;
        }
        match truth.label(v.uuid) {
            Some(label) => out.extend(check_version(node, truth, label)),
            None => out.push(format!(
                "{} shows version {} that nobody committed",
                node.name, v.uuid
            )),
        }
    }
    let mut bad = Vec::new();
    let objects = node.store.objects();
    let walked = objects.for_each_object_id(&mut |id| {
        let bytes = objects.get_object(id).ok().flatten().unwrap_or_default();
        if ObjectId::of(&bytes) != *id {
            bad.push(format!(
                "{} holds object {id} whose bytes fail its hash",
                node.name
            ));
        } else if !truth.allowed(node.id, id) {
            bad.push(format!(
                "{} holds object {id}, reachable only from versions it may not read",
                node.name
            ));
        }
        bad.len() < 10
    });
    if let Err(e) = walked {
        out.push(format!("{}: {e}", node.name));
    }
    out.extend(bad);
    out
}

/// Every follower holds, in full and with its creator's commit hash, every version of its repos
/// that it may read.
pub fn check_convergence(nodes: &[SimNode], truth: &Truth) -> Vec<String> {
    let mut out = Vec::new();
    for (r, repo) in truth.repos.iter().enumerate() {
        for &f in &repo.followers {
            for &label in &repo.versions {
                let v = &truth.versions[label];
                let held = nodes[f as usize]
                    .store
                    .resolve(&v.uuid.to_hex())
                    .is_ok_and(|h| {
                        h.locked
                            && h.replica == Replica::Full
                            && h.commit_hash == Some(v.commit_hash)
                    });
                if v.origin != f && truth.readable(f, label) && v.available_at.is_some() && !held {
                    out.push(format!(
                        "{} follows repo {r} but lacks its version {label}",
                        nodes[f as usize].name
                    ));
                }
            }
        }
    }
    out
}
