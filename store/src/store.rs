//! The store façade: repos, instances and the version DAG on top of an [`OrderedStore`] and an
//! [`ObjectStore`]. All methods block; async callers run them on a blocking thread.
//!
//! Concurrency: `gate` orders data operations (shared) against commits and merges (exclusive), so a
//! commit never races a write or a read at the version it folds. Per-instance mutexes serialise the
//! read-modify-write of partial blocks.

use crate::catalog::{Catalog, Instance, Repo, Uuid, Version, now};
use crate::engine::{BatchOp, FjallEngine, MemEngine, ObjectStore, OrderedStore, Space};
use crate::manifest::{Replica, Sealer, seal_message};
use crate::records::{load_catalog, put_counter, put_record};
use crate::tree::{Change, Entry, Scope, TreeRef, Trees};
use crate::types::InstanceSpec;
use crate::{ObjectId, Result, StoreError, keys};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

/// Decoded tree nodes kept in memory.
const CACHED_NODES: usize = 64 * 1024;

/// A working-set record: a put (`object` set) or a tombstone, with the original key name.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct WorkingEntry {
    pub object: Option<ObjectId>,
    pub name: Vec<u8>,
}

/// Sees each working entry: its store key, its index key, and the entry.
pub(crate) type WorkingVisitor<'a> = dyn FnMut(&[u8], &[u8], WorkingEntry) + 'a;

/// An instance at a version, resolved once from a request's UUID and instance name. Store calls
/// take it and re-check it under their lock: the version may have been committed since.
#[derive(Clone, Debug)]
pub struct DataHandle {
    version: u32,
    /// The version's full UUID.
    pub uuid: Uuid,
    /// The instance as resolved: its type and settings never change; its extents may.
    pub instance: Instance,
}

/// The versioned, content-addressed store.
pub struct Store {
    pub(crate) meta: Arc<dyn OrderedStore>,
    pub(crate) objects: Arc<dyn ObjectStore>,
    pub(crate) trees: Trees,
    pub(crate) catalog: RwLock<Catalog>,
    pub(crate) gate: RwLock<()>,
    sealer: RwLock<Option<Arc<dyn Sealer>>>,
    instance_locks: Mutex<HashMap<u32, Arc<Mutex<()>>>>,
    backend: &'static str,
}

impl Store {
    /// Opens the embedded fjall store in `dir`.
    pub fn open_fjall(dir: &Path) -> Result<Self> {
        let engine = Arc::new(FjallEngine::open(dir)?);
        Self::open(engine.clone(), engine, "fjall")
    }

    /// A store that lives in memory only.
    pub fn open_memory() -> Result<Self> {
        let engine = Arc::new(MemEngine::new());
        Self::open(engine.clone(), engine, "memory")
    }

    /// Opens a store over the given engines, loading the catalog.
    pub fn open(
        meta: Arc<dyn OrderedStore>,
        objects: Arc<dyn ObjectStore>,
        backend: &'static str,
    ) -> Result<Self> {
        let catalog = load_catalog(meta.as_ref())?;
        Ok(Self {
            trees: Trees::new(objects.clone(), CACHED_NODES),
            meta,
            objects,
            catalog: RwLock::new(catalog),
            gate: RwLock::new(()),
            sealer: RwLock::new(None),
            instance_locks: Mutex::new(HashMap::new()),
            backend,
        })
    }

    /// Signs every version this store commits from now on (with the node's key).
    pub fn set_sealer(&self, sealer: Arc<dyn Sealer>) {
        *self.sealer.write() = Some(sealer);
    }

    /// Writes buffered records into the engine's files (at a planned stop).
    pub fn flush(&self) -> Result<()> {
        let _gate = self.gate.write();
        self.meta.flush()
    }

    /// Name of the storage engine, for server info.
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// A consistent copy of the catalog, for building info responses.
    pub fn catalog(&self) -> Catalog {
        self.catalog.read().clone()
    }

    /// The tree nodes of this store.
    pub fn trees(&self) -> &Trees {
        &self.trees
    }

