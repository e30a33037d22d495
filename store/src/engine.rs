//! Storage engines. Two traits, kept apart so objects can later move to an S3-compatible store while
//! the ordered metadata stays local: [`OrderedStore`] (metadata and working sets: ordered keys, range
//! scans, atomic batches) and [`ObjectStore`] (immutable content-addressed blobs).
//!
//! Both engines here implement both traits. Every `write`/`put_many` that returns `Ok` has reached the
//! operating system, so it survives `kill -9` of the process.

use crate::{ObjectId, Result, StoreError};
use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;

/// The ordered key spaces of the metadata store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Space {
    /// Repos, versions, instances, counters.
    Meta,
    /// Uncommitted writes of mutable versions.
    Working,
}

/// One operation of an atomic batch.
#[derive(Debug)]
pub enum BatchOp {
    Put(Space, Vec<u8>, Vec<u8>),
    Delete(Space, Vec<u8>),
}

/// Ordered key-value store with range scans and atomic, durable batches.
pub trait OrderedStore: Send + Sync {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Calls `visit` for each pair with `start <= key < end` (no end: to the last key), in key order,
    /// until it returns false.
    fn scan(
        &self,
        space: Space,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()>;
    /// Applies all operations atomically and durably (against process crashes).
    fn write(&self, batch: Vec<BatchOp>) -> Result<()>;
    /// Moves buffered writes into the engine's long-term files, so a reopen has nothing to
    /// replay. Acknowledged writes are durable without it.
    fn flush(&self) -> Result<()> {
        Ok(())
    }
}

/// Immutable, content-addressed object storage.
pub trait ObjectStore: Send + Sync {
    fn get_object(&self, id: &ObjectId) -> Result<Option<Vec<u8>>>;
    fn has_object(&self, id: &ObjectId) -> Result<bool>;
    /// Stores objects, skipping those already present. Callers guarantee `id == ObjectId::of(bytes)`.
    fn put_objects(&self, objects: &[(ObjectId, Vec<u8>)]) -> Result<()>;
    /// Calls `visit` with the id of every stored object until it returns false (used by integrity checks).
    fn for_each_object_id(&self, visit: &mut dyn FnMut(&ObjectId) -> bool) -> Result<()>;
}

/// Batches of objects at least this large skip fjall's journal (see `FjallEngine::ingest_objects`).
/// Smaller ones go through it: an ingestion creates files and fsyncs them, too dear for a few blocks.
const INGEST_MIN_BYTES: usize = 4 << 20;

/// The embedded default engine: one fjall database with a keyspace per [`Space`] plus one for objects.
pub struct FjallEngine {
    db: fjall::Database,
    meta: fjall::Keyspace,
    working: fjall::Keyspace,
    objects: fjall::Keyspace,
}

impl FjallEngine {
    /// Opens (or creates) the database in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Engine(format!("creating {}: {e}", dir.display())))?;
        // Large values are block payloads, already compressed by their codec: compressing them again
        // on their way through the journal costs CPU and saves nothing.
        let db = fjall::Database::builder(dir)
            .journal_compression(fjall::CompressionType::None)
            .open()?;
        let meta = db.keyspace("meta", fjall::KeyspaceCreateOptions::default)?;
        let working = db.keyspace("working", fjall::KeyspaceCreateOptions::default)?;
        // Objects are large, immutable blobs: key-value separation keeps compaction from rewriting
        // them. Block payloads are already compressed by their codec (the bulk of the bytes), so fjall
        // stores values as they are rather than spend CPU compressing them again on every write.
        let objects = db.keyspace("objects", || {
            fjall::KeyspaceCreateOptions::default().with_kv_separation(Some(
                fjall::KvSeparationOptions::default().compression(fjall::CompressionType::None),
            ))
        })?;
        Ok(Self {
            db,
            meta,
            working,
            objects,
        })
    }

    /// Writes objects straight into new table and blob files, bypassing the journal: each byte is
    /// written once instead of twice (journal, then blob file), and is fsynced before this returns.
    fn ingest_objects(&self, mut objects: Vec<&(ObjectId, Vec<u8>)>) -> Result<()> {
        // Ingestion takes keys in strictly ascending order.
        objects.sort_unstable_by_key(|o| o.0);
        objects.dedup_by_key(|o| o.0);
        let mut ingestion = self.objects.start_ingestion()?;
        for (id, bytes) in objects {
            ingestion.write(id.0, bytes.as_slice())?;
        }
        ingestion.finish()?;
        Ok(())
    }

