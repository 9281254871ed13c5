//! Wall-clock time in the API's format (RFC 3339, UTC).

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// Formats a UTC time as RFC 3339 (e.g. `2026-11-22T08:15:00.123Z`).
pub fn rfc3339(t: OffsetDateTime) -> String {
    // Millisecond precision: enough to order events, and what clients expect.
    let t = t.replace_millisecond(t.millisecond()).unwrap_or(t);
    // Formatting a valid UTC OffsetDateTime with a well-known format only
    // fails for years outside 0..=9999, which `now()` never yields.
    t.format(&Rfc3339).unwrap_or_default()
}

pub fn now_rfc3339() -> String {
    rfc3339(now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_with_z() {
        let t = time::macros::datetime!(2026-11-22 08:15:00 UTC);
        assert_eq!(rfc3339(t), "2026-11-22T08:15:00Z");
        let t = time::macros::datetime!(2026-11-22 08:15:00.123456789 UTC);
        assert_eq!(rfc3339(t), "2026-11-22T08:15:00.123Z");
    }
}