    /// The object store.
    pub fn objects(&self) -> &dyn ObjectStore {
        self.objects.as_ref()
    }

    /// Resolves a version (UUID or unique prefix) and an instance it holds, once, for the store
    /// calls that follow. Memory only: no I/O.
    pub fn handle(&self, uuid: &str, name: &str) -> Result<DataHandle> {
        let c = self.catalog.read();
        let version = c.resolve(uuid)?;
        Ok(DataHandle {
            version,
            uuid: c.version(version)?.uuid,
            instance: c.instance(version, name)?.clone(),
        })
    }

    /// The repo holding `uuid` and its versions, without cloning the rest of the catalog.
    pub fn repo(&self, uuid: &str) -> Result<(Repo, BTreeMap<u32, Version>)> {
        let c = self.catalog.read();
        let repo = c.repo_of(c.resolve(uuid)?)?.clone();
        let versions = repo
            .versions
            .iter()
            .filter_map(|id| c.versions.get(id).map(|v| (*id, v.clone())))
            .collect();
        Ok((repo, versions))
    }

    /// The root UUID of the repo holding `uuid`.
    pub fn repo_root(&self, uuid: &str) -> Result<Uuid> {
        let c = self.catalog.read();
        let vid = c.resolve(uuid)?;
        Ok(c.repo_of(vid)?.root)
    }

    /// The tree root of instance `data` (by data UUID) in the locked version `version`.
    pub fn tree_root(&self, version: Uuid, data: Uuid) -> Result<Option<TreeRef>> {
        let c = self.catalog.read();
        let vid = c
            .exact(version)
            .ok_or_else(|| StoreError::NotFound(format!("no version {version}")))?;
        let v = c.version(vid)?;
        if !v.locked {
            return Err(StoreError::Locked(format!(
                "version {version} is mutable and never leaves this node"
            )));
        }
        let repo = c.repo_of(vid)?;
        let inst = repo
            .instances
            .values()
            .find(|i| i.data_uuid == data && v.has_instance(i.id))
            .ok_or_else(|| {
                StoreError::NotFound(format!("no instance {data} in version {version}"))
            })?;
        Ok(v.roots.get(&inst.id).copied())
    }

    /// Resolves a UUID or unique prefix to its version.
    pub fn resolve(&self, uuid: &str) -> Result<Version> {
        let c = self.catalog.read();
        Ok(c.version(c.resolve(uuid)?)?.clone())
    }

    /// Creates a repo with a mutable root version; returns the root UUID.
    pub fn create_repo(&self, alias: &str, description: &str) -> Result<Uuid> {
        let _gate = self.gate.write();
        let mut c = self.catalog.write();
        let mut next = c.clone();
        let repo_id = next.allocate_id();
        let version_id = next.allocate_id();
        let root = Uuid::random();
        let t = now();
        let repo = Repo {
            id: repo_id,
            root,
            alias: alias.to_string(),
            description: description.to_string(),
            log: vec![],
            instances: BTreeMap::new(),
            versions: vec![version_id],
            created: t.clone(),
            updated: t.clone(),
            shared_with: Default::default(),
        };
        let version = new_version(
            version_id,
            root,
            repo_id,
            vec![],
            String::new(),
            BTreeMap::new(),
        );
        next.insert_repo(repo.clone());
        next.insert_version(version.clone());
        self.meta.write(vec![
            put_record(keys::repo(repo_id), &repo),
            put_record(keys::version(version_id), &version),
            put_counter(next.next_id),
        ])?;
        *c = next;
        Ok(root)
    }

