//! A simulated node: a real `Store` over an in-memory engine that outlives crashes, the pulls it runs
//! with the real engine, what its neighbours offer (heads), the repos it follows, and how it serves.

use crate::net::{Micros, NodeId};
use dvid_protocol::heads::{HeadsBook, Standing, recent_failures};
use dvid_protocol::pull::Pull;
use dvid_protocol::seal::KeySealer;
use dvid_protocol::serve::answer;
pub use dvid_protocol::strikes::Offence;
use dvid_protocol::strikes::{Record, Rules};
use dvid_protocol::wire::{ObjectReply, Request, Response};
use dvid_store::catalog::Uuid;
use dvid_store::{MemEngine, ObjectId, Replica, Sealer, Store, StoreError, VersionManifest};
use libp2p_identity::Keypair;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

/// How a hostile node misbehaves. The first two are the node's own `--misbehave` modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hostility {
    /// Flips a byte in every object it serves.
    CorruptObjects,
    /// Serves heads with an altered commit hash under the original seal.
    ForgeHeads,
    /// Offers honest heads, but serves a forged manifest: the version's roots swapped for its
    /// parent's, the commit hash recomputed and the seal its own; then serves any object it holds.
    ForgeVersions,
}

/// Whether a node runs and is reachable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Up,
    /// Running but without network (a laptop on the train): it commits, nothing reaches it.
    Offline,
    /// The process is dead; its store survives for the restart.
    Crashed,
}

/// A pull of one version, as the node's job runner drives it: first a manifest from one of the
/// peers that offered the version, then the engine.
pub struct Job {
    pub version: Uuid,
    /// The commit hash the offering heads carry, sealed by the version's locker.
    pub hash: ObjectId,
    /// Neighbours that offered the version when the job started.
    pub peers: Vec<NodeId>,
    /// When the running pull next takes neighbours that began to offer the version since.
    pub next_peer_check: Micros,
    pub phase: Phase,
    pub started: Micros,
    /// Manifest requests made: round trips before the engine starts.
    pub manifest_asks: u32,
    /// Peers whose object requests failed in transport during this pull.
    pub failed_peers: BTreeSet<NodeId>,
}

pub enum Phase {
    /// Asking `peers[next - 1]` for the manifest.
    Manifest { next: usize },
    Pulling {
        pull: Box<Pull<NodeId>>,
        manifest: Box<VersionManifest>,
    },
}

/// What an outstanding request was for.
#[derive(Clone, Debug)]
pub enum Pending {
    Heads {
        peer: NodeId,
    },
    Manifest {
        peer: NodeId,
        job: u64,
    },
    Objects {
        peer: NodeId,
        job: u64,
        request: u64,
    },
    /// A curious node asking for something it may not read.
    Probe {
        peer: NodeId,
        version: usize,
    },
}

impl Pending {
    /// The peer asked.
    pub fn peer(&self) -> NodeId {
        match self {
            Pending::Heads { peer }
            | Pending::Manifest { peer, .. }
            | Pending::Objects { peer, .. }
            | Pending::Probe { peer, .. } => *peer,
        }
    }
}

/// One simulated node.
pub struct SimNode {
    pub id: NodeId,
    /// A short label for reports.
    pub name: String,
    /// Its PeerId, from its ed25519 key: what sharing policies name and seals identify.
    pub peer_id: String,
    key: Keypair,
    pub engine: Arc<MemEngine>,
    pub store: Store,
    pub status: Status,
    pub hostile: Option<Hostility>,
    /// Strikes and bans per peer, by the node's rules (in memory, as in the node's guard).
    strikes: BTreeMap<NodeId, Record>,
    /// Bumped at each crash and restart, so timers of a dead incarnation are dropped.
    pub generation: u32,
    pub neighbours: Vec<NodeId>,
    /// The heads each neighbour last offered (dropped when a request to it fails): the node's own
    /// heads book, so offers, conflicts and "ask only if changed" are decided by the node's code.
    pub heads: HeadsBook<NodeId, ()>,
    /// Followed repos, by root UUID (kept across restarts, as the node's jobs file keeps them).
    pub follows: BTreeSet<Uuid>,
    /// When pulls of each version failed (kept across restarts, as the node's jobs file keeps them).
    pub failures: BTreeMap<Uuid, Vec<Micros>>,
    pub jobs: BTreeMap<u64, Job>,
    pub next_job: u64,
    /// Outstanding requests by transport id, with when they were sent.
    pub pending: BTreeMap<u64, (Pending, Micros)>,
    pub next_request: u64,
    /// A poll timer is scheduled.
    pub tick_armed: bool,
    /// Versions seen held in full: a replica never becomes less than full (there is no garbage
    /// collection), so this memo of the catalog's answer only saves time.
    held: RefCell<HashSet<Uuid>>,
}

