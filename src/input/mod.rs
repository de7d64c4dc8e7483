//! Reading the job's input file: dialect, header, rows and their validation.
//! Nothing here calls the API.

pub mod action;
pub mod iccid;
pub mod invalid;
pub mod limit;
pub mod reader;
mod rows;
#[cfg(test)]
mod testing;

pub use action::{Action, ActionKind};
pub use iccid::Iccid;
pub use invalid::{Invalid, Reason};
pub use reader::{Defaults, FileError, Item, Layout, Row, Rows};
