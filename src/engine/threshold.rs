//! `--max-failures N|P%`: the point at which failed rows halt the job.

use std::fmt;

/// A count of failed rows, or a share of finished rows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    /// This many failed rows.
    Count(u64),
    /// This share (in percent) of the finished rows.
    Percent(f64),
}

/// Finished rows before a percentage threshold applies (a 1-of-2 failure is not 50 %).
const MIN_ROWS_FOR_PERCENT: u64 = 100;

impl Threshold {
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let bad = || {
            format!(
                "--max-failures {s:?}: give a number of rows (e.g. 500) or a percentage (e.g. 5%)"
            )
        };
        if let Some(p) = s.strip_suffix('%') {
            let v: f64 = p.trim().parse().map_err(|_| bad())?;
            if !(0.0..=100.0).contains(&v) {
                return Err(bad());
            }
            Ok(Threshold::Percent(v))
        } else {
            s.parse().map(Threshold::Count).map_err(|_| bad())
        }
    }

    /// True once `failed` of `finished` rows passes the threshold.
    pub(crate) fn exceeded(&self, failed: u64, finished: u64) -> bool {
        match *self {
            Threshold::Count(n) => failed > n,
            Threshold::Percent(p) => {
                finished >= MIN_ROWS_FOR_PERCENT && (failed as f64) * 100.0 > p * finished as f64
            }
        }
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Threshold::Count(n) => write!(f, "{n}"),
            Threshold::Percent(p) => write!(f, "{p}%"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_percentages() {
        assert_eq!(Threshold::parse("10"), Ok(Threshold::Count(10)));
        assert_eq!(Threshold::parse("5%"), Ok(Threshold::Percent(5.0)));
        assert!(Threshold::parse("x").is_err());
        assert!(Threshold::parse("150%").is_err());
        assert!(Threshold::Count(2).exceeded(3, 3));
        assert!(!Threshold::Count(2).exceeded(2, 3));
        assert!(!Threshold::Percent(5.0).exceeded(2, 10));
        assert!(Threshold::Percent(5.0).exceeded(6, 100));
    }
}
