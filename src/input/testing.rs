//! Helpers shared by the input's unit tests.

use std::io::Write;

use super::reader::{Defaults, FileError, Item, Layout, open};

/// A temporary file holding `bytes`.
pub(crate) fn file(bytes: &[u8]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(bytes).unwrap();
    f
}

/// Reads `bytes` as an input: its layout and every item.
pub(crate) fn read(bytes: &[u8], d: &Defaults) -> Result<(Layout, Vec<Item>), FileError> {
    let f = file(bytes);
    let (l, rows) = open(f.path(), None, d)?;
    Ok((l, rows.map(|r| r.unwrap()).collect()))
}
