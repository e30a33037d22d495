//! The sans-IO pull engine: replicates one locked version by walking its trees from the roots and
//! fetching only the objects the local store lacks, in batches, pipelined over every peer that can
//! serve them. It does no I/O: the driver feeds it replies, failures and the time, and carries out
//! the outputs (send a request, store verified objects, ban a peer). The local object store is passed
//! in through `dvid_store`'s trait, so the simulator drives this same code over an in-memory store.
//!
//! Resume needs no state of its own: objects are stored as they arrive, and a new pull of the same
//! version finds them locally and asks only for the rest.

use crate::wire::{MAX_WANTS_PER_REQUEST, ObjectReply, Request, Want, WantPath};
use dvid_store::catalog::Uuid;
use dvid_store::geometry::{block_box_of_prefix, block_from_key};
use dvid_store::manifest::{Restriction, VersionManifest};
use dvid_store::tree::{Node, Scope};
use dvid_store::{ObjectId, ObjectStore, StoreError};
use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::fmt::Debug;

/// Bounds of one pull: together they bound its memory (peers × in flight × batch × object size).
#[derive(Clone, Debug)]
pub struct PullConfig {
    /// Objects per request (at most [`MAX_WANTS_PER_REQUEST`]).
    pub batch: usize,
    /// Requests in flight per peer.
    pub per_peer_in_flight: usize,
    /// A request unanswered this long is retried elsewhere.
    pub timeout_ms: u64,
    /// Attempts per object before the pull fails.
    pub max_attempts: u32,
    /// Endgame: once nothing is left to queue, a peer with a free slot is also asked for the objects
    /// of a request that has waited this long at another peer; the first answer wins. A slow or
    /// stuck peer then delays the end of a pull by this, not by the timeout.
    pub endgame_after_ms: u64,
}

impl Default for PullConfig {
    fn default() -> Self {
        Self {
            batch: 32,
            per_peer_in_flight: 4,
            timeout_ms: 30_000,
            max_attempts: 6,
            endgame_after_ms: 2_000,
        }
    }
}

/// Counters of a pull, for progress reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Objects received from peers and verified.
    pub objects_fetched: u64,
    /// Payload bytes of those objects.
    pub bytes_fetched: u64,
    /// Objects found already stored locally (not fetched).
    pub objects_local: u64,
    /// Requests sent.
    pub requests: u64,
}

