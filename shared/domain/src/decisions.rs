//! An admin's decision on something waiting for one: a refund request, a
//! withdrawal under review.

use serde::{Deserialize, Serialize};

use crate::error::FieldError;

pub const MAX_REASON_CHARS: usize = 500;

/// An admin's decision on a refund request or a withdrawal
/// (`POST /admin/…/{id}/decision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Decision {
    Approve,
    Reject,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DecisionBody {
    pub decision: Decision,
    #[serde(default)]
    pub reason: Option<String>,
}

impl DecisionBody {
    /// A rejection names its reason (the shopper reads it); an approval may.
    pub fn validate(&self) -> Result<Option<String>, FieldError> {
        let reason = self
            .reason
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty());
        if self.decision == Decision::Reject && reason.is_none() {
            return Err(FieldError::new("reason", "is required to reject"));
        }
        if reason.is_some_and(|r| r.chars().count() > MAX_REASON_CHARS) {
            return Err(FieldError::new(
                "reason",
                format!("must be at most {MAX_REASON_CHARS} characters"),
            ));
        }
        Ok(reason.map(str::to_owned))
    }
}
