//! The peer-to-peer layer: a libp2p swarm (TCP and QUIC, Noise, Yamux, identify, ping, Kademlia,
//! gossipsub, opt-in mDNS) carrying `dvid_protocol` requests over streams. The swarm task owns the Swarm; the
//! rest of the node talks to it through [`P2p`], a cheap handle.
//!
//! Heads: on connecting, and every few seconds, a node asks each peer for the versions it may fetch.
//! Gossipsub carries a small announcement when a node commits, shares or publishes, so peers ask at
//! once instead of at the next poll.
//!
//! Defence: heads must carry a valid seal of the node that locked the version; two commit hashes
//! claimed for one version are reported as a conflict and neither is pulled unless a peer is named.
//! [`guard`] limits each peer's requests and bans peers that flood, send oversized or undecodable
//! frames, forge heads or lie about objects (libp2p's block list then refuses them).
//!
//! Discovery: a node provides Kademlia records for its shared repos and published versions. A pull or
//! follow that finds no connected peer offering what it needs looks the providers up and dials them.

mod exchange;
pub mod guard;
pub mod identity;
pub mod jobs;

pub use exchange::RateLimiter;

use dvid_protocol::heads::HeadsBook;
use dvid_protocol::seal::{self, KeySealer};
use dvid_protocol::wire::{Head, Request, Response};
use dvid_store::ObjectId;
use dvid_store::Store;
use dvid_store::catalog::Uuid;
use futures::StreamExt;
use libp2p::core::ConnectedPoint;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{ConnectionId, DialError};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, allow_block_list, connection_limits, gossipsub, identify,
    identity::Keypair, kad, mdns, noise, ping, tcp, yamux,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Topic of head announcements.
const HEADS_TOPIC: &str = "/dvid/heads/1";
/// How often heads are asked of every connected peer, and lost `--peer`s re-dialled.
const REFRESH: Duration = Duration::from_secs(3);
/// How long `dial` waits for a connection or an error.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of the peer-to-peer layer.
#[derive(Clone, Debug, Default)]
pub struct P2pConfig {
    pub listen: Vec<Multiaddr>,
    pub peers: Vec<Multiaddr>,
    pub mdns: bool,
    pub max_upload_rate: Option<u64>,
    /// Cap on bytes per second sent to any one peer.
    pub max_peer_upload_rate: Option<u64>,
    pub limits: guard::Limits,
    /// Test mode: behave like a hostile peer.
    pub misbehave: Option<Misbehave>,
}

/// Ways a node can be told to misbehave, so tests can run real nodes against a hostile peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Misbehave {
    /// Flip a byte in every object it serves.
    CorruptObjects,
    /// Announce heads with an altered commit hash under the original seal.
    ForgeHeads,
    /// Announce heads with an altered commit hash, sealed with its own key.
    ResealHeads,
    /// Announce honest heads, but serve manifests whose target has its parent's contents, a
    /// recomputed commit hash and its own seal.
    ForgeManifests,
    /// Send requests to every peer it meets as fast as it can.
    Flood,
    /// Send frames longer than the protocol allows to every peer it meets.
    Oversized,
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    limits: connection_limits::Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    stream: libp2p_stream::Behaviour,
    kad: kad::Behaviour<kad::store::MemoryStore>,
    gossipsub: gossipsub::Behaviour,
    mdns: Toggle<mdns::tokio::Behaviour>,
}

enum Command {
    Dial(Multiaddr, oneshot::Sender<Result<PeerId, String>>),
    Announce(Uuid),
    Discover(Uuid),
    Ban(PeerId),
}

/// The Kademlia key naming a repo root or a version.
fn provider_key(uuid: Uuid) -> kad::RecordKey {
    kad::RecordKey::new(&uuid.0.to_be_bytes())
}

