//! DVID's HTTP API over axum. Handlers parse and check the request, then run the store call on a
//! blocking thread (fjall blocks), and answer with DVID's JSON shapes or a 4xx that says what was wrong.

mod auth;
mod cors;
mod diff;
mod error;
mod formats;
pub(crate) mod info;
mod p2p;
mod params;
mod repo;
mod types;

pub use auth::Tokens;
pub use cors::CorsOrigins;
pub use error::{ApiError, ApiResult};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header::CONTENT_LENGTH;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use dvid_store::Store;
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::Instant;

/// HTTP settings.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Largest request body, and largest voxel response, in bytes; beyond it: 413.
    pub max_request_bytes: usize,
    /// Bearer tokens that requests need, if any.
    pub tokens: Tokens,
    /// Origins browsers may call the node from.
    pub cors: CorsOrigins,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_request_bytes: 1 << 30,
            tokens: Tokens::default(),
            cors: CorsOrigins::default(),
        }
    }
}

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    pub p2p: crate::p2p::P2p,
    pub config: HttpConfig,
    pub started: Instant,
    pub started_at: String,
}

/// The whole API.
pub fn router(store: Arc<Store>, p2p: crate::p2p::P2p, config: HttpConfig) -> Router {
    let state = AppState {
        store,
        p2p,
        started: Instant::now(),
        started_at: dvid_store::catalog::now(),
        config: config.clone(),
    };
    let routers = types::Routers::new(&state);
    let api = Router::new()
        .route("/api/help", get(info::help))
        .route("/api/openapi.json", get(info::openapi))
        .route("/api/server/info", get(info::server_info))
        .route("/api/server/types", get(info::server_types))
        .route("/api/server/token", get(auth::server_token))
        .route("/api/repos/info", get(info::repos_info))
        .route("/api/repos", post(repo::create_repo))
        .route("/api/repo/{uuid}/info", get(info::repo_info))
        .route("/api/repo/{uuid}/instance", post(repo::create_instance))
        .route(
            "/api/repo/{uuid}/log",
            get(repo::get_repo_log).post(repo::post_repo_log),
        )
        .route("/api/repo/{uuid}/merge", post(repo::merge))
        .route(
            "/api/repo/{uuid}/branch-versions/{branch}",
            get(info::branch_versions),
        )
        .route(
            "/api/node/{uuid}/commit",
            get(repo::get_commit).post(repo::commit),
        )
        .route("/api/node/{uuid}/branch", post(repo::branch))
        .route("/api/node/{uuid}/newversion", post(repo::new_version))
        .route(
            "/api/node/{uuid}/log",
            get(repo::get_node_log).post(repo::post_node_log),
        )
        .route(
            "/api/node/{uuid}/note",
            get(repo::get_note).post(repo::post_note),
        )
        .route("/api/node/{uuid}/publish", post(p2p::publish))
        .route("/api/node/{uuid}/unpublish", post(p2p::unpublish))
        .route("/api/repo/{uuid}/share", post(p2p::share))
        .route("/api/repo/{uuid}/unshare", post(p2p::unshare))
        .route("/api/repo/{uuid}/sharing", get(p2p::sharing))
        .route("/api/p2p/info", get(p2p::info))
        .route("/api/p2p/dial", post(p2p::dial))
        .route("/api/p2p/heads", get(p2p::heads))
        .route("/api/p2p/conflicts", get(p2p::conflicts))
        .route("/api/p2p/peers", get(p2p::peers))
        .route("/api/p2p/pull", post(p2p::pull))
        .route("/api/p2p/jobs", get(p2p::jobs_list))
        .route("/api/p2p/jobs/{job}", get(p2p::job))
        .route("/api/p2p/jobs/{job}/cancel", post(p2p::cancel_job))
        .route("/api/p2p/follow", post(p2p::follow).get(p2p::follows))
        .route("/api/p2p/unfollow", post(p2p::unfollow))
        .route("/api/p2p/push", post(p2p::push))
        .route("/api/p2p/push/{peer}/{uuid}", get(p2p::push_status))
        .route("/api/node/{uuid}/{data}/info", get(info::instance_info))
        .route("/api/node/{uuid}/{data}/diff/{other}", get(diff::diff))
        // Every other path under an instance goes to its type's router (types/).
        .route(
            "/api/node/{uuid}/{data}/{*rest}",
            any(move |s: State<AppState>, req: Request| types::dispatch(routers, s, req)),
        )
        .fallback(info::not_found)
        .layer(DefaultBodyLimit::max(config.max_request_bytes))
        .layer(middleware::from_fn_with_state(
            config.max_request_bytes,
            refuse_oversized,
        ))
        .layer(middleware::from_fn_with_state(
            config.tokens.clone(),
            auth::require_token,
        ))
        .with_state(state);
    // Outside the routes, so it sees the answers whole (axum adds a 405's Allow header last).
    // CORS is outermost: preflights carry no token and are answered before the token check, and
    // every answer, refusals included, carries the headers a page needs to read it.
    Router::new()
        .fallback_service(api)
        .layer(middleware::from_fn(finish_response))
        .layer(config.cors.layer())
}

