//! Proofreading edits of a labelmap at a mutable version: merge and cleave, each one write of the
//! changed mapping and index entries and a mutation record (cost set by the bodies' supervoxels
//! and blocks, never their voxels), and the labels and mutation ids they take.

use super::ranges::{self, Allotment, Grant, IdRanges};
use super::{INDEX, LABELMAP, MUTATION, MetaWrite, labelmap_only, meta_key};
use crate::catalog::{Instance, Uuid, Version, now};
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

/// The label counters of a store from before allotments: the node then handed out ids from one
/// counter, above everything it had used.
#[derive(serde::Deserialize)]
struct OldCounters {
    next_label: u64,
    next_mutation: u64,
}

impl Store {
    /// The ids this node may hand out for a labelmap, if it holds any.
    pub(crate) fn allotment(&self, inst: &Instance) -> Result<Option<Allotment>> {
        if let Some(raw) = self.meta.get(Space::Meta, &keys::allotment(inst.id))? {
            return postcard::from_bytes(&raw)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(format!("label allotment: {e}")));
        }
        let Some(raw) = self.meta.get(Space::Meta, &keys::label_counters(inst.id))? else {
            return Ok(None);
        };
        let old: OldCounters = postcard::from_bytes(&raw)
            .map_err(|e| StoreError::Corrupt(format!("label counters: {e}")))?;
        Ok(Some(Allotment {
            labels: IdRanges::starting_at(old.next_label),
            mutations: IdRanges::starting_at(old.next_mutation),
            granted: vec![],
        }))
    }

    /// The allotment, or why this node cannot edit the instance.
    pub(super) fn allotment_for_edits(&self, inst: &Instance) -> Result<Allotment> {
        self.allotment(inst)?.ok_or_else(|| {
            StoreError::Conflict(format!(
                "this node holds no range of new labels for data instance {:?}: a node that \
                 pulls a labelmap is granted one by the peer it pulls from, and that peer \
                 granted none. Pull a version of it again from its creator or from a node that \
                 edits it",
                inst.name
            ))
        })
    }

    pub(crate) fn allotment_op(inst: &Instance, a: &Allotment) -> BatchOp {
        BatchOp::Put(
            Space::Meta,
            keys::allotment(inst.id),
            postcard::to_stdvec(a).expect("allotments serialize"),
        )
    }

    /// The first of `count` new labels: in this node's ranges, above every label the version
    /// holds in the range taken from.
    pub(super) fn take_labels(
        &self,
        inst: &Instance,
        v: &Version,
        a: &mut Allotment,
        count: u64,
    ) -> Result<u64> {
        let floor = |lo, hi| -> Result<u64> {
            Ok(self.max_label_in(inst, v, lo, hi)?.map_or(lo, |m| m + 1))
        };
        a.labels.take(count, floor)?.ok_or_else(|| {
            StoreError::Conflict(format!(
                "this node's ranges of new labels for data instance {:?} have no {count} \
                 consecutive labels left",
                inst.name
            ))
        })
    }

    pub(super) fn take_mutation(inst: &Instance, a: &mut Allotment) -> Result<u64> {
        let id: Result<_> = a.mutations.take(1, |lo, _| Ok(lo));
        id?.ok_or_else(|| {
            StoreError::Conflict(format!(
                "this node's range of mutation ids for data instance {:?} is used up",
                inst.name
            ))
        })
    }

    /// The next label `nextlabel` would hand out at this version.
    pub fn next_label(&self, h: &DataHandle) -> Result<u64> {
        let _gate = self.gate.read();
        let (v, inst) = self.readable(h)?;
        labelmap_only(&inst, "nextlabel")?;
        let mut a = self.allotment_for_edits(&inst)?;
        self.take_labels(&inst, &v, &mut a, 1)
    }

    /// Reserves `count` new labels (inclusive range), never handed out again by this node.
    pub fn allocate_labels(&self, h: &DataHandle, count: u64) -> Result<(u64, u64)> {
        if count == 0 {
            return Err(StoreError::BadRequest(
                "nextlabel needs a count of at least 1".into(),
            ));
        }
        let start = self.with_allotment(h, "nextlabel", |inst, v, a| {
            self.take_labels(inst, v, a, count)
        })?;
        Ok((start, start + count - 1))
    }

    /// Makes `label` the next new label (DVID's `set-nextlabel`): this node gives up the ids of
    /// its ranges below it. Refused for a label outside its free ranges, which another node may
    /// hand out (or this one already has).
    pub fn set_next_label(&self, h: &DataHandle, label: u64) -> Result<()> {
        if label == 0 {
            return Err(StoreError::BadRequest(
                "label 0 is background and cannot be the next label".into(),
            ));
        }
        self.with_allotment(h, "set-nextlabel", |inst, _, a| {
            if a.labels.skip_to(label) {
                return Ok(());
            }
            let free: Vec<String> = a
                .labels
                .ranges()
                .iter()
                .map(|(lo, hi)| format!("{lo}..{}", hi - 1))
                .collect();
            Err(StoreError::Conflict(format!(
                "label {label} is not among the labels this node may still hand out for data \
                 instance {:?} ({}): other nodes hold the rest, or it was handed out",
                inst.name,
                free.join(", ")
            )))
        })
    }

    /// Runs `f` on this node's allotment for a labelmap at a mutable version (both read under
    /// the instance's lock) and stores the allotment it leaves, unless it fails.
    fn with_allotment<T>(
        &self,
        h: &DataHandle,
        what: &str,
        f: impl FnOnce(&Instance, &Version, &mut Allotment) -> Result<T>,
    ) -> Result<T> {
        self.editing(h, what, |inst, v| {
            let mut a = self.allotment_for_edits(inst)?;
            let out = f(inst, v, &mut a)?;
            self.meta.write(vec![Self::allotment_op(inst, &a)])?;
            Ok(out)
        })
    }

    /// Runs `f` on a labelmap at a mutable version, under the instance's lock, with the version
    /// and instance read under it: another edit may have committed or changed them meanwhile.
    pub(super) fn editing<T>(
        &self,
        h: &DataHandle,
        what: &str,
        f: impl FnOnce(&Instance, &Version) -> Result<T>,
    ) -> Result<T> {
        let _gate = self.gate.read();
        let (_, inst) = self.writable(h)?;
        labelmap_only(&inst, what)?;
        let lock = self.instance_lock(inst.id);
        let _held = lock.lock();
        let (v, inst) = self.writable(h)?;
        f(&inst, &v)
    }

    /// Grants `peer` part of this node's ids for the labelmap with data UUID `data` in the repo of
    /// `version` (see
    /// [`ranges`](super::ranges)): given up here, durably, before the grant is returned.
    pub fn grant_labels(&self, version: Uuid, data: Uuid, peer: &str) -> Result<Grant> {
        let _gate = self.gate.read();
        let inst = self.labelmap_of(version, data)?;
        let lock = self.instance_lock(inst.id);
        let _held = lock.lock();
        let mut a = self.allotment(&inst)?.ok_or_else(|| {
            StoreError::Conflict(format!(
                "this node holds no labels of data instance {:?} to grant",
                inst.name
            ))
        })?;
        let g = a.grant_to(peer).ok_or_else(|| {
            StoreError::Conflict(format!(
                "this node's labels of data instance {:?} are too few to grant",
                inst.name
            ))
        })?;
        self.meta.write(vec![Self::allotment_op(&inst, &a)])?;
        Ok(g)
    }

    /// Takes a grant from a peer, unless this node already holds ids for the instance.
    pub fn accept_label_grant(&self, version: Uuid, data: Uuid, g: Grant) -> Result<bool> {
        let _gate = self.gate.read();
        let inst = self.labelmap_of(version, data)?;
        let valid = |(lo, hi): (u64, u64)| 0 < lo && lo < hi && hi <= ranges::ID_LIMIT;
        if !valid(g.labels) || !valid(g.mutations) {
            return Err(StoreError::BadRequest(format!("malformed grant {g:?}")));
        }
        let lock = self.instance_lock(inst.id);
        let _held = lock.lock();
        if self.allotment(&inst)?.is_some() {
            return Ok(false);
        }
        self.meta
            .write(vec![Self::allotment_op(&inst, &Allotment::from_grant(g))])?;
        Ok(true)
    }

    /// The labelmap instance with data UUID `data` in the repo of `version`.
    fn labelmap_of(&self, version: Uuid, data: Uuid) -> Result<Instance> {
        let c = self.catalog.read();
        let vid = c
            .exact(version)
            .ok_or_else(|| StoreError::NotFound(format!("no version {version} here")))?;
        let inst = c
            .repo_of(vid)?
            .instances
            .values()
            .find(|i| i.data_uuid == data)
            .ok_or_else(|| {
                StoreError::NotFound(format!(
                    "no data instance with UUID {data} in the repo of version {version}"
                ))
            })?;
        labelmap_only(inst, "a grant of labels")?;
        Ok(inst.clone())
    }

    /// Labelmap instances (by data UUID) of the repo of `version` this node holds no ids for:
    /// those to ask a grant for.
    pub fn labelmaps_without_allotment(&self, version: Uuid) -> Result<Vec<Uuid>> {
        let instances: Vec<Instance> = {
            let c = self.catalog.read();
            let Some(vid) = c.exact(version) else {
                return Ok(vec![]);
            };
            c.repo_of(vid)?
                .instances
                .values()
                .filter(|i| i.spec.datatype.name() == LABELMAP.name)
                .cloned()
                .collect()
        };
        let mut out = Vec::new();
        for inst in instances {
            if self.allotment(&inst)?.is_none() {
                out.push(inst.data_uuid);
            }
        }
        Ok(out)
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
        self.editing(h, "merge", |inst, v| {
            let body = |b: u64| {
                self.index_at(inst, v, b)?.ok_or_else(|| {
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
            let mut a = self.allotment_for_edits(inst)?;
            let mutation = Self::take_mutation(inst, &mut a)?;
            stamp(&mut target, mutation, who);
            write.put_index(to, &target);
            let record = json!({
                "Action": "merge-complete",
                "Target": to,
                "Labels": from,
                "MergedVoxels": merged_voxels,
            });
            write.put_mutation(mutation, record, v, who);
            write.extra.push(Self::allotment_op(inst, &a));
            self.write_meta(inst, v, write)?;
            Ok(mutation)
        })
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
        self.editing(h, "cleave", |inst, v| {
            let mut remain = self.index_at(inst, v, body)?.ok_or_else(|| {
                StoreError::BadRequest(format!("body {body} has no voxels at version {}", v.uuid))
            })?;
            let own: BTreeSet<u64> = remain.supervoxels().into_iter().collect();
            let strangers: Vec<String> =
                cleaved.difference(&own).map(|sv| sv.to_string()).collect();
            if !strangers.is_empty() {
                return Err(StoreError::BadRequest(format!(
                    "supervoxels {} are not in body {body}",
                    strangers.join(", ")
                )));
            }
            if cleaved.len() == own.len() {
                return Err(StoreError::BadRequest(format!(
                    "cleaving every supervoxel of body {body} would leave it empty: leave at \
                     least one"
                )));
            }
            let mut a = self.allotment_for_edits(inst)?;
            let label = self.take_labels(inst, v, &mut a, 1)?;
            let mutation = Self::take_mutation(inst, &mut a)?;
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
            write.put_mutation(mutation, record, v, who);
            write.extra.push(Self::allotment_op(inst, &a));
            self.write_meta(inst, v, write)?;
            Ok(Cleaved { label, mutation })
        })
    }

    /// The mutations made at this version, in the order made (DVID's `mutations`).
    pub fn mutations(&self, h: &DataHandle) -> Result<Vec<Value>> {
        let _gate = self.gate.read();
        let (v, inst) = self.readable(h)?;
        labelmap_only(&inst, "mutations")?;
        let uuid = v.uuid.to_string();
        let mut records = self.mutation_records(&inst, &v)?;
        records.retain(|r| r["UUID"] == uuid);
        Ok(records)
    }

    /// Every mutation record a version holds (its own and its ancestors'), by mutation id.
    pub(super) fn mutation_records(&self, inst: &Instance, v: &Version) -> Result<Vec<Value>> {
        self.meta_entries(inst, v, MUTATION)?
            .into_values()
            .map(|e| {
                serde_json::from_slice(&self.object(&e.object)?)
                    .map_err(|e| StoreError::Corrupt(format!("mutation record: {e}")))
            })
            .collect()
    }
}

impl MetaWrite {
    pub(super) fn put_mutation(&mut self, id: u64, mut record: Value, v: &Version, who: &Editor) {
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

pub(super) fn stamp(idx: &mut super::LabelIndex, mutation: u64, who: &Editor) {
    idx.last_mutid = mutation;
    idx.last_mod_time = now();
    idx.last_mod_user = who.user.clone();
    idx.last_mod_app = who.app.clone();
}