/// What the node knows of the network.
#[derive(Default)]
struct NetState {
    listen_addrs: Vec<Multiaddr>,
    connected: BTreeSet<PeerId>,
    /// Verified heads of each peer, with the PeerId that sealed each version.
    heads: HeadsBook<PeerId, PeerId>,
    /// Versions already reported as conflicting, so each is logged once.
    conflicts_logged: BTreeSet<Uuid>,
    /// Peers met or dialled, by PeerId, or by address for dials to an address without one.
    contacts: BTreeMap<String, Contact>,
    /// Kademlia provider lookups, by the UUID looked up, and the queries in flight.
    lookups: BTreeMap<Uuid, Lookup>,
    queries: std::collections::HashMap<kad::QueryId, Uuid>,
}

/// A peer this node met or tried to reach, as `/api/p2p/peers` shows it.
#[derive(Clone, Debug, Default)]
pub struct Contact {
    pub peer: Option<PeerId>,
    /// The address last dialled or connected through.
    pub addr: Option<Multiaddr>,
    /// Why the last dial failed, until a connection succeeds.
    pub last_error: Option<String>,
    /// When a connection to it last existed (RFC 3339), if ever.
    pub last_seen: Option<String>,
}

/// Provider lookups of one UUID: how many finished, and the providers they found.
#[derive(Clone, Copy, Debug, Default)]
pub struct Lookup {
    pub finished: u32,
    pub providers: usize,
}

/// A handle on the running peer-to-peer layer.
#[derive(Clone)]
pub struct P2p {
    peer_id: PeerId,
    control: libp2p_stream::Control,
    commands: mpsc::Sender<Command>,
    state: Arc<Mutex<NetState>>,
    pub store: Arc<Store>,
    pub jobs: Arc<jobs::Jobs>,
    pub guard: Arc<guard::Guard>,
    misbehave: Option<Misbehave>,
    key: Keypair,
    /// The `--peer`s, re-dialled while not connected.
    bootstrap: Arc<Vec<Multiaddr>>,
}

/// A version offered by peers, as `/api/p2p/heads` lists it (who locked it: a PeerId).
pub type Offered = dvid_protocol::heads::Offered<PeerId, PeerId>;

/// One version UUID claimed with several commit hashes.
#[derive(Clone, Debug)]
pub struct Conflict {
    pub repo: Uuid,
    pub version: Uuid,
    /// Each claimed commit hash, with who sealed it and who offers it (`None`: this node's own).
    pub claims: Vec<(ObjectId, Option<PeerId>, Vec<PeerId>)>,
}