    /// Adds a data instance `name` to the repo holding `uuid`.
    pub fn create_instance(&self, uuid: &str, name: &str, spec: InstanceSpec) -> Result<Instance> {
        validate_instance_name(name)?;
        spec.check()?;
        let _gate = self.gate.write();
        let mut c = self.catalog.write();
        let vid = c.resolve(uuid)?;
        let mut repo = c.repo_of(vid)?.clone();
        if repo.instances.contains_key(name) {
            return Err(StoreError::BadRequest(format!(
                "data instance {name:?} already exists in repo {}",
                repo.root
            )));
        }
        let id = c.allocate_id();
        let inst = Instance {
            id,
            name: name.to_string(),
            data_uuid: Uuid::random(),
            spec,
            extents: None,
        };
        repo.instances.insert(name.to_string(), inst.clone());
        repo.updated = now();
        let mut batch = vec![
            put_record(keys::repo(repo.id), &repo),
            put_counter(c.next_id),
        ];
        if inst.spec.datatype.indexes_labels() {
            // The creator holds every new label; peers that pull it are granted part.
            batch.push(Self::allotment_op(
                &inst,
                &crate::types::labelmap::Allotment::everything(),
            ));
        }
        self.meta.write(batch)?;
        c.insert_repo(repo);
        Ok(inst)
    }

    /// Sets a version's note.
    pub fn set_note(&self, uuid: &str, note: &str) -> Result<()> {
        self.update_version(uuid, |v| {
            v.note = note.to_string();
            Ok(())
        })
    }

    /// Appends lines to a version's log.
    pub fn append_log(&self, uuid: &str, lines: &[String]) -> Result<()> {
        self.update_version(uuid, |v| {
            v.log.extend(lines.iter().cloned());
            Ok(())
        })
    }

    /// Appends lines to a repo's log.
    pub fn append_repo_log(&self, uuid: &str, lines: &[String]) -> Result<()> {
        let mut c = self.catalog.write();
        let vid = c.resolve(uuid)?;
        let mut repo = c.repo_of(vid)?.clone();
        repo.log.extend(lines.iter().cloned());
        repo.updated = now();
        self.meta
            .write(vec![put_record(keys::repo(repo.id), &repo)])?;
        c.insert_repo(repo);
        Ok(())
    }

    fn update_version(&self, uuid: &str, f: impl FnOnce(&mut Version) -> Result<()>) -> Result<()> {
        let mut c = self.catalog.write();
        let vid = c.resolve(uuid)?;
        let mut v = c.version(vid)?.clone();
        f(&mut v)?;
        v.updated = now();
        self.meta.write(vec![put_record(keys::version(vid), &v)])?;
        c.insert_version(v);
        Ok(())
    }

    /// Folds a mutable version's working set into its base trees and locks it. Returns its UUID.
    pub fn commit(&self, uuid: &str, note: Option<&str>, log: &[String]) -> Result<Uuid> {
        let _gate = self.gate.write();
        let mut c = self.catalog.write();
        let vid = c.resolve(uuid)?;
        let mut v = c.version(vid)?.clone();
        if v.locked {
            return Err(StoreError::Locked(format!(
                "version {} is already committed (locked)",
                v.uuid
            )));
        }
        let repo = c.repo_of(vid)?.clone();
        let mut new_nodes = Vec::new();
        let mut batch = Vec::new();
        for inst in repo.instances.values() {
            let changes = self.working_changes(inst.id, vid, &mut batch)?;
            if changes.is_empty() {
                continue;
            }
            let base = v.roots.get(&inst.id).copied();
            match self.trees.apply(base, &changes, &mut new_nodes)? {
                Some(root) => v.roots.insert(inst.id, root),
                None => v.roots.remove(&inst.id),
            };
        }
        // Tree nodes first: a crash before the version record lands leaves only unreferenced objects.
        self.objects.put_objects(&new_nodes)?;
        if let Some(n) = note {
            v.note = n.to_string();
        }
        v.log.extend(log.iter().cloned());
        v.locked = true;
        v.updated = now();
        // From now on the version holds exactly these instances, whatever the repo gains later.
        v.instances = Some(repo.instances.values().map(|i| i.id).collect());
        let hash = commit_hash(&c, &repo, &v)?;
        v.commit_hash = Some(hash);
        if let Some(sealer) = self.sealer.read().as_ref() {
            let parents: Vec<Uuid> = v
                .parents
                .iter()
                .map(|p| c.version(*p).map(|pv| pv.uuid))
                .collect::<Result<_>>()?;
            v.seal = Some(sealer.seal(&seal_message(repo.root, v.uuid, &parents, hash)));
        }
        batch.push(put_record(keys::version(vid), &v));
        self.meta.write(batch)?;
        let committed = v.uuid;
        c.insert_version(v);
        Ok(committed)
    }

