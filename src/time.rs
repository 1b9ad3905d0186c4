//! Time conversions: KAZOO's Gregorian seconds, Unix microseconds, and the report day in an
//! IANA time zone (real tz data from chrono-tz, so DST days come out right).

use chrono::{DateTime, Datelike};
use chrono_tz::Tz;

/// Seconds from 0000-01-01 (Gregorian) to 1970-01-01: `UNIX_EPOCH_IN_GREGORIAN` in KAZOO.
pub(crate) const UNIX_EPOCH_IN_GREGORIAN: i64 = 62_167_219_200;

/// Days from 0001-01-01 (chrono's CE day 1) to 1970-01-01.
pub(crate) const UNIX_EPOCH_DAYS_FROM_CE: i32 = 719_163;

/// Gregorian seconds to Unix microseconds; `None` when it does not fit.
pub(crate) fn gregorian_to_unix_micros(greg: i64) -> Option<i64> {
    greg.checked_sub(UNIX_EPOCH_IN_GREGORIAN)?
        .checked_mul(1_000_000)
}

/// The time zone that decides which calendar day a leg belongs to.
#[derive(Debug, Clone, Copy)]
pub struct ReportTz(pub Tz);

impl ReportTz {
    /// Parses an IANA name such as `UTC` or `America/New_York`.
    pub fn parse(name: &str) -> Result<Self, String> {
        name.parse::<Tz>().map(ReportTz).map_err(|_| {
            format!("unknown time zone {name:?}: expected an IANA name such as UTC or Europe/Paris")
        })
    }

    pub fn name(&self) -> &'static str {
        self.0.name()
    }

    /// The local calendar day of a UTC instant, as days since 1970-01-01.
    pub fn date_of(&self, unix_micros: i64) -> Option<i32> {
        let utc = DateTime::from_timestamp_micros(unix_micros)?;
        let local = utc.with_timezone(&self.0).date_naive();
        Some(local.num_days_from_ce() - UNIX_EPOCH_DAYS_FROM_CE)
    }
}

/// Days since 1970-01-01 as `YYYY-MM-DD`.
pub(crate) fn format_date(days: i32) -> String {
    chrono::NaiveDate::from_num_days_from_ce_opt(days + UNIX_EPOCH_DAYS_FROM_CE)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| format!("invalid-day-{days}"))
}

/// Days since 1970-01-01 as a month number, `year * 12 + month - 1` (1970-01 is 23,640); `None`
/// outside chrono's range.
pub(crate) fn month_of(days: i32) -> Option<i32> {
    chrono::NaiveDate::from_num_days_from_ce_opt(days + UNIX_EPOCH_DAYS_FROM_CE)
        .map(|d| d.year() * 12 + d.month0() as i32)
}

/// A month number of [`month_of`] as `YYYY-MM`.
pub(crate) fn format_month(month: i32) -> String {
    format!(
        "{:04}-{:02}",
        month.div_euclid(12),
        month.rem_euclid(12) + 1
    )
}

/// `YYYY-MM-DD` as days since 1970-01-01 (the inverse of [`format_date`]); `None` if it is not a
/// date.
pub(crate) fn parse_date(s: &str) -> Option<i32> {
    let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    Some(d.num_days_from_ce() - UNIX_EPOCH_DAYS_FROM_CE)
}

/// Unix microseconds as ISO 8601 UTC, `2026-11-02T09:00:00.000000Z`.
pub(crate) fn format_micros(micros: i64) -> String {
    DateTime::from_timestamp_micros(micros).map_or_else(
        || format!("invalid-time-{micros}"),
        |t| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s)
            .map(|d| d.timestamp_micros())
            .unwrap_or(i64::MIN)
    }

    #[test]
    fn gregorian_seconds_convert_to_unix() {
        // The rated CHANNEL_DESTROY sample: timestamp 63724403408 is 2019-05-06T23:10:08Z.
        assert_eq!(
            gregorian_to_unix_micros(63_724_403_408),
            Some(us("2019-05-06T23:10:08Z"))
        );
        assert_eq!(gregorian_to_unix_micros(UNIX_EPOCH_IN_GREGORIAN), Some(0));
        assert_eq!(gregorian_to_unix_micros(i64::MAX), None);
    }

    #[test]
    fn report_day_follows_the_zone_across_dst() {
        let ny = ReportTz::parse("America/New_York").unwrap_or(ReportTz(Tz::UTC));
        assert_eq!(ny.name(), "America/New_York");
        // 2024-03-10 is the spring-forward day: 04:30Z is 23:30 EST the day before,
        // 07:30Z is 03:30 EDT on the 10th.
        assert_eq!(
            ny.date_of(us("2024-03-10T04:30:00Z"))
                .map(format_date)
                .as_deref(),
            Some("2024-03-09")
        );
        assert_eq!(
            ny.date_of(us("2024-03-10T07:30:00Z"))
                .map(format_date)
                .as_deref(),
            Some("2024-03-10")
        );
        // 2024-11-03, fall back: 04:30Z is 00:30 EDT on the 3rd; 05:30Z is 00:30 EST, still the 3rd.
        assert_eq!(
            ny.date_of(us("2024-11-03T04:30:00Z"))
                .map(format_date)
                .as_deref(),
            Some("2024-11-03")
        );
        assert_eq!(
            ny.date_of(us("2024-11-04T04:59:59Z"))
                .map(format_date)
                .as_deref(),
            Some("2024-11-03")
        );
        assert_eq!(
            ny.date_of(us("2024-11-04T05:00:00Z"))
                .map(format_date)
                .as_deref(),
            Some("2024-11-04")
        );
        let utc = ReportTz(Tz::UTC);
        assert_eq!(
            utc.date_of(0).map(format_date).as_deref(),
            Some("1970-01-01")
        );
        assert!(ReportTz::parse("Mars/Olympus").is_err());
    }

    #[test]
    fn dates_read_back_as_written() {
        for days in [0, 20_411, -1] {
            assert_eq!(parse_date(&format_date(days)), Some(days));
        }
        assert_eq!(parse_date("__HIVE_DEFAULT_PARTITION__"), None);
    }
}
