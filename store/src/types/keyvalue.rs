//! Key-value data: values under string keys. The tree is keyed by BLAKE3 of the key (so it stays
//! balanced whatever the keys look like) and keeps the key itself beside each entry.

use super::{BlockGeometry, DataType, InstanceSpec, Settings};
use crate::catalog::{Instance, Version};
use crate::diff::KeyChange;
use crate::store::{DataHandle, WorkingEntry};
use crate::tree::{MAX_NAME_LEN, Scope};
use crate::{ObjectId, Point, Result, Store, StoreError};
use std::cmp::Ordering;
use std::collections::BTreeMap;

pub struct KeyValue;

pub static KEYVALUE: KeyValue = KeyValue;

impl DataType for KeyValue {
    fn name(&self) -> &'static str {
        "keyvalue"
    }

    fn setting_names(&self) -> &'static [&'static str] {
        &[]
    }

    fn parse_settings(&self, _: &mut Settings) -> Result<Option<BlockGeometry>> {
        Ok(None)
    }

    /// Keys have no place in space: a region pull takes them all.
    fn scope(&self, _: &InstanceSpec, _: Option<&[(Point, Point)]>) -> Scope {
        Scope::All
    }

    fn describe_key(&self, _key: &[u8], name: &[u8]) -> String {
        format!("key {:?}", String::from_utf8_lossy(name))
    }

    /// By name, as a reader looks for keys (their index is a hash).
    fn diff_order(&self, a: &KeyChange, b: &KeyChange) -> Ordering {
        a.name.cmp(&b.name)
    }
}

/// Largest value accepted for one key.
pub const MAX_VALUE_BYTES: usize = 256 * 1024 * 1024;

impl Store {
    /// The value of `key`, or `None` if absent at this version.
    pub fn kv_get(&self, h: &DataHandle, key: &str) -> Result<Option<Vec<u8>>> {
        let _gate = self.gate.read();
        let (v, inst) = self.readable(h)?;
        kv_only(&inst)?;
        check_key(key)?;
        match self.lookup(&inst, &v, &tree_key(key))? {
            None => Ok(None),
            Some(e) => Ok(Some(self.object(&e.object)?)),
        }
    }

    /// Sets `key` to `value` at a mutable version.
    pub fn kv_put(&self, h: &DataHandle, key: &str, value: Vec<u8>) -> Result<()> {
        let _gate = self.gate.read();
        let (v, inst) = self.writable(h)?;
        kv_only(&inst)?;
        check_key(key)?;
        if value.len() > MAX_VALUE_BYTES {
            return Err(StoreError::BadRequest(format!(
                "value of {} bytes exceeds the {MAX_VALUE_BYTES}-byte limit",
                value.len()
            )));
        }
        let id = ObjectId::of(&value);
        let entry = WorkingEntry {
            object: Some(id),
            name: key.as_bytes().to_vec(),
        };
        self.write_working(
            &inst,
            &v,
            vec![(id, value)],
            vec![(tree_key(key), entry)],
            vec![],
        )
    }

    /// Deletes `key` at a mutable version; returns whether it was present.
    pub fn kv_delete(&self, h: &DataHandle, key: &str) -> Result<bool> {
        let _gate = self.gate.read();
        let (v, inst) = self.writable(h)?;
        kv_only(&inst)?;
        check_key(key)?;
        let lock = self.instance_lock(inst.id);
        let _held = lock.lock();
        let present = self.lookup(&inst, &v, &tree_key(key))?.is_some();
        let tomb = WorkingEntry {
            object: None,
            name: key.as_bytes().to_vec(),
        };
        self.write_working(&inst, &v, vec![], vec![(tree_key(key), tomb)], vec![])?;
        Ok(present)
    }

    /// Keys present at this version within `[from, to]` (inclusive; `None` is unbounded), sorted.
    pub fn kv_keys(
        &self,
        h: &DataHandle,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Vec<String>> {
        let _gate = self.gate.read();
        let (v, inst) = self.readable(h)?;
        kv_only(&inst)?;
        let mut present: BTreeMap<Vec<u8>, bool> = BTreeMap::new();
        self.trees
            .visit(v.roots.get(&inst.id).copied(), &Scope::All, &mut |e| {
                present.insert(e.name.clone(), true);
                true
            })?;
        if !v.locked {
            self.overlay_working(&inst, &v, &mut present)?;
        }
        let in_range = |k: &[u8]| {
            from.is_none_or(|f| k >= f.as_bytes()) && to.is_none_or(|t| k <= t.as_bytes())
        };
        Ok(present
            .into_iter()
            .filter(|(k, p)| *p && in_range(k))
            .map(|(k, _)| String::from_utf8_lossy(&k).into_owned())
            .collect())
    }

    fn overlay_working(
        &self,
        inst: &Instance,
        v: &Version,
        present: &mut BTreeMap<Vec<u8>, bool>,
    ) -> Result<()> {
        self.scan_working(inst.id, v.id, &mut |_, _, w| {
            present.insert(w.name, w.object.is_some());
        })
    }
}

fn tree_key(key: &str) -> Vec<u8> {
    blake3::hash(key.as_bytes()).as_bytes().to_vec()
}

fn check_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_NAME_LEN {
        return Err(StoreError::BadRequest(format!(
            "keys must be 1 to {MAX_NAME_LEN} bytes, got {}",
            key.len()
        )));
    }
    Ok(())
}

fn kv_only(inst: &Instance) -> Result<()> {
    if inst.spec.datatype.name() != KEYVALUE.name() {
        return Err(StoreError::BadRequest(format!(
            "data instance {:?} is {}, not keyvalue",
            inst.name,
            inst.spec.datatype.name()
        )));
    }
    Ok(())
}
