//! The `Idempotency-Key` header of the creating routes (`POST /orders`,
//! `POST /payments`) and the replay of a recorded answer. The record
//! itself is kept by `adapters::idempotency`.

use adapters::idempotency::{IdempotencyKey, StoredResponse};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};

use crate::error::ApiError;

pub const HEADER: &str = "idempotency-key";

/// The request's key, scoped to the caller and the operation, if it sent one.
pub fn key(
    req: &Request,
    user_id: &str,
    operation: &str,
) -> Result<Option<IdempotencyKey>, ApiError> {
    let Some(value) = req.headers().get(HEADER) else {
        return Ok(None);
    };
    // A value that is not visible ASCII fails the same check as a bad one.
    let key = value.to_str().unwrap_or("");
    Ok(Some(IdempotencyKey::parse(key, user_id, operation)?))
}

/// The recorded answer, sent again as it was.
pub fn replayed(answer: StoredResponse) -> Response<Body> {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    crate::http::stored_json(status, answer.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request_with(key: Option<&str>) -> Request {
        let mut builder = lambda_http::http::Request::builder();
        if let Some(k) = key {
            builder = builder.header(HEADER, k);
        }
        builder.body(Body::Empty).unwrap()
    }

    #[test]
    fn keys_are_scoped_to_user_and_operation() {
        let k = key(&request_with(Some("abc-1")), "u1", "createOrder")
            .unwrap()
            .unwrap();
        assert_eq!(k.scoped(), "u1#createOrder#abc-1");
        assert_eq!(key(&request_with(None), "u1", "x").unwrap(), None);
    }

    #[test]
    fn bad_keys_are_400() {
        for bad in ["has space".to_owned(), "x".repeat(129)] {
            let e = key(&request_with(Some(&bad)), "u1", "x").unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert_eq!(e.details["field"], "Idempotency-Key");
        }
    }
}
