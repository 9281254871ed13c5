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

/// Why a provider's decimal amount was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an amount with exactly two decimals, such as \"168.00\"")]
pub struct BadDecimal(pub String);

/// An amount in minor units as the decimal string providers exchange
/// (Alipay's `total_amount`, "168.00" for 16800 fen), built digit by digit:
/// a float would turn 0.29 into 0.28999….
pub fn to_decimal(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

/// The minor units of a provider's decimal string with exactly two
/// decimals (what Alipay sends), never through a float. Refuses signs,
/// spaces, exponents, other precisions and amounts above [`MAX_AMOUNT`].
pub fn parse_decimal(text: &str) -> Result<i64, BadDecimal> {
    let bad = || BadDecimal(text.to_owned());
    let (units, cents) = text.split_once('.').ok_or_else(bad)?;
    let digits = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
    };
    if !digits(units, 12) || cents.len() != 2 || !digits(cents, 2) {
        return Err(bad());
    }
    // Leading zeros are a different spelling of another string: refused, so
    // that one amount has one text (and "007.00" cannot pass a comparison).
    if units.len() > 1 && units.starts_with('0') {
        return Err(bad());
    }
    let units: i64 = units.parse().map_err(|_| bad())?;
    let cents: i64 = cents.parse().map_err(|_| bad())?;
    let minor = units
        .checked_mul(100)
        .and_then(|u| u.checked_add(cents))
        .ok_or_else(bad)?;
    if minor > MAX_AMOUNT {
        return Err(bad());
    }
    Ok(minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_from_and_to_minor_units() {
        for (minor, text) in [
            (0, "0.00"),
            (1, "0.01"),
            (10, "0.10"),
            (29, "0.29"),
            (16800, "168.00"),
            (123_456_789, "1234567.89"),
            (MAX_AMOUNT, "1000000000.00"),
        ] {
            assert_eq!(to_decimal(minor), text);
            assert_eq!(parse_decimal(text), Ok(minor), "{text}");
        }
        assert_eq!(to_decimal(-5), "-0.05");
        for bad in [
            "",
            "1",
            "1.",
            ".50",
            "1.5",
            "1.500",
            "-1.00",
            "+1.00",
            " 1.00",
            "1.00 ",
            "1e2.00",
            "01.00",
            "1,00",
            "1.0a",
            "1000000000.01",
            "99999999999999.00",
            "１.00",
        ] {
            assert!(parse_decimal(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn currency_codes() {
        assert!(validate_currency("CNY").is_ok());
        for bad in ["cny", "CN", "CNYY", "C1Y", ""] {
            assert_eq!(validate_currency(bad).unwrap_err().field, "currency");
        }
    }
}