impl P2p {
    /// Builds the swarm, starts listening and dialling, and spawns the tasks that run it.
    pub fn start(
        key: Keypair,
        config: P2pConfig,
        store: Arc<Store>,
        jobs: Arc<jobs::Jobs>,
    ) -> anyhow::Result<Self> {
        let mdns_on = config.mdns;
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key.clone())
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )?
            .with_quic()
            .with_behaviour(|key| {
                let gossip_config = gossipsub::ConfigBuilder::default()
                    .max_transmit_size(64 * 1024)
                    .build()
                    .map_err(|e| anyhow::anyhow!("gossipsub config: {e}"))?;
                Ok(Behaviour {
                    blocked: allow_block_list::Behaviour::default(),
                    limits: connection_limits::Behaviour::new(
                        connection_limits::ConnectionLimits::default()
                            .with_max_established_per_peer(Some(4))
                            .with_max_pending_incoming(Some(128))
                            .with_max_established_incoming(Some(1024)),
                    ),
                    identify: identify::Behaviour::new(identify::Config::new(
                        "/dvid/1".into(),
                        key.public(),
                    )),
                    ping: ping::Behaviour::default(),
                    stream: libp2p_stream::Behaviour::new(),
                    kad: {
                        let id = key.public().to_peer_id();
                        let config = kad::Config::new(StreamProtocol::new("/dvid/kad/1.0.0"));
                        let mut k = kad::Behaviour::with_config(
                            id,
                            kad::store::MemoryStore::new(id),
                            config,
                        );
                        k.set_mode(Some(kad::Mode::Server));
                        k
                    },
                    gossipsub: gossipsub::Behaviour::new(
                        gossipsub::MessageAuthenticity::Signed(key.clone()),
                        gossip_config,
                    )
                    .map_err(|e| anyhow::anyhow!("gossipsub: {e}"))?,
                    mdns: Toggle::from(if mdns_on {
                        Some(mdns::tokio::Behaviour::new(
                            mdns::Config::default(),
                            key.public().to_peer_id(),
                        )?)
                    } else {
                        None
                    }),
                })
            })
            .map_err(|e| anyhow::anyhow!("building the swarm: {e}"))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
            .build();
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&gossipsub::IdentTopic::new(HEADS_TOPIC))?;
        for addr in &config.listen {
            swarm
                .listen_on(addr.clone())
                .map_err(|e| anyhow::anyhow!("listening on {addr}: {e}"))?;
        }
        store.set_sealer(Arc::new(KeySealer::new(key.clone())));
        let (tx, rx) = mpsc::channel(64);
        let p2p = Self {
            peer_id: *swarm.local_peer_id(),
            control: swarm.behaviour().stream.new_control(),
            commands: tx,
            state: Arc::new(Mutex::new(NetState::default())),
            store,
            jobs,
            guard: Arc::new(guard::Guard::new(config.limits.clone())),
            misbehave: config.misbehave,
            bootstrap: Arc::new(config.peers.clone()),
            key,
        };
        if let Some(m) = config.misbehave {
            tracing::warn!("test mode: this node misbehaves ({m:?})");
        }
        let limits =
            exchange::UploadLimits::new(config.max_upload_rate, config.max_peer_upload_rate);
        tokio::spawn(exchange::serve_incoming(p2p.clone(), Arc::new(limits)));
        tokio::spawn(run_swarm(swarm, rx, p2p.clone(), config.peers));
        p2p.jobs.resume(&p2p);
        Ok(p2p)
    }

    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.state.lock().expect("state lock").listen_addrs.clone()
    }

    pub fn connected(&self) -> Vec<PeerId> {
        self.state
            .lock()
            .expect("state lock")
            .connected
            .iter()
            .copied()
            .collect()
    }

    /// Dials a peer at run time and waits for the outcome: the PeerId connected, or why not.
    pub async fn dial(&self, addr: Multiaddr) -> Result<PeerId, String> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Dial(addr, tx))
            .await
            .map_err(|_| "the network task has stopped".to_string())?;
        match tokio::time::timeout(DIAL_TIMEOUT, rx).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err("the network task has stopped".to_string()),
            Err(_) => Err(format!("no answer within {} s", DIAL_TIMEOUT.as_secs())),
        }
    }

    /// True while some `--peer` is not connected (the node is starting, or that peer is away).
    pub fn awaiting_bootstrap(&self) -> bool {
        let connected = self.connected();
        self.bootstrap.iter().any(|addr| lost(addr, &connected))
    }

    /// Peers met or dialled, with what became of the last attempt.
    pub fn contacts(&self) -> Vec<Contact> {
        let state = self.state.lock().expect("state lock");
        state.contacts.values().cloned().collect()
    }

    /// The provider lookups of `uuid` so far.
    pub fn lookup(&self, uuid: Uuid) -> Lookup {
        let state = self.state.lock().expect("state lock");
        state.lookups.get(&uuid).copied().unwrap_or_default()
    }

    /// Tells peers that this node's offers in `repo` changed.
    pub fn announce(&self, repo: Uuid) {
        let _ = self.commands.try_send(Command::Announce(repo));
    }

    /// Looks up, and dials, the providers of a repo or version (a Kademlia query).
    pub fn discover(&self, uuid: Uuid) {
        let _ = self.commands.try_send(Command::Discover(uuid));
    }

    /// Versions offered by connected peers, each with the peers that offer it. Versions claimed
    /// with several commit hashes are left out: see [`P2p::conflicts`].
    pub fn offered(&self) -> Vec<Offered> {
        self.state.lock().expect("state lock").heads.offered()
    }

    /// The follow rule over the heads peers offer ([`dvid_protocol::heads::HeadsBook::to_follow`]).
    pub fn to_follow(
        &self,
        follows: &std::collections::BTreeSet<Uuid>,
        max_failures: usize,
        standing: impl Fn(Uuid) -> dvid_protocol::heads::Standing,
    ) -> Vec<(Uuid, ObjectId)> {
        let state = self.state.lock().expect("state lock");
        state.heads.to_follow(follows, max_failures, standing)
    }

    /// The peers offering `version` (with commit hash `hash`, if given), as [`P2p::offered`] lists
    /// them: none for a version claimed with several hashes.
    pub fn offering(&self, version: Uuid, hash: Option<ObjectId>) -> Vec<PeerId> {
        self.offered()
            .into_iter()
            .find(|o| o.head.version == version && hash.is_none_or(|h| o.head.commit_hash == h))
            .map(|o| o.peers)
            .unwrap_or_default()
    }

    /// Versions that peers (or this node) claim with different commit hashes.
    pub fn conflicts(&self) -> Vec<Conflict> {
        let claims = self.state.lock().expect("state lock").heads.claims();
        let mut out = Vec::new();
        for (version, claims) in claims {
            let repo = claims.values().next().map(|o| o.head.repo);
            let mut list: Vec<(ObjectId, Option<PeerId>, Vec<PeerId>)> = claims
                .into_iter()
                .map(|(hash, o)| (hash, Some(o.locked_by), o.peers))
                .collect();
            let local = self.store.resolve(&version.to_hex()).ok();
            if let Some(h) = local.as_ref().and_then(|v| v.commit_hash)
                && list.iter().any(|c| c.0 != h)
            {
                list.retain(|c| c.0 != h);
                list.insert(0, (h, None, vec![]));
            }
            if list.len() > 1 {
                out.push(Conflict {
                    repo: repo.expect("a claim has a head"),
                    version,
                    claims: list,
                });
            }
        }
        let mut state = self.state.lock().expect("state lock");
        for c in &out {
            if state.conflicts_logged.insert(c.version) {
                tracing::warn!(version = %c.version, claims = c.claims.len(), "peers claim different commit hashes for one version: not pulling it");
            }
        }
        out
    }

    /// The verified head `peer` announced for `version`, if any.
    pub fn head_of(&self, peer: PeerId, version: Uuid) -> Option<Head> {
        let state = self.state.lock().expect("state lock");
        state.heads.head_of(&peer, version).cloned()
    }

    /// Counts an offence of `peer`, banning it if that was one too many.
    pub fn offence(&self, peer: PeerId, offence: guard::Offence) {
        if let Some(reason) = self.guard.offence(peer, offence, Instant::now()) {
            self.ban(peer, &reason);
        }
    }

    /// Disconnects a peer and refuses it until its ban runs out.
    pub fn ban(&self, peer: PeerId, reason: &str) {
        tracing::warn!(%peer, "banning peer: {reason}");
        let _ = self.commands.try_send(Command::Ban(peer));
    }

    /// Sends one request to a peer.
    pub async fn request(&self, peer: PeerId, req: &Request) -> anyhow::Result<Response> {
        exchange::request(&mut self.control.clone(), peer, req).await
    }

    /// Asks a peer for its heads (if they changed since its last answer) and records those whose
    /// seal verifies.
    pub(crate) async fn refresh_heads(&self, peer: PeerId) {
        if self.guard.is_banned(&peer, Instant::now()) {
            return;
        }
        let request = self.state.lock().expect("state lock").heads.request(&peer);
        match self.request(peer, &request).await {
            Ok(Response::Heads(heads)) => {
                let dropped =
                    self.state
                        .lock()
                        .expect("state lock")
                        .heads
                        .record(peer, heads, |h| seal::verify_head(h).ok());
                if dropped > 0 {
                    tracing::warn!(%peer, dropped, "dropping heads whose seal does not verify");
                    self.offence(peer, guard::Offence::ForgedHead);
                }
                self.jobs.on_heads(self);
            }
            // Follows still retry what they have not got.
            Ok(Response::HeadsUnchanged)
                if self.state.lock().expect("state lock").heads.knows(&peer) =>
            {
                self.jobs.on_heads(self)
            }
            Ok(other) => tracing::debug!(%peer, "unexpected answer to heads: {other:?}"),
            Err(e) => tracing::debug!(%peer, "heads request failed: {e:#}"),
        }
    }
}