impl SimNode {
    /// A node whose key derives from the run's seed, so its PeerId and seals repeat with the seed.
    pub fn new(id: NodeId, seed: u64, hostile: Option<Hostility>) -> Result<Self, StoreError> {
        let engine = Arc::new(MemEngine::new());
        let mut secret =
            *blake3::hash(&[seed.to_le_bytes(), u64::from(id).to_le_bytes()].concat()).as_bytes();
        let key = Keypair::ed25519_from_bytes(&mut secret).expect("32 bytes make an ed25519 key");
        let store = open(&engine, &key)?;
        Ok(Self {
            id,
            name: format!("n{id}"),
            peer_id: key.public().to_peer_id().to_string(),
            key,
            engine,
            store,
            status: Status::Up,
            hostile,
            strikes: BTreeMap::new(),
            generation: 0,
            neighbours: Vec::new(),
            heads: HeadsBook::default(),
            follows: BTreeSet::new(),
            failures: BTreeMap::new(),
            jobs: BTreeMap::new(),
            next_job: 0,
            pending: BTreeMap::new(),
            next_request: 0,
            tick_armed: false,
            held: RefCell::new(HashSet::new()),
        })
    }

    /// The process dies: everything in memory is lost, the store's engine stays.
    pub fn crash(&mut self) {
        self.status = Status::Crashed;
        self.generation += 1;
        self.jobs.clear();
        self.pending.clear();
        self.heads.clear();
        self.strikes.clear();
        self.tick_armed = false;
    }

    /// The process starts again and reopens its store from the engine (the catalog is reloaded).
    pub fn restart(&mut self) -> Result<(), StoreError> {
        self.store = open(&self.engine, &self.key)?;
        self.status = Status::Up;
        self.generation += 1;
        Ok(())
    }

    /// Holds `version` in full (a complete, visible replica).
    pub fn holds_full(&self, version: Uuid) -> bool {
        if self.held.borrow().contains(&version) {
            return true;
        }
        let full = self.store_holds_full(version);
        if full {
            self.held.borrow_mut().insert(version);
        }
        full
    }

    /// Asks the store itself, for invariant checks.
    pub fn store_holds_full(&self, version: Uuid) -> bool {
        self.store
            .resolve(&version.to_hex())
            .is_ok_and(|v| v.locked && v.replica == Replica::Full)
    }

    /// Neighbours offering `version` with commit hash `hash`, in id order: a pull starts with them,
    /// and a running pull takes those that join.
    pub fn offering(&self, version: Uuid, hash: ObjectId) -> Vec<NodeId> {
        self.heads.offering(version, hash)
    }

    /// Versions to start pulling on new heads: the protocol's follow rule, as the node runs it.
    pub fn to_pull(&self, max_failures: u32, window: Micros, now: Micros) -> Vec<(Uuid, ObjectId)> {
        self.heads
            .to_follow(&self.follows, max_failures as usize, |version| Standing {
                held: self.holds_full(version),
                pulling: self.jobs.values().any(|j| j.version == version),
                recent_failures: self
                    .failures
                    .get(&version)
                    .map_or(0, |at| recent_failures(at.iter().copied(), now, window)),
                local_hash: self
                    .store
                    .resolve(&version.to_hex())
                    .ok()
                    .and_then(|v| v.commit_hash),
            })
    }