/// What the driver must do.
#[derive(Debug, PartialEq)]
pub enum Output<P> {
    /// Send `message` to `peer`; answer with [`Pull::on_reply`], [`Pull::on_refused`] or
    /// [`Pull::on_failed`] quoting `request`.
    Send {
        peer: P,
        request: u64,
        message: Request,
    },
    /// Store these objects: their hashes were verified.
    Store(Vec<(ObjectId, Vec<u8>)>),
    /// Stop using this peer: it sent bytes that fail their hash.
    Ban { peer: P, reason: String },
    /// Every object is stored: the version can be imported.
    Done,
    /// The pull cannot complete.
    Failed(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Node,
    Payload,
}

#[derive(Clone, Debug)]
struct Item<P> {
    want: Want,
    kind: Kind,
    instance: usize,
    missing_at: Vec<P>,
    attempts: u32,
}

/// How one instance is walked: the part of its index the pull fetches.
#[derive(Clone, Debug)]
struct Walk {
    data: Uuid,
    /// The instance's name and whether its keys are block coordinates, for messages.
    name: String,
    block_keys: bool,
    scope: Scope,
}

struct InFlight<P> {
    peer: P,
    items: Vec<Item<P>>,
    sent_ms: u64,
    /// Sent again to another peer in the endgame, or such a second copy: never copied again.
    twinned: bool,
}

/// What the pull knows of one peer.
#[derive(Clone, Copy, Debug)]
struct PeerState {
    /// The version this peer is asked under: the target, or for a peer that holds an ancestor of
    /// it, that ancestor (whose unchanged subtrees and payloads are the target's too: trees are
    /// history-independent, so an unchanged part has the same objects at the same paths).
    serves: Uuid,
    in_flight: usize,
    /// Requests that failed in transport (or timed out) since the peer last answered. A failing
    /// peer is asked last, and one request at a time: otherwise, idle and first in line, it would
    /// draw every retry and burn the objects' attempts while other peers could serve them.
    failures: u32,
}

/// One pull of one version.
pub struct Pull<P> {
    version: Uuid,
    config: PullConfig,
    walks: Vec<Walk>,
    /// Objects discovered but not yet looked for in the local store.
    fresh: VecDeque<Item<P>>,
    /// Objects known to be missing locally, waiting to be requested.
    queue: VecDeque<Item<P>>,
    /// Set when the pull cannot complete; reported by the next poll.
    failure: Option<String>,
    seen: HashSet<(ObjectId, usize)>,
    /// Objects received and verified, so a second copy (from an endgame twin) is dropped.
    fetched: HashSet<ObjectId>,
    in_flight: BTreeMap<u64, InFlight<P>>,
    peers: BTreeMap<P, PeerState>,
    /// Peers that lied or refused: never asked again, even if offered anew.
    dropped: BTreeSet<P>,
    next_request: u64,
    progress: Progress,
    finished: bool,
}

impl<P: Ord + Clone + Debug> Pull<P> {
    /// Plans the pull of `manifest`'s target, restricted to some instances and a region if given.
    pub fn new(
        manifest: &VersionManifest,
        restriction: Option<&Restriction>,
        config: PullConfig,
    ) -> Self {
        let target = manifest.target_def();
        let mut pull = Self {
            version: target.uuid,
            config,
            walks: Vec::new(),
            fresh: VecDeque::new(),
            queue: VecDeque::new(),
            failure: None,
            seen: HashSet::new(),
            fetched: HashSet::new(),
            in_flight: BTreeMap::new(),
            peers: BTreeMap::new(),
            dropped: BTreeSet::new(),
            next_request: 0,
            progress: Progress::default(),
            finished: false,
        };
        pull.config.batch = pull.config.batch.clamp(1, MAX_WANTS_PER_REQUEST);
        for inst in &manifest.instances {
            if restriction.is_some_and(|r| !r.has_instance(&inst.name)) {
                continue;
            }
            let Some(root) = target.roots.get(&inst.data_uuid) else {
                continue;
            };
            pull.walks.push(Walk {
                data: inst.data_uuid,
                name: inst.name.clone(),
                block_keys: inst.spec.datatype.voxel_bytes().is_some(),
                scope: restriction.map_or(Scope::All, |r| r.scope(inst)),
            });
            let want = Want {
                id: root.id,
                path: WantPath::Root {
                    data: inst.data_uuid,
                },
            };
            pull.push(want, Kind::Node, pull.walks.len() - 1);
        }
        pull
    }

    /// A peer that offers this version (in full or in part), at the start or while the pull runs.
    /// Returns false if it was known already, or was dropped for lying or refusing.
    pub fn add_peer(&mut self, peer: P) -> bool {
        let target = self.version;
        self.add_peer_serving(peer, target)
    }

    /// A peer that offers `version`, an ancestor of the target: it is asked, under that version,
    /// for what the target did not change since. A laptop's new version then comes from the
    /// laptop for what it changed and from any holder of its parent for the rest.
    pub fn add_peer_serving(&mut self, peer: P, version: Uuid) -> bool {
        if self.dropped.contains(&peer) || self.peers.contains_key(&peer) {
            return false;
        }
        self.peers.insert(
            peer,
            PeerState {
                serves: version,
                in_flight: 0,
                failures: 0,
            },
        );
        true
    }

    /// A peer went away: its requests in flight go back to the queue.
    pub fn remove_peer(&mut self, peer: &P) {
        self.peers.remove(peer);
        self.requeue_peer(peer);
        self.recheck_queue();
    }

    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Objects waiting to be fetched or checked, and requests in flight.
    pub fn backlog(&self) -> (usize, usize) {
        (self.fresh.len() + self.queue.len(), self.in_flight.len())
    }

