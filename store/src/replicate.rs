//! Replication support: export a locked version's manifest for a peer, and import a version whose
//! objects a pull has stored. The sync engine (in `dvid-protocol`) moves the objects between the two.

use crate::catalog::{Instance, Repo, Uuid, Version, now};
use crate::geometry::{Point, block_from_key, cover};
use crate::manifest::{InstanceDef, Replica, Restriction, VersionDef, VersionManifest};
use crate::records::put_record;
use crate::tree::Scope;
use crate::{Result, Store, StoreError, keys};
use std::collections::{BTreeMap, BTreeSet};

impl Store {
    /// The manifest of a locked version: the repo's instances, the version and all its ancestors.
    pub fn version_manifest(&self, uuid: &str) -> Result<VersionManifest> {
        let c = self.catalog.read();
        let vid = c.resolve(uuid)?;
        let target = c.version(vid)?;
        if !target.locked {
            return Err(StoreError::Locked(format!(
                "version {} is mutable: only committed versions can be replicated",
                target.uuid
            )));
        }
        let repo = c.repo_of(vid)?;
        let data_uuid: BTreeMap<u32, Uuid> = repo
            .instances
            .values()
            .map(|i| (i.id, i.data_uuid))
            .collect();
        // Ids grow with creation here and with import order, so ascending ids put parents first.
        let mut versions = Vec::new();
        let mut held_by_any = std::collections::BTreeSet::new();
        for id in c.ancestors(vid)? {
            let v = c.version(id)?;
            let commit_hash = v.commit_hash.ok_or_else(|| {
                StoreError::Corrupt(format!("locked version {} has no commit hash", v.uuid))
            })?;
            let mut parents = Vec::new();
            for p in &v.parents {
                parents.push(c.version(*p)?.uuid);
            }
            let held: Vec<&Instance> = c.instances_at(id)?;
            held_by_any.extend(held.iter().map(|i| i.id));
            versions.push(VersionDef {
                instances: held.iter().map(|i| i.data_uuid).collect(),
                uuid: v.uuid,
                parents,
                branch: v.branch.clone(),
                note: v.note.clone(),
                log: v.log.clone(),
                created: v.created.clone(),
                updated: v.updated.clone(),
                roots: v
                    .roots
                    .iter()
                    .filter_map(|(i, r)| data_uuid.get(i).map(|d| (*d, *r)))
                    .collect(),
                commit_hash,
                seal: v.seal.clone(),
            });
        }
        Ok(VersionManifest {
            repo_root: repo.root,
            alias: repo.alias.clone(),
            description: repo.description.clone(),
            // Only what the chain holds: instances added since stay with the mutable versions here.
            instances: repo
                .instances
                .values()
                .filter(|i| held_by_any.contains(&i.id))
                .map(instance_def)
                .collect(),
            versions,
            target: target.uuid,
        })
    }

