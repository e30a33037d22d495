//! Cross-origin access, so browser clients (Neuroglancer) served from another origin can read a
//! node. By default any origin may read (GET, HEAD) and none may write; `--cors-origin` names the
//! origins that may read and write instead. Tokens are checked as for any request: CORS only
//! decides what a page may see, never who may change data.

use axum::http::{HeaderName, HeaderValue, Method, header, request::Parts};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The origins a node lets browsers call it from.
#[derive(Clone, Debug, Default)]
pub enum CorsOrigins {
    /// Any origin, for reads only.
    #[default]
    AnyForReads,
    /// These origins, for every method.
    Listed(Vec<HeaderValue>),
}

impl CorsOrigins {
    /// From `--cors-origin` values (none: any origin, reads only).
    pub fn from_args(origins: &[String]) -> Result<Self, String> {
        if origins.is_empty() {
            return Ok(Self::AnyForReads);
        }
        origins
            .iter()
            .map(|o| {
                let o = o.trim_end_matches('/');
                if !(o.starts_with("http://") || o.starts_with("https://")) || o.contains(' ') {
                    return Err(format!(
                        "--cors-origin {o:?}: expected an origin like https://viewer.example.org"
                    ));
                }
                HeaderValue::from_str(o).map_err(|e| format!("--cors-origin {o:?}: {e}"))
            })
            .collect::<Result<_, _>>()
            .map(Self::Listed)
    }

    pub fn layer(&self) -> CorsLayer {
        let layer = CorsLayer::new()
            .allow_methods([
                Method::GET,
                Method::HEAD,
                Method::POST,
                Method::PUT,
                Method::DELETE,
            ])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .expose_headers([
                header::CONTENT_LENGTH,
                header::CONTENT_ENCODING,
                HeaderName::from_static("www-authenticate"),
            ])
            .max_age(std::time::Duration::from_secs(3600))
            // Chrome asks before a public page (a hosted Neuroglancer) reads a local node.
            .allow_private_network(true);
        match self {
            Self::AnyForReads => layer.allow_origin(AllowOrigin::predicate(reading)),
            Self::Listed(origins) => layer.allow_origin(origins.clone()).allow_credentials(true),
        }
    }
}

/// Whether a request (or the request a preflight announces) only reads.
fn reading(_origin: &HeaderValue, parts: &Parts) -> bool {
    let method = if parts.method == Method::OPTIONS {
        parts
            .headers
            .get(header::ACCESS_CONTROL_REQUEST_METHOD)
            .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
            .unwrap_or(Method::GET)
    } else {
        parts.method.clone()
    };
    matches!(method, Method::GET | Method::HEAD)
}