/// Finishes every answer the same way: a 405 says which methods the path takes (axum sends it
/// empty), and text and JSON bodies end with a newline, so curl's output does not run into the
/// prompt. Binary bodies (voxels, values) are left alone.
async fn finish_response(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    if resp.status() == axum::http::StatusCode::METHOD_NOT_ALLOWED {
        let allowed = resp
            .headers()
            .get(axum::http::header::ALLOW)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let mut answer = ApiError {
            status: axum::http::StatusCode::METHOD_NOT_ALLOWED,
            message: format!("{method} is not allowed on {path}; it takes: {allowed}"),
        }
        .into_response();
        if let Ok(v) = axum::http::HeaderValue::from_str(&allowed) {
            answer.headers_mut().insert(axum::http::header::ALLOW, v);
        }
        return answer;
    }
    let textual = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json") || t.starts_with("text/plain"));
    if !textual || method == axum::http::Method::HEAD {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    // These bodies were built in memory (JSON, messages): collecting them again costs a copy.
    let Ok(mut bytes) = axum::body::to_bytes(body, usize::MAX).await.map(Vec::from) else {
        parts.status = axum::http::StatusCode::INTERNAL_SERVER_ERROR;
        return Response::from_parts(parts, axum::body::Body::from("the response body failed\n"));
    };
    if bytes.last() != Some(&b'\n') {
        bytes.push(b'\n');
    }
    parts.headers.remove(CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(bytes))
}

/// Most bytes of an oversized body read and dropped before answering 413.
const MAX_DRAIN_BYTES: usize = 64 << 20;

/// Answers 413 to a body declared larger than the limit. It first drains the body (up to
/// [`MAX_DRAIN_BYTES`]) so that a client still sending reads the answer instead of a connection
/// reset: closing a socket with unread data makes the kernel reset it.
async fn refuse_oversized(State(limit): State<usize>, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let Some(declared) = declared.filter(|&n| n > limit as u64) else {
        return next.run(req).await;
    };
    let mut body = req.into_body();
    let mut drained = 0;
    while drained < MAX_DRAIN_BYTES {
        match body.frame().await {
            Some(Ok(frame)) => drained += frame.data_ref().map_or(0, |d| d.len()),
            _ => break,
        }
    }
    ApiError::too_large(format!(
        "request body of {declared} bytes exceeds this node's limit of {limit} bytes (--max-request-bytes)"
    ))
    .into_response()
}

/// Runs a store call on a blocking thread.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> dvid_store::Result<T> + Send + 'static,
) -> ApiResult<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(ApiError::from),
        Err(e) => {
            tracing::error!(error = %e, "store task failed");
            Err(ApiError {
                status: axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                message: format!("internal error: {e}"),
            })
        }
    }
}
