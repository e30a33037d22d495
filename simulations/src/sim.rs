//! The simulation: nodes driven as `node/src/p2p` drives them (heads, follow, pull jobs), the network
//! and the event loop. Each event is folded into a digest; every decision flows from the seed.

use crate::frames;
use crate::invariants::{self, Readers, Truth};
use crate::net::{Micros, Net, NodeId, Queue};
use crate::node::{Job, Offence, Pending, Phase, SimNode, Status};
use crate::scenario::write_changes;
use dvid_protocol::heads::{self, ManifestRefusal};
use dvid_protocol::pull::{Output, Pull, PullConfig};
use dvid_protocol::seal;
use dvid_protocol::wire::{self, Head, ObjectReply, Request, Response, Want, WantPath};
use dvid_store::catalog::Uuid;
use dvid_store::{ObjectId, Replica, StoreError, VersionManifest};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap};

/// Timings of the node, as `node/src/p2p` sets them.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Heads are asked of every neighbour this often (the node's REFRESH).
    pub heads_interval_ms: u64,
    /// A running pull is polled this often (the node's job loop wakes at least every 500 ms).
    pub tick_ms: u64,
    /// A running pull takes newly offering neighbours this often (PEER_CHECK_EVERY).
    pub peer_check_ms: u64,
    /// A request unanswered this long fails (the node's REQUEST_TIMEOUT).
    pub request_timeout_ms: u64,
    /// A request to a host that is gone (offline, or across a partition) fails after this long.
    pub dial_timeout_ms: u64,
    /// Failed pulls of a version within `follow_failure_window_ms` after which following pauses it
    /// (FOLLOW_MAX_FAILURES, FOLLOW_FAILURE_WINDOW).
    pub follow_max_failures: u32,
    pub follow_failure_window_ms: u64,
    pub pull: PullConfig,
    /// The run stops here if it has not converged.
    pub max_sim_ms: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            heads_interval_ms: 3_000,
            tick_ms: 500,
            peer_check_ms: 2_000,
            request_timeout_ms: 60_000,
            dial_timeout_ms: 10_000,
            follow_max_failures: heads::FOLLOW_MAX_FAILURES as u32,
            follow_failure_window_ms: heads::FOLLOW_FAILURE_WINDOW_MS,
            pull: PullConfig::default(),
            max_sim_ms: 600_000,
        }
    }
}

/// Scripted steps of a scenario.
#[derive(Clone, Debug)]
pub enum Action {
    /// `node` branches from its newest full version of `repo`, writes, commits, and announces.
    Commit {
        node: NodeId,
        repo: usize,
        keys: u32,
        blocks: u32,
        publish: bool,
    },
    /// `node` publishes version `version` (a label) it created.
    Publish {
        node: NodeId,
        version: usize,
    },
    Crash(NodeId),
    Restart(NodeId),
    Offline(NodeId),
    Online(NodeId),
    /// The network splits into groups (one group number per node).
    Split(Vec<u8>),
    Heal,
    /// `node` asks the creator of `version`, which it may not read, for its manifest and objects.
    Probe {
        node: NodeId,
        version: usize,
    },
}

/// What bytes on the wire were for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Heads requests and answers, and announcements.
    Gossip = 0,
    Manifest = 1,
    Objects = 2,
    Probe = 3,
}

enum Msg {
    Request {
        id: u64,
        frame: Vec<u8>,
        class: Class,
    },
    Response {
        id: u64,
        frame: Vec<u8>,
    },
    /// A gossiped head announcement. Its payload (the repo root in hex) is counted, not carried:
    /// like the node, the receiver just asks the announcer for its heads.
    Announce,
}

/// Counted size of an announcement: the 32 hex digits and a length prefix. Gossipsub's own framing
/// and mesh relaying are not modelled: each announcement goes one hop, to neighbours.
const ANNOUNCE_BYTES: u64 = 36;

enum Event {
    Deliver {
        from: NodeId,
        to: NodeId,
        msg: Msg,
        bytes: u64,
    },
    /// A request of `node` failed in transport.
    Fail {
        node: NodeId,
        id: u64,
    },
    Tick {
        node: NodeId,
        generation: u32,
    },
    Heads {
        node: NodeId,
        generation: u32,
    },
    Act(Action),
}

