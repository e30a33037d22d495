//! Peer-to-peer and sharing endpoints: `/api/p2p/...`, `/api/repo/{root}/share`, `.../sharing`,
//! `/api/node/{uuid}/publish`.

use super::params::json_body;
use super::{ApiError, ApiResult, AppState, blocking};
use crate::p2p::jobs::JobSpec;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
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

pub async fn dial(State(s): State<AppState>, body: Bytes) -> ApiResult<Json<Value>> {
    let req: DialBody = json_body(&body)?;
    let addr = req
        .addr
        .parse()
        .map_err(|e| ApiError::bad_request(format!("bad multiaddr {:?}: {e}", req.addr)))?;
    s.p2p
        .dial(addr)
        .await
        .map_err(|e| ApiError::bad_request(format!("cannot dial {}: {e}", req.addr)))?;
    Ok(Json(json!({})))
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

/// Each peer's conduct: requests served and refused, bytes sent, strikes, ban.
pub async fn peers(State(s): State<AppState>) -> Json<Value> {
    let connected = s.p2p.connected();
    let list: Vec<Value> = s
        .p2p
        .guard
        .conduct()
        .into_iter()
        .map(|(peer, c)| {
            json!({
                "peer": peer.to_string(),
                "connected": connected.contains(&peer),
                "requests_served": c.requests_served,
                "requests_refused": c.requests_refused,
                "bytes_sent": c.bytes_sent,
                "heads_rejected": c.heads_rejected,
                "strikes": c.strikes,
                "banned": c.banned,
            })
        })
        .collect();
    Json(Value::Array(list))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PullBody {
    uuid: String,
    #[serde(default)]
    peers: Vec<String>,
    instances: Option<Vec<String>>,
    region: Option<RegionBody>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegionBody {
    offset: [i32; 3],
    size: [u32; 3],
}

pub async fn pull(State(s): State<AppState>, body: Bytes) -> ApiResult<Json<Value>> {
    let req: PullBody = json_body(&body)?;
    let uuid = resolve_offered(&s, &req.uuid)?;
    for p in &req.peers {
        p.parse::<libp2p::PeerId>()
            .map_err(|_| ApiError::bad_request(format!("{p:?} is not a PeerId")))?;
    }
    if req.instances.as_ref().is_some_and(Vec::is_empty) {
        return Err(ApiError::bad_request(
            "\"instances\" is empty: omit it to pull every instance",
        ));
    }
    let region = match req.region {
        Some(r) => {
            let sub = Subvolume::new(r.offset, r.size)?;
            Some((sub.offset, sub.last()))
        }
        None => None,
    };
    let spec = JobSpec {
        uuid,
        peers: req.peers,
        instances: req.instances,
        region,
    };
    let job = s.p2p.jobs.start(&s.p2p, spec);
    Ok(Json(json!({ "job": job.to_string() })))
}

/// A full UUID, or a unique prefix of a version peers offer.
fn resolve_offered(s: &AppState, text: &str) -> ApiResult<String> {
    let t = text.trim().to_ascii_lowercase();
    if t.is_empty() || t.len() > 32 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::bad_request(format!(
            "{text:?} is not a UUID: expected 1 to 32 hexadecimal digits"
        )));
    }
    if t.len() == 32 {
        return Ok(t);
    }
    let matches: Vec<String> = s
        .p2p
        .offered()
        .iter()
        .map(|o| o.head.version.to_hex())
        .filter(|u| u.starts_with(&t))
        .collect();
    match matches.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(ApiError::not_found(format!(
            "no version offered by connected peers matches {t:?}"
        ))),
        _ => Err(ApiError::bad_request(format!(
            "UUID prefix {t:?} matches {} offered versions",
            matches.len()
        ))),
    }
}

pub async fn job(State(s): State<AppState>, Path(job): Path<String>) -> ApiResult<Json<Value>> {
    let id: u64 = job
        .parse()
        .map_err(|_| ApiError::bad_request(format!("job {job:?} is not a job number")))?;
    let st = s
        .p2p
        .jobs
        .status(id)
        .ok_or_else(|| ApiError::not_found(format!("no job {id}")))?;
    let mut v = json!({
        "state": st.state,
        "objects_fetched": st.objects_fetched,
        "bytes_fetched": st.bytes_fetched,
    });
    if let Some(e) = st.error {
        v["error"] = json!(e);
    }
    if let Some(t) = st.objects_total {
        v["objects_total"] = json!(t);
    }
    if let Some(t) = st.bytes_total {
        v["bytes_total"] = json!(t);
    }
    Ok(Json(v))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FollowBody {
    repo: String,
}

pub async fn follow(State(s): State<AppState>, body: Bytes) -> ApiResult<Json<Value>> {
    let req: FollowBody = json_body(&body)?;
    let t = req.repo.trim().to_ascii_lowercase();
    let repo = (t.len() == 32)
        .then(|| u128::from_str_radix(&t, 16).ok())
        .flatten()
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "{:?} is not a repo root UUID (32 hex digits)",
                req.repo
            ))
        })?;
    let list = s.p2p.jobs.follow(&s.p2p, Uuid(repo));
    Ok(Json(json!({ "following": list })))
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

fn sharing_json(s: &dvid_store::sharing::Sharing) -> Value {
    json!({
        "repo": s.repo.to_hex(),
        "shared_with": s.shared_with,
        "published": s.published.iter().map(Uuid::to_hex).collect::<Vec<_>>(),
    })
}
