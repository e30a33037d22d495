//! Proofreading edits of a labelmap at a mutable version: merge and cleave, each one write of the
//! changed mapping and index entries and a mutation record (cost set by the bodies' supervoxels
//! and blocks, never their voxels), and the labels and mutation ids they take.

use super::{INDEX, MUTATION, MetaWrite, labelmap_only, meta_key};
use crate::catalog::{Instance, Version, now};
use crate::engine::{BatchOp, Space};
use crate::store::DataHandle;
use crate::{Result, Store, StoreError, keys};
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// Who made an edit: DVID's `u` and `app` query parameters.
#[derive(Clone, Debug, Default)]
pub struct Editor {
    pub user: String,
    pub app: String,
}

/// A cleave's answer: the new body and the mutation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cleaved {
    pub label: u64,
    pub mutation: u64,
}

/// What this node has handed out for one labelmap instance, across all its versions: the next
/// new label and the next mutation id. Counting per node rather than per version is what keeps
/// two branches on one node from ever taking the same new body id.
#[derive(Clone, Copy, Debug, Default, serde::Serialize, serde::Deserialize)]
struct Counters {
    next_label: u64,
    next_mutation: u64,
}

impl Store {
    fn counters(&self, inst: &Instance) -> Result<Counters> {
        match self.meta.get(Space::Meta, &keys::label_counters(inst.id))? {
            None => Ok(Counters {
                next_label: 1,
                next_mutation: 1,
            }),
            Some(raw) => postcard::from_bytes(&raw)
                .map_err(|e| StoreError::Corrupt(format!("label counters: {e}"))),
        }
    }

    fn counters_op(inst: &Instance, c: Counters) -> BatchOp {
        BatchOp::Put(
            Space::Meta,
            keys::label_counters(inst.id),
            postcard::to_stdvec(&c).expect("counters serialize"),
        )
    }

    /// The first of `count` new labels: above every label of the version and every label this
    /// node handed out for the instance.
    fn take_labels(
        &self,
        inst: &Instance,
        v: &Version,
        c: &mut Counters,
        count: u64,
    ) -> Result<u64> {
        let start = c.next_label.max(self.max_label_at(inst, v)? + 1);
        c.next_label = start
            .checked_add(count)
            .ok_or_else(|| StoreError::BadRequest(format!("{count} labels overflow u64")))?;
        Ok(start)
    }

    /// The next label `nextlabel` would hand out at this version.
    pub fn next_label(&self, h: &DataHandle) -> Result<u64> {
        let _gate = self.gate.read();
        let (v, inst) = self.readable(h)?;
        labelmap_only(&inst, "nextlabel")?;
        let mut c = self.counters(&inst)?;
        self.take_labels(&inst, &v, &mut c, 0)
    }

    /// Reserves `count` new labels (inclusive range), never handed out again by this node.
    pub fn allocate_labels(&self, h: &DataHandle, count: u64) -> Result<(u64, u64)> {
        if count == 0 {
            return Err(StoreError::BadRequest(
                "nextlabel needs a count of at least 1".into(),
            ));
        }
        let _gate = self.gate.read();
        let (v, inst) = self.writable(h)?;
        labelmap_only(&inst, "nextlabel")?;
        let lock = self.instance_lock(inst.id);
        let _held = lock.lock();
        let mut c = self.counters(&inst)?;
        let start = self.take_labels(&inst, &v, &mut c, count)?;
        self.meta.write(vec![Self::counters_op(&inst, c)])?;
        Ok((start, start + count - 1))
    }

    /// Merges bodies `from` into body `to`: their supervoxels map to `to` and their indices join
    /// its index. Returns the mutation id.
    pub fn merge_bodies(&self, h: &DataHandle, to: u64, from: &[u64], who: &Editor) -> Result<u64> {
        if from.is_empty() {
            return Err(StoreError::BadRequest(
                "merge needs a JSON list [to, from, ...] with at least one body to merge".into(),
            ));
        }
        let mut seen = BTreeSet::new();
        for &f in from {
            if f == 0 || to == 0 {
                return Err(StoreError::BadRequest(
                    "label 0 is background and cannot be merged".into(),
                ));
            }
            if f == to {
                return Err(StoreError::BadRequest(format!(
                    "cannot merge body {to} into itself"
                )));
            }
            if !seen.insert(f) {
                return Err(StoreError::BadRequest(format!(
                    "body {f} is listed twice in the merge"
                )));
            }
        }
        let _gate = self.gate.read();
        let (_, inst) = self.writable(h)?;
        labelmap_only(&inst, "merge")?;
        let lock = self.instance_lock(inst.id);
        let _held = lock.lock();
        // Re-read under the lock: another edit may have committed or changed the instance.
        let (v, inst) = self.writable(h)?;
        let body = |b: u64| {
            self.index_at(&inst, &v, b)?.ok_or_else(|| {
                StoreError::BadRequest(format!(
                    "body {b} has no voxels at version {}: merge takes existing bodies",
                    v.uuid
                ))
            })
        };
        let mut target = body(to)?;
        let mut write = MetaWrite::default();
        let mut merged_voxels = 0;
        for &f in from {
            let idx = body(f)?;
            merged_voxels += idx.voxels(None);
            for sv in idx.supervoxels() {
                write.put_mapping(sv, to);
            }
            for (code, counts) in idx.blocks {
                let block = target.blocks.entry(code).or_default();
                for (sv, n) in counts.counts {
                    *block.counts.entry(sv).or_default() += n;
                }
            }
            write.delete(meta_key(INDEX, f));
        }
        let mut c = self.counters(&inst)?;
        let mutation = c.next_mutation;
        c.next_mutation += 1;
        stamp(&mut target, mutation, who);
        write.put_index(to, &target);
        let record = json!({
            "Action": "merge-complete",
            "Target": to,
            "Labels": from,
            "MergedVoxels": merged_voxels,
        });
        write.put_mutation(mutation, record, &v, who);
        self.write_working(
            &inst,
            &v,
            write.objects,
            write.entries,
            vec![Self::counters_op(&inst, c)],
        )?;
        Ok(mutation)
    }

