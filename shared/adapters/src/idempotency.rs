//! `Idempotency-Key` for creating routes (`POST /orders`, `POST /payments`,
//! `POST /orders/{orderId}/refund-requests`).
//!
//! The record is written in the same transaction as the resource it
//! created, holding the response. A retry writes nothing: its transaction
//! fails on the record's condition, and the record itself comes back as the
//! cancellation reason (`ALL_OLD`), so a replay costs no extra round trip.
//! Only successes are recorded: a request that failed changed nothing, and
//! its retry is simply a new attempt.

use aws_sdk_dynamodb::types::{AttributeValue, Put, ReturnValuesOnConditionCheckFailure};
use domain::clock;
use domain::error::{FieldError, KeyReused};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::db::{DbError, Item};

/// How long a key is remembered (the conventions ask for at least 24 h).
pub const RETENTION_SECONDS: i64 = 24 * 3600;

/// A client's key, scoped to the caller and the operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    scoped: String,
}

impl IdempotencyKey {
    /// A client's `Idempotency-Key`: 1–128 visible ASCII characters.
    pub fn parse(key: &str, user_id: &str, operation: &str) -> Result<Self, FieldError> {
        if key.is_empty() || key.len() > 128 || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(FieldError::new(
                "Idempotency-Key",
                "must be 1 to 128 visible ASCII characters",
            ));
        }
        Ok(Self {
            scoped: format!("{user_id}#{operation}#{key}"),
        })
    }

    pub fn scoped(&self) -> &str {
        &self.scoped
    }
}

/// A fingerprint of what was asked, to tell a retry from a reuse of the key.
pub fn fingerprint(request: &impl Serialize) -> String {
    let canonical = serde_json::to_vec(request).unwrap_or_default();
    Sha256::digest(&canonical)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The record to put in the creating transaction.
pub fn record_put(
    table: &str,
    key: &IdempotencyKey,
    fingerprint: &str,
    status: u16,
    body: &str,
    now_epoch: i64,
) -> Result<Put, DbError> {
    Put::builder()
        .table_name(table)
        .item("idempotencyKey", AttributeValue::S(key.scoped.clone()))
        .item("fingerprint", AttributeValue::S(fingerprint.to_owned()))
        .item("statusCode", AttributeValue::N(status.to_string()))
        .item("responseBody", AttributeValue::S(body.to_owned()))
        .item(
            "expiresAtEpoch",
            AttributeValue::N((now_epoch + RETENTION_SECONDS).to_string()),
        )
        // TTL deletes lazily: a record past its time counts as absent.
        .condition_expression("attribute_not_exists(idempotencyKey) OR expiresAtEpoch < :now")
        .expression_attribute_values(":now", AttributeValue::N(now_epoch.to_string()))
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .build()
        .map_err(|e| DbError::Other(e.to_string()))
}

/// A stored response to send again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// The HTTP status the original answer had.
    pub status: u16,
    pub body: String,
}

/// Why a recorded answer cannot be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Reused(#[from] KeyReused),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// For a transaction whose idempotency record was its last item: when that
/// record's condition failed, the answer to replay (or the 409 for a reused
/// key); `None` when the cancellation had another cause.
pub fn replay_from(
    reasons: &[aws_sdk_dynamodb::types::CancellationReason],
    fingerprint: &str,
) -> Option<Result<StoredResponse, ReplayError>> {
    let reason = reasons.last().filter(|r| crate::db::condition_failed(r))?;
    Some(replay(reason.item()?, fingerprint))
}

/// The answer recorded for `key`, read before anything else is checked: a
/// retry gets the original answer whatever happened to the resource since
/// (for a payment, the order may have been paid or cancelled meanwhile).
/// `None` when the key is new or past its retention.
pub async fn recorded(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    key: &IdempotencyKey,
    fingerprint: &str,
) -> Result<Option<StoredResponse>, ReplayError> {
    let now_epoch = clock::now().unix_timestamp();
    let out = client
        .get_item()
        .table_name(table)
        .key("idempotencyKey", AttributeValue::S(key.scoped.clone()))
        .consistent_read(true)
        .send()
        .await
        .map_err(DbError::from)?;
    let Some(record) = out.item else {
        return Ok(None);
    };
    let live = crate::db::number(&record, "expiresAtEpoch").is_some_and(|t| t >= now_epoch);
    if !live {
        return Ok(None);
    }
    replay(&record, fingerprint).map(Some)
}

/// The answer for a retry that met `record`: the original response if the
/// request is the same, else 409 `IDEMPOTENCY_KEY_REUSED`.
pub fn replay(record: &Item, fingerprint: &str) -> Result<StoredResponse, ReplayError> {
    let text = |name: &str| match record.get(name) {
        Some(AttributeValue::S(s)) => Some(s.as_str()),
        Some(AttributeValue::N(n)) => Some(n.as_str()),
        _ => None,
    };
    if text("fingerprint") != Some(fingerprint) {
        return Err(KeyReused.into());
    }
    let status = text("statusCode").and_then(|s| s.parse::<u16>().ok());
    match (status, text("responseBody")) {
        (Some(status), Some(body)) => Ok(StoredResponse {
            status,
            body: body.to_owned(),
        }),
        _ => Err(DbError::Corrupt("idempotency record without a response".into()).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_scoped_to_user_and_operation() {
        let k = IdempotencyKey::parse("abc-1", "u1", "createOrder").unwrap();
        assert_eq!(k.scoped(), "u1#createOrder#abc-1");
    }

    #[test]
    fn bad_keys_name_the_header() {
        for bad in ["has space".to_owned(), "x".repeat(129), String::new()] {
            let e = IdempotencyKey::parse(&bad, "u1", "x").unwrap_err();
            assert_eq!(e.field, "Idempotency-Key");
        }
    }

    #[test]
    fn replay_same_and_different() {
        let record: Item = [
            ("fingerprint".to_owned(), AttributeValue::S("f1".into())),
            ("statusCode".to_owned(), AttributeValue::N("201".into())),
            (
                "responseBody".to_owned(),
                AttributeValue::S("{\"orderId\":\"o1\"}".into()),
            ),
        ]
        .into();
        let same = replay(&record, "f1").unwrap();
        assert_eq!(same.status, 201);
        assert_eq!(same.body, "{\"orderId\":\"o1\"}");
        assert!(matches!(
            replay(&record, "f2"),
            Err(ReplayError::Reused(KeyReused))
        ));
    }

    #[test]
    fn fingerprints_differ_with_content() {
        assert_eq!(fingerprint(&("a", 1)), fingerprint(&("a", 1)));
        assert_ne!(fingerprint(&("a", 1)), fingerprint(&("a", 2)));
        assert_eq!(fingerprint(&1).len(), 64);
    }
}