/// Dials in flight, by connection: the address, and who waits for the outcome.
type PendingDials =
    HashMap<ConnectionId, (Multiaddr, Option<oneshot::Sender<Result<PeerId, String>>>)>;

/// Starts a dial, recording it so its outcome reaches the contacts table (and `reply`).
fn dial(
    swarm: &mut libp2p::Swarm<Behaviour>,
    p2p: &P2p,
    pending: &mut PendingDials,
    addr: Multiaddr,
    reply: Option<oneshot::Sender<Result<PeerId, String>>>,
) {
    let opts = DialOpts::from(addr.clone());
    let id = opts.connection_id();
    match swarm.dial(opts) {
        Ok(()) => {
            pending.insert(id, (addr, reply));
        }
        Err(e) => {
            let error = describe_dial_error(&e);
            note_dial_failure(p2p, &addr, peer_of(&addr), &error);
            if let Some(r) = reply {
                let _ = r.send(Err(error));
            }
        }
    }
}

/// Whether the `--peer` at `addr` is not connected: its PeerId, or (an address without one) any peer.
fn lost(addr: &Multiaddr, connected: &[PeerId]) -> bool {
    peer_of(addr).map_or(connected.is_empty(), |id| !connected.contains(&id))
}

/// The PeerId an address names with a `/p2p/` suffix, if any.
fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        libp2p::multiaddr::Protocol::P2p(id) => Some(id),
        _ => None,
    })
}

