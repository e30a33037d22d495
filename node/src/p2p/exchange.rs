//! The request/response exchange over libp2p streams: one stream per request, framed by
//! `dvid_protocol::wire`. Serving admits the request through the peer's guard, runs the
//! policy-checked answer on a blocking thread and writes under the node's and the peer's upload caps.
//! The test modes of a hostile node (spoiled answers, floods, oversized frames) live here too.

use super::guard::Offence;
use super::{Misbehave, P2p};
use dvid_protocol::seal::KeySealer;
use dvid_protocol::serve;
use dvid_protocol::wire::{self, Bounded, ObjectReply, Request, Response, WireError};
use dvid_store::manifest::seal_message;
use dvid_store::{ObjectId, Sealer, VersionManifest};
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{PeerId, Stream, StreamProtocol};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

pub const PROTOCOL: StreamProtocol = StreamProtocol::new(wire::PROTOCOL);
/// A request whose answer takes longer than this fails and is retried elsewhere.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Concurrent inbound requests served per node, so one peer's flood cannot take every thread.
const MAX_INBOUND: usize = 64;

/// Sends one request to `peer` and reads its answer.
pub async fn request(
    control: &mut libp2p_stream::Control,
    peer: PeerId,
    req: &Request,
) -> anyhow::Result<Response> {
    let exchange = async {
        let mut stream = control
            .open_stream(peer, PROTOCOL)
            .await
            .map_err(|e| anyhow::anyhow!("opening a stream to {peer}: {e}"))?;
        stream.write_all(&wire::encode(req)).await?;
        stream.flush().await?;
        let resp: Response = read_frame(&mut stream).await?;
        let _ = stream.close().await;
        Ok(resp)
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| anyhow::anyhow!("{peer} did not answer within {REQUEST_TIMEOUT:?}"))?
}

async fn read_frame<T: for<'de> serde::Deserialize<'de> + Bounded>(
    stream: &mut Stream,
) -> anyhow::Result<T> {
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).await?;
    let len = wire::frame_len(prefix)?;
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await?;
    Ok(wire::decode_body(&body)?)
}

/// Serves incoming requests until the node stops. Each request passes the peer's guard first.
pub async fn serve_incoming(p2p: P2p, limits: Arc<UploadLimits>) {
    let mut incoming = match p2p.control.clone().accept(PROTOCOL) {
        Ok(i) => i,
        Err(e) => {
            tracing::error!("cannot accept {PROTOCOL}: {e}");
            return;
        }
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_INBOUND));
    while let Some((peer, stream)) = incoming.next().await {
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "dropping a request: {MAX_INBOUND} already being served");
            continue;
        };
        let (p2p, limits) = (p2p.clone(), limits.clone());
        tokio::spawn(async move {
            if let Err(e) = serve_one(&p2p, peer, stream, &limits).await {
                tracing::debug!(%peer, "request failed: {e:#}");
            }
            drop(permit);
        });
    }
}

async fn serve_one(
    p2p: &P2p,
    peer: PeerId,
    mut stream: Stream,
    limits: &UploadLimits,
) -> anyhow::Result<()> {
    let _slot = match p2p.guard.admit(peer, Instant::now()) {
        Ok(slot) => slot,
        Err((why, banned)) => {
            if let Some(reason) = banned {
                p2p.ban(peer, &reason);
            }
            // Dropping the stream resets it: the cheapest answer to a peer over its limits.
            anyhow::bail!("not served: {why:?}");
        }
    };
    let req: Request = match tokio::time::timeout(REQUEST_TIMEOUT, read_frame(&mut stream)).await? {
        Ok(req) => req,
        Err(e) => {
            match e.downcast_ref::<WireError>() {
                Some(WireError::TooLarge(_)) => p2p.offence(peer, Offence::Oversized),
                Some(_) => p2p.offence(peer, Offence::Malformed),
                None => {}
            }
            return Err(e);
        }
    };
    let mut resp = match req {
        // Pushes ask this node to act: its jobs decide.
        Request::Push { version } => p2p.jobs.on_push(p2p, peer, version).await,
        Request::PushStatus { version } => p2p.jobs.on_push_status(p2p, version),
        req => {
            let store = p2p.store.clone();
            tokio::task::spawn_blocking(move || serve::answer(&store, &peer.to_string(), req))
                .await?
        }
    };
    if let Response::Refused(reason) = &resp {
        tracing::debug!(%peer, "refused a request: {reason}");
        p2p.guard.refused(peer);
    }
    if let Some(m) = p2p.misbehave {
        misbehave(&mut resp, m, &p2p.key);
    }
    let frame = wire::encode(&resp);
    for chunk in frame.chunks(64 * 1024) {
        limits.take(peer, chunk.len()).await;
        stream.write_all(chunk).await?;
        p2p.guard.sent(peer, chunk.len());
    }
    stream.flush().await?;
    let _ = stream.close().await;
    Ok(())
}