    /// Walks what is already stored, times out stale requests, and sends new ones. Call after every
    /// input and on a timer.
    pub fn poll(
        &mut self,
        local: &dyn ObjectStore,
        now_ms: u64,
    ) -> Result<Vec<Output<P>>, StoreError> {
        let mut out = Vec::new();
        if self.finished {
            return Ok(out);
        }
        self.expire(now_ms);
        self.expand_local(local)?;
        if self.failure.is_none() && self.peers.is_empty() && !self.queue.is_empty() {
            self.failure = Some("no peer left to fetch from".into());
        }
        if let Some(reason) = self.failure.take() {
            return Ok(self.fail(reason));
        }
        // Requests whose every object came by an endgame twin are not waited for: a stuck peer
        // keeps their slots until it answers or times out, but the pull can end without them.
        let fetched = &self.fetched;
        let waiting = self
            .in_flight
            .values()
            .any(|f| f.items.iter().any(|i| !fetched.contains(&i.want.id)));
        if !waiting {
            self.queue.retain(|i| !fetched.contains(&i.want.id));
        }
        if self.queue.is_empty() && !waiting {
            self.finished = true;
            out.push(Output::Done);
            return Ok(out);
        }
        self.send(now_ms, &mut out);
        if let Some(reason) = self.failure.take() {
            return Ok(self.fail(reason));
        }
        Ok(out)
    }

    /// A peer answered a request.
    pub fn on_reply(&mut self, request: u64, replies: Vec<ObjectReply>) -> Vec<Output<P>> {
        let Some(f) = self.in_flight.remove(&request) else {
            return Vec::new(); // late answer to a request already retried elsewhere
        };
        if let Some(s) = self.peers.get_mut(&f.peer) {
            s.in_flight = s.in_flight.saturating_sub(1);
            s.failures = 0;
        }
        if replies.len() != f.items.len() {
            return self.ban(f, "answered with the wrong number of objects".into());
        }
        let mut store = Vec::new();
        let mut bad = None;
        let mut retry = Vec::new();
        for (mut item, reply) in f.items.into_iter().zip(replies) {
            if self.fetched.contains(&item.want.id) {
                continue; // its endgame twin brought it first
            }
            match reply {
                ObjectReply::Missing => {
                    item.missing_at.push(f.peer.clone());
                    self.check_servable(&item);
                    retry.push(item);
                }
                ObjectReply::Found(bytes) => {
                    if bad.is_some() || ObjectId::of(&bytes) != item.want.id {
                        bad.get_or_insert_with(|| {
                            format!("sent bytes that do not hash to object {}", item.want.id)
                        });
                        retry.push(item);
                        continue;
                    }
                    if item.kind == Kind::Node
                        && let Err(e) = self.expand(&item, &bytes)
                    {
                        return self.fail(format!(
                            "object {} of the version is not a tree node: {e}",
                            item.want.id
                        ));
                    }
                    self.progress.objects_fetched += 1;
                    self.progress.bytes_fetched += bytes.len() as u64;
                    self.fetched.insert(item.want.id);
                    store.push((item.want.id, bytes));
                }
            }
        }
        self.queue.extend(retry);
        let mut out = Vec::new();
        if !store.is_empty() {
            out.push(Output::Store(store));
        }
        if let Some(reason) = bad {
            self.drop_peer(&f.peer);
            out.push(Output::Ban {
                peer: f.peer,
                reason,
            });
        }
        out
    }

    /// A peer refused a request (not shared with us, unknown version...). It is not asked again.
    pub fn on_refused(&mut self, request: u64, reason: &str) -> Vec<Output<P>> {
        let Some(f) = self.in_flight.remove(&request) else {
            return Vec::new();
        };
        self.queue.extend(f.items);
        self.drop_peer(&f.peer);
        if self.peers.is_empty() {
            return self.fail(format!("refused by {:?}: {reason}", f.peer));
        }
        self.recheck_queue();
        Vec::new()
    }

