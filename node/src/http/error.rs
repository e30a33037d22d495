//! HTTP errors: a status and a plain-text message saying what was wrong, as DVID answers.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use dvid_store::StoreError;

/// An error answered to the client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: message.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let status = match &e {
            StoreError::BadRequest(_) | StoreError::Ambiguous { .. } | StoreError::Locked(_) => {
                StatusCode::BAD_REQUEST
            }
            StoreError::NotFound(_) => StatusCode::NOT_FOUND,
            StoreError::MergeConflict { .. } | StoreError::Conflict(_) => StatusCode::CONFLICT,
            StoreError::Corrupt(_) | StoreError::Engine(_) => {
                tracing::error!(error = %e, "store failure");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        Self {
            status,
            message: e.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = self.message;
        body.push('\n');
        (self.status, body).into_response()
    }
}
