//! The runs of a job as its journal records them: each run's start (`S` record) and end
//! (`X` record: exit code, time, requests, retries, 429s, API answer times), for the report.
//!
//! Guarantees: an end record is at most ~110 bytes (within the journal's record bound);
//! one that does not parse is corruption (the good prefix ends there).

use serde::Serialize;

/// One run of a job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Run {
    /// When it started (milliseconds since the Unix epoch).
    pub started_ms: Option<u64>,
    /// When it ended, and its exit code (`None`: killed, or still running).
    pub ended_ms: Option<u64>,
    /// Its exit code, when it ended.
    pub exit_code: Option<u8>,
    /// What the run sent and met (`None`: it did not end, or an older simbulk ran it).
    pub stats: Option<RunStats>,
}

/// A run's requests, repeats and API answer times.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct RunStats {
    /// Requests sent.
    pub requests: u64,
    /// Attempts repeated after a 5xx, a timeout or a lost connection.
    pub retries: u64,
    /// 429 answers.
    pub throttled: u64,
    /// The API's answer time, p50 and p99, in milliseconds.
    pub api_p50_ms: f64,
    /// The API's p99 answer time, in milliseconds.
    pub api_p99_ms: f64,
}

/// A run's end: exit code, time (ms since the epoch), and stats when recorded.
pub(crate) type End = (u8, u64, Option<RunStats>);

impl Run {
    pub(crate) fn end(&mut self, (code, ms, stats): End) {
        self.exit_code = Some(code);
        self.ended_ms = Some(ms);
        self.stats = stats;
    }
}

/// The body of an end record (`X code ms requests retries throttled p50 p99`).
pub(crate) fn end_record(code: u8, ms: u64, st: RunStats) -> String {
    format!(
        "X {code} {ms} {} {} {} {:.1} {:.1}",
        st.requests, st.retries, st.throttled, st.api_p50_ms, st.api_p99_ms
    )
}

/// Parses the fields of an end record after its `X`.
pub(crate) fn parse_end(f: &[&str]) -> Option<End> {
    let ms = |v: &str| v.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0);
    let stats = match f.get(2..)? {
        [] => None,
        [r, t, q, p50, p99] => Some(RunStats {
            requests: r.parse().ok()?,
            retries: t.parse().ok()?,
            throttled: q.parse().ok()?,
            api_p50_ms: ms(p50)?,
            api_p99_ms: ms(p99)?,
        }),
        _ => return None,
    };
    Some((f[0].parse().ok()?, f[1].parse().ok()?, stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_records_round_trip_and_stay_short() {
        let st = RunStats {
            requests: u64::MAX,
            retries: u64::MAX,
            throttled: u64::MAX,
            api_p50_ms: 3_600_000.0,
            api_p99_ms: 3_600_000.0,
        };
        let body = end_record(255, u64::MAX, st);
        assert!(body.len() + 9 <= 128, "{}", body.len());
        let f: Vec<&str> = body.split(' ').skip(1).collect();
        assert_eq!(parse_end(&f), Some((255, u64::MAX, Some(st))));
        assert_eq!(parse_end(&["3", "17"]), Some((3, 17, None)));
        assert_eq!(parse_end(&["3"]), None);
        assert_eq!(parse_end(&["3", "17", "1", "2", "3", "NaN", "1"]), None);
    }
}
