//! Wall-clock time in the API's format: RFC 3339, UTC, always with exactly
//! three fractional digits, so that stored timestamps sort as strings in
//! time order (they are sort keys of the orders' indexes).

use time::OffsetDateTime;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;

const FORMAT: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// Formats a time as `2026-11-22T08:15:00.123Z` (converted to UTC first).
pub fn rfc3339(t: OffsetDateTime) -> String {
    // Only years outside 0..=9999 fail to format, which real clocks never give.
    t.to_offset(time::UtcOffset::UTC)
        .format(FORMAT)
        .unwrap_or_default()
}

pub fn now_rfc3339() -> String {
    rfc3339(now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn fixed_width_utc_with_milliseconds() {
        assert_eq!(
            rfc3339(datetime!(2026-11-22 08:15:00 UTC)),
            "2026-11-22T08:15:00.000Z"
        );
        assert_eq!(
            rfc3339(datetime!(2026-11-22 08:15:00.123456789 UTC)),
            "2026-11-22T08:15:00.123Z"
        );
        assert_eq!(
            rfc3339(datetime!(2026-11-22 16:15:00 +08:00)),
            "2026-11-22T08:15:00.000Z"
        );
    }

    #[test]
    fn string_order_is_time_order() {
        let a = rfc3339(datetime!(2026-11-22 08:15:00 UTC));
        let b = rfc3339(datetime!(2026-11-22 08:15:00.001 UTC));
        let c = rfc3339(datetime!(2026-11-22 08:15:01 UTC));
        assert!(a < b && b < c);
        time::OffsetDateTime::parse(&a, &time::format_description::well_known::Rfc3339).unwrap();
    }
}
