//! Peer-to-peer and sharing endpoints: `/api/p2p/...`, `/api/repo/{root}/share`, `.../sharing`,
//! `/api/node/{uuid}/publish`.

use super::params::json_body;
use super::{ApiError, ApiResult, AppState, blocking};
use crate::p2p::jobs::{self, CancelError, JobSpec, JobStatus};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use dvid_protocol::wire::{Request, Response};
use dvid_store::{Subvolume, catalog::Uuid};
use serde::Deserialize;
use serde_json::{Value, json};

pub async fn info(State(s): State<AppState>) -> Json<Value> {
    let p = &s.p2p;
    Json(json!({
        "peer_id": p.peer_id().to_string(),
        "listen_addrs": p.listen_addrs().iter().map(ToString::to_string).collect::<Vec<_>>(),
        "connected_peers": p.connected().iter().map(ToString::to_string).collect::<Vec<_>>(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DialBody {
    addr: String,
}

/// Connects to a peer and answers once connected (with its PeerId), or with why not.
pub async fn dial(State(s): State<AppState>, body: Bytes) -> ApiResult<Json<Value>> {
    let req: DialBody = json_body(&body)?;
    let addr = req
        .addr
        .parse()
        .map_err(|e| ApiError::bad_request(format!("bad multiaddr {:?}: {e}", req.addr)))?;
    let peer = s
        .p2p
        .dial(addr)
        .await
        .map_err(|e| ApiError::bad_request(format!("cannot dial {}: {e}", req.addr)))?;
    Ok(Json(json!({ "peer": peer.to_string() })))
}

pub async fn heads(State(s): State<AppState>) -> Json<Value> {
    let list: Vec<Value> = s
        .p2p
        .offered()
        .into_iter()
        .map(|o| {
            json!({
                "repo": o.head.repo.to_hex(),
                "uuid": o.head.version.to_hex(),
                "parents": o.head.parents.iter().map(Uuid::to_hex).collect::<Vec<_>>(),
                "commit_hash": o.head.commit_hash.to_hex(),
                "locked_by": o.locked_by.to_string(),
                "peers": o.peers.iter().map(ToString::to_string).collect::<Vec<_>>(),
                // Peers holding only part of it (partial replicas), and the parts they hold.
                "partial": o.partial.iter().map(|(p, parts)| {
                    (p.to_string(), parts.iter().map(part_json).collect::<Value>())
                }).collect::<serde_json::Map<_, _>>(),
            })
        })
        .collect();
    Json(Value::Array(list))
}

/// Versions claimed with several commit hashes (by peers, or by a peer and this node).
pub async fn conflicts(State(s): State<AppState>) -> Json<Value> {
    let list: Vec<Value> = s
        .p2p
        .conflicts()
        .into_iter()
        .map(|c| {
            let claims: Vec<Value> = c
                .claims
                .iter()
                .map(|(hash, by, peers)| {
                    json!({
                        "commit_hash": hash.to_hex(),
                        "locked_by": by.map_or("this node".to_string(), |p| p.to_string()),
                        "peers": peers.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    })
                })
                .collect();
            json!({"repo": c.repo.to_hex(), "uuid": c.version.to_hex(), "claims": claims})
        })
        .collect();
    Json(Value::Array(list))
}

/// Every peer met or dialled: its state, the last dial error, when it was last seen, and its
/// conduct (requests served and refused, bytes sent, strikes, ban).
pub async fn peers(State(s): State<AppState>) -> Json<Value> {
    let connected = s.p2p.connected();
    let conduct: std::collections::BTreeMap<_, _> = s.p2p.guard.conduct().into_iter().collect();
    let contacts = s.p2p.contacts();
    let mut known: std::collections::BTreeSet<libp2p::PeerId> = conduct.keys().copied().collect();
    known.extend(contacts.iter().filter_map(|c| c.peer));
    let mut list: Vec<Value> = known
        .into_iter()
        .map(|peer| {
            let c = conduct.get(&peer).cloned().unwrap_or_default();
            let contact = contacts.iter().find(|k| k.peer == Some(peer));
            let state = match (
                connected.contains(&peer),
                &c.banned,
                contact.and_then(|k| k.last_error.as_ref()),
            ) {
                (_, Some(_), _) => "banned",
                (true, None, _) => "connected",
                (false, None, Some(_)) => "unreachable",
                (false, None, None) => "disconnected",
            };
            json!({
                "peer": peer.to_string(),
                "state": state,
                "connected": connected.contains(&peer),
                "addr": contact.and_then(|k| k.addr.as_ref()).map(ToString::to_string),
                "last_error": contact.and_then(|k| k.last_error.clone()),
                "last_seen": contact.and_then(|k| k.last_seen.clone()),
                "requests_served": c.requests_served,
                "requests_refused": c.requests_refused,
                "bytes_sent": c.bytes_sent,
                "heads_rejected": c.heads_rejected,
                "strikes": c.strikes,
                "banned": c.banned,
            })
        })
        .collect();
    // Addresses dialled that never answered with a PeerId.
    list.extend(contacts.iter().filter(|k| k.peer.is_none()).map(|k| {
        json!({
            "peer": null,
            "state": "unreachable",
            "connected": false,
            "addr": k.addr.as_ref().map(ToString::to_string),
            "last_error": k.last_error,
            "last_seen": k.last_seen,
        })
    }));
    Json(Value::Array(list))
}

fn part_json(r: &dvid_store::Restriction) -> Value {
    json!({
        "instances": r.instances,
        "region": r.region.map(|(lo, hi)| json!({"min": lo, "max": hi})),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PullBody {
    uuid: String,
    #[serde(default)]
    peers: Vec<String>,
    instances: Option<Vec<String>>,
    region: Option<RegionBody>,
    /// Seconds to wait for a peer that offers the version before failing.
    wait: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegionBody {
    offset: [i64; 3],
    size: [i64; 3],
}

impl RegionBody {
    /// The inclusive voxel box, or why the region is not one.
    fn to_box(&self) -> ApiResult<(dvid_store::Point, dvid_store::Point)> {
        if self.size.iter().any(|&n| n < 1) {
            return Err(ApiError::bad_request(format!(
                "region size {:?}: each extent must be at least 1 voxel",
                self.size
            )));
        }
        let fits = |n: i64| i32::try_from(n).is_ok();
        if !self.offset.iter().all(|&n| fits(n))
            || !self.size.iter().all(|&n| u32::try_from(n).is_ok())
        {
            return Err(ApiError::bad_request(format!(
                "region offset {:?} or size {:?} is beyond the 32-bit voxel space",
                self.offset, self.size
            )));
        }
        let sub = Subvolume::new(self.offset.map(|n| n as i32), self.size.map(|n| n as u32))?;
        Ok((sub.offset, sub.last()))
    }
}

/// Starts a pull. When a connected peer offers the version, its manifest is fetched first so a
/// pull of instances the version lacks is refused here, with a 4xx, rather than by the job.
pub async fn pull(State(s): State<AppState>, body: Bytes) -> ApiResult<Json<Value>> {
    let req: PullBody = json_body(&body)?;
    let uuid = resolve_offered(&s, &req.uuid)?;
    let mut named = Vec::new();
    for p in &req.peers {
        named.push(
            p.parse::<libp2p::PeerId>()
                .map_err(|_| ApiError::bad_request(format!("{p:?} is not a PeerId")))?,
        );
    }
    if req.instances.as_ref().is_some_and(Vec::is_empty) {
        return Err(ApiError::bad_request(
            "\"instances\" is empty: omit it to pull every instance",
        ));
    }
    let region = req.region.as_ref().map(RegionBody::to_box).transpose()?;
    let spec = JobSpec {
        uuid,
        peers: req.peers,
        instances: req.instances,
        region,
        wait_secs: req.wait,
    };
    let version = spec.uuid;
    let offering: Vec<libp2p::PeerId> = match named.is_empty() {
        true => s.p2p.offering(version, None),
        false => named,
    };
    let mut manifest = None;
    if !offering.is_empty()
        && let Ok(m) = jobs::fetch_manifest(&s.p2p, version, &offering).await
    {
        jobs::check_spec(&m, &spec).map_err(ApiError::bad_request)?;
        manifest = Some(m);
    }
    let job = s.p2p.jobs.start(&s.p2p, spec, manifest);
    Ok(Json(json!({ "job": job.to_string() })))
}

/// A full UUID, or a unique prefix of a version peers offer.
fn resolve_offered(s: &AppState, text: &str) -> ApiResult<Uuid> {
    let t = text.trim().to_ascii_lowercase();
    if t.is_empty() || t.len() > 32 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::bad_request(format!(
            "{text:?} is not a UUID: expected 1 to 32 hexadecimal digits"
        )));
    }
    if t.len() == 32 {
        return t.parse().map_err(ApiError::from);
    }
    let matches: Vec<String> = s
        .p2p
        .offered()
        .iter()
        .map(|o| o.head.version.to_hex())
        .filter(|u| u.starts_with(&t))
        .collect();
    match matches.as_slice() {
        [one] => one.parse().map_err(ApiError::from),
        [] => Err(ApiError::not_found(format!(
            "no version offered by connected peers matches {t:?}"
        ))),
        _ => Err(ApiError::bad_request(format!(
            "UUID prefix {t:?} matches {} offered versions",
            matches.len()
        ))),
    }
}

fn job_number(text: &str) -> ApiResult<u64> {
    text.parse()
        .map_err(|_| ApiError::bad_request(format!("job {text:?} is not a job number")))
}

fn job_json(id: u64, spec: &JobSpec, st: &JobStatus) -> Value {
    let mut v = json!({
        "job": id.to_string(),
        "uuid": spec.uuid.to_hex(),
        "state": st.state.name(),
        "objects_fetched": st.objects_fetched,
        "bytes_fetched": st.bytes_fetched,
    });
    for (k, val) in [("reason", &st.reason), ("error", &st.error)] {
        if let Some(text) = val {
            v[k] = json!(text);
        }
    }
    if let Some(t) = st.objects_total {
        v["objects_total"] = json!(t);
    }
    if let Some(t) = st.bytes_total {
        v["bytes_total"] = json!(t);
    }
    if spec.instances.is_some() || spec.region.is_some() {
        v["instances"] = json!(spec.instances);
        v["region"] = json!(spec.region.map(|(lo, hi)| json!({"min": lo, "max": hi})));
    }
    v
}

pub async fn job(State(s): State<AppState>, Path(job): Path<String>) -> ApiResult<Json<Value>> {
    let id = job_number(&job)?;
    s.p2p
        .jobs
        .list()
        .into_iter()
        .find(|(j, _, _)| *j == id)
        .map(|(j, spec, st)| Json(job_json(j, &spec, &st)))
        .ok_or_else(|| ApiError::not_found(format!("no job {id}")))
}

/// Every pull job, oldest first.
pub async fn jobs_list(State(s): State<AppState>) -> Json<Value> {
    Json(Value::Array(
        s.p2p
            .jobs
            .list()
            .iter()
            .map(|(id, spec, st)| job_json(*id, spec, st))
            .collect(),
    ))
}

/// Stops a waiting or running pull.
pub async fn cancel_job(
    State(s): State<AppState>,
    Path(job): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = job_number(&job)?;
    match s.p2p.jobs.cancel(id) {
        Ok(st) => Ok(Json(
            json!({"job": id.to_string(), "state": st.state.name()}),
        )),
        Err(CancelError::NoSuchJob) => Err(ApiError::not_found(format!("no job {id}"))),
        Err(CancelError::Ended(state)) => Err(ApiError::bad_request(format!(
            "job {id} has already ended ({})",
            state.name()
        ))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FollowBody {
    repo: String,
}

/// A repo root UUID as 32 hex digits.
fn repo_uuid(text: &str) -> ApiResult<Uuid> {
    text.parse().map_err(|_| {
        ApiError::bad_request(format!("{text:?} is not a repo root UUID (32 hex digits)"))
    })
}

/// Follows a repo this node holds or a connected peer offers versions of.
pub async fn follow(State(s): State<AppState>, body: Bytes) -> ApiResult<Json<Value>> {
    let req: FollowBody = json_body(&body)?;
    let repo = repo_uuid(&req.repo)?;
    let known = |s: &AppState| {
        s.store.repo_root(&repo.to_hex()).is_ok_and(|r| r == repo)
            || s.p2p.offered().iter().any(|o| o.head.repo == repo)
    };
    // A peer may have shared it a moment ago, or a --peer may still be connecting: ask the
    // connected peers for their heads now, and wait a little while a --peer is not yet connected.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !known(&s) {
        let asks = s
            .p2p
            .connected()
            .into_iter()
            .map(|p| s.p2p.refresh_heads(p));
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            futures::future::join_all(asks),
        )
        .await;
        if known(&s) {
            break;
        }
        if !s.p2p.awaiting_bootstrap() || std::time::Instant::now() > deadline {
            return Err(ApiError::not_found(format!(
                "no repo {repo} is known: it is not on this node and no connected peer offers a version of it (connect to a peer that shares it, then follow)"
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let list: Vec<String> = s
        .p2p
        .jobs
        .follow(&s.p2p, repo)
        .iter()
        .map(Uuid::to_hex)
        .collect();
    Ok(Json(json!({ "following": list })))
}

/// The repos followed.
pub async fn follows(State(s): State<AppState>) -> Json<Value> {
    let list: Vec<String> = s.p2p.jobs.following().iter().map(Uuid::to_hex).collect();
    Json(json!({ "following": list }))
}

/// Stops following a repo.
pub async fn unfollow(State(s): State<AppState>, body: Bytes) -> ApiResult<Json<Value>> {
    let req: FollowBody = json_body(&body)?;
    let repo = repo_uuid(&req.repo)?;
    if !s.p2p.jobs.unfollow(repo) {
        return Err(ApiError::not_found(format!("repo {repo} is not followed")));
    }
    Ok(Json(follows(State(s)).await.0))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PushBody {
    uuid: String,
    peer: String,
}

/// Asks a connected peer to pull a locked version from this node; the peer's rules decide.
pub async fn push(State(s): State<AppState>, body: Bytes) -> ApiResult<Json<Value>> {
    let req: PushBody = json_body(&body)?;
    let (peer, version) = push_target(&s, &req.peer, &req.uuid).await?;
    push_exchange(&s, peer, Request::Push { version }).await
}

/// Where a peer's pull of a pushed version is.
pub async fn push_status(
    State(s): State<AppState>,
    Path((peer, uuid)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (peer, version) = push_target(&s, &peer, &uuid).await?;
    push_exchange(&s, peer, Request::PushStatus { version }).await
}

/// Checks a push: the version is locked here and shared with the peer, which is connected.
async fn push_target(s: &AppState, peer: &str, uuid: &str) -> ApiResult<(libp2p::PeerId, Uuid)> {
    let peer: libp2p::PeerId = peer
        .parse()
        .map_err(|_| ApiError::bad_request(format!("{peer:?} is not a PeerId")))?;
    let store = s.store.clone();
    let uuid = uuid.to_string();
    let (v, root) = blocking(move || Ok((store.resolve(&uuid)?, store.repo_root(&uuid)?))).await?;
    if !v.locked {
        return Err(ApiError::bad_request(format!(
            "version {} is mutable: commit it before pushing it",
            v.uuid
        )));
    }
    if !s.store.may_read(&peer.to_string(), v.uuid) {
        return Err(ApiError::bad_request(format!(
            "version {} is not shared with peer {peer}: share its repo first (dvid share {root} {peer})",
            v.uuid
        )));
    }
    if !s.p2p.connected().contains(&peer) {
        return Err(ApiError::not_found(format!(
            "peer {peer} is not connected (see /api/p2p/peers)"
        )));
    }
    Ok((peer, v.uuid))
}

async fn push_exchange(s: &AppState, peer: libp2p::PeerId, req: Request) -> ApiResult<Json<Value>> {
    match s.p2p.request(peer, &req).await {
        Ok(Response::PushState { state, detail }) => Ok(Json(
            json!({"peer": peer.to_string(), "state": state, "detail": detail}),
        )),
        Ok(Response::Refused(r)) => Ok(Json(
            json!({"peer": peer.to_string(), "state": "refused", "detail": r}),
        )),
        Ok(_) => Err(ApiError::bad_request(format!(
            "peer {peer} answered the push with something else"
        ))),
        Err(e) => Err(ApiError::not_found(format!(
            "peer {peer} did not answer: {e:#}"
        ))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShareBody {
    peers: Vec<String>,
}

pub async fn share(
    State(s): State<AppState>,
    Path(uuid): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let req: ShareBody = json_body(&body)?;
    for p in &req.peers {
        p.parse::<libp2p::PeerId>()
            .map_err(|_| ApiError::bad_request(format!("{p:?} is not a PeerId")))?;
    }
    let store = s.store.clone();
    let sharing = blocking(move || store.share_repo(&uuid, &req.peers)).await?;
    s.p2p.announce(sharing.repo);
    Ok(Json(sharing_json(&sharing)))
}

/// Stops sharing a repo with peers: their new requests are refused.
pub async fn unshare(
    State(s): State<AppState>,
    Path(uuid): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let req: ShareBody = json_body(&body)?;
    let store = s.store.clone();
    let sharing = blocking(move || store.unshare_repo(&uuid, &req.peers)).await?;
    s.p2p.announce(sharing.repo);
    Ok(Json(sharing_json(&sharing)))
}

pub async fn sharing(
    State(s): State<AppState>,
    Path(uuid): Path<String>,
) -> ApiResult<Json<Value>> {
    let store = s.store.clone();
    let sharing = blocking(move || store.sharing(&uuid)).await?;
    Ok(Json(sharing_json(&sharing)))
}

pub async fn publish(
    State(s): State<AppState>,
    Path(uuid): Path<String>,
) -> ApiResult<Json<Value>> {
    let store = s.store.clone();
    let (published, repo) =
        blocking(move || Ok((store.publish(&uuid)?, store.repo_root(&uuid)?))).await?;
    s.p2p.announce(repo);
    Ok(Json(json!({ "published": published.to_hex() })))
}

/// Stops offering a version to every peer.
pub async fn unpublish(
    State(s): State<AppState>,
    Path(uuid): Path<String>,
) -> ApiResult<Json<Value>> {
    let store = s.store.clone();
    let (unpublished, repo) =
        blocking(move || Ok((store.unpublish(&uuid)?, store.repo_root(&uuid)?))).await?;
    s.p2p.announce(repo);
    Ok(Json(json!({ "unpublished": unpublished.to_hex() })))
}

fn sharing_json(s: &dvid_store::sharing::Sharing) -> Value {
    json!({
        "repo": s.repo.to_hex(),
        "shared_with": s.shared_with,
        "published": s.published.iter().map(Uuid::to_hex).collect::<Vec<_>>(),
    })
}