    fn keyspace(&self, space: Space) -> &fjall::Keyspace {
        match space {
            Space::Meta => &self.meta,
            Space::Working => &self.working,
        }
    }
}

impl OrderedStore for FjallEngine {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.keyspace(space).get(key)?.map(|v| v.to_vec()))
    }

    fn scan(
        &self,
        space: Space,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()> {
        let upper = match end {
            Some(e) => Bound::Excluded(e.to_vec()),
            None => Bound::Unbounded,
        };
        for guard in self
            .keyspace(space)
            .range::<Vec<u8>, _>((Bound::Included(start.to_vec()), upper))
        {
            let (k, v) = guard.into_inner()?;
            if !visit(&k, &v) {
                break;
            }
        }
        Ok(())
    }

    fn write(&self, batch: Vec<BatchOp>) -> Result<()> {
        // `Database::batch` commits with PersistMode::Buffer: the journal reaches the OS before we return.
        let mut b = self.db.batch();
        for op in batch {
            match op {
                BatchOp::Put(s, k, v) => b.insert(self.keyspace(s), k, v),
                BatchOp::Delete(s, k) => b.remove(self.keyspace(s), k),
            }
        }
        b.commit()?;
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        // fjall exposes memtable rotation only as a hidden API (pinned by Cargo.lock); it is the
        // way to empty the journal before a planned stop.
        for ks in [&self.meta, &self.working, &self.objects] {
            ks.rotate_memtable_and_wait()?;
        }
        Ok(())
    }
}

impl ObjectStore for FjallEngine {
    fn get_object(&self, id: &ObjectId) -> Result<Option<Vec<u8>>> {
        Ok(self.objects.get(id.0)?.map(|v| v.to_vec()))
    }

    fn has_object(&self, id: &ObjectId) -> Result<bool> {
        Ok(self.objects.contains_key(id.0)?)
    }

    fn put_objects(&self, objects: &[(ObjectId, Vec<u8>)]) -> Result<()> {
        let mut fresh = Vec::with_capacity(objects.len());
        for o in objects {
            if !self.objects.contains_key(o.0.0)? {
                fresh.push(o);
            }
        }
        let bytes: usize = fresh.iter().map(|(_, b)| b.len()).sum();
        if bytes >= INGEST_MIN_BYTES {
            return self.ingest_objects(fresh);
        }
        let mut b = self.db.batch();
        for (id, bytes) in fresh {
            b.insert(&self.objects, id.0, bytes.as_slice());
        }
        if !b.is_empty() {
            b.commit()?;
        }
        Ok(())
    }

    fn for_each_object_id(&self, visit: &mut dyn FnMut(&ObjectId) -> bool) -> Result<()> {
        // Keys only: with key-value separation the values stay unread in their blob files.
        for guard in self.objects.iter() {
            let k = guard.key()?;
            let id =
                ObjectId(k.as_ref().try_into().map_err(|_| {
                    StoreError::Corrupt(format!("object key of {} bytes", k.len()))
                })?);
            if !visit(&id) {
                break;
            }
        }
        Ok(())
    }
}

/// Ordered records of all spaces, keyed by (space, key).
type SpaceMap = BTreeMap<(Space, Vec<u8>), Vec<u8>>;

/// An in-memory engine for tests and simulations. Nothing survives the process.
#[derive(Default)]
pub struct MemEngine {
    spaces: RwLock<SpaceMap>,
    objects: RwLock<BTreeMap<ObjectId, Vec<u8>>>,
}

impl MemEngine {
    pub fn new() -> Self {
        Self::default()
    }
}

impl OrderedStore for MemEngine {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.spaces.read().get(&(space, key.to_vec())).cloned())
    }

    fn scan(
        &self,
        space: Space,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()> {
        let map = self.spaces.read();
        let lower = Bound::Included((space, start.to_vec()));
        let upper = match end {
            Some(e) => Bound::Excluded((space, e.to_vec())),
            None => Bound::Unbounded,
        };
        for ((s, k), v) in map.range((lower, upper)) {
            if *s != space || !visit(k, v) {
                break;
            }
        }
        Ok(())
    }

    fn write(&self, batch: Vec<BatchOp>) -> Result<()> {
        let mut map = self.spaces.write();
        for op in batch {
            match op {
                BatchOp::Put(s, k, v) => {
                    map.insert((s, k), v);
                }
                BatchOp::Delete(s, k) => {
                    map.remove(&(s, k));
                }
            }
        }
        Ok(())
    }
}