    /// Makes a replicated version visible, once its objects are stored. Its ancestors not yet here
    /// become metadata-only versions. `restriction` marks a partial replica. A version UUID already
    /// here with another commit hash is refused, never merged.
    pub fn import_version(
        &self,
        m: &VersionManifest,
        restriction: Option<Restriction>,
    ) -> Result<Uuid> {
        m.verify()?;
        let target = m.target_def();
        let pulled = |data: &Uuid| {
            let name = m
                .instances
                .iter()
                .find(|i| i.data_uuid == *data)
                .map(|i| i.name.as_str());
            restriction
                .as_ref()
                .is_none_or(|r| name.is_some_and(|n| r.has_instance(n)))
        };
        for root in target
            .roots
            .iter()
            .filter(|(d, _)| pulled(d))
            .map(|(_, r)| r)
        {
            if !self.objects.has_object(&root.id)? {
                return Err(StoreError::BadRequest(format!(
                    "version {} cannot be imported: tree root {} is not stored",
                    target.uuid, root.id
                )));
            }
        }
        let pulled_extents = self.pulled_extents(m, target, restriction.as_ref(), &pulled)?;
        let _gate = self.gate.write();
        let mut c = self.catalog.write();
        let mut next = c.clone();
        let mut repo = match next.repos.values().find(|r| r.root == m.repo_root) {
            Some(r) => r.clone(),
            None => {
                let t = now();
                Repo {
                    id: next.allocate_id(),
                    root: m.repo_root,
                    alias: m.alias.clone(),
                    description: m.description.clone(),
                    log: vec![],
                    instances: BTreeMap::new(),
                    versions: vec![],
                    created: t.clone(),
                    updated: t,
                    shared_with: Default::default(),
                }
            }
        };
        let mut local_instance: BTreeMap<Uuid, u32> = BTreeMap::new();
        for d in &m.instances {
            let id = match repo.instances.get(&d.name) {
                Some(i) if i.data_uuid == d.data_uuid => i.id,
                Some(i) => {
                    return Err(StoreError::BadRequest(format!(
                        "instance {:?} of repo {} is {} here but {} at the peer: they are different data",
                        d.name, m.repo_root, i.data_uuid, d.data_uuid
                    )));
                }
                None => {
                    let id = next.allocate_id();
                    repo.instances
                        .insert(d.name.clone(), instance_from_def(id, d));
                    id
                }
            };
            local_instance.insert(d.data_uuid, id);
            if let (Some(&(lo, hi)), Some(i)) = (
                pulled_extents.get(&d.data_uuid),
                repo.instances.get_mut(&d.name),
            ) {
                i.extents = Some(i.extents.map_or((lo, hi), |e| cover(e, (lo, hi))));
            }
        }
        let mut touched = BTreeSet::new();
        for (i, d) in m.versions.iter().enumerate() {
            let target = i + 1 == m.versions.len();
            if let Some(id) = next.exact(d.uuid) {
                let mut v = next.version(id)?.clone();
                if v.commit_hash != Some(d.commit_hash) {
                    return Err(StoreError::BadRequest(format!(
                        "version {} is here with commit hash {}, but the peer claims {}: refusing to take either for the other",
                        d.uuid,
                        v.commit_hash
                            .map_or_else(|| "none (mutable)".into(), |h| h.to_hex()),
                        d.commit_hash
                    )));
                }
                if target {
                    let replica = v.replica.with(restriction.as_ref());
                    if replica != v.replica {
                        v.replica = replica;
                        touched.insert(id);
                        next.insert_version(v);
                    }
                }
                continue;
            }
            let replica = match target {
                true => Replica::MetadataOnly.with(restriction.as_ref()),
                false => Replica::MetadataOnly,
            };
            let id = next.allocate_id();
            let parents: Vec<u32> = d
                .parents
                .iter()
                .map(|p| {
                    next.exact(*p)
                        .expect("verified manifests list parents first")
                })
                .collect();
            for &p in &parents {
                let mut pv = next.version(p)?.clone();
                pv.children.push(id);
                next.insert_version(pv);
                touched.insert(p);
            }
            next.insert_version(Version {
                id,
                uuid: d.uuid,
                repo: repo.id,
                parents,
                children: vec![],
                branch: d.branch.clone(),
                note: d.note.clone(),
                log: d.log.clone(),
                locked: true,
                created: d.created.clone(),
                updated: d.updated.clone(),
                roots: d
                    .roots
                    .iter()
                    .map(|(du, r)| (local_instance[du], *r))
                    .collect(),
                instances: Some(d.instances.iter().map(|du| local_instance[du]).collect()),
                commit_hash: Some(d.commit_hash),
                seal: d.seal.clone(),
                replica,
                published: false,
            });
            repo.versions.push(id);
            touched.insert(id);
        }
        repo.updated = now();
        let mut batch = vec![
            put_record(keys::repo(repo.id), &repo),
            crate::records::put_counter(next.next_id),
        ];
        for id in touched {
            batch.push(put_record(keys::version(id), next.version(id)?));
        }
        next.insert_repo(repo);
        self.meta.write(batch)?;
        *c = next;
        Ok(target.uuid)
    }
}

impl Store {
    /// The voxel extents of what a pull brought, by voxel instance: the box of its blocks (block
    /// aligned: the peer's exact extents are not part of what its manifest signs). Read from the
    /// local copies of the pulled trees, within the part pulled.
    fn pulled_extents(
        &self,
        m: &VersionManifest,
        target: &VersionDef,
        restriction: Option<&Restriction>,
        pulled: &dyn Fn(&Uuid) -> bool,
    ) -> Result<BTreeMap<Uuid, (Point, Point)>> {
        let mut out = BTreeMap::new();
        for d in &m.instances {
            let (Some(g), Some(root)) = (&d.spec.geometry, target.roots.get(&d.data_uuid)) else {
                continue;
            };
            if !pulled(&d.data_uuid) {
                continue;
            }
            let scope = restriction.map_or(Scope::All, |r| r.scope(d));
            let mut bounds: Option<(Point, Point)> = None;
            self.trees.visit(Some(*root), &scope, &mut |e| {
                if let Some(b) = block_from_key(&e.key) {
                    bounds = Some(bounds.map_or((b, b), |bb| cover(bb, (b, b))));
                }
                true
            })?;
            if let Some((lo, hi)) = bounds {
                let bs = g.block_size;
                out.insert(
                    d.data_uuid,
                    (
                        std::array::from_fn(|a| lo[a] * bs[a]),
                        std::array::from_fn(|a| (hi[a] + 1) * bs[a] - 1),
                    ),
                );
            }
        }
        Ok(out)
    }
}

fn instance_def(i: &Instance) -> InstanceDef {
    InstanceDef {
        name: i.name.clone(),
        data_uuid: i.data_uuid,
        spec: i.spec.clone(),
    }
}

fn instance_from_def(id: u32, d: &InstanceDef) -> Instance {
    Instance {
        id,
        name: d.name.clone(),
        data_uuid: d.data_uuid,
        spec: d.spec.clone(),
        extents: None,
    }
}
