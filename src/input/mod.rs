//! Reading the job's input file: dialect, header, rows and their validation.
//! Nothing here calls the API.

pub(crate) mod action;
pub(crate) mod desired;
pub(crate) mod iccid;
pub(crate) mod invalid;
pub(crate) mod limit;
pub(crate) mod reader;
pub(crate) mod sheet;
#[cfg(test)]
mod testing;

pub use action::{Action, ActionKind};
pub use iccid::{Iccid, with_check_digit};
pub use invalid::{Invalid, Reason};
pub use reader::{Defaults, FileError, Item, Layout, Row, Rows, open};