    /// Cleaves supervoxels `svs` off `body` into a new body.
    pub fn cleave_body(
        &self,
        h: &DataHandle,
        body: u64,
        svs: &[u64],
        who: &Editor,
    ) -> Result<Cleaved> {
        if body == 0 {
            return Err(StoreError::BadRequest(
                "label 0 is background and cannot be cleaved".into(),
            ));
        }
        let cleaved: BTreeSet<u64> = svs.iter().copied().collect();
        if cleaved.is_empty() {
            return Err(StoreError::BadRequest(
                "cleave needs a JSON list of the supervoxels to split off".into(),
            ));
        }
        let _gate = self.gate.read();
        let (_, inst) = self.writable(h)?;
        labelmap_only(&inst, "cleave")?;
        let lock = self.instance_lock(inst.id);
        let _held = lock.lock();
        // Re-read under the lock: another edit may have committed or changed the instance.
        let (v, inst) = self.writable(h)?;
        let mut remain = self.index_at(&inst, &v, body)?.ok_or_else(|| {
            StoreError::BadRequest(format!("body {body} has no voxels at version {}", v.uuid))
        })?;
        let own: BTreeSet<u64> = remain.supervoxels().into_iter().collect();
        let strangers: Vec<String> = cleaved.difference(&own).map(|sv| sv.to_string()).collect();
        if !strangers.is_empty() {
            return Err(StoreError::BadRequest(format!(
                "supervoxels {} are not in body {body}",
                strangers.join(", ")
            )));
        }
        if cleaved.len() == own.len() {
            return Err(StoreError::BadRequest(format!(
                "cleaving every supervoxel of body {body} would leave it empty: leave at least one"
            )));
        }
        let mut c = self.counters(&inst)?;
        let label = self.take_labels(&inst, &v, &mut c, 1)?;
        let mutation = c.next_mutation;
        c.next_mutation += 1;
        let mut split = super::LabelIndex {
            label,
            ..Default::default()
        };
        remain.blocks.retain(|&code, counts| {
            let moved: Vec<(u64, u32)> = counts
                .counts
                .iter()
                .filter(|(sv, _)| cleaved.contains(sv))
                .map(|(&sv, &n)| (sv, n))
                .collect();
            if !moved.is_empty() {
                let block = split.blocks.entry(code).or_default();
                for (sv, n) in moved {
                    counts.counts.remove(&sv);
                    block.counts.insert(sv, n);
                }
            }
            !counts.counts.is_empty()
        });
        stamp(&mut remain, mutation, who);
        stamp(&mut split, mutation, who);
        let mut write = MetaWrite::default();
        for &sv in &cleaved {
            write.put_mapping(sv, label);
        }
        write.put_index(body, &remain);
        write.put_index(label, &split);
        let record = json!({
            "Action": "cleave-complete",
            "OrigLabel": body,
            "CleavedLabel": label,
            "CleavedSupervoxels": cleaved,
            "CleavedSize": split.voxels(None),
            "RemainSize": remain.voxels(None),
        });
        write.put_mutation(mutation, record, &v, who);
        self.write_working(
            &inst,
            &v,
            write.objects,
            write.entries,
            vec![Self::counters_op(&inst, c)],
        )?;
        Ok(Cleaved { label, mutation })
    }

    /// The mutations made at this version, in the order made (DVID's `mutations`).
    pub fn mutations(&self, h: &DataHandle) -> Result<Vec<Value>> {
        let _gate = self.gate.read();
        let (v, inst) = self.readable(h)?;
        labelmap_only(&inst, "mutations")?;
        let uuid = v.uuid.to_string();
        let mut out = Vec::new();
        for (_, e) in self.meta_entries(&inst, &v, MUTATION)? {
            let record: Value = serde_json::from_slice(&self.object(&e.object)?)
                .map_err(|e| StoreError::Corrupt(format!("mutation record: {e}")))?;
            if record["UUID"] == uuid {
                out.push(record);
            }
        }
        Ok(out)
    }
}

impl MetaWrite {
    fn put_mutation(&mut self, id: u64, mut record: Value, v: &Version, who: &Editor) {
        record["MutationID"] = json!(id);
        record["UUID"] = json!(v.uuid.to_string());
        record["Timestamp"] = json!(now());
        if !who.user.is_empty() {
            record["User"] = json!(who.user);
        }
        if !who.app.is_empty() {
            record["App"] = json!(who.app);
        }
        let bytes = serde_json::to_vec(&record).expect("records serialize");
        self.put(meta_key(MUTATION, id), bytes);
    }
}

fn stamp(idx: &mut super::LabelIndex, mutation: u64, who: &Editor) {
    idx.last_mutid = mutation;
    idx.last_mod_time = now();
    idx.last_mod_user = who.user.clone();
    idx.last_mod_app = who.app.clone();
}