fn describe_dial_error(e: &DialError) -> String {
    match e {
        DialError::WrongPeerId { obtained, .. } => {
            format!("the node at that address is {obtained}, not the PeerId the address names")
        }
        DialError::LocalPeerId { .. } => "that address is this node itself".into(),
        DialError::Denied { .. } => "refused by this node's limits or block list".into(),
        DialError::NoAddresses => "no address to dial".into(),
        DialError::Transport(errors) => errors
            .iter()
            .map(|(addr, err)| format!("{addr}: {}", transport_error_text(err)))
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}

/// The innermost message of a transport error ("Connection refused (os error 111)").
fn transport_error_text(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text = s.to_string();
        source = s.source();
    }
    text
}

/// Records a failed dial. The first failure after a success (or the first ever) is logged at
/// warn; repeats of the same error (a `--peer` re-dialled every few seconds) at debug.
fn note_dial_failure(p2p: &P2p, addr: &Multiaddr, peer: Option<PeerId>, error: &str) {
    let mut state = p2p.state.lock().expect("state lock");
    let key = peer.map_or_else(|| addr.to_string(), |p| p.to_string());
    let contact = state.contacts.entry(key).or_default();
    let repeat = contact.last_error.as_deref() == Some(error);
    contact.peer = contact.peer.or(peer);
    if !addr.is_empty() {
        contact.addr = Some(addr.clone());
    }
    contact.last_error = Some(error.to_string());
    drop(state);
    let whom = peer.map_or_else(|| addr.to_string(), |p| p.to_string());
    if repeat {
        tracing::debug!("dial of {whom} failed again: {error}");
    } else {
        tracing::warn!("cannot reach peer {whom}: {error}");
    }
}