    /// Reads the working set of (instance, version) as sorted changes, and queues its deletion.
    fn working_changes(
        &self,
        inst: u32,
        vid: u32,
        deletes: &mut Vec<BatchOp>,
    ) -> Result<Vec<Change>> {
        let mut changes = Vec::new();
        self.scan_working(inst, vid, &mut |k, index, w| {
            let key = index.to_vec();
            changes.push(match w.object {
                Some(object) => Change::Put(Entry {
                    key,
                    name: w.name,
                    object,
                }),
                None => Change::Delete(key),
            });
            deletes.push(BatchOp::Delete(Space::Working, k.to_vec()));
        })?;
        Ok(changes)
    }

    /// Calls `f(store key, index key, entry)` for each working entry of (instance, version), in
    /// index order.
    pub(crate) fn scan_working(
        &self,
        inst: u32,
        vid: u32,
        f: &mut WorkingVisitor<'_>,
    ) -> Result<()> {
        let prefix = keys::working_prefix(inst, vid);
        let end = keys::prefix_end(&prefix);
        let mut err = None;
        self.meta
            .scan(
                Space::Working,
                &prefix,
                end.as_deref(),
                &mut |k, val| match postcard::from_bytes::<WorkingEntry>(val) {
                    Ok(w) => {
                        f(k, &k[prefix.len()..], w);
                        true
                    }
                    Err(e) => {
                        err = Some(StoreError::Corrupt(format!("working entry: {e}")));
                        false
                    }
                },
            )?;
        err.map_or(Ok(()), Err)
    }

    /// Creates a mutable child of a locked version on a new, named branch.
    pub fn branch(&self, uuid: &str, branch: &str, note: &str) -> Result<Uuid> {
        if branch.trim().is_empty() {
            return Err(StoreError::BadRequest(
                "branch needs a non-empty \"branch\" name".into(),
            ));
        }
        let _gate = self.gate.write();
        let mut c = self.catalog.write();
        let vid = c.resolve(uuid)?;
        let repo = c.repo_of(vid)?;
        if repo
            .versions
            .iter()
            .any(|id| c.versions.get(id).is_some_and(|v| v.branch == branch))
        {
            return Err(StoreError::BadRequest(format!(
                "branch {branch:?} already exists in repo {}",
                repo.root
            )));
        }
        self.add_child(&mut c, &[vid], branch.to_string(), note, None)
    }

    /// Creates a mutable child of a locked version on the parent's branch.
    pub fn new_version(&self, uuid: &str, note: &str) -> Result<Uuid> {
        let _gate = self.gate.write();
        let mut c = self.catalog.write();
        let vid = c.resolve(uuid)?;
        let parent = c.version(vid)?;
        let branch = parent.branch.clone();
        if parent
            .children
            .iter()
            .any(|id| c.versions.get(id).is_some_and(|ch| ch.branch == branch))
        {
            return Err(StoreError::BadRequest(format!(
                "version {} already has a child on branch {branch:?}: use branch to start another line",
                parent.uuid
            )));
        }
        self.add_child(&mut c, &[vid], branch, note, None)
    }

