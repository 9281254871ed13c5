//! Per-user rate limits: a token bucket kept in DynamoDB with conditional
//! writes, in its GCRA form (one timestamp per bucket, the "theoretical
//! arrival time" `tat`). A user may make `burst` requests at once and then
//! one every `interval`; beyond that the answer is 429 with `Retry-After`.
//!
//! A request at `now` is allowed when `max(tat, now) - now <= (burst - 1) ×
//! interval`, and moves `tat` to `max(tat, now) + interval`. DynamoDB has no
//! `max()`, so the write guesses which side of `now` the bucket is on: an
//! idle bucket (`tat <= now`, the common case) is one conditional write
//! setting `tat = now + interval`; a busy one is an increment `tat = tat +
//! interval` conditional on `now < tat <= now + tolerance`. Neither names
//! the exact stored value, so any number of racing requests inside the
//! burst all succeed (DynamoDB serialises the increments); a write fails
//! only when the bucket changed sides (at most once per burst: idle to busy)
//! or ran out, and never lets one too many through.
//!
//! createOrder puts the bucket's write into its own transaction (no extra
//! round trip); other operations call [`RateLimit::acquire`].

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure, Update};

use crate::db::{DbError, Item, build_err, n, s};
use domain::error::{RateLimited, StoreError};

/// What the last write assumed about the bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guess {
    /// Full (or new): `tat <= now`.
    Idle,
    /// Partly used, with a token left: `now < tat <= now + tolerance`.
    Busy,
}

/// After a failed write: try again with a better guess, or refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Retry(Guess),
    Limited { retry_after_ms: i64 },
}

#[derive(Debug, Clone)]
pub struct RateLimit {
    pub table: String,
    /// The operation, part of the bucket's key (`user#operation`).
    pub operation: &'static str,
    pub interval_ms: i64,
    pub burst: i64,
}

/// Each failed write moves the guess one way for good within a burst (idle
/// to busy, busy to limited), so a few rounds always settle it; more only
/// if the clock moves the bucket back and forth at its edge.
const MAX_ATTEMPTS: u32 = 6;

impl RateLimit {
    /// `per_minute` requests a minute after a burst of `burst`; reads
    /// `<prefix>_PER_MINUTE` and `<prefix>_BURST`, 0 or absent = no limit.
    pub fn from_env(table: &str, operation: &'static str, prefix: &str) -> Option<Self> {
        let read = |name: String| -> i64 {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Self::new(
            table,
            operation,
            read(format!("{prefix}_PER_MINUTE")),
            read(format!("{prefix}_BURST")),
        )
    }

    pub fn new(table: &str, operation: &'static str, per_minute: i64, burst: i64) -> Option<Self> {
        (per_minute > 0 && burst > 0).then(|| Self {
            table: table.to_owned(),
            operation,
            interval_ms: (60_000 / per_minute).max(1),
            burst,
        })
    }

    fn tolerance_ms(&self) -> i64 {
        (self.burst - 1) * self.interval_ms
    }

    fn key(&self, user_id: &str) -> String {
        format!("{user_id}#{}", self.operation)
    }

    /// The conditional write that takes one token, under `guess`.
    pub fn take(&self, user_id: &str, guess: Guess, now_ms: i64) -> Result<Update, DbError> {
        let update = Update::builder()
            .table_name(&self.table)
            .key("bucketId", s(&self.key(user_id)))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":interval", n(self.interval_ms))
            // The item is useless once the bucket is full again: kept for
            // the longest the bucket can be busy, plus a minute.
            .expression_attribute_values(
                ":exp",
                n((now_ms + self.tolerance_ms() + self.interval_ms) / 1000 + 60),
            );
        let update = match guess {
            Guess::Idle => update
                .update_expression("SET tat = :now + :interval, expiresAtEpoch = :exp")
                .condition_expression("attribute_not_exists(tat) OR tat <= :now"),
            Guess::Busy => update
                .update_expression("SET tat = tat + :interval, expiresAtEpoch = :exp")
                .condition_expression("tat > :now AND tat <= :last")
                .expression_attribute_values(":last", n(now_ms + self.tolerance_ms())),
        };
        update
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_err)
    }

    /// What to do after the write's condition failed; `stored` is the item
    /// it failed on (ALL_OLD).
    pub fn after_failure(&self, stored: Option<&Item>, now_ms: i64) -> Next {
        let tat = match stored.and_then(|i| i.get("tat")) {
            Some(AttributeValue::N(v)) => v.parse::<i64>().unwrap_or(now_ms),
            _ => return Next::Retry(Guess::Idle),
        };
        if tat <= now_ms {
            return Next::Retry(Guess::Idle);
        }
        let over = tat - now_ms - self.tolerance_ms();
        if over > 0 {
            Next::Limited {
                retry_after_ms: over,
            }
        } else {
            Next::Retry(Guess::Busy)
        }
    }

    /// Takes a token with its own writes (one in the common case).
    pub async fn acquire(&self, client: &Client, user_id: &str) -> Result<(), Throttled> {
        let mut guess = Guess::Idle;
        for _ in 0..MAX_ATTEMPTS {
            let now_ms = now_ms();
            let update = self
                .take(user_id, guess, now_ms)
                .map_err(StoreError::from)?;
            let result = client
                .update_item()
                .table_name(update.table_name())
                .set_key(Some(update.key().clone()))
                .update_expression(update.update_expression())
                .set_condition_expression(update.condition_expression().map(str::to_owned))
                .set_expression_attribute_values(update.expression_attribute_values().cloned())
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send()
                .await;
            let stored = match result {
                Ok(_) => return Ok(()),
                Err(err) => match err.as_service_error() {
                    Some(e) if e.is_conditional_check_failed_exception() => {
                        match e {
                            aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(c) => c.item().cloned(),
                            _ => None,
                        }
                    }
                    _ => return Err(StoreError::from(DbError::from(err)).into()),
                },
            };
            match self.after_failure(stored.as_ref(), now_ms) {
                Next::Retry(next) => guess = next,
                Next::Limited { retry_after_ms } => {
                    return Err(RateLimited { retry_after_ms }.into());
                }
            }
        }
        Err(StoreError::Busy("too many concurrent requests for this user; retry shortly").into())
    }
}

pub fn now_ms() -> i64 {
    (domain::clock::now().unix_timestamp_nanos() / 1_000_000) as i64
}

/// Why a token was not taken.
#[derive(Debug, thiserror::Error)]
pub enum Throttled {
    #[error(transparent)]
    Limited(#[from] RateLimited),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit() -> RateLimit {
        // 60 a minute (one a second), bursts of 3.
        RateLimit::new("t", "createOrder", 60, 3).unwrap()
    }

    fn stored(tat: i64) -> Item {
        [("tat".to_owned(), n(tat))].into()
    }

    #[test]
    fn the_bucket_allows_a_burst_then_one_per_interval() {
        let l = limit();
        let now = 1_000_000;
        assert_eq!(l.after_failure(None, now), Next::Retry(Guess::Idle));
        assert_eq!(
            l.after_failure(Some(&stored(now - 5)), now),
            Next::Retry(Guess::Idle)
        );
        // Two taken (tat = now + 2 s): a third fits the burst of 3.
        assert_eq!(
            l.after_failure(Some(&stored(now + 2000)), now),
            Next::Retry(Guess::Busy)
        );
        // Three taken: the fourth waits one interval.
        assert_eq!(
            l.after_failure(Some(&stored(now + 3000)), now),
            Next::Limited {
                retry_after_ms: 1000
            }
        );
        assert!(RateLimit::new("t", "x", 0, 3).is_none(), "0 = no limit");
    }
}
