//! The one error type of `dvid-store`. Variants say whose fault a failure is, so the HTTP layer can
//! answer a client's mistake with a 4xx and keep 5xx for the node's own trouble.

use thiserror::Error;

/// Result alias for the store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Everything that can go wrong in the store.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The request itself is malformed (bad UUID, size, settings, body length...).
    #[error("{0}")]
    BadRequest(String),
    /// A named thing (repo, version, instance, key) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A UUID prefix matches more than one version.
    #[error("UUID prefix {prefix:?} is ambiguous: it matches {matches} versions")]
    Ambiguous { prefix: String, matches: usize },
    /// A write or child creation was refused because of a version's lock state.
    #[error("{0}")]
    Locked(String),
    /// A merge found the same key changed differently on several parents.
    #[error("merge conflict in instance {instance:?}: {} key(s) changed on more than one parent: {}", keys.len(), keys.join(", "))]
    MergeConflict { instance: String, keys: Vec<String> },
    /// The request conflicts with what this node holds or may do (say, it holds no labels to
    /// hand out); the message says what.
    #[error("{0}")]
    Conflict(String),
    /// Stored bytes fail to decode or to match their hash: the store is damaged.
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// The storage engine failed.
    #[error("storage engine: {0}")]
    Engine(String),
}

impl StoreError {
    /// True when the error is the caller's mistake rather than the node's.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            Self::BadRequest(_)
                | Self::NotFound(_)
                | Self::Ambiguous { .. }
                | Self::Locked(_)
                | Self::MergeConflict { .. }
                | Self::Conflict(_)
        )
    }
}

impl From<fjall::Error> for StoreError {
    fn from(e: fjall::Error) -> Self {
        Self::Engine(e.to_string())
    }
}

/// Shorthand for a `BadRequest` with a formatted message.
#[macro_export]
macro_rules! bad_request {
    ($($arg:tt)*) => { $crate::StoreError::BadRequest(format!($($arg)*)) };
}
