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

/// `t` plus `days` working days: weekends and `holidays` do not count, the time of day is kept
/// (a message sent on Friday afternoon with two working days is due on Tuesday afternoon; one
/// sent on Saturday, on Tuesday at the same time).
pub fn add_working_days(t: OffsetDateTime, days: u32, holidays: &[time::Date]) -> OffsetDateTime {
    let mut at = t;
    let mut left = days;
    while left > 0 {
        at += time::Duration::days(1);
        let day = at.date();
        let weekend = matches!(
            day.weekday(),
            time::Weekday::Saturday | time::Weekday::Sunday
        );
        if !weekend && !holidays.contains(&day) {
            left -= 1;
        }
    }
    at
}

/// A FHIR date or dateTime (`2026`, `2026-12`, `2026-12-04`, `2026-12-04T09:30:00+01:00`) as
/// the UTC calendar date (`YYYY-MM-DD`) on which it falls, taking the earliest day of a partial
/// date: the cautious reading for a release date, which decides when escalation starts.
/// `None` for anything else.
pub fn earliest_utc_date(value: &str) -> Option<String> {
    let v = value.trim();
    let date = |y: &str, m: &str, d: &str| -> Option<String> {
        let y: i32 = y.parse().ok()?;
        let m: u8 = m.parse().ok()?;
        let d: u8 = d.parse().ok()?;
        let month = time::Month::try_from(m).ok()?;
        time::Date::from_calendar_date(y, month, d)
            .ok()
            .map(|d| d.to_string())
    };
    match v.len() {
        4 => date(v, "1", "1"),
        7 if v.as_bytes()[4] == b'-' => date(&v[..4], &v[5..7], "1"),
        10 if v.as_bytes()[4] == b'-' && v.as_bytes()[7] == b'-' => {
            date(&v[..4], &v[5..7], &v[8..10])
        }
        _ => OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
            .ok()
            .map(|t| t.to_offset(time::UtcOffset::UTC).date().to_string()),
    }
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

    #[test]
    fn working_days_skip_weekends_and_holidays() {
        use time::macros::{date, datetime};
        let friday = datetime!(2026-12-18 15:00 UTC);
        assert_eq!(
            super::add_working_days(friday, 2, &[]),
            datetime!(2026-12-22 15:00 UTC)
        );
        let saturday = datetime!(2026-12-19 09:00 UTC);
        assert_eq!(
            super::add_working_days(saturday, 2, &[]),
            datetime!(2026-12-22 09:00 UTC)
        );
        // Christmas week: the 25th (Friday) and the 28th (substitute Boxing Day) are holidays.
        let holidays = [date!(2026 - 12 - 25), date!(2026 - 12 - 28)];
        assert_eq!(
            super::add_working_days(datetime!(2026-12-24 10:00 UTC), 2, &holidays),
            datetime!(2026-12-30 10:00 UTC)
        );
        assert_eq!(super::add_working_days(friday, 0, &[]), friday);
    }

    #[test]
    fn release_dates_become_the_earliest_utc_date_they_can_mean() {
        use super::earliest_utc_date as d;
        assert_eq!(d("2026-12-04").as_deref(), Some("2026-12-04"));
        assert_eq!(d("2026-12").as_deref(), Some("2026-12-01"));
        assert_eq!(d("2026").as_deref(), Some("2026-01-01"));
        assert_eq!(
            d("2026-12-04T00:30:00+02:00").as_deref(),
            Some("2026-12-03"),
            "half past midnight in UTC+2 is the 3rd in UTC"
        );
        assert_eq!(d("2026-12-04T09:30:00Z").as_deref(), Some("2026-12-04"));
        for bad in ["", "2026-13", "2026-02-30", "next week", "2026-12-04T09:30"] {
            assert_eq!(d(bad), None, "{bad}");
        }
    }
}