/// Counters of a run.
#[derive(Default)]
pub struct Metrics {
    pub up: Vec<u64>,
    pub down: Vec<u64>,
    /// Bytes by [`Class`].
    pub bytes: [u64; 4],
    pub messages: u64,
    pub lost: u64,
    pub events: u64,
    pub pulls_done: u64,
    pub pulls_failed: u64,
    pub failures: BTreeMap<String, u64>,
    pub bans: u64,
    pub refusals: u64,
    pub probes_refused: u64,
    pub commits: u64,
    pub commits_skipped: u64,
    pub crashes: u64,
    /// Pulls the engine failed while one of their peers could still serve them.
    pub avoidable_failures: u64,
    pub avoidable_examples: Vec<String>,
    /// Peers a pull started with, per pull that reached the engine.
    pub pull_peers: Vec<u32>,
    /// Per completed pull: requests made (manifest asks and object batches).
    pub round_trips: Vec<u32>,
    pub pull_ms: Vec<u64>,
}

/// The simulated world.
pub struct Sim {
    pub cfg: SimConfig,
    pub now: Micros,
    queue: Queue<Event>,
    pub nodes: Vec<SimNode>,
    pub net: Net,
    pub rng: StdRng,
    pub truth: Truth,
    pub metrics: Metrics,
    digest: blake3::Hasher,
    pub violations: Vec<String>,
    actions_left: usize,
    pub converged_at: Option<Micros>,
    /// Seal checks already made, by the hash of the encoded head. `seal::verify_head` is a pure
    /// function, so remembering its answers changes nothing but the time ed25519 takes.
    seals: HashMap<ObjectId, bool>,
}

/// How a run ended.
pub struct Outcome {
    pub converged: bool,
    pub sim_time: Micros,
    pub digest: String,
}

impl Sim {
    pub fn new(cfg: SimConfig, nodes: Vec<SimNode>, net: Net, seed: u64) -> Self {
        let n = nodes.len();
        Self {
            cfg,
            now: 0,
            queue: Queue::default(),
            nodes,
            net,
            rng: StdRng::seed_from_u64(seed),
            truth: Truth::default(),
            metrics: Metrics {
                up: vec![0; n],
                down: vec![0; n],
                ..Metrics::default()
            },
            digest: blake3::Hasher::new(),
            violations: Vec::new(),
            actions_left: 0,
            converged_at: None,
            seals: HashMap::new(),
        }
    }

    /// Schedules a scripted action at `at`.
    pub fn schedule(&mut self, at: Micros, action: Action) {
        self.actions_left += 1;
        self.queue.push(at, Event::Act(action));
    }

    /// Runs until every scripted action is done and every follower holds what it may read, or
    /// until the time limit; then checks every node.
    pub fn run(&mut self) -> Outcome {
        for n in 0..self.nodes.len() as NodeId {
            // Nodes come up within the first 100 ms and exchange heads with their neighbours.
            let at = self.rng.random_range(0..100_000);
            let generation = self.nodes[n as usize].generation;
            self.queue.push(
                at,
                Event::Heads {
                    node: n,
                    generation,
                },
            );
        }
        let limit = self.cfg.max_sim_ms * 1_000;
        while let Some((t, event)) = self.queue.pop() {
            if t > limit {
                break;
            }
            self.now = t;
            self.metrics.events += 1;
            self.handle(event);
            if self.actions_left == 0 && self.truth.missing == 0 {
                self.converged_at = Some(self.now);
                break;
            }
        }
        self.finish()
    }

    fn finish(&mut self) -> Outcome {
        for n in &self.nodes {
            self.violations
                .extend(invariants::check_node(n, &self.truth));
        }
        let lagging = invariants::check_convergence(&self.nodes, &self.truth);
        let converged = lagging.is_empty() && self.actions_left == 0;
        self.violations.extend(lagging);
        if self.actions_left > 0 {
            self.violations.push(format!(
                "{} scripted actions never ran before the time limit",
                self.actions_left
            ));
        }
        // The final state joins the digest: which versions each node holds.
        for n in &self.nodes {
            let mut held: Vec<u64> = (0..self.truth.versions.len())
                .filter(|&l| n.holds_full(self.truth.versions[l].uuid))
                .map(|l| l as u64)
                .collect();
            held.insert(0, n.id as u64);
            for w in held {
                self.digest.update(&w.to_le_bytes());
            }
        }
        self.digest
            .update(&(self.violations.len() as u64).to_le_bytes());
        Outcome {
            converged,
            sim_time: self.converged_at.unwrap_or(self.now),
            digest: self.digest.finalize().to_hex().to_string(),
        }
    }

    fn note(&mut self, words: &[u64]) {
        self.digest.update(&self.now.to_le_bytes());
        for w in words {
            self.digest.update(&w.to_le_bytes());
        }
    }

