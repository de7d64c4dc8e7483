//! The ICCID newtype: 19 or 20 ASCII digits whose last digit is the Luhn check digit.
//!
//! Guarantees: an [`Iccid`] value is always well formed, so a bad ICCID never costs an API call.

use std::fmt;

/// A validated ICCID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Iccid(String);

/// Why a string is not an ICCID, worded for the person who has to fix the row.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum IccidError {
    #[error("ICCID is empty; put the SIM's 19- or 20-digit ICCID in the iccid column")]
    Empty,
    #[error(
        "ICCID {shown:?} contains a non-digit character; an ICCID is 19 or 20 digits (remove spaces, letters and the trailing F some exports add)"
    )]
    NotDigits { shown: String },
    #[error(
        "ICCID {shown:?} was turned into a number by a spreadsheet, which keeps only its first 15 digits; format the iccid column as Text and paste the ICCIDs again (or export them from the provider as CSV)"
    )]
    Spreadsheet { shown: String },
    #[error(
        "ICCID {shown:?} has {len} digits; an ICCID has 19 or 20 (check for digits lost by a spreadsheet's number format)"
    )]
    Length { shown: String, len: usize },
    #[error(
        "ICCID {shown:?} fails the Luhn check (its last digit should be {expected}); check for a mistyped digit"
    )]
    Luhn { shown: String, expected: u8 },
}

/// A number as a spreadsheet writes a long one: `8.93100010000000E+19`, `8,93E+19`.
fn looks_like_a_spreadsheet_number(s: &str) -> bool {
    let upper = s.to_ascii_uppercase();
    let Some((mantissa, exp)) = upper.split_once("E+") else {
        return false;
    };
    !mantissa.is_empty()
        && mantissa
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b',')
        && !exp.is_empty()
        && exp.bytes().all(|b| b.is_ascii_digit())
}

impl Iccid {
    /// Validates `s` (already trimmed by the reader).
    pub(crate) fn parse(s: &str) -> Result<Self, IccidError> {
        let shown: String = s.chars().take(40).collect();
        if s.is_empty() {
            return Err(IccidError::Empty);
        }
        if looks_like_a_spreadsheet_number(s) {
            return Err(IccidError::Spreadsheet { shown });
        }
        if !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(IccidError::NotDigits { shown });
        }
        if !(19..=20).contains(&s.len()) {
            return Err(IccidError::Length {
                shown,
                len: s.len(),
            });
        }
        let (body, check) = s.split_at(s.len() - 1);
        let expected = luhn_check_digit(body);
        if check.as_bytes()[0] - b'0' != expected {
            return Err(IccidError::Luhn { shown, expected });
        }
        Ok(Self(s.to_owned()))
    }

    /// The ICCID as written.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// The ICCID as a number that tells 19 digits from 20 (a key that costs no allocation
    /// and hashes fast): its value, doubled, plus one for 20 digits.
    pub(crate) fn key(&self) -> u128 {
        let value = self
            .0
            .bytes()
            .fold(0u128, |v, b| v * 10 + u128::from(b - b'0'));
        value * 2 + u128::from(self.0.len() == 20)
    }
}

impl fmt::Display for Iccid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The Luhn check digit for a string of ASCII digits (the ICCID without its last digit).
pub(crate) fn luhn_check_digit(body: &str) -> u8 {
    let sum: u32 = body
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let dd = d * 2;
                if dd > 9 { dd - 9 } else { dd }
            } else {
                d
            }
        })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

/// Appends the Luhn check digit to `body`.
pub fn with_check_digit(body: &str) -> String {
    format!("{body}{}", luhn_check_digit(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_iccid_a_spreadsheet_made_a_number_is_named_with_the_fix() {
        for shown in ["8.93100010000000E+19", "8,931E+19", "8.9310001e+19"] {
            let e = Iccid::parse(shown).unwrap_err();
            assert!(matches!(e, IccidError::Spreadsheet { .. }), "{shown}: {e}");
            assert!(
                e.to_string().contains("format the iccid column as Text"),
                "{e}"
            );
        }
        assert!(matches!(
            Iccid::parse("8944 5009"),
            Err(IccidError::NotDigits { .. })
        ));
    }
    use proptest::prelude::*;

    #[test]
    fn accepts_the_contract_examples() {
        for s in [
            "8944500990000012342",
            "8944500990000012359",
            "8944500990000012367",
        ] {
            assert!(Iccid::parse(s).is_ok(), "{s}");
        }
    }

    #[test]
    fn rejects_with_a_reason_that_says_how_to_fix_it() {
        assert!(matches!(
            Iccid::parse("8944500990000012343"),
            Err(IccidError::Luhn { expected: 2, .. })
        ));
        assert!(matches!(
            Iccid::parse("894450099000001234"),
            Err(IccidError::Length { len: 18, .. })
        ));
        assert!(matches!(
            Iccid::parse("8944500990000012342F"),
            Err(IccidError::NotDigits { .. })
        ));
        assert_eq!(Iccid::parse(""), Err(IccidError::Empty));
        assert!(
            Iccid::parse("8.94450099E+18")
                .unwrap_err()
                .to_string()
                .contains("turned into a number by a spreadsheet")
        );
    }

    proptest! {
        #[test]
        fn every_body_with_its_check_digit_is_valid(body in "[0-9]{18,19}") {
            prop_assert!(Iccid::parse(&with_check_digit(&body)).is_ok());
        }

        #[test]
        fn a_single_changed_digit_is_caught(body in "[0-9]{18}", pos in 0usize..19, delta in 1u8..10) {
            let good = with_check_digit(&body);
            let mut bytes = good.into_bytes();
            bytes[pos] = b'0' + (bytes[pos] - b'0' + delta) % 10;
            let bad = String::from_utf8(bytes).unwrap();
            prop_assert!(Iccid::parse(&bad).is_err());
        }

        #[test]
        fn never_panics(s in "\\PC{0,40}") {
            let _ = Iccid::parse(&s);
        }
    }
}
