//! Wall-clock time as text and back, and durations as people write them.
//!
//! One place for every time format simbulk writes or reads: RFC 3339 in UTC for files
//! (results, checkpoints, locks, the simulator's answers), HTTP dates for `Retry-After`, and
//! friendly durations (`30s`, `1h30m`, `500ms`) for flags and messages. Nothing here panics:
//! a time that cannot be represented becomes an error or an empty value, never an overflow.

use std::time::{Duration, SystemTime};

use jiff::fmt::rfc2822::{DateTimeParser, DateTimePrinter};
use jiff::{Span, SpanRelativeTo, Timestamp};

/// Decimal places of a written time.
#[derive(Debug, Clone, Copy)]
pub enum Precision {
    /// Whole seconds.
    Seconds,
    /// Milliseconds.
    Millis,
    /// Microseconds.
    Micros,
}

/// `t` as RFC 3339 in UTC (`2026-11-27T03:15:34.120Z`); empty when `t` is out of range.
pub fn rfc3339(t: SystemTime, p: Precision) -> String {
    let Ok(t) = Timestamp::try_from(t) else {
        return String::new();
    };
    match p {
        Precision::Seconds => format!("{t:.0}"),
        Precision::Millis => format!("{t:.3}"),
        Precision::Micros => format!("{t:.6}"),
    }
}

/// Now, in seconds since the Unix epoch (0 on a clock set before it).
pub fn epoch_seconds() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Now as RFC 3339 with whole seconds.
pub fn now_rfc3339() -> String {
    rfc3339(SystemTime::now(), Precision::Seconds)
}

/// Reads an RFC 3339 time with a `Z` or an offset.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    s.trim().parse::<Timestamp>().ok().map(SystemTime::from)
}

/// `t` as an HTTP date (`Wed, 21 Oct 2015 07:28:00 GMT`); empty when out of range.
pub fn http_date(t: SystemTime) -> String {
    Timestamp::try_from(t)
        .ok()
        .and_then(|t| DateTimePrinter::new().timestamp_to_rfc9110_string(&t).ok())
        .unwrap_or_default()
}

/// Reads an HTTP date.
pub fn parse_http_date(s: &str) -> Option<SystemTime> {
    DateTimeParser::new()
        .parse_timestamp(s.trim())
        .ok()
        .map(SystemTime::from)
}

/// Reads a duration as people write it: `30s`, `500ms`, `2m`, `1h30m`, `1.5h`, `2 days`.
/// Days are 24 hours; months and years are refused (they have no fixed length).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let span: Span = s.trim().parse().map_err(|e| format!("{e}"))?;
    let signed = span
        .to_duration(SpanRelativeTo::days_are_24_hours())
        .map_err(|e| format!("{e}"))?;
    Duration::try_from(signed).map_err(|_| "a duration cannot be negative".to_owned())
}

/// `d` as people write it, to the whole second when longer than a second (`1h 30m 5s`).
pub fn duration_text(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    if d < Duration::from_secs(1) {
        return "<1s".into();
    }
    // Whole seconds, in the two largest units that are not zero ("4m 10s", "1h 30m").
    let mut left = d.as_secs();
    let mut parts = Vec::new();
    for (unit, secs) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        let n = left / secs;
        left %= secs;
        if n > 0 || !parts.is_empty() {
            parts.push((n, unit));
        }
        if parts.len() == 2 {
            break;
        }
    }
    parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, u)| format!("{n}{u}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_at_each_precision() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_micros(1_764_213_334_123_456);
        assert_eq!(rfc3339(t, Precision::Seconds), "2025-11-27T03:15:34Z");
        assert_eq!(rfc3339(t, Precision::Millis), "2025-11-27T03:15:34.123Z");
        assert_eq!(rfc3339(t, Precision::Micros), "2025-11-27T03:15:34.123456Z");
        let back = parse_rfc3339("2025-11-27T03:15:34.123456Z").unwrap();
        assert_eq!(back, t);
        assert_eq!(
            parse_rfc3339("2025-11-27T04:15:34+01:00"),
            parse_rfc3339("2025-11-27T03:15:34Z")
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn http_dates_round_trip() {
        let s = "Wed, 21 Oct 2015 07:28:00 GMT";
        assert_eq!(http_date(parse_http_date(s).unwrap()), s);
        assert_eq!(parse_http_date("soon"), None);
    }

    #[test]
    fn durations_read_as_people_write_them() {
        let ok = [
            ("30s", 30_000),
            ("500ms", 500),
            ("2m", 120_000),
            ("1h30m", 5_400_000),
            ("1h 30m", 5_400_000),
            ("1.5h", 5_400_000),
            ("1d", 86_400_000),
            ("2 days", 172_800_000),
            ("0ms", 0),
        ];
        for (s, ms) in ok {
            assert_eq!(parse_duration(s), Ok(Duration::from_millis(ms)), "{s}");
        }
        for s in [
            "",
            "soon",
            "-5s",
            "5s ago",
            "1y",
            "3mo",
            "1000000000h",
            "5 parsecs",
        ] {
            assert!(parse_duration(s).is_err(), "{s} accepted");
        }
    }

    #[test]
    fn durations_write_briefly() {
        assert_eq!(duration_text(Duration::from_secs(3)), "3s");
        assert_eq!(duration_text(Duration::from_millis(5_400_700)), "1h 30m");
        assert_eq!(duration_text(Duration::from_secs(250)), "4m 10s");
        assert_eq!(duration_text(Duration::from_secs(3_725)), "1h 2m");
        assert_eq!(duration_text(Duration::from_secs(90_061)), "1d 1h");
        assert_eq!(duration_text(Duration::from_secs(7_200)), "2h");
        // A duration below a second is not written in microseconds and nanoseconds.
        assert_eq!(duration_text(Duration::from_nanos(606_198_566)), "<1s");
        assert_eq!(duration_text(Duration::ZERO), "0s");
        assert!(!duration_text(Duration::MAX).is_empty());
    }
}