    fn violation(&mut self, what: String) {
        self.violations
            .push(format!("t={:.3}s: {what}", self.now as f64 / 1e6));
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Deliver {
                from,
                to,
                msg,
                bytes,
            } => self.deliver(from, to, msg, bytes),
            Event::Fail { node, id } => {
                self.note(&[1, node as u64, id]);
                if let Some((p, _)) = self.nodes[node as usize].pending.remove(&id) {
                    self.connection_closed(node, p);
                }
            }
            Event::Tick { node, generation } => {
                let n = &self.nodes[node as usize];
                if n.generation == generation && n.status != Status::Crashed {
                    self.note(&[2, node as u64]);
                    self.nodes[node as usize].tick_armed = false;
                    self.tick(node);
                }
            }
            Event::Heads { node, generation } => {
                let n = &self.nodes[node as usize];
                if n.generation == generation && n.status != Status::Crashed {
                    self.note(&[3, node as u64]);
                    self.expire(node);
                    self.refresh_heads(node);
                    let at = self.now + self.cfg.heads_interval_ms * 1_000;
                    self.queue.push(at, Event::Heads { node, generation });
                }
            }
            Event::Act(action) => {
                self.actions_left -= 1;
                self.act(action);
            }
        }
    }

    // ---- transport ----

    fn request(&mut self, from: NodeId, to: NodeId, pending: Pending, req: Request) {
        let class = match pending {
            Pending::Heads { .. } => Class::Gossip,
            Pending::Manifest { .. } => Class::Manifest,
            Pending::Objects { .. } => Class::Objects,
            Pending::Probe { .. } => Class::Probe,
        };
        let n = &mut self.nodes[from as usize];
        let id = n.next_request;
        n.next_request += 1;
        n.pending.insert(id, (pending, self.now));
        if n.status != Status::Up {
            // No network here: the request fails at once.
            self.queue.push(self.now, Event::Fail { node: from, id });
            return;
        }
        let frame = wire::encode(&req);
        let bytes = frames::request_len(&req, frame.len());
        self.transmit(from, to, Msg::Request { id, frame, class }, bytes, class);
    }

    fn transmit(&mut self, from: NodeId, to: NodeId, msg: Msg, bytes: u64, class: Class) {
        self.metrics.up[from as usize] += bytes;
        self.metrics.bytes[class as usize] += bytes;
        self.metrics.messages += 1;
        let at = self.net.transmit(self.now, from, to, bytes);
        if self.net.loss > 0.0 && self.rng.random_bool(self.net.loss) {
            self.metrics.lost += 1;
            return;
        }
        self.queue.push(
            at,
            Event::Deliver {
                from,
                to,
                msg,
                bytes,
            },
        );
    }

    fn deliver(&mut self, from: NodeId, to: NodeId, msg: Msg, bytes: u64) {
        let kind = match &msg {
            Msg::Request { .. } => 4,
            Msg::Response { .. } => 5,
            Msg::Announce => 6,
        };
        self.note(&[kind, from as u64, to as u64, bytes]);
        let status = self.nodes[to as usize].status;
        let cut = self.net.partitioned(from, to);
        let blocked = self.nodes[to as usize].is_banned(from, self.now);
        if status != Status::Up || cut || blocked {
            if let Msg::Request { id, .. } = msg {
                // A dead process, or one that bans the asker, answers with a reset; a host that
                // is gone, with silence.
                let delay = if (status == Status::Crashed || blocked) && !cut {
                    self.net.latency(from, to)
                } else {
                    self.cfg.dial_timeout_ms * 1_000
                };
                self.queue
                    .push(self.now + delay, Event::Fail { node: from, id });
            }
            return;
        }
        self.metrics.down[to as usize] += bytes;
        match msg {
            Msg::Request { id, frame, class } => {
                let resp = match wire::decode::<Request>(&frame) {
                    Ok(req) => {
                        let asker = self.nodes[from as usize].peer_id.clone();
                        self.nodes[to as usize].serve(&asker, req)
                    }
                    Err(e) => Response::Refused(e.to_string()),
                };
                let frame = wire::encode(&resp);
                let bytes = frames::response_len(&resp, frame.len());
                self.transmit(to, from, Msg::Response { id, frame }, bytes, class);
            }
            Msg::Response { id, frame } => self.on_response(to, id, &frame),
            Msg::Announce => {
                if self.nodes[to as usize].neighbours.contains(&from) {
                    let req = self.nodes[to as usize].heads_request(from);
                    self.request(to, from, Pending::Heads { peer: from }, req);
                }
            }
        }
    }

    /// Requests unanswered for the transport timeout fail.
    fn expire(&mut self, node: NodeId) {
        let limit = self.cfg.request_timeout_ms * 1_000;
        let now = self.now;
        let n = &mut self.nodes[node as usize];
        let stale: Vec<u64> = n
            .pending
            .iter()
            .filter(|(_, (_, sent))| now.saturating_sub(*sent) >= limit)
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            if let Some((p, _)) = self.nodes[node as usize].pending.remove(&id) {
                self.request_failed(node, p);
            }
        }
    }

    fn on_response(&mut self, node: NodeId, id: u64, frame: &[u8]) {
        let Some((pending, _)) = self.nodes[node as usize].pending.remove(&id) else {
            return; // answer to a request that already failed, or to a previous incarnation
        };
        let Ok(resp) = wire::decode::<Response>(frame) else {
            self.request_failed(node, pending);
            return;
        };
        match pending {
            Pending::Heads { peer } => match resp {
                Response::Heads(heads) => self.on_heads(node, peer, heads),
                Response::HeadsUnchanged if self.nodes[node as usize].heads.knows(&peer) => {
                    self.follow(node)
                }
                _ => self.nodes[node as usize].forget_heads(peer),
            },
            Pending::Manifest { peer, job } => self.on_manifest(node, peer, job, resp),
            Pending::Objects { job, request, .. } => {
                if matches!(resp, Response::Refused(_)) {
                    self.metrics.refusals += 1;
                }
                self.with_pull(node, job, |pull| match resp {
                    Response::Objects(r) => pull.on_reply(request, r),
                    Response::Refused(reason) => pull.on_refused(request, &reason),
                    _ => {
                        pull.on_failed(request);
                        Vec::new()
                    }
                });
            }
            Pending::Probe { version, .. } => self.on_probe_reply(node, version, resp),
        }
    }

    /// A request failed in transport: its connection is closed, so every other request on it fails
    /// too, and what the peer offered is forgotten (as on the node's ConnectionClosed).
    fn connection_closed(&mut self, node: NodeId, failed: Pending) {
        let peer = failed.peer();
        let n = &mut self.nodes[node as usize];
        n.forget_heads(peer);
        let same: Vec<u64> = n
            .pending
            .iter()
            .filter(|(_, (p, _))| p.peer() == peer)
            .map(|(id, _)| *id)
            .collect();
        let mut all = vec![failed];
        for id in same {
            if let Some((p, _)) = self.nodes[node as usize].pending.remove(&id) {
                all.push(p);
            }
        }
        for p in all {
            self.request_failed(node, p);
        }
    }

    /// One request failed (its connection closed, or it timed out).
    fn request_failed(&mut self, node: NodeId, pending: Pending) {
        match pending {
            Pending::Heads { peer } => self.nodes[node as usize].forget_heads(peer),
            Pending::Manifest { job, .. } => self.ask_manifest(node, job),
            Pending::Objects { peer, job, request } => {
                if let Some(j) = self.nodes[node as usize].jobs.get_mut(&job) {
                    j.failed_peers.insert(peer);
                }
                self.with_pull(node, job, |pull| {
                    pull.on_failed(request);
                    Vec::new()
                });
            }
            Pending::Probe { .. } => {}
        }
    }

    // ---- heads and follow ----

    fn refresh_heads(&mut self, node: NodeId) {
        for peer in self.nodes[node as usize].neighbours.clone() {
            if !self.nodes[node as usize].is_banned(peer, self.now) {
                let req = self.nodes[node as usize].heads_request(peer);
                self.request(node, peer, Pending::Heads { peer }, req);
            }
        }
    }

    /// Keeps the heads whose seal verifies (a forged one is an offence), then follows.
    fn on_heads(&mut self, node: NodeId, peer: NodeId, heads: Vec<Head>) {
        // Seal checks are memoised across the run (the same heads reach many nodes).
        let seals = &mut self.seals;
        let verify = |h: &Head| {
            let key = ObjectId::of(&wire::encode(h));
            (*seals
                .entry(key)
                .or_insert_with(|| seal::verify_head(h).is_ok()))
            .then_some(())
        };
        let n = &mut self.nodes[node as usize];
        let dropped = n.heads.record(peer, heads, verify);
        if dropped > 0 && n.offence(peer, Offence::ForgedHead, self.now) {
            self.note(&[19, node as u64, peer as u64]);
        }
        self.follow(node);
    }

    fn announce(&mut self, node: NodeId) {
        if self.nodes[node as usize].status != Status::Up {
            return;
        }
        for peer in self.nodes[node as usize].neighbours.clone() {
            self.transmit(node, peer, Msg::Announce, ANNOUNCE_BYTES, Class::Gossip);
        }
    }

    /// New heads: start pulls of followed repos' new versions.
    fn follow(&mut self, node: NodeId) {
        let window = self.cfg.follow_failure_window_ms * 1_000;
        let wanted =
            self.nodes[node as usize].to_pull(self.cfg.follow_max_failures, window, self.now);
        for (version, hash) in wanted {
            let n = &mut self.nodes[node as usize];
            let peers = n.offering(version, hash);
            let id = n.next_job;
            n.next_job += 1;
            n.jobs.insert(
                id,
                Job {
                    version,
                    hash,
                    peers,
                    next_peer_check: self.now + self.cfg.peer_check_ms * 1_000,
                    phase: Phase::Manifest { next: 0 },
                    started: self.now,
                    manifest_asks: 0,
                    failed_peers: Default::default(),
                },
            );
            self.ask_manifest(node, id);
        }
    }

    /// Asks the next offering peer for the job's manifest; fails the job when none is left.
    fn ask_manifest(&mut self, node: NodeId, job_id: u64) {
        let n = &mut self.nodes[node as usize];
        let Some(job) = n.jobs.get_mut(&job_id) else {
            return;
        };
        let Phase::Manifest { next } = &mut job.phase else {
            return;
        };
        let version = job.version;
        if *next >= job.peers.len() {
            n.jobs.remove(&job_id);
            self.pull_failed(node, version, "no peer would send the manifest".into());
            return;
        }
        let peer = job.peers[*next];
        *next += 1;
        job.manifest_asks += 1;
        self.request(
            node,
            peer,
            Pending::Manifest { peer, job: job_id },
            Request::Manifest { version },
        );
    }

    fn on_manifest(&mut self, node: NodeId, peer: NodeId, job_id: u64, resp: Response) {
        let Some(job) = self.nodes[node as usize].jobs.get(&job_id) else {
            return;
        };
        let (version, hash) = (job.version, job.hash);
        let decoded = match resp {
            Response::Manifest(bytes) => VersionManifest::decode(&bytes).ok(),
            _ => None,
        };
        // The node's acceptance rule; the job's hash is the one the offering peers announced.
        let announced = Some(hash);
        let seals = |m: &VersionManifest| {
            seal::verify_manifest(m)
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        let verdict = decoded.map(|m| (heads::accept_manifest(&m, version, announced, seals), m));
        let forged = matches!(&verdict, Some((Err(ManifestRefusal::DiffersFromHead), _)));
        if forged && self.nodes[node as usize].offence(peer, Offence::ForgedHead, self.now) {
            self.note(&[19, node as u64, peer as u64]);
        }
        let manifest = verdict.and_then(|(v, m)| v.is_ok().then_some(m));
        let Some(manifest) = manifest else {
            self.ask_manifest(node, job_id);
            return;
        };
        let Some(mut job) = self.nodes[node as usize].jobs.remove(&job_id) else {
            return;
        };
        self.metrics.pull_peers.push(job.peers.len() as u32);
        let mut pull = Pull::new(&manifest, None, self.cfg.pull.clone());
        for p in &job.peers {
            pull.add_peer(*p);
        }
        job.phase = Phase::Pulling {
            pull: Box::new(pull),
            manifest: Box::new(manifest),
        };
        self.arm_tick(node);
        self.drive(node, job_id, job, Vec::new());
    }

    // ---- pulls ----

    fn arm_tick(&mut self, node: NodeId) {
        let n = &mut self.nodes[node as usize];
        if !n.tick_armed {
            n.tick_armed = true;
            let generation = n.generation;
            self.queue.push(
                self.now + self.cfg.tick_ms * 1_000,
                Event::Tick { node, generation },
            );
        }
    }

    fn tick(&mut self, node: NodeId) {
        let running: Vec<u64> = self.nodes[node as usize]
            .jobs
            .iter()
            .filter(|(_, j)| matches!(j.phase, Phase::Pulling { .. }))
            .map(|(id, _)| *id)
            .collect();
        for id in running {
            // Neighbours that began to offer the version since the pull started serve too.
            let n = &mut self.nodes[node as usize];
            let joined = match n.jobs.get_mut(&id) {
                Some(job) if self.now >= job.next_peer_check => {
                    job.next_peer_check = self.now + self.cfg.peer_check_ms * 1_000;
                    let (version, hash) = (job.version, job.hash);
                    n.offering(version, hash)
                }
                _ => vec![],
            };
            self.with_pull(node, id, |pull| {
                for p in joined {
                    pull.add_peer(p);
                }
                Vec::new()
            });
        }
        if !self.nodes[node as usize].jobs.is_empty() {
            self.arm_tick(node);
        }
    }

    /// Feeds one input to a running pull, then carries out its outputs and polls it.
    fn with_pull(
        &mut self,
        node: NodeId,
        job_id: u64,
        input: impl FnOnce(&mut Pull<NodeId>) -> Vec<Output<NodeId>>,
    ) {
        let Some(mut job) = self.nodes[node as usize].jobs.remove(&job_id) else {
            return;
        };
        let outputs = match &mut job.phase {
            Phase::Pulling { pull, .. } => input(pull),
            Phase::Manifest { .. } => {
                self.nodes[node as usize].jobs.insert(job_id, job);
                return;
            }
        };
        self.drive(node, job_id, job, outputs);
    }

    /// Carries out outputs, then polls once (as the node's job loop does after every input) and
    /// carries out what the poll asks. The job goes back unless it ended.
    fn drive(&mut self, node: NodeId, job_id: u64, mut job: Job, mut outputs: Vec<Output<NodeId>>) {
        for round in 0..2 {
            for out in outputs {
                if self.carry_out(node, job_id, &mut job, out) {
                    return;
                }
            }
            if round == 1 {
                break;
            }
            let Phase::Pulling { pull, .. } = &mut job.phase else {
                break;
            };
            outputs = match pull.poll(self.nodes[node as usize].store.objects(), self.now / 1_000) {
                Ok(o) => o,
                Err(e) => {
                    self.pull_failed(node, job.version, format!("local store: {e}"));
                    return;
                }
            };
        }
        self.nodes[node as usize].jobs.insert(job_id, job);
    }

    /// Returns true when the job ended.
    fn carry_out(&mut self, node: NodeId, job_id: u64, job: &mut Job, out: Output<NodeId>) -> bool {
        match out {
            Output::Send {
                peer,
                request,
                message,
            } => {
                self.request(
                    node,
                    peer,
                    Pending::Objects {
                        peer,
                        job: job_id,
                        request,
                    },
                    message,
                );
                false
            }
            Output::Store(objects) => {
                self.check_obtained(node, job.version, &objects);
                if let Err(e) = self.nodes[node as usize]
                    .store
                    .objects()
                    .put_objects(&objects)
                {
                    self.violation(format!("n{node} could not store objects: {e}"));
                }
                false
            }
            Output::Ban { peer, .. } => {
                // As the node does: the liar is banned at once, beyond this pull.
                self.note(&[7, node as u64, peer as u64]);
                self.metrics.bans += 1;
                self.nodes[node as usize].offence(peer, Offence::BadObject, self.now);
                false
            }
            Output::Done => {
                self.pull_done(node, job);
                true
            }
            Output::Failed(reason) => {
                self.check_avoidable(node, job, &reason);
                self.pull_failed(node, job.version, reason);
                true
            }
        }
    }

    /// Every object a pull stores must belong to the version pulled, which the node may read.
    fn check_obtained(&mut self, node: NodeId, version: Uuid, objects: &[(ObjectId, Vec<u8>)]) {
        let label = self.truth.label(version);
        let readable = label.is_some_and(|l| self.truth.readable(node, l));
        for (id, bytes) in objects {
            let belongs = label.is_some_and(|l| self.truth.versions[l].objects.contains(id));
            if !readable || !belongs || ObjectId::of(bytes) != *id {
                self.violation(format!(
                    "n{node} obtained object {id} that is not a verified object of a version it may read"
                ));
                return;
            }
        }
    }

    fn pull_done(&mut self, node: NodeId, job: &Job) {
        let Phase::Pulling { pull, manifest } = &job.phase else {
            return;
        };
        let imported = self.nodes[node as usize]
            .store
            .import_version(manifest, None);
        if let Err(e) = imported {
            self.pull_failed(node, job.version, format!("import: {e}"));
            return;
        }
        self.note(&[8, node as u64]);
        self.metrics.pulls_done += 1;
        self.metrics
            .round_trips
            .push(job.manifest_asks + pull.progress().requests as u32);
        self.metrics.pull_ms.push((self.now - job.started) / 1_000);
        self.imported(node, job.version);
    }

    /// A pull the engine gave up although one of its peers could serve it all along (up, reachable,
    /// honest, holding the version, none of its requests failed) is counted: the engine, not the
    /// network, failed it.
    fn check_avoidable(&mut self, node: NodeId, job: &Job, reason: &str) {
        if self.nodes[node as usize].status != Status::Up {
            return;
        }
        let good: Vec<NodeId> = job
            .peers
            .iter()
            .copied()
            .filter(|&p| {
                let peer = &self.nodes[p as usize];
                peer.status == Status::Up
                    && !job.failed_peers.contains(&p)
                    && peer.hostile.is_none()
                    && !self.net.partitioned(node, p)
                    && !self.nodes[node as usize].is_banned(p, self.now)
                    && peer.holds_full(job.version)
            })
            .collect();
        if let Some(&p) = good.first() {
            self.metrics.avoidable_failures += 1;
            if self.metrics.avoidable_examples.len() < 5 {
                self.metrics.avoidable_examples.push(format!(
                    "t={:.3}s: n{node} gave up a pull ({reason}) while n{p} of its {} peers could serve it",
                    self.now as f64 / 1e6,
                    job.peers.len()
                ));
            }
        }
    }

    fn pull_failed(&mut self, node: NodeId, version: Uuid, reason: String) {
        self.note(&[9, node as u64]);
        self.nodes[node as usize]
            .failures
            .entry(version)
            .or_default()
            .push(self.now);
        self.metrics.pulls_failed += 1;
        *self
            .metrics
            .failures
            .entry(generalise(&reason))
            .or_insert(0) += 1;
    }

    /// A version is now visible at `node`: check it, apply the owners' policy to the replica (as its
    /// operators would), and announce it.
    fn imported(&mut self, node: NodeId, version: Uuid) {
        let Some(label) = self.truth.label(version) else {
            self.violation(format!("n{node} imported a version nobody committed"));
            return;
        };
        for v in invariants::check_version(&self.nodes[node as usize], &self.truth, label) {
            self.violation(v);
        }
        self.truth.imported(node, label, self.now);
        let v = &self.truth.versions[label];
        let repo = &self.truth.repos[v.repo];
        let hex = version.to_hex();
        let store = &self.nodes[node as usize].store;
        let applied = match &repo.readers {
            Readers::Shared(readers) => match store.sharing(&hex) {
                Ok(s) if s.shared_with.is_empty() => {
                    let names: Vec<String> = readers
                        .iter()
                        .map(|r| self.nodes[*r as usize].peer_id.clone())
                        .collect();
                    store.share_repo(&hex, &names).map(|_| ())
                }
                other => other.map(|_| ()),
            },
            Readers::PublishedOnly if v.published => store.publish(&hex).map(|_| ()),
            Readers::PublishedOnly => Ok(()),
        };
        if let Err(e) = applied {
            self.violation(format!("n{node} could not share its replica: {e}"));
        }
        self.announce(node);
    }

    // ---- scripted actions ----

    fn act(&mut self, action: Action) {
        match action {
            Action::Commit {
                node,
                repo,
                keys,
                blocks,
                publish,
            } => {
                self.note(&[10, node as u64]);
                if let Err(e) = self.commit(node, repo, keys, blocks, publish) {
                    self.violation(format!("n{node} could not commit: {e}"));
                }
            }
            Action::Publish { node, version } => {
                self.note(&[11, node as u64, version as u64]);
                let uuid = self.truth.versions[version].uuid;
                match self.nodes[node as usize].store.publish(&uuid.to_hex()) {
                    Ok(_) => {
                        self.truth.set_published(version, self.now);
                        self.announce(node);
                    }
                    Err(e) => self.violation(format!("n{node} could not publish: {e}")),
                }
            }
            Action::Crash(node) => {
                self.note(&[12, node as u64]);
                if self.nodes[node as usize].status != Status::Crashed {
                    self.nodes[node as usize].crash();
                    self.metrics.crashes += 1;
                }
            }
            Action::Restart(node) => {
                self.note(&[13, node as u64]);
                if self.nodes[node as usize].status == Status::Crashed {
                    self.restart(node);
                }
            }
            Action::Offline(node) => {
                self.note(&[14, node as u64]);
                let n = &mut self.nodes[node as usize];
                if n.status == Status::Up {
                    n.status = Status::Offline;
                    // The network is gone: every open request fails now.
                    let open: Vec<u64> = n.pending.keys().copied().collect();
                    for id in open {
                        self.queue.push(self.now, Event::Fail { node, id });
                    }
                }
            }
            Action::Online(node) => {
                self.note(&[15, node as u64]);
                if self.nodes[node as usize].status == Status::Offline {
                    self.nodes[node as usize].status = Status::Up;
                    self.refresh_heads(node);
                }
            }
            Action::Split(groups) => {
                self.note(&[16]);
                self.net.split(groups);
            }
            Action::Heal => {
                self.note(&[17]);
                self.net.heal();
            }
            Action::Probe { node, version } => {
                self.note(&[18, node as u64, version as u64]);
                self.probe(node, version);
            }
        }
    }

    fn restart(&mut self, node: NodeId) {
        if let Err(e) = self.nodes[node as usize].restart() {
            self.violation(format!("n{node} could not reopen its store: {e}"));
            return;
        }
        // What the reopened store shows as complete must still be complete.
        let labels: Vec<usize> = (0..self.truth.versions.len())
            .filter(|&l| self.nodes[node as usize].holds_full(self.truth.versions[l].uuid))
            .collect();
        for l in labels {
            for v in invariants::check_version(&self.nodes[node as usize], &self.truth, l) {
                self.violation(v);
            }
        }
        let generation = self.nodes[node as usize].generation;
        self.queue.push(self.now, Event::Heads { node, generation });
    }

    fn commit(
        &mut self,
        node: NodeId,
        repo: usize,
        keys: u32,
        blocks: u32,
        publish: bool,
    ) -> Result<(), StoreError> {
        if self.nodes[node as usize].status == Status::Crashed {
            self.metrics.commits_skipped += 1;
            return Ok(());
        }
        let root = self.truth.repos[repo].root;
        let Some(parent) = newest_full(&self.nodes[node as usize], root) else {
            self.metrics.commits_skipped += 1;
            return Ok(());
        };
        let n = &self.nodes[node as usize];
        let branch = format!("{}-{}", n.name, self.metrics.commits);
        let child = n.store.branch(&parent.to_hex(), &branch, "")?.to_hex();
        let tag = self.metrics.commits;
        write_changes(&n.store, &child, keys, blocks, tag, &mut self.rng)?;
        let uuid = n.store.commit(&child, Some("simulated work"), &[])?;
        let label = self.truth.register(&n.store, node, repo, uuid, self.now)?;
        if publish {
            n.store.publish(&uuid.to_hex())?;
            self.truth.set_published(label, self.now);
        }
        self.metrics.commits += 1;
        self.announce(node);
        Ok(())
    }

    /// A curious node asks for a version it may not read: its manifest, its roots under its own
    /// paths, and its roots claimed under a version of the repo it may read. All must be refused.
    fn probe(&mut self, node: NodeId, version: usize) {
        if version >= self.truth.versions.len() || self.truth.readable(node, version) {
            return;
        }
        let v = &self.truth.versions[version];
        let target = v.origin;
        let mut wants: Vec<Want> = v
            .manifest
            .target_def()
            .roots
            .iter()
            .map(|(data, r)| Want {
                id: r.id,
                path: WantPath::Root { data: *data },
            })
            .collect();
        wants.sort_by_key(|w| w.id);
        let sibling = self.truth.repos[v.repo]
            .versions
            .iter()
            .copied()
            .find(|&l| l != version && self.truth.readable(node, l));
        let uuid = v.uuid;
        let mut requests = vec![
            Request::Manifest { version: uuid },
            Request::Objects {
                version: uuid,
                wants: wants.clone(),
            },
        ];
        if let Some(s) = sibling {
            requests.push(Request::Objects {
                version: self.truth.versions[s].uuid,
                wants,
            });
        }
        for req in requests {
            let probe = Pending::Probe {
                peer: target,
                version,
            };
            self.request(node, target, probe, req);
        }
    }

    fn on_probe_reply(&mut self, node: NodeId, version: usize, resp: Response) {
        match resp {
            Response::Refused(_) => self.metrics.probes_refused += 1,
            Response::Manifest(_) => self.violation(format!(
                "n{node} obtained the manifest of version {version}, which it may not read"
            )),
            Response::Objects(replies) => {
                // A curious node keeps what it is given; the end-of-run check finds it too.
                let got: Vec<(ObjectId, Vec<u8>)> = replies
                    .into_iter()
                    .filter_map(|r| match r {
                        ObjectReply::Found(b) => Some((ObjectId::of(&b), b)),
                        ObjectReply::Missing => None,
                    })
                    .collect();
                if !got.is_empty() {
                    self.violation(format!(
                        "n{node} obtained {} objects of version {version}, which it may not read",
                        got.len()
                    ));
                    let _ = self.nodes[node as usize].store.objects().put_objects(&got);
                }
            }
            Response::Heads(_)
            | Response::HeadsUnchanged
            | Response::PushState { .. }
            | Response::LabelGrant(_) => {}
        }
    }
}

/// The newest version of repo `root` that `node` holds in full (highest local id: imported or
/// committed last).
fn newest_full(node: &SimNode, root: Uuid) -> Option<Uuid> {
    let c = node.store.catalog();
    let repo = c.repos.values().find(|r| r.root == root)?;
    repo.versions
        .iter()
        .filter_map(|id| c.versions.get(id))
        .filter(|v| v.locked && v.replica == Replica::Full)
        .max_by_key(|v| v.id)
        .map(|v| v.uuid)
}

/// A failure reason with hashes and numbers taken out, so that reasons group.
fn generalise(reason: &str) -> String {
    reason
        .split_whitespace()
        .map(|w| {
            if w.chars().any(|c| c.is_ascii_digit()) {
                "#"
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A fresh seeded RNG for building a scenario (kept apart from the run's own draws).
pub fn scenario_rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed ^ 0x5eed_5eed_5eed_5eed)
}