    /// Counts an offence of `peer`; returns true if it is now banned (its heads are dropped).
    pub fn offence(&mut self, peer: NodeId, o: Offence, now: Micros) -> bool {
        let record = self.strikes.entry(peer).or_insert_with(|| Record::new(now));
        if record.offend(&Rules::default(), o, now).is_none() {
            return false;
        }
        self.forget_heads(peer);
        true
    }

    /// Forgets what `peer` offered (its connection closed, or it was banned).
    pub fn forget_heads(&mut self, peer: NodeId) {
        self.heads.forget(&peer);
    }

    /// The heads request for `peer`: only if changed, when its last list is known.
    pub fn heads_request(&self, peer: NodeId) -> Request {
        self.heads.request(&peer)
    }

    pub fn is_banned(&self, peer: NodeId, now: Micros) -> bool {
        self.strikes.get(&peer).is_some_and(|r| r.is_banned(now))
    }

    /// Answers a peer (by its PeerId) through the real policy-checked serving path; a hostile node
    /// then spoils the answer.
    pub fn serve(&self, peer: &str, request: Request) -> Response {
        if self.hostile == Some(Hostility::ForgeVersions) {
            return self.serve_forgeries(peer, request);
        }
        let mut resp = answer(&self.store, peer, request);
        match (self.hostile, &mut resp) {
            (Some(Hostility::CorruptObjects), Response::Objects(replies)) => {
                for r in replies {
                    if let ObjectReply::Found(bytes) = r
                        && let Some(b) = bytes.first_mut()
                    {
                        *b ^= 0x5a;
                    }
                }
            }
            (Some(Hostility::ForgeHeads), Response::Heads(heads)) => {
                for h in heads {
                    h.commit_hash.0[0] ^= 1;
                }
            }
            _ => {}
        }
        resp
    }
}

impl SimNode {
    fn serve_forgeries(&self, peer: &str, request: Request) -> Response {
        match request {
            Request::Objects { wants, .. } => Response::Objects(
                wants
                    .iter()
                    .map(|w| match self.store.objects().get_object(&w.id) {
                        Ok(Some(b)) => ObjectReply::Found(b),
                        _ => ObjectReply::Missing,
                    })
                    .collect(),
            ),
            other => match answer(&self.store, peer, other) {
                Response::Manifest(bytes) => match VersionManifest::decode(&bytes) {
                    Ok(mut m) => {
                        forge(&mut m, &KeySealer::new(self.key.clone()));
                        Response::Manifest(m.encode())
                    }
                    Err(e) => Response::Refused(e.to_string()),
                },
                honest => honest,
            },
        }
    }
}

/// Gives the target of `m` its first parent's roots, recomputes its commit hash so the manifest
/// still decodes, and seals it with `sealer`: a well-formed manifest of a version nobody committed.
fn forge(m: &mut VersionManifest, sealer: &KeySealer) {
    let n = m.versions.len();
    let Some(parent) = m.target_def().parents.first().copied() else {
        return;
    };
    let Some(parent_roots) = m
        .versions
        .iter()
        .find(|v| v.uuid == parent)
        .map(|v| v.roots.clone())
    else {
        return;
    };
    let hashes: BTreeMap<Uuid, ObjectId> =
        m.versions.iter().map(|v| (v.uuid, v.commit_hash)).collect();
    let target = &m.versions[n - 1];
    let parents: Vec<Option<ObjectId>> = target
        .parents
        .iter()
        .map(|p| hashes.get(p).copied())
        .collect();
    let mut forged = target.clone();
    forged.roots = parent_roots;
    forged.commit_hash = m.content_hash(&forged, &parents);
    m.versions[n - 1] = forged;
    let message = m.seal_message_of(&m.versions[n - 1]);
    m.versions[n - 1].seal = Some(sealer.seal(&message));
}

/// Opens the store over the node's engine, sealing what it commits with the node's key.
fn open(engine: &Arc<MemEngine>, key: &Keypair) -> Result<Store, StoreError> {
    let store = Store::open(engine.clone(), engine.clone(), "memory")?;
    store.set_sealer(Arc::new(KeySealer::new(key.clone())));
    Ok(store)
}