    /// Merges locked parents into a new mutable child, refusing if any key changed differently on
    /// several parents since their merge base (DVID's "conflict-free" merge, checked at merge time).
    pub fn merge(&self, parents: &[String], note: &str) -> Result<Uuid> {
        if parents.len() < 2 {
            return Err(StoreError::BadRequest(
                "merge needs at least two \"parents\"".into(),
            ));
        }
        let _gate = self.gate.write();
        let mut c = self.catalog.write();
        let mut ids = Vec::new();
        for p in parents {
            let id = c.resolve(p)?;
            if ids.contains(&id) {
                return Err(StoreError::BadRequest(format!(
                    "parent {p} is listed twice"
                )));
            }
            ids.push(id);
        }
        let repo = c.repo_of(ids[0])?.clone();
        for &id in &ids {
            let v = c.version(id)?;
            if v.repo != repo.id {
                return Err(StoreError::BadRequest(format!(
                    "version {} is not in repo {}",
                    v.uuid, repo.root
                )));
            }
        }
        let base = c.merge_base(&ids)?.ok_or_else(|| {
            StoreError::Corrupt("versions of one repo without a common ancestor".into())
        })?;
        let base_v = c.version(base)?.clone();
        let mut roots = BTreeMap::new();
        let mut new_nodes = Vec::new();
        for inst in repo.instances.values() {
            let base_root = base_v.roots.get(&inst.id).copied();
            // key -> (change, index of the parent that made it)
            let mut merged: BTreeMap<Vec<u8>, (Option<Entry>, usize)> = BTreeMap::new();
            let mut conflicts = Vec::new();
            for (i, &pid) in ids.iter().enumerate() {
                let parent = c.version(pid)?;
                // A parent committed before the instance existed did not change it.
                if !parent.has_instance(inst.id) {
                    continue;
                }
                let root = parent.roots.get(&inst.id).copied();
                for d in self.trees.diff(base_root, root, &Scope::All)? {
                    match merged.get(&d.key) {
                        Some((prev, _)) if *prev != d.b => conflicts.push(describe_key(inst, &d)),
                        Some(_) => {}
                        None => {
                            merged.insert(d.key, (d.b, i));
                        }
                    }
                }
            }
            if !conflicts.is_empty() {
                conflicts.sort();
                conflicts.dedup();
                return Err(StoreError::MergeConflict {
                    instance: inst.name.clone(),
                    keys: conflicts,
                });
            }
            let changes: Vec<Change> = merged
                .into_iter()
                .map(|(k, (e, _))| match e {
                    Some(e) => Change::Put(e),
                    None => Change::Delete(k),
                })
                .collect();
            if let Some(r) = self.trees.apply(base_root, &changes, &mut new_nodes)? {
                roots.insert(inst.id, r);
            }
        }
        self.objects.put_objects(&new_nodes)?;
        let branch = c.version(ids[0])?.branch.clone();
        self.add_child(&mut c, &ids, branch, note, Some(roots))
    }

    /// Adds a mutable child of locked `parents` and persists it.
    fn add_child(
        &self,
        c: &mut Catalog,
        parents: &[u32],
        branch: String,
        note: &str,
        roots: Option<BTreeMap<u32, TreeRef>>,
    ) -> Result<Uuid> {
        for &p in parents {
            let pv = c.version(p)?;
            if !pv.locked {
                return Err(StoreError::Locked(format!(
                    "version {} is not committed: commit (lock) it before creating children from it",
                    pv.uuid
                )));
            }
            if pv.replica == Replica::MetadataOnly
                || (parents.len() > 1 && pv.replica != Replica::Full)
            {
                return Err(StoreError::BadRequest(format!(
                    "version {} is not fully replicated on this node: pull it before building on it",
                    pv.uuid
                )));
            }
        }
        let mut next = c.clone();
        let id = next.allocate_id();
        let roots = roots.unwrap_or_else(|| c.versions[&parents[0]].roots.clone());
        let mut child = new_version(
            id,
            Uuid::random(),
            c.versions[&parents[0]].repo,
            parents.to_vec(),
            branch,
            roots,
        );
        child.note = note.to_string();
        // A child of a partial replica holds only what its parent holds.
        child.replica = c.versions[&parents[0]].replica.clone();
        let mut batch = vec![put_counter(next.next_id)];
        for &p in parents {
            let mut pv = next.version(p)?.clone();
            pv.children.push(id);
            batch.push(put_record(keys::version(p), &pv));
            next.insert_version(pv);
        }
        let mut repo = next.repo_of(parents[0])?.clone();
        repo.versions.push(id);
        repo.updated = now();
        batch.push(put_record(keys::repo(repo.id), &repo));
        batch.push(put_record(keys::version(id), &child));
        let uuid = child.uuid;
        next.insert_repo(repo);
        next.insert_version(child);
        self.meta.write(batch)?;
        *c = next;
        Ok(uuid)
    }