    /// A request failed in transport (connection lost, stream reset). Its objects are retried.
    pub fn on_failed(&mut self, request: u64) {
        if let Some(f) = self.in_flight.remove(&request) {
            if let Some(s) = self.peers.get_mut(&f.peer) {
                s.in_flight = s.in_flight.saturating_sub(1);
                s.failures += 1;
            }
            self.queue.extend(f.items);
        }
    }

    fn push(&mut self, want: Want, kind: Kind, instance: usize) {
        if self.seen.insert((
            want.id,
            if kind == Kind::Node {
                instance
            } else {
                usize::MAX
            },
        )) {
            self.fresh.push_back(Item {
                want,
                kind,
                instance,
                missing_at: Vec::new(),
                attempts: 0,
            });
        }
    }

    /// Queues the children of a tree node (inner children, or leaf entries' objects) that the
    /// instance's walk keeps.
    fn expand(&mut self, item: &Item<P>, bytes: &[u8]) -> Result<(), StoreError> {
        let walk = self.walks[item.instance].clone();
        let node = Node::decode(bytes)?;
        if let Node::Leaf(entries) = &node {
            for e in entries.iter().filter(|e| walk.scope.keeps(&e.key)) {
                let want = Want {
                    id: e.object,
                    path: WantPath::Entry {
                        data: walk.data,
                        key: e.key.clone(),
                    },
                };
                self.push(want, Kind::Payload, item.instance);
            }
        }
        for s in node.subtrees() {
            if !walk.scope.enters(&s.prefix, s.bits) {
                continue;
            }
            let want = Want {
                id: s.child.tree.id,
                path: WantPath::Node {
                    data: walk.data,
                    prefix: s.prefix,
                    depth: s.bits as u16,
                },
            };
            self.push(want, Kind::Node, item.instance);
        }
        Ok(())
    }

    /// Looks up newly discovered objects locally: stored tree nodes are expanded in place, stored
    /// payloads are done, the rest join the queue to be fetched. Each object is looked up once.
    fn expand_local(&mut self, local: &dyn ObjectStore) -> Result<(), StoreError> {
        while let Some(item) = self.fresh.pop_front() {
            if !local.has_object(&item.want.id)? {
                self.queue.push_back(item);
                continue;
            }
            self.progress.objects_local += 1;
            if item.kind == Kind::Node {
                let bytes = local.get_object(&item.want.id)?.unwrap_or_default();
                self.expand(&item, &bytes)?;
            }
        }
        Ok(())
    }

