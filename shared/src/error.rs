//! The one error type every HTTP handler returns, and how it becomes the
//! conventions' body: `{"error": {"code", "message", ...details}}`.

use lambda_http::http::StatusCode;
use serde_json::{Map, Value};

/// An answer other than success, already classified for the client.
///
/// Handlers build these with the named constructors so that the status code
/// and the machine-readable `code` always agree across functions.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Extra fields placed beside `code` and `message` (e.g. `productId`).
    pub details: Map<String, Value>,
    /// Seconds for a `Retry-After` header (429 and 503 only).
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: Map::new(),
            retry_after: None,
        }
    }

    /// Adds a detail field next to `code` and `message`.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }

    /// 400 for a field that is present but wrong; `field` is named in the body.
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "INVALID_FIELD",
            format!("{field}: {}", message.into()),
        )
        .with("field", field)
    }

    pub fn malformed_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "MALFORMED_JSON", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "FORBIDDEN", message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            format!("request body exceeds {limit} bytes"),
        )
        .with("limitBytes", limit)
    }

    pub fn unsupported_media_type(got: &str) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            format!("Content-Type must be application/json, got {got:?}"),
        )
    }

    /// 415 for a body sent without any `Content-Type`.
    pub fn missing_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "Content-Type is missing: send the body as application/json",
        )
    }

    /// 503: a dependency is slow or unavailable; the client may retry.
    pub fn unavailable(message: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE_UNAVAILABLE",
            message,
        );
        e.retry_after = Some(1);
        e
    }

    /// 500: our fault. The message stays generic; the cause goes to the log.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            "an unexpected error occurred",
        )
    }

    /// The JSON body the conventions prescribe.
    pub fn body(&self) -> Value {
        let mut inner = Map::new();
        inner.insert("code".into(), Value::from(self.code));
        inner.insert("message".into(), Value::from(self.message.as_str()));
        for (k, v) in &self.details {
            inner.insert(k.clone(), v.clone());
        }
        serde_json::json!({ "error": inner })
    }
}

impl From<crate::db::DbError> for ApiError {
    fn from(err: crate::db::DbError) -> Self {
        use crate::db::DbError;
        match err {
            DbError::Unavailable(cause) => {
                tracing::warn!(%cause, "dependency unavailable");
                ApiError::unavailable("the database is temporarily unavailable, retry shortly")
            }
            other => {
                tracing::error!(error = %other, "database error");
                ApiError::internal()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_code_message_and_details() {
        let e = ApiError::not_found("PRODUCT_NOT_FOUND", "no product p1").with("productId", "p1");
        assert_eq!(
            e.body(),
            serde_json::json!({"error": {"code": "PRODUCT_NOT_FOUND", "message": "no product p1", "productId": "p1"}})
        );
    }

    #[test]
    fn invalid_field_names_the_field() {
        let e = ApiError::invalid_field("newStock", "must be >= 0");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.starts_with("newStock"));
        assert_eq!(e.details["field"], "newStock");
    }

    #[test]
    fn unavailable_carries_retry_after() {
        assert_eq!(ApiError::unavailable("x").retry_after, Some(1));
    }
}