async fn run_swarm(
    mut swarm: libp2p::Swarm<Behaviour>,
    mut commands: mpsc::Receiver<Command>,
    p2p: P2p,
    bootstrap: Vec<Multiaddr>,
) {
    let mut pending = PendingDials::new();
    for addr in &bootstrap {
        dial(&mut swarm, &p2p, &mut pending, addr.clone(), None);
    }
    let mut tick = tokio::time::interval(REFRESH);
    let topic = gossipsub::IdentTopic::new(HEADS_TOPIC);
    let repos: Vec<Uuid> = p2p.store.catalog().repos.values().map(|r| r.root).collect();
    for repo in repos {
        provide(&mut swarm, &p2p, repo);
    }
    loop {
        tokio::select! {
            cmd = commands.recv() => match cmd {
                None => return,
                Some(Command::Dial(addr, reply)) => {
                    dial(&mut swarm, &p2p, &mut pending, addr, Some(reply));
                }
                Some(Command::Announce(repo)) => {
                    // No subscribed peer yet is fine: peers also poll heads.
                    let _ = swarm.behaviour_mut().gossipsub.publish(topic.clone(), repo.to_hex().into_bytes());
                    provide(&mut swarm, &p2p, repo);
                }
                Some(Command::Discover(uuid)) => {
                    let query = swarm.behaviour_mut().kad.get_providers(provider_key(uuid));
                    p2p.state.lock().expect("state lock").queries.insert(query, uuid);
                }
                Some(Command::Ban(peer)) => {
                    swarm.behaviour_mut().blocked.block_peer(peer);
                    let mut s = p2p.state.lock().expect("state lock");
                    s.heads.forget(&peer);
                }
            },
            event = swarm.select_next_some() => on_event(&mut swarm, event, &p2p, &mut pending),
            _ = tick.tick() => {
                for peer in p2p.guard.expire(Instant::now()) {
                    tracing::info!(%peer, "ban ended");
                    swarm.behaviour_mut().blocked.unblock_peer(peer);
                }
                let connected = p2p.connected();
                p2p.guard.prune(&connected);
                for addr in &bootstrap {
                    let dialling = pending.values().any(|(a, _)| a == addr);
                    if lost(addr, &connected) && !dialling {
                        dial(&mut swarm, &p2p, &mut pending, addr.clone(), None);
                    }
                }
                for peer in connected {
                    let p = p2p.clone();
                    tokio::spawn(async move { p.refresh_heads(peer).await });
                }
                let offered: BTreeSet<Uuid> = p2p.offered().iter().map(|o| o.head.repo).collect();
                for repo in p2p.jobs.following() {
                    if !offered.contains(&repo) {
                        swarm.behaviour_mut().kad.get_providers(provider_key(repo));
                    }
                }
            }
        }
    }
}

/// Provides Kademlia records for a repo that is shared and for its published versions. Private
/// repos are not announced at all.
fn provide(swarm: &mut libp2p::Swarm<Behaviour>, p2p: &P2p, repo: Uuid) {
    let Ok(sharing) = p2p.store.sharing(&repo.to_hex()) else {
        return;
    };
    let mut keys = sharing.published.clone();
    if !sharing.shared_with.is_empty() || !sharing.published.is_empty() {
        keys.push(repo);
    }
    for k in keys {
        if let Err(e) = swarm.behaviour_mut().kad.start_providing(provider_key(k)) {
            tracing::warn!("cannot provide {k}: {e}");
        }
    }
}

