//! Money: integer minor units (fen, cents) and ISO 4217 currency codes.
//! Amounts are never floats anywhere in the system.

use crate::error::FieldError;

/// Largest price or amount in minor units (1 billion in major units): far
/// above any real price, and low enough that the largest order (20 lines of
/// 1,000 units, 2 × 10^15) stays below 2^53, the largest integer a
/// JavaScript client reads exactly.
pub const MAX_AMOUNT: i64 = 100_000_000_000;

/// The largest amount a client can see, 2^53 − 1: beyond it a JavaScript
/// number is no longer exact.
pub const MAX_EXACT_IN_JSON: i64 = (1 << 53) - 1;

/// The currency of a product, rule set or balance that names none.
pub const DEFAULT_CURRENCY: &str = "CNY";

/// `#[serde(default = "crate::money::default_currency")]` for every shape
/// that may omit its currency.
pub fn default_currency() -> String {
    DEFAULT_CURRENCY.to_owned()
}

/// Checks an ISO 4217-shaped currency code.
pub fn validate_currency(code: &str) -> Result<(), FieldError> {
    if code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(FieldError::new(
            "currency",
            format!("must be a three-letter ISO 4217 code such as CNY, got {code:?}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_codes() {
        assert!(validate_currency("CNY").is_ok());
        for bad in ["cny", "CN", "CNYY", "C1Y", ""] {
            assert_eq!(validate_currency(bad).unwrap_err().field, "currency");
        }
    }
}
