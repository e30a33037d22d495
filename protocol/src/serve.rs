//! Answering peers from the local store. Every request is checked against the sharing policy, and
//! every object against its claimed path in the claimed version: a peer never obtains an object that
//! is not reachable from a version it may read, even if it learned the hash elsewhere.

use crate::wire::{Head, ObjectReply, Request, Response, Want, WantPath, heads_digest};
use dvid_store::catalog::Uuid;
use dvid_store::{ObjectId, Store, StoreError};

/// The answer to `request` from `peer` (its PeerId as text). Pushes ask the node to act (start a
/// pull), which is the node's business: this answers them only with a refusal.
pub fn answer(store: &Store, peer: &str, request: Request) -> Response {
    match request {
        Request::Push { .. } | Request::PushStatus { .. } => {
            Response::Refused("this node takes no pushes".into())
        }
        Request::Heads => Response::Heads(heads(store, peer)),
        Request::HeadsIfChanged { digest } => {
            let heads = heads(store, peer);
            match heads_digest(&heads) == digest {
                true => Response::HeadsUnchanged,
                false => Response::Heads(heads),
            }
        }
        Request::Manifest { version } => {
            if let Some(refusal) = refuse(store, peer, version) {
                return refusal;
            }
            match store.version_manifest(&version.to_hex()) {
                Ok(mut m) => {
                    // Ancestors travel as metadata so the DAG is whole; the notes and logs of those
                    // the peer may not read stay here (they are outside the commit hash).
                    for v in &mut m.versions {
                        if !store.may_read(peer, v.uuid) {
                            v.note.clear();
                            v.log.clear();
                        }
                    }
                    Response::Manifest(m.encode())
                }
                Err(e) => Response::Refused(e.to_string()),
            }
        }
        Request::GrantLabels { version, data } => {
            if let Some(refusal) = refuse(store, peer, version) {
                return refusal;
            }
            match store.grant_labels(version, data, peer) {
                Ok(g) => Response::LabelGrant(g),
                Err(e) => Response::Refused(e.to_string()),
            }
        }
        Request::Objects { version, wants } => {
            if let Some(refusal) = refuse(store, peer, version) {
                return refusal;
            }
            let mut replies = Vec::with_capacity(wants.len());
            for w in &wants {
                // Only an object found at its claimed path in the claimed version is sent: a hash
                // alone opens nothing. Anything else is missing here: an object the version does
                // not have at that path (a puller asks a holder of an ancestor for what the target
                // did not change, not knowing what did), or a node a partial replica lacks.
                match locate(store, version, w) {
                    Ok(true) => match store.objects().get_object(&w.id) {
                        Ok(Some(bytes)) => replies.push(ObjectReply::Found(bytes)),
                        _ => replies.push(ObjectReply::Missing),
                    },
                    Ok(false) | Err(_) => replies.push(ObjectReply::Missing),
                }
            }
            Response::Objects(replies)
        }
    }
}

/// The locked versions `peer` may fetch. Unsealed versions (locked by a store without a key) are
/// not announced: peers would drop them.
fn heads(store: &Store, peer: &str) -> Vec<Head> {
    store
        .offers(peer)
        .into_iter()
        .filter_map(|o| {
            Some(Head {
                repo: o.repo,
                version: o.version,
                parents: o.parents,
                commit_hash: o.commit_hash,
                seal: o.seal?,
                holds: o.holds,
            })
        })
        .collect()
}

fn refuse(store: &Store, peer: &str, version: Uuid) -> Option<Response> {
    (!store.may_read(peer, version)).then(|| {
        Response::Refused(format!(
            "version {version} is not shared with peer {peer} (or is not a committed version here)"
        ))
    })
}

/// True if `want.id` is the object at `want.path` in `version`.
fn locate(store: &Store, version: Uuid, want: &Want) -> Result<bool, StoreError> {
    let found: Option<ObjectId> = match &want.path {
        WantPath::Root { data } => store.tree_root(version, *data)?.map(|r| r.id),
        WantPath::Node {
            data,
            prefix,
            depth,
        } => {
            let root = store.tree_root(version, *data)?;
            store.trees().node_at(root, prefix, usize::from(*depth))?
        }
        WantPath::Entry { data, key } => {
            let root = store.tree_root(version, *data)?;
            store.trees().get(root, key)?.map(|e| e.object)
        }
    };
    Ok(found == Some(want.id))
}
