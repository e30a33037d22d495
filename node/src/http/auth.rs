//! Bearer tokens: with `--write-token`, every request that changes something needs it; with
//! `--read-token`, reads need it (or the write token). Without tokens the API is open. A browser
//! sends its token as the `dvid_token` cookie (set by the login proxy of an https setup, as DVID's
//! is), and a viewer gets it back from `/api/server/token` to send as a bearer token.

use super::ApiError;
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The tokens a node asks for.
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    pub write: Option<String>,
    pub read: Option<String>,
}

impl Tokens {
    /// Whether a request with this method and bearer token may go on.
    fn admits(&self, method: &Method, bearer: Option<&str>) -> Result<(), &'static str> {
        let matches = |want: &Option<String>| {
            // Comparing hashes keeps the comparison's time independent of where the bytes differ.
            matches!((want, bearer), (Some(w), Some(b)) if blake3::hash(w.as_bytes()) == blake3::hash(b.as_bytes()))
        };
        let reading = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        if reading {
            if self.read.is_none() || matches(&self.read) || matches(&self.write) {
                return Ok(());
            }
            return Err("this node needs a read token: send Authorization: Bearer TOKEN");
        }
        if self.write.is_none() || matches(&self.write) {
            return Ok(());
        }
        Err(
            "this request changes data and needs this node's write token: send Authorization: Bearer TOKEN",
        )
    }
}

/// The name of the cookie that carries a browser's token.
const TOKEN_COOKIE: &str = "dvid_token";

/// The token a request carries: its bearer token, else its `dvid_token` cookie.
fn presented(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    bearer.or_else(|| {
        headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| c.trim().strip_prefix(TOKEN_COOKIE)?.strip_prefix('='))
            .map(str::trim)
    })
}

/// `GET /api/server/token`: the token this request was admitted with, as text (empty when the
/// node needs none), for viewers that then send it as `Authorization: Bearer` (Neuroglancer's
/// DVID source over https asks here). Sent as bytes (`application/octet-stream`), so that no
/// newline is added to it as to text answers: the token goes into a header as it is.
pub async fn server_token(headers: HeaderMap) -> Response {
    let token = presented(&headers).unwrap_or("").to_string();
    ([(CONTENT_TYPE, "application/octet-stream")], token).into_response()
}

/// Refuses requests that lack the token their method needs, with 401.
pub async fn require_token(State(tokens): State<Tokens>, req: Request, next: Next) -> Response {
    let bearer = presented(req.headers());
    match tokens.admits(req.method(), bearer) {
        Ok(()) => next.run(req).await,
        Err(why) => {
            let message = match bearer {
                Some(_) => format!("wrong token: {why}"),
                None => why.to_string(),
            };
            let mut resp = ApiError {
                status: StatusCode::UNAUTHORIZED,
                message,
            }
            .into_response();
            resp.headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            resp
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(write: Option<&str>, read: Option<&str>) -> Tokens {
        Tokens {
            write: write.map(Into::into),
            read: read.map(Into::into),
        }
    }

    #[test]
    fn auth_tokens_gate_by_method() {
        let open = tokens(None, None);
        assert!(open.admits(&Method::POST, None).is_ok());
        let w = tokens(Some("w"), None);
        assert!(w.admits(&Method::GET, None).is_ok());
        assert!(w.admits(&Method::POST, None).is_err());
        assert!(w.admits(&Method::DELETE, Some("x")).is_err());
        assert!(w.admits(&Method::PUT, Some("w")).is_ok());
        let rw = tokens(Some("w"), Some("r"));
        assert!(rw.admits(&Method::GET, None).is_err());
        assert!(rw.admits(&Method::GET, Some("r")).is_ok());
        assert!(rw.admits(&Method::HEAD, Some("w")).is_ok());
        assert!(rw.admits(&Method::POST, Some("r")).is_err());
    }

    #[test]
    fn auth_token_from_bearer_or_cookie() {
        let mut h = HeaderMap::new();
        assert_eq!(presented(&h), None);
        h.insert(
            COOKIE,
            HeaderValue::from_static("a=1; dvid_token=abc ; b=2"),
        );
        assert_eq!(presented(&h), Some("abc"));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer xyz"));
        assert_eq!(presented(&h), Some("xyz"));
    }
}
