//! Why a row is invalid: a reason to group rows by, and the message for the row itself.
//!
//! Guarantees: a [`Reason`] carries nothing from the row (no ICCID, no value), so a tally of
//! reasons is bounded by the number of reasons, however many rows are invalid.

use std::fmt;

/// An invalid row: the reason and the message that says what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub reason: Reason,
    pub message: String,
}

impl Invalid {
    pub(crate) fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The kinds of invalid rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    IccidEmpty,
    IccidNotDigits,
    IccidLength,
    IccidLuhn,
    NoAction,
    UnknownAction,
    NoValue,
    NoAttribute,
    BadPackage,
    BadPortfolio,
    ValueTooLong,
    NameTooLong,
    LineTooLong,
    NotUtf8,
    TooManyCells,
    CellsInList,
    BadPatch,
    BadDesired,
}

impl Reason {
    /// The reason as a group's name.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Reason::IccidEmpty => "ICCID missing",
            Reason::IccidNotDigits => "ICCID has a non-digit",
            Reason::IccidLength => "ICCID not 19 or 20 digits",
            Reason::IccidLuhn => "ICCID fails the Luhn check",
            Reason::NoAction => "no action",
            Reason::UnknownAction => "unknown action",
            Reason::NoValue => "value missing",
            Reason::NoAttribute => "attribute name missing",
            Reason::BadPackage => "package id not a number",
            Reason::BadPortfolio => "portfolio id malformed",
            Reason::ValueTooLong => "attribute value too long",
            Reason::NameTooLong => "attribute name too long",
            Reason::LineTooLong => "line too long",
            Reason::NotUtf8 => "not UTF-8",
            Reason::TooManyCells => "more cells than the header",
            Reason::CellsInList => "extra cells in a bare list",
            Reason::BadPatch => "patch value malformed",
            Reason::BadDesired => "desired value malformed",
        }
    }
}

impl From<super::iccid::IccidError> for Invalid {
    fn from(e: super::iccid::IccidError) -> Self {
        use super::iccid::IccidError as E;
        let reason = match &e {
            E::Empty => Reason::IccidEmpty,
            E::NotDigits { .. } => Reason::IccidNotDigits,
            E::Length { .. } => Reason::IccidLength,
            E::Luhn { .. } => Reason::IccidLuhn,
        };
        Invalid::new(reason, e.to_string())
    }
}