    /// Lock for the read-modify-write of one instance's blocks.
    pub(crate) fn instance_lock(&self, instance: u32) -> Arc<Mutex<()>> {
        self.instance_locks
            .lock()
            .entry(instance)
            .or_default()
            .clone()
    }

    /// Looks up an index key at a version: working set first if mutable, then the version's tree.
    pub(crate) fn lookup(&self, inst: &Instance, v: &Version, key: &[u8]) -> Result<Option<Entry>> {
        if !v.locked
            && let Some(raw) = self
                .meta
                .get(Space::Working, &keys::working(inst.id, v.id, key))?
        {
            let w: WorkingEntry = postcard::from_bytes(&raw)
                .map_err(|e| StoreError::Corrupt(format!("working entry: {e}")))?;
            return Ok(w.object.map(|object| Entry {
                key: key.to_vec(),
                name: w.name,
                object,
            }));
        }
        self.trees.get(v.roots.get(&inst.id).copied(), key)
    }

    /// Fetches a local object's bytes. Not re-hashed: objects were hashed when they arrived, and the
    /// engine checksums what it reads back (fjall: xxh3 per blob), so a BLAKE3 pass per read would
    /// only cost throughput. Whole-store re-hashing belongs to integrity checks.
    pub(crate) fn object(&self, id: &ObjectId) -> Result<Vec<u8>> {
        self.objects
            .get_object(id)?
            .ok_or_else(|| StoreError::Corrupt(format!("object {id} is missing")))
    }

    /// The version and instance of a handle, now, for writing: the version must still be mutable.
    pub(crate) fn writable(&self, h: &DataHandle) -> Result<(Version, Instance)> {
        let (v, inst) = self.current(h)?;
        if v.locked {
            return Err(StoreError::Locked(format!(
                "version {} is committed (locked) and accepts no writes: create a child with newversion or branch",
                v.uuid
            )));
        }
        check_held(&v, &inst, "write to")?;
        Ok((v, inst))
    }

    /// The version and instance of a handle, now, for reading; refuses data this node does not hold.
    pub(crate) fn readable(&self, h: &DataHandle) -> Result<(Version, Instance)> {
        let (v, inst) = self.current(h)?;
        check_held(&v, &inst, "read")?;
        Ok((v, inst))
    }

    fn current(&self, h: &DataHandle) -> Result<(Version, Instance)> {
        let c = self.catalog.read();
        let inst = c.instance(h.version, &h.instance.name)?;
        if inst.id != h.instance.id {
            return Err(StoreError::NotFound(format!(
                "data instance {:?} changed since the request was resolved",
                inst.name
            )));
        }
        Ok((c.version(h.version)?.clone(), inst.clone()))
    }

    /// Refuses blocks outside the regions a partial replica holds, rather than reading them as
    /// zeros.
    pub(crate) fn check_blocks_held(
        &self,
        v: &Version,
        inst: &Instance,
        blocks: &[crate::Point],
    ) -> Result<()> {
        let scope = held_scope(v, inst);
        let Some(b) = blocks
            .iter()
            .find(|&&b| !scope.keeps(&crate::geometry::block_key(b)))
        else {
            return Ok(());
        };
        let held: Vec<String> = v
            .replica
            .regions(&inst.name)
            .unwrap_or_default()
            .iter()
            .map(|(lo, hi)| format!("{lo:?}..={hi:?}"))
            .collect();
        Err(StoreError::BadRequest(format!(
            "block {b:?} of {:?} lies outside the region {} that version {} holds here (a partial replica)",
            inst.name,
            held.join(" + "),
            v.uuid
        )))
    }

    /// Stores objects (deduplicated) then working entries, durably, in that order.
    pub(crate) fn write_working(
        &self,
        inst: &Instance,
        v: &Version,
        objects: Vec<(ObjectId, Vec<u8>)>,
        entries: Vec<(Vec<u8>, WorkingEntry)>,
        extra: Vec<BatchOp>,
    ) -> Result<()> {
        let mut seen = std::collections::HashSet::new();
        let unique: Vec<_> = objects
            .into_iter()
            .filter(|(id, _)| seen.insert(*id))
            .collect();
        self.objects.put_objects(&unique)?;
        let mut batch: Vec<BatchOp> = entries
            .into_iter()
            .map(|(key, w)| {
                BatchOp::Put(
                    Space::Working,
                    keys::working(inst.id, v.id, &key),
                    postcard::to_stdvec(&w).expect("working entries serialize"),
                )
            })
            .collect();
        batch.extend(extra);
        self.meta.write(batch)
    }