impl ObjectStore for MemEngine {
    fn get_object(&self, id: &ObjectId) -> Result<Option<Vec<u8>>> {
        Ok(self.objects.read().get(id).cloned())
    }

    fn has_object(&self, id: &ObjectId) -> Result<bool> {
        Ok(self.objects.read().contains_key(id))
    }

    fn put_objects(&self, objects: &[(ObjectId, Vec<u8>)]) -> Result<()> {
        let mut map = self.objects.write();
        for (id, bytes) in objects {
            map.entry(*id).or_insert_with(|| bytes.clone());
        }
        Ok(())
    }

    fn for_each_object_id(&self, visit: &mut dyn FnMut(&ObjectId) -> bool) -> Result<()> {
        for id in self.objects.read().keys() {
            if !visit(id) {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(engine: &dyn OrderedStore) {
        engine
            .write(vec![
                BatchOp::Put(Space::Meta, b"a".to_vec(), b"1".to_vec()),
                BatchOp::Put(Space::Meta, b"b".to_vec(), b"2".to_vec()),
                BatchOp::Put(Space::Meta, b"c".to_vec(), b"3".to_vec()),
                BatchOp::Put(Space::Working, b"b".to_vec(), b"w".to_vec()),
            ])
            .unwrap();
        engine
            .write(vec![BatchOp::Delete(Space::Meta, b"c".to_vec())])
            .unwrap();
        let mut seen = Vec::new();
        engine
            .scan(Space::Meta, b"a", None, &mut |k, v| {
                seen.push((k.to_vec(), v.to_vec()));
                true
            })
            .unwrap();
        assert_eq!(
            seen,
            vec![
                (b"a".to_vec(), b"1".to_vec()),
                (b"b".to_vec(), b"2".to_vec())
            ]
        );
        let mut bounded = 0;
        engine
            .scan(Space::Meta, b"a", Some(b"b"), &mut |_, _| {
                bounded += 1;
                true
            })
            .unwrap();
        assert_eq!(bounded, 1);
        assert_eq!(
            engine.get(Space::Working, b"b").unwrap(),
            Some(b"w".to_vec())
        );
        assert_eq!(engine.get(Space::Working, b"a").unwrap(), None);
    }

    #[test]
    fn engines_scan_and_batch_alike() {
        exercise(&MemEngine::new());
        let dir = tempfile::tempdir().unwrap();
        exercise(&FjallEngine::open(dir.path()).unwrap());
    }

    #[test]
    fn fjall_engine_recovers_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let id = ObjectId::of(b"payload");
        {
            let engine = FjallEngine::open(dir.path()).unwrap();
            engine
                .write(vec![BatchOp::Put(
                    Space::Meta,
                    b"k".to_vec(),
                    b"v".to_vec(),
                )])
                .unwrap();
            engine.put_objects(&[(id, b"payload".to_vec())]).unwrap();
        }
        {
            let engine = FjallEngine::open(dir.path()).unwrap();
            assert_eq!(engine.get(Space::Meta, b"k").unwrap(), Some(b"v".to_vec()));
            assert_eq!(engine.get_object(&id).unwrap(), Some(b"payload".to_vec()));
        }
    }

    #[test]
    fn fjall_engine_ingests_large_batches() {
        // Over INGEST_MIN_BYTES: these skip the journal. One is already stored (via the journal)
        // and one is in the batch twice, out of order.
        let objects: Vec<(ObjectId, Vec<u8>)> = (0..6u8)
            .map(|i| vec![i; 1 << 20])
            .map(|b| (ObjectId::of(&b), b))
            .collect();
        let mut batch = objects.clone();
        batch.push(objects[2].clone());
        batch.reverse();
        let dir = tempfile::tempdir().unwrap();
        {
            let engine = FjallEngine::open(dir.path()).unwrap();
            engine.put_objects(&objects[..1]).unwrap();
            engine.put_objects(&batch).unwrap();
            engine.put_objects(&batch).unwrap(); // all present: nothing to write
        }
        let engine = FjallEngine::open(dir.path()).unwrap();
        for (id, bytes) in &objects {
            assert_eq!(engine.get_object(id).unwrap().as_ref(), Some(bytes));
        }
        let mut count = 0;
        engine
            .for_each_object_id(&mut |_| {
                count += 1;
                true
            })
            .unwrap();
        assert_eq!(count, objects.len());
    }
}