    fn expire(&mut self, now_ms: u64) {
        let stale: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, f)| now_ms.saturating_sub(f.sent_ms) >= self.config.timeout_ms)
            .map(|(r, _)| *r)
            .collect();
        for r in stale {
            self.on_failed(r);
        }
    }

    /// Records a failure if no remaining peer can serve `item`, naming the part of the version
    /// that nobody reachable holds.
    fn check_servable(&mut self, item: &Item<P>) {
        if self.failure.is_none()
            && !self.peers.is_empty()
            && self.peers.keys().all(|p| item.missing_at.contains(p))
        {
            self.failure = Some(format!(
                "no reachable peer holds {} of instance {:?} in version {} (asked {} peer(s); a partial replica holds only the region it pulled): pull from a node that holds it, or restrict the pull to the region the peers hold",
                self.describe(item),
                self.walks[item.instance].name,
                self.version,
                self.peers.len()
            ));
        }
    }

    /// The part of the version an item is: a block, a key, or the blocks under a tree node.
    fn describe(&self, item: &Item<P>) -> String {
        let walk = &self.walks[item.instance];
        match &item.want.path {
            WantPath::Root { .. } => "the tree root".into(),
            WantPath::Node { prefix, depth, .. } if walk.block_keys => {
                let (lo, hi) = block_box_of_prefix(prefix, usize::from(*depth));
                format!("blocks {lo:?} to {hi:?}")
            }
            WantPath::Node { .. } => "a range of keys".into(),
            WantPath::Entry { key, .. } => match (walk.block_keys, block_from_key(key)) {
                (true, Some(b)) => format!("block {b:?}"),
                _ => format!("a key ({} bytes)", key.len()),
            },
        }
    }

    /// After a peer leaves, some queued objects may have no peer left to ask (rare: a full scan).
    fn recheck_queue(&mut self) {
        let stuck = self
            .queue
            .iter()
            .find(|i| !self.peers.is_empty() && self.peers.keys().all(|p| i.missing_at.contains(p)))
            .cloned();
        if let Some(item) = stuck {
            self.check_servable(&item);
        }
    }

    fn send(&mut self, now_ms: u64, out: &mut Vec<Output<P>>) {
        // Peers with nothing to ask of them this time: everything queued is missing there (a
        // partial replica, or a holder of an ancestor). The next peer in line gets its turn.
        let mut idle: BTreeSet<P> = BTreeSet::new();
        loop {
            let Some(peer) = self
                .peers
                .iter()
                .filter(|(p, s)| {
                    let limit = if s.failures > 0 {
                        1
                    } else {
                        self.config.per_peer_in_flight
                    };
                    s.in_flight < limit && !idle.contains(*p)
                })
                .min_by_key(|(_, s)| (s.failures, s.in_flight))
                .map(|(p, _)| p.clone())
            else {
                return;
            };
            let mut items = Vec::new();
            let mut skipped = VecDeque::new();
            while items.len() < self.config.batch {
                let Some(mut item) = self.queue.pop_front() else {
                    break;
                };
                if self.fetched.contains(&item.want.id) {
                    continue;
                }
                if item.missing_at.contains(&peer) {
                    skipped.push_back(item);
                    continue;
                }
                if item.attempts >= self.config.max_attempts {
                    self.failure = Some(format!(
                        "object {} failed {} attempts",
                        item.want.id, item.attempts
                    ));
                    return;
                }
                item.attempts += 1;
                items.push(item);
            }
            skipped.append(&mut self.queue);
            self.queue = skipped;
            let mut twinned = false;
            if items.is_empty() {
                match self.endgame_items(&peer, now_ms) {
                    Some(copies) => (items, twinned) = (copies, true),
                    None => {
                        idle.insert(peer);
                        continue;
                    }
                }
            }
            let request = self.next_request;
            self.next_request += 1;
            self.progress.requests += 1;
            let state = self.peers.get_mut(&peer).expect("chosen from peers");
            state.in_flight += 1;
            let message = Request::Objects {
                version: state.serves,
                wants: items.iter().map(|i| i.want.clone()).collect(),
            };
            self.in_flight.insert(
                request,
                InFlight {
                    peer: peer.clone(),
                    items,
                    sent_ms: now_ms,
                    twinned,
                },
            );
            out.push(Output::Send {
                peer,
                request,
                message,
            });
        }
    }

    /// The endgame: the objects of the oldest request that has waited at another peer for at least
    /// `endgame_after_ms` and was not copied yet (those `peer` has not said it lacks). That request
    /// is marked as copied.
    fn endgame_items(&mut self, peer: &P, now_ms: u64) -> Option<Vec<Item<P>>> {
        let after = self.config.endgame_after_ms;
        let fetched = &self.fetched;
        let wanted = |i: &Item<P>| !i.missing_at.contains(peer) && !fetched.contains(&i.want.id);
        let (_, f) = self.in_flight.iter_mut().find(|(_, f)| {
            !f.twinned
                && f.peer != *peer
                && now_ms.saturating_sub(f.sent_ms) >= after
                && f.items.iter().any(wanted)
        })?;
        f.twinned = true;
        Some(f.items.iter().filter(|i| wanted(i)).cloned().collect())
    }

    fn ban(&mut self, f: InFlight<P>, reason: String) -> Vec<Output<P>> {
        self.queue.extend(f.items);
        self.drop_peer(&f.peer);
        vec![Output::Ban {
            peer: f.peer,
            reason,
        }]
    }

    /// Stops asking `peer` for good; its requests in flight go back to the queue.
    fn drop_peer(&mut self, peer: &P) {
        self.peers.remove(peer);
        self.dropped.insert(peer.clone());
        self.requeue_peer(peer);
    }

    fn requeue_peer(&mut self, peer: &P) {
        let gone: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, f)| f.peer == *peer)
            .map(|(r, _)| *r)
            .collect();
        for r in gone {
            if let Some(f) = self.in_flight.remove(&r) {
                self.queue.extend(f.items);
            }
        }
    }

    fn fail(&mut self, reason: String) -> Vec<Output<P>> {
        self.finished = true;
        self.fresh.clear();
        self.queue.clear();
        self.in_flight.clear();
        vec![Output::Failed(reason)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::answer;
    use crate::wire::Response;
    use dvid_store::Store;

    /// A committed version of 300 keys, shared with "recv".
    fn origin() -> (Store, VersionManifest) {
        let s = Store::open_memory().unwrap();
        let root = s.create_repo("o", "").unwrap().to_hex();
        s.create_instance(
            &root,
            "kv",
            dvid_store::InstanceSpec::plain("keyvalue").unwrap(),
        )
        .unwrap();
        for i in 0..300 {
            s.kv_put(
                &s.handle(&root, "kv").unwrap(),
                &format!("k{i}"),
                vec![i as u8; 64],
            )
            .unwrap();
        }
        s.commit(&root, None, &[]).unwrap();
        s.share_repo(&root, &["recv".into()]).unwrap();
        let m = s.version_manifest(&root).unwrap();
        (s, m)
    }

    /// What a test peer does with a request for objects.
    enum Fate {
        Answer,
        /// Answers with every object's bytes altered.
        Corrupt,
        /// Fails in transport.
        Fail,
        /// Never answers, nor fails.
        Lost,
    }

    /// Drives `pull` of `manifest` from `origin` into a new store at the times given. `fate` says
    /// what the peer asked does with each request (given the peer and the number of objects asked),
    /// `on_ban` hears of each ban. Returns when the pull was done and the store it filled (with
    /// the version imported), or `None` if it had not finished by the last time.
    fn drive(
        pull: &mut Pull<u8>,
        origin: &Store,
        manifest: &VersionManifest,
        times: impl IntoIterator<Item = u64>,
        mut fate: impl FnMut(u8, usize) -> Fate,
        mut on_ban: impl FnMut(&mut Pull<u8>, u8),
    ) -> Option<(u64, Store)> {
        let recv = Store::open_memory().unwrap();
        for now in times {
            let mut outputs = pull.poll(recv.objects(), now).unwrap();
            while let Some(out) = outputs.pop() {
                match out {
                    Output::Send {
                        peer,
                        request,
                        message,
                    } => {
                        let Request::Objects { wants, .. } = &message else {
                            panic!("{message:?}")
                        };
                        let Response::Objects(mut r) = answer(origin, "recv", message.clone())
                        else {
                            panic!("refused {message:?}")
                        };
                        match fate(peer, wants.len()) {
                            Fate::Answer => outputs.extend(pull.on_reply(request, r)),
                            Fate::Corrupt => {
                                for reply in &mut r {
                                    if let ObjectReply::Found(b) = reply {
                                        b.push(0);
                                    }
                                }
                                outputs.extend(pull.on_reply(request, r));
                            }
                            Fate::Fail => pull.on_failed(request),
                            Fate::Lost => {}
                        }
                    }
                    Output::Ban { peer, .. } => on_ban(pull, peer),
                    Output::Store(objects) => recv.objects().put_objects(&objects).unwrap(),
                    Output::Done => {
                        recv.import_version(manifest, None).unwrap();
                        return Some((now, recv));
                    }
                    Output::Failed(reason) => panic!("the pull failed: {reason}"),
                }
            }
        }
        None
    }

    fn no_ban(_: &mut Pull<u8>, peer: u8) {
        panic!("peer {peer} was banned");
    }

    #[test]
    fn pull_moves_off_a_peer_whose_requests_fail() {
        let (origin, manifest) = origin();
        // Peer 0 sorts first and every request to it fails in transport; peer 1 serves.
        let mut pull: Pull<u8> = Pull::new(&manifest, None, PullConfig::default());
        pull.add_peer(0);
        pull.add_peer(1);
        let mut sent_to_dead = 0;
        let fate = |peer, _| match peer {
            0 => {
                sent_to_dead += 1;
                Fate::Fail
            }
            _ => Fate::Answer,
        };
        let done = drive(&mut pull, &origin, &manifest, 0..1_000, fate, no_ban);
        assert!(done.is_some(), "the pull did not finish");
        // The dead peer was probed, not handed every retry.
        assert!(sent_to_dead < 6, "{sent_to_dead} requests to the dead peer");
    }

    #[test]
    fn pull_takes_peers_that_join_but_not_ones_it_dropped() {
        let (origin, manifest) = origin();
        // Peer 0 lies; peer 1 offers the version only once the pull has begun.
        let mut pull: Pull<u8> = Pull::new(&manifest, None, PullConfig::default());
        assert!(pull.add_peer(0));
        assert!(!pull.add_peer(0), "a peer is added once");
        let mut served_by_1 = 0;
        let fate = |peer, n| match peer {
            0 => Fate::Corrupt,
            _ => {
                served_by_1 += n;
                Fate::Answer
            }
        };
        let on_ban = |pull: &mut Pull<u8>, peer| {
            assert_eq!(peer, 0);
            assert!(!pull.add_peer(0), "a liar is not taken back");
            assert!(pull.add_peer(1));
        };
        let done = drive(&mut pull, &origin, &manifest, 0..1_000, fate, on_ban);
        assert!(done.is_some(), "the pull did not finish");
        assert!(served_by_1 > 0);
    }

    /// The origin of [`origin`] with a child of its version changing `changed` keys: returns the
    /// origin, the child's UUID and manifest, the parent's UUID, and every object of the parent's
    /// tree (what a laptop that made the child from a region does not hold).
    fn laptop_child(changed: usize) -> (Store, String, VersionManifest, Uuid, Vec<ObjectId>) {
        let (origin, parent_manifest) = origin();
        let parent = parent_manifest.target;
        let child = origin.new_version(&parent.to_hex(), "").unwrap().to_hex();
        for i in 0..changed {
            origin
                .kv_put(
                    &origin.handle(&child, "kv").unwrap(),
                    &format!("k{i}"),
                    vec![9; 64],
                )
                .unwrap();
        }
        origin.commit(&child, None, &[]).unwrap();
        let manifest = origin.version_manifest(&child).unwrap();
        let mut in_parent = Vec::new();
        let root = origin
            .resolve(&parent.to_hex())
            .unwrap()
            .roots
            .values()
            .next()
            .copied();
        origin.trees().reachable(root, &mut in_parent).unwrap();
        (origin, child, manifest, parent, in_parent)
    }

    #[test]
    fn pull_takes_what_a_partial_peer_lacks_from_a_holder_of_the_parent() {
        // The origin holds the parent (300 keys) and a child that changed 3 of them. Peer 0 is a
        // laptop: it serves the child but holds only what the child changed. Peer 1 holds the
        // parent only, and is asked under it.
        let (origin, child, manifest, parent, in_parent) = laptop_child(3);
        let mut pull: Pull<u8> = Pull::new(&manifest, None, PullConfig::default());
        assert!(pull.add_peer(0));
        assert!(pull.add_peer_serving(1, parent));
        let recv = Store::open_memory().unwrap();
        let (mut from_laptop, mut from_parent) = (0, 0);
        for now in 0..1_000 {
            let mut outputs = pull.poll(recv.objects(), now).unwrap();
            while let Some(out) = outputs.pop() {
                match out {
                    Output::Send {
                        peer,
                        request,
                        message,
                    } => {
                        let Request::Objects { version, .. } = &message else {
                            panic!("{message:?}")
                        };
                        assert_eq!(*version, if peer == 0 { manifest.target } else { parent });
                        let Response::Objects(mut r) = answer(&origin, "recv", message.clone())
                        else {
                            panic!("refused {message:?}")
                        };
                        for reply in &mut r {
                            if let ObjectReply::Found(b) = reply {
                                let unchanged = in_parent.contains(&ObjectId::of(b));
                                match (peer, unchanged) {
                                    (0, true) => *reply = ObjectReply::Missing,
                                    (0, false) => from_laptop += 1,
                                    _ => from_parent += 1,
                                }
                            }
                        }
                        outputs.extend(pull.on_reply(request, r));
                    }
                    Output::Store(objects) => recv.objects().put_objects(&objects).unwrap(),
                    Output::Done => {
                        recv.import_version(&manifest, None).unwrap();
                        assert!(
                            from_laptop > 0 && from_parent > 0,
                            "{from_laptop} {from_parent}"
                        );
                        assert_eq!(
                            recv.kv_get(&recv.handle(&child, "kv").unwrap(), "k0")
                                .unwrap(),
                            Some(vec![9; 64])
                        );
                        assert!(recv.fsck().unwrap().is_clean());
                        return;
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
        panic!("the pull did not finish");
    }

    #[test]
    fn pull_names_the_part_no_reachable_peer_holds() {
        // Only the laptop of the test above is reachable: the pull fails at its first answer,
        // naming the instance and the part, not a Rust debug dump of the path.
        let (origin, _, manifest, _, in_parent) = laptop_child(1);
        let mut pull: Pull<u8> = Pull::new(&manifest, None, PullConfig::default());
        pull.add_peer(0);
        let recv = Store::open_memory().unwrap();
        for now in 0..100 {
            let mut outputs = pull.poll(recv.objects(), now).unwrap();
            while let Some(out) = outputs.pop() {
                match out {
                    Output::Send {
                        request, message, ..
                    } => {
                        let Response::Objects(mut r) = answer(&origin, "recv", message) else {
                            panic!("refused")
                        };
                        for reply in &mut r {
                            if matches!(reply, ObjectReply::Found(b) if in_parent.contains(&ObjectId::of(b)))
                            {
                                *reply = ObjectReply::Missing;
                            }
                        }
                        outputs.extend(pull.on_reply(request, r));
                    }
                    Output::Failed(reason) => {
                        assert!(reason.contains("no reachable peer holds"), "{reason}");
                        assert!(reason.contains("instance \"kv\""), "{reason}");
                        assert!(
                            !reason.contains("Uuid(") && !reason.contains("Node {"),
                            "{reason}"
                        );
                        return;
                    }
                    Output::Store(_) => {}
                    other => panic!("{other:?}"),
                }
            }
        }
        panic!("the pull neither finished nor failed");
    }

    #[test]
    fn pull_endgame_asks_an_idle_peer_for_what_a_stuck_one_holds() {
        let (origin, manifest) = origin();
        // Peer 0 never answers (nor fails); peer 1 serves. Without the endgame, the objects sent to
        // peer 0 would wait for the 30 s timeout.
        let config = PullConfig::default();
        let mut pull: Pull<u8> = Pull::new(&manifest, None, config.clone());
        pull.add_peer(0);
        pull.add_peer(1);
        let mut stuck = 0;
        let fate = |peer, _| match peer {
            0 => {
                stuck += 1;
                Fate::Lost
            }
            _ => Fate::Answer,
        };
        let times = (0..config.timeout_ms).step_by(100);
        let Some((now, recv)) = drive(&mut pull, &origin, &manifest, times, fate, no_ban) else {
            panic!("the pull waited for the stuck peer's timeout");
        };
        assert!(stuck > 0, "peer 0 was never asked");
        // Two waves of requests went to peer 0 (the root, then the next level).
        assert!(now < 3 * config.endgame_after_ms, "done only at {now} ms");
        // Each object counted once, though some were asked of both peers.
        let objects = recv.fsck().unwrap().objects_checked;
        assert_eq!(pull.progress().objects_fetched, objects);
    }
}
