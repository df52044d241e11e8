//! Time, injectable so that deadline and expiry logic is testable without sleeping.

use std::sync::Arc;

use time::OffsetDateTime;

pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> OffsetDateTime;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

pub type SharedClock = Arc<dyn Clock>;

/// RFC 3339 in UTC with exactly three fraction digits: `2026-11-22T04:31:00.120Z`. The width is
/// fixed because the store compares these strings (due times, leases, deadlines): a formatter
/// that drops trailing zeros (`…:01.5Z`, `…:01Z`) would order `01.5Z` before `01Z`.
pub fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&format)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::format_description::well_known::Rfc3339;

    #[test]
    fn stamps_have_a_fixed_width_so_that_they_order_as_text() {
        let whole = time::macros::datetime!(2026-11-30 16:40:01 UTC);
        let half = whole + time::Duration::milliseconds(500);
        assert_eq!(rfc3339(whole), "2026-11-30T16:40:01.000Z");
        assert_eq!(rfc3339(half), "2026-11-30T16:40:01.500Z");
        assert!(rfc3339(whole) < rfc3339(half));
        let back = OffsetDateTime::parse(&rfc3339(half), &Rfc3339).unwrap();
        assert_eq!(back, half);
    }
}
