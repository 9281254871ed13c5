//! What every context's validation answers: the field that is wrong and why.
//! The HTTP edge turns it into a 400 naming the field.

/// A request field that is present but wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A store could not answer. The domain does not know which database sits
/// behind a port, only whether a retry may help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Slow or throttled: the caller may retry shortly.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// Too many concurrent changes to the same items to settle within the
    /// attempts allowed; the message says what (the caller may retry).
    #[error("{0}")]
    Busy(&'static str),
    /// Anything else: ours to fix.
    #[error("store failure: {0}")]
    Failed(String),
}

/// The caller is over a per-user rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("rate limited; a token is back in {retry_after_ms} ms")]
pub struct RateLimited {
    pub retry_after_ms: i64,
}

impl RateLimited {
    /// Whole seconds until a token is back, at least one (`Retry-After`).
    pub fn retry_after_seconds(self) -> i64 {
        ((self.retry_after_ms + 999) / 1000).max(1)
    }
}

/// An `Idempotency-Key` already answered a different request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this Idempotency-Key was already used with a different request body")]
pub struct KeyReused;
