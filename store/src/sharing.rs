//! The sharing policy: private by default; a repo's locked versions can be shared with chosen peers,
//! and single locked versions published to every peer. Mutable versions never leave the node.

use crate::catalog::Uuid;
use crate::records::put_record;
use crate::{Result, Store, StoreError, keys};
use std::collections::BTreeSet;

/// Who may fetch what of one repo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sharing {
    pub repo: Uuid,
    pub shared_with: BTreeSet<String>,
    pub published: Vec<Uuid>,
}

/// A locked version a peer may fetch, as offered to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer {
    pub repo: Uuid,
    pub version: Uuid,
    pub parents: Vec<Uuid>,
    pub commit_hash: crate::ObjectId,
    pub seal: Option<crate::Seal>,
    /// What this node holds of it: `None` all of it, else the parts of a partial replica.
    pub holds: Option<Vec<crate::Restriction>>,
}

impl Store {
    /// Lets `peers` fetch every locked version of the repo holding `uuid`.
    pub fn share_repo(&self, uuid: &str, peers: &[String]) -> Result<Sharing> {
        if peers.iter().any(|p| p.trim().is_empty()) {
            return Err(StoreError::BadRequest("peer ids must be non-empty".into()));
        }
        {
            let mut c = self.catalog.write();
            let vid = c.resolve(uuid)?;
            let mut repo = c.repo_of(vid)?.clone();
            repo.shared_with
                .extend(peers.iter().map(|p| p.trim().to_string()));
            self.meta
                .write(vec![put_record(keys::repo(repo.id), &repo)])?;
            c.insert_repo(repo);
        }
        self.sharing(uuid)
    }

    /// Stops sharing the repo holding `uuid` with `peers`: what they pulled stays with them, and
    /// their new requests are refused. Naming a peer it was not shared with is a mistake.
    pub fn unshare_repo(&self, uuid: &str, peers: &[String]) -> Result<Sharing> {
        if peers.is_empty() {
            return Err(StoreError::BadRequest(
                "\"peers\" is empty: name the peers to stop sharing with".into(),
            ));
        }
        {
            let mut c = self.catalog.write();
            let vid = c.resolve(uuid)?;
            let mut repo = c.repo_of(vid)?.clone();
            if let Some(p) = peers.iter().find(|p| !repo.shared_with.contains(p.trim())) {
                return Err(StoreError::BadRequest(format!(
                    "repo {} is not shared with peer {p}",
                    repo.root
                )));
            }
            for p in peers {
                repo.shared_with.remove(p.trim());
            }
            self.meta
                .write(vec![put_record(keys::repo(repo.id), &repo)])?;
            c.insert_repo(repo);
        }
        self.sharing(uuid)
    }

    /// Stops offering one version to every peer (peers the repo is shared with keep access).
    pub fn unpublish(&self, uuid: &str) -> Result<Uuid> {
        let mut c = self.catalog.write();
        let vid = c.resolve(uuid)?;
        let mut v = c.version(vid)?.clone();
        if !v.published {
            return Err(StoreError::BadRequest(format!(
                "version {} is not published",
                v.uuid
            )));
        }
        v.published = false;
        self.meta.write(vec![put_record(keys::version(vid), &v)])?;
        let uuid = v.uuid;
        c.insert_version(v);
        Ok(uuid)
    }

    /// Lets every peer fetch one locked version.
    pub fn publish(&self, uuid: &str) -> Result<Uuid> {
        let mut c = self.catalog.write();
        let vid = c.resolve(uuid)?;
        let mut v = c.version(vid)?.clone();
        if !v.locked {
            return Err(StoreError::Locked(format!(
                "version {} is mutable and never leaves this node: commit it before publishing",
                v.uuid
            )));
        }
        v.published = true;
        self.meta.write(vec![put_record(keys::version(vid), &v)])?;
        let uuid = v.uuid;
        c.insert_version(v);
        Ok(uuid)
    }

    /// The policy of the repo holding `uuid`.
    pub fn sharing(&self, uuid: &str) -> Result<Sharing> {
        let c = self.catalog.read();
        let vid = c.resolve(uuid)?;
        let repo = c.repo_of(vid)?;
        let published = repo
            .versions
            .iter()
            .filter_map(|id| c.versions.get(id))
            .filter(|v| v.published)
            .map(|v| v.uuid)
            .collect();
        Ok(Sharing {
            repo: repo.root,
            shared_with: repo.shared_with.clone(),
            published,
        })
    }

    /// Whether `peer` may fetch `version`: it must be locked, and published or in a repo shared
    /// with the peer.
    pub fn may_read(&self, peer: &str, version: Uuid) -> bool {
        let c = self.catalog.read();
        let Some(vid) = c.exact(version) else {
            return false;
        };
        let Ok(v) = c.version(vid) else { return false };
        v.locked
            && (v.published
                || c.repos
                    .get(&v.repo)
                    .is_some_and(|r| r.shared_with.contains(peer)))
    }

    /// Every locked version `peer` may fetch that this node holds, in full or in part (a laptop's
    /// child of a partial replica is offered like any version, saying what it holds).
    pub fn offers(&self, peer: &str) -> Vec<Offer> {
        let c = self.catalog.read();
        let mut out = Vec::new();
        for repo in c.repos.values() {
            let shared = repo.shared_with.contains(peer);
            for v in repo.versions.iter().filter_map(|id| c.versions.get(id)) {
                let holds = match &v.replica {
                    crate::Replica::Full => None,
                    crate::Replica::Partial(parts) => Some(parts.clone()),
                    crate::Replica::MetadataOnly => continue,
                };
                if let (true, true, Some(h)) = (v.locked, shared || v.published, v.commit_hash) {
                    out.push(Offer {
                        repo: repo.root,
                        version: v.uuid,
                        parents: v
                            .parents
                            .iter()
                            .filter_map(|p| c.versions.get(p))
                            .map(|p| p.uuid)
                            .collect(),
                        commit_hash: h,
                        seal: v.seal.clone(),
                        holds,
                    });
                }
            }
        }
        out
    }
}