/// Test mode: spoils an honest answer the way a hostile peer would.
fn misbehave(resp: &mut Response, m: Misbehave, key: &libp2p::identity::Keypair) {
    match (m, resp) {
        (Misbehave::CorruptObjects, Response::Objects(replies)) => {
            for r in replies {
                if let ObjectReply::Found(bytes) = r
                    && let Some(b) = bytes.first_mut()
                {
                    *b ^= 0xff;
                }
            }
        }
        (Misbehave::ForgeHeads | Misbehave::ResealHeads, Response::Heads(heads)) => {
            for h in heads {
                h.commit_hash = ObjectId::of(&h.commit_hash.0);
                if m == Misbehave::ResealHeads {
                    let message = seal_message(h.repo, h.version, &h.parents, h.commit_hash);
                    h.seal = KeySealer::new(key.clone()).seal(&message);
                }
            }
        }
        (Misbehave::ForgeManifests, Response::Manifest(bytes)) => {
            if let Ok(m) = VersionManifest::decode(bytes) {
                *bytes = forge_manifest(m, key).encode();
            }
        }
        _ => {}
    }
}

/// Gives a manifest's target its first parent's contents (or none), with a commit hash and a seal
/// that are consistent with that: only a check against the announced head can tell.
fn forge_manifest(mut m: VersionManifest, key: &libp2p::identity::Keypair) -> VersionManifest {
    let parent_roots = m
        .versions
        .iter()
        .rev()
        .nth(1)
        .map(|p| p.roots.clone())
        .unwrap_or_default();
    let hashes: HashMap<_, _> = m.versions.iter().map(|v| (v.uuid, v.commit_hash)).collect();
    let repo = m.repo_root;
    let Some(mut t) = m.versions.last().cloned() else {
        return m;
    };
    t.roots = parent_roots;
    let parents: Vec<_> = t.parents.iter().map(|p| hashes.get(p).copied()).collect();
    t.commit_hash = m.content_hash(&t, &parents);
    let message = seal_message(repo, t.uuid, &t.parents, t.commit_hash);
    t.seal = Some(KeySealer::new(key.clone()).seal(&message));
    *m.versions.last_mut().expect("checked above") = t;
    m
}

/// Test mode: hammers a peer it has just met, until the peer cuts it off (or a minute passes).
pub async fn attack(p2p: P2p, victim: PeerId, m: Misbehave) {
    tracing::warn!(%victim, "test mode: attacking peer ({m:?})");
    let until = Instant::now() + Duration::from_secs(60);
    let mut workers = Vec::new();
    for _ in 0..32 {
        let mut control = p2p.control.clone();
        workers.push(tokio::spawn(async move {
            let mut failures = 0;
            while Instant::now() < until && failures < 200 {
                let sent = match m {
                    Misbehave::Oversized => send_oversized(&mut control, victim).await,
                    _ => request(&mut control, victim, &Request::Heads)
                        .await
                        .map(|_| ()),
                };
                if sent.is_err() {
                    failures += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
}

/// Opens a stream and claims a frame far over the protocol's bound.
async fn send_oversized(control: &mut libp2p_stream::Control, peer: PeerId) -> anyhow::Result<()> {
    let mut stream = control
        .open_stream(peer, PROTOCOL)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let claimed = (wire::MAX_FRAME_BYTES as u32 + 1).to_le_bytes();
    stream.write_all(&claimed).await?;
    stream.write_all(&[0xab; 4096]).await?;
    stream.flush().await?;
    let mut buf = [0u8; 1];
    let _ = stream.read(&mut buf).await;
    Ok(())
}

/// The node-wide upload cap (`--max-upload-rate`) and the cap per peer (`--max-peer-upload-rate`).
pub struct UploadLimits {
    all: RateLimiter,
    per_peer: Option<u64>,
    peers: std::sync::Mutex<HashMap<PeerId, Arc<RateLimiter>>>,
}

impl UploadLimits {
    pub fn new(all: Option<u64>, per_peer: Option<u64>) -> Self {
        Self {
            all: RateLimiter::new(all),
            per_peer: per_peer.filter(|&r| r > 0),
            peers: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Waits until `n` bytes may be sent to `peer`.
    async fn take(&self, peer: PeerId, n: usize) {
        if self.per_peer.is_some() {
            let limiter = self
                .peers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(peer)
                .or_insert_with(|| Arc::new(RateLimiter::new(self.per_peer)))
                .clone();
            limiter.take(n).await;
        }
        self.all.take(n).await;
    }
}

/// Caps the bytes per second a node sends to peers (`--max-upload-rate`): a token bucket holding at
/// most one second of tokens.
pub struct RateLimiter {
    rate: Option<u64>,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    pub fn new(bytes_per_sec: Option<u64>) -> Self {
        Self {
            rate: bytes_per_sec.filter(|&r| r > 0),
            state: Mutex::new((bytes_per_sec.unwrap_or(0) as f64, Instant::now())),
        }
    }

    /// Waits until `n` bytes may be sent.
    pub async fn take(&self, n: usize) {
        let Some(rate) = self.rate else { return };
        let rate = rate as f64;
        let mut s = self.state.lock().await;
        let now = Instant::now();
        s.0 = (s.0 + now.duration_since(s.1).as_secs_f64() * rate).min(rate);
        s.1 = now;
        s.0 -= n as f64;
        if s.0 < 0.0 {
            // Sleep while holding the lock, so senders queue in order behind the deficit.
            tokio::time::sleep(Duration::from_secs_f64(-s.0 / rate)).await;
        }
    }
}
