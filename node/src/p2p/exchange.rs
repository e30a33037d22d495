//! The request/response exchange over libp2p streams: one stream per request, framed by
//! `dvid_protocol::wire`. Serving runs the policy-checked answer on a blocking thread and writes
//! under the node's upload rate cap.

use dvid_protocol::serve;
use dvid_protocol::wire::{self, Bounded, Request, Response};
use dvid_store::Store;
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{PeerId, Stream, StreamProtocol};
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

/// Serves incoming requests until the node stops.
pub async fn serve_incoming(
    mut control: libp2p_stream::Control,
    store: Arc<Store>,
    limiter: Arc<RateLimiter>,
) {
    let mut incoming = match control.accept(PROTOCOL) {
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
        let (store, limiter) = (store.clone(), limiter.clone());
        tokio::spawn(async move {
            if let Err(e) = serve_one(peer, stream, store, limiter).await {
                tracing::debug!(%peer, "request failed: {e:#}");
            }
            drop(permit);
        });
    }
}

async fn serve_one(
    peer: PeerId,
    mut stream: Stream,
    store: Arc<Store>,
    limiter: Arc<RateLimiter>,
) -> anyhow::Result<()> {
    let req: Request = tokio::time::timeout(REQUEST_TIMEOUT, read_frame(&mut stream)).await??;
    let resp =
        tokio::task::spawn_blocking(move || serve::answer(&store, &peer.to_string(), req)).await?;
    let frame = wire::encode(&resp);
    for chunk in frame.chunks(64 * 1024) {
        limiter.take(chunk.len()).await;
        stream.write_all(chunk).await?;
    }
    stream.flush().await?;
    let _ = stream.close().await;
    Ok(())
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