fn on_event(
    swarm: &mut libp2p::Swarm<Behaviour>,
    event: SwarmEvent<BehaviourEvent>,
    p2p: &P2p,
    pending: &mut PendingDials,
) {
    match event {
        SwarmEvent::NewListenAddr { address, .. } => {
            let full = address.with_p2p(p2p.peer_id).unwrap_or_else(|a| a);
            println!("dvid: p2p listening on {full}");
            p2p.state
                .lock()
                .expect("state lock")
                .listen_addrs
                .push(full);
        }
        SwarmEvent::ConnectionEstablished {
            peer_id,
            connection_id,
            endpoint,
            ..
        } => {
            if let Some((_, Some(reply))) = pending.remove(&connection_id) {
                let _ = reply.send(Ok(peer_id));
            }
            {
                let mut s = p2p.state.lock().expect("state lock");
                s.connected.insert(peer_id);
                // A dial by address alone now knows whom it reached.
                if let ConnectedPoint::Dialer { address, .. } = &endpoint {
                    s.contacts.remove(&address.to_string());
                }
                let contact = s.contacts.entry(peer_id.to_string()).or_default();
                contact.peer = Some(peer_id);
                contact.addr = Some(endpoint.get_remote_address().clone());
                contact.last_error = None;
                contact.last_seen = Some(dvid_store::catalog::now());
            }
            let p = p2p.clone();
            tokio::spawn(async move { p.refresh_heads(peer_id).await });
            if let Some(m @ (Misbehave::Flood | Misbehave::Oversized)) = p2p.misbehave {
                tokio::spawn(exchange::attack(p2p.clone(), peer_id, m));
            }
        }
        SwarmEvent::ConnectionClosed {
            peer_id,
            num_established: 0,
            ..
        } => {
            let mut s = p2p.state.lock().expect("state lock");
            s.connected.remove(&peer_id);
            s.heads.forget(&peer_id);
            if let Some(c) = s.contacts.get_mut(&peer_id.to_string()) {
                c.last_seen = Some(dvid_store::catalog::now());
            }
        }
        SwarmEvent::OutgoingConnectionError {
            connection_id,
            peer_id,
            error,
        } => {
            let text = describe_dial_error(&error);
            let (addr, reply) = pending
                .remove(&connection_id)
                .unwrap_or_else(|| (Multiaddr::empty(), None));
            // Dials this node did not ask for by address (Kademlia, mDNS) are noted by PeerId.
            if !addr.is_empty() || peer_id.is_some() {
                note_dial_failure(p2p, &addr, peer_id.or_else(|| peer_of(&addr)), &text);
            }
            if let Some(r) = reply {
                let _ = r.send(Err(text));
            }
        }
        SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
            propagation_source,
            message,
            ..
        })) => {
            let from = message.source.unwrap_or(propagation_source);
            if p2p.connected().contains(&from) {
                let p = p2p.clone();
                tokio::spawn(async move { p.refresh_heads(from).await });
            }
        }
        SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
            peer_id,
            info,
            ..
        })) => {
            for addr in info.listen_addrs {
                swarm.behaviour_mut().kad.add_address(&peer_id, addr);
            }
        }
        SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
            id,
            result: kad::QueryResult::GetProviders(result),
            step,
            ..
        })) => {
            let providers = match result {
                Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) => providers,
                _ => Default::default(),
            };
            {
                let mut s = p2p.state.lock().expect("state lock");
                let uuid = match step.last {
                    true => s.queries.remove(&id),
                    false => s.queries.get(&id).copied(),
                };
                if let Some(uuid) = uuid {
                    let lookup = s.lookups.entry(uuid).or_default();
                    lookup.providers += providers.len();
                    lookup.finished += u32::from(step.last);
                }
            }
            let connected = p2p.connected();
            for peer in providers {
                if peer != p2p.peer_id && !connected.contains(&peer) {
                    tracing::info!(%peer, "dialling a provider found through Kademlia");
                    let _ = swarm.dial(peer);
                }
            }
        }
        SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
            for (peer, addr) in found {
                if !p2p.connected().contains(&peer) {
                    let _ = swarm.dial(addr);
                }
            }
        }
        _ => {}
    }
}