    /// Updates an instance's record (extents) in memory and returns the write that persists it.
    pub(crate) fn update_instance(&self, inst: &Instance) -> Result<BatchOp> {
        let mut c = self.catalog.write();
        let repo_id = c
            .repos
            .values()
            .find(|r| r.instances.get(&inst.name).is_some_and(|i| i.id == inst.id))
            .map(|r| r.id)
            .ok_or_else(|| StoreError::NotFound(format!("instance {:?} was removed", inst.name)))?;
        let mut repo = c.repos[&repo_id].clone();
        repo.instances.insert(inst.name.clone(), inst.clone());
        let op = put_record(keys::repo(repo_id), &repo);
        c.insert_repo(repo);
        Ok(op)
    }
}

fn new_version(
    id: u32,
    uuid: Uuid,
    repo: u32,
    parents: Vec<u32>,
    branch: String,
    roots: BTreeMap<u32, TreeRef>,
) -> Version {
    let t = now();
    Version {
        id,
        uuid,
        repo,
        parents,
        children: vec![],
        branch,
        note: String::new(),
        log: vec![],
        locked: false,
        created: t.clone(),
        updated: t,
        roots,
        commit_hash: None,
        seal: None,
        replica: Replica::Full,
        published: false,
        instances: None,
    }
}

/// The commit hash of `v` over the instances it holds (see [`crate::manifest::version_hash`]).
pub(crate) fn commit_hash(c: &Catalog, repo: &Repo, v: &Version) -> Result<ObjectId> {
    let mut parents = Vec::new();
    for p in &v.parents {
        parents.push(c.version(*p)?.commit_hash);
    }
    let held = repo
        .instances
        .values()
        .filter(|i| v.has_instance(i.id))
        .map(|i| crate::manifest::HashedInstance {
            name: &i.name,
            data: i.data_uuid,
            kind: i.spec.datatype.name(),
            root: v.roots.get(&i.id).map(|r| r.id),
        })
        .collect();
    Ok(crate::manifest::version_hash(
        v.uuid, &parents, held, &v.branch,
    ))
}

fn describe_key(inst: &Instance, d: &crate::tree::Difference) -> String {
    let name = d.a.as_ref().or(d.b.as_ref()).map_or(&[][..], |e| &e.name);
    inst.spec.datatype.describe_key(&d.key, name)
}

/// The part of an instance's index this node holds of version `v` (all of it unless `v` is a
/// partial replica).
pub(crate) fn held_scope(v: &Version, inst: &Instance) -> Scope {
    inst.spec
        .datatype
        .scope(&inst.spec, v.replica.regions(&inst.name).as_deref())
}

/// Refuses an instance of a version this node holds only in part or not at all; `action` is what
/// the caller meant to do ("read", "write to").
fn check_held(v: &Version, inst: &Instance, action: &str) -> Result<()> {
    match &v.replica {
        Replica::MetadataOnly => Err(StoreError::NotFound(format!(
            "version {} is known here only as an ancestor of a pulled version (metadata, no data): pull it to {action} its data",
            v.uuid
        ))),
        r if !r.holds_instance(&inst.name) => Err(StoreError::NotFound(format!(
            "instance {:?} was not pulled with version {} (a partial replica): pull it to {action} it",
            inst.name, v.uuid
        ))),
        _ => Ok(()),
    }
}

fn validate_instance_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 255
        || name.contains('/')
        || name.chars().any(char::is_control)
    {
        return Err(StoreError::BadRequest(format!(
            "bad data instance name {name:?}: 1 to 255 characters, no '/' or control characters"
        )));
    }
    Ok(())
}
