//! Why a row is invalid: a reason to group rows by, and the message for the row itself.
//!
//! Guarantees: a [`Reason`] carries nothing from the row (no ICCID, no value), so a tally of
//! reasons is bounded by the number of reasons, however many rows are invalid.

use std::fmt;

/// An invalid row: the reason and the message that says what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The kind of problem (a bounded label, for tallies).
    pub reason: Reason,
    /// What is wrong and how to fix it.
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
    /// No ICCID.
    IccidEmpty,
    /// An ICCID with other characters than digits.
    IccidNotDigits,
    /// An ICCID a spreadsheet turned into a number (`8.931E+19`): its digits are lost.
    IccidSpreadsheet,
    /// An ICCID of another length than 19 or 20 digits.
    IccidLength,
    /// An ICCID whose check digit is wrong.
    IccidLuhn,
    /// No action (and no `--action`).
    NoAction,
    /// An action simbulk does not know.
    UnknownAction,
    /// An action that needs a value, without one.
    NoValue,
    /// An attribute action without an attribute name.
    NoAttribute,
    /// A package id that is not a number.
    BadPackage,
    /// A portfolio id the API cannot take.
    BadPortfolio,
    /// A value longer than the API takes.
    ValueTooLong,
    /// An attribute name longer than the API takes.
    NameTooLong,
    /// A record longer than the reader takes.
    LineTooLong,
    /// A record that is not UTF-8.
    NotUtf8,
    /// A record with more cells than the reader takes.
    TooManyCells,
    /// A bare list's line with more than one cell.
    CellsInList,
    /// A `patch` value that does not parse.
    BadPatch,
    /// A desired-state row `apply` cannot read.
    BadDesired,
    /// An action the provider cannot do.
    Unsupported,
}

impl Reason {
    /// The reason as a group's name.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Reason::IccidEmpty => "ICCID missing",
            Reason::IccidNotDigits => "ICCID has a non-digit",
            Reason::IccidSpreadsheet => "ICCID turned into a number by a spreadsheet",
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
            Reason::Unsupported => "not supported by the provider",
        }
    }
}

impl From<super::iccid::IccidError> for Invalid {
    fn from(e: super::iccid::IccidError) -> Self {
        use super::iccid::IccidError as E;
        let reason = match &e {
            E::Empty => Reason::IccidEmpty,
            E::NotDigits { .. } => Reason::IccidNotDigits,
            E::Spreadsheet { .. } => Reason::IccidSpreadsheet,
            E::Length { .. } => Reason::IccidLength,
            E::Luhn { .. } => Reason::IccidLuhn,
        };
        Invalid::new(reason, e.to_string())
    }
}
