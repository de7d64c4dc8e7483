//! The results and failures CSV files: formatting rows, and guarding spreadsheets against
//! formula injection.
//!
//! Guarantees: every text cell that came from the input or the API and starts with `=`,
//! `+`, `-`, `@`, TAB or CR is prefixed with `'` in the results file, so a spreadsheet
//! shows it as text; the failures file holds the input's own header line and records,
//! byte for byte (delimiter, quoting, line endings, any byte that is not UTF-8), so it can be
//! run again as it is.

use std::borrow::Cow;
use std::path::Path;

use crate::files::{AppendFile, OpenMode};
use crate::input::Layout;
use crate::output::row::{Before, RowResult};

/// The fixed columns of the results file, in order.
pub(crate) const RESULT_COLUMNS: [&str; 17] = [
    "line",
    "iccid",
    "action",
    "value",
    "attribute",
    "outcome",
    "http_status",
    "error_code",
    "reason",
    "message",
    "attempts",
    "retries",
    "sim_status",
    "before",
    "before_state",
    "finished_at",
    "change_ref",
];

/// Neutralises a cell a spreadsheet would read as a formula, and shows control characters
/// other than TAB, CR and LF (a NUL, say) as `\xNN`.
pub(crate) fn formula_safe(s: &str) -> Cow<'_, str> {
    let s: std::borrow::Cow<'_, str> = if s.chars().any(hidden) {
        s.chars()
            .map(|c| {
                if hidden(c) {
                    format!("\\x{:02X}", c as u32)
                } else {
                    c.to_string()
                }
            })
            .collect::<String>()
            .into()
    } else {
        s.into()
    };
    match s.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => format!("'{s}").into(),
        _ => s,
    }
}

/// A cell as it was before [`formula_safe`] guarded it (the `'` it put in front removed).
pub(crate) fn unguarded(s: &str) -> &str {
    match s.strip_prefix('\'') {
        Some(rest) if rest.starts_with(['=', '+', '-', '@', '\t', '\r']) => rest,
        _ => s,
    }
}

/// A control character a reader of the results would not see.
fn hidden(c: char) -> bool {
    (c.is_ascii_control() && !matches!(c, '\t' | '\r' | '\n')) || c == '\u{7f}'
}

/// A CSV file appended through an [`AppendFile`].
pub(crate) struct CsvFile {
    file: AppendFile,
    builder: csv::WriterBuilder,
}

impl CsvFile {
    /// Opens (and locks: one writer at a time) the file `what` names.
    pub(crate) fn open(
        path: &Path,
        how: OpenMode,
        delimiter: u8,
        what: &str,
    ) -> std::io::Result<Self> {
        let file = AppendFile::open_locked(path, how, 0o644, what)?;
        Ok(Self {
            file,
            builder: {
                let mut b = csv::WriterBuilder::new();
                b.delimiter(delimiter).flexible(true).buffer_capacity(1024);
                b
            },
        })
    }

    pub(crate) fn write<I, S>(&mut self, cells: I) -> std::io::Result<()>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        let mut w = self.builder.from_writer(self.file.buf());
        w.write_record(cells)?;
        w.flush()?;
        Ok(())
    }

    /// Appends bytes as they are.
    pub(crate) fn write_raw(&mut self, bytes: &[u8]) {
        self.file.buf().extend_from_slice(bytes);
    }

    pub(crate) fn len(&self) -> u64 {
        self.file.len()
    }

    pub(crate) fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }

    pub(crate) fn sync(&self) -> std::io::Result<()> {
        self.file.sync()
    }
}

/// The results file: one row per input row.
pub struct ResultsFile {
    csv: CsvFile,
    carried: Vec<usize>,
    change_ref: String,
}

impl ResultsFile {
    /// Opens the file; with `Truncate` the header row is written.
    pub fn open(path: &Path, how: OpenMode, layout: &Layout) -> std::io::Result<Self> {
        let mut csv = CsvFile::open(path, how, b',', "--results")?;
        if how == OpenMode::Truncate {
            let fixed: Vec<String> = RESULT_COLUMNS.iter().map(|s| (*s).to_owned()).collect();
            let carried = layout.carried_names().into_iter().map(|n| {
                // A carried column must not pass for one of ours.
                if RESULT_COLUMNS.contains(&n.to_ascii_lowercase().as_str()) {
                    format!("input_{n}")
                } else {
                    formula_safe(&n).into_owned()
                }
            });
            csv.write(fixed.into_iter().chain(carried))?;
        }
        Ok(Self {
            csv,
            carried: layout.carried.clone(),
            change_ref: String::new(),
        })
    }

    /// Every row written from now on carries `change_ref` (`--change-ref`).
    pub fn set_change_ref(&mut self, change_ref: &str) {
        self.change_ref = formula_safe(change_ref).into_owned();
    }

    /// Appends one row's result (buffered; see [`ResultsFile::flush`]).
    pub fn write(&mut self, r: &RowResult) -> std::io::Result<()> {
        let finished = crate::clock::rfc3339(r.finished_at, crate::clock::Precision::Millis);
        // Cells borrow what the row holds; only numbers and the time are made per row.
        let number = |v: Option<String>| Cow::Owned(v.unwrap_or_default());
        let mut cells: Vec<Cow<'_, str>> = Vec::with_capacity(17 + self.carried.len());
        cells.extend([
            Cow::Owned(r.line.to_string()),
            formula_safe(&r.iccid),
            formula_safe(&r.action),
            formula_safe(&r.value),
            formula_safe(&r.attribute),
            Cow::Borrowed(r.verdict.as_str()),
            number(r.http_status.map(|s| s.to_string())),
            number(r.error_code.map(|s| s.to_string())),
            Cow::Borrowed(r.reason.unwrap_or_default()),
            formula_safe(&r.message),
            Cow::Owned(r.attempts.to_string()),
            Cow::Owned(r.retries.to_string()),
            formula_safe(r.sim_status.as_deref().unwrap_or("")),
            formula_safe(r.before.as_ref().map_or("", Before::value)),
            Cow::Borrowed(r.before.as_ref().map_or("", Before::state)),
            Cow::Owned(finished),
            Cow::Borrowed(self.change_ref.as_str()),
        ]);
        for &i in &self.carried {
            cells.push(formula_safe(r.fields.get(i).map_or("", String::as_str)));
        }
        self.csv.write(cells.iter().map(|c| c.as_bytes()))
    }

    pub(crate) fn file(&mut self) -> &mut CsvFile {
        &mut self.csv
    }

    /// Writes what is buffered to the file (without syncing it to the disk).
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.csv.flush()
    }
}

/// The failures file: failed and invalid rows, exactly as the input has them.
pub(crate) struct FailuresFile {
    csv: CsvFile,
    /// The input's line ending, for a last record that had none.
    eol: &'static [u8],
}

impl FailuresFile {
    pub(crate) fn open(path: &Path, how: OpenMode, layout: &Layout) -> std::io::Result<Self> {
        let mut csv = CsvFile::open(path, how, layout.delimiter, "--failures")?;
        let eol: &'static [u8] = if layout.header_raw.ends_with(b"\r\n") {
            b"\r\n"
        } else {
            b"\n"
        };
        if how == OpenMode::Truncate && !layout.headerless {
            csv.write_raw(&layout.header_raw);
            if !layout.header_raw.ends_with(b"\n") {
                csv.write_raw(eol);
            }
        }
        Ok(Self { csv, eol })
    }

    pub(crate) fn write(&mut self, r: &RowResult) -> std::io::Result<()> {
        self.csv.write_raw(&r.raw);
        if !r.raw.ends_with(b"\n") {
            self.csv.write_raw(self.eol);
        }
        Ok(())
    }

    pub(crate) fn file(&mut self) -> &mut CsvFile {
        &mut self.csv
    }
}

/// The longest line of a results file read back.
const MAX_READ_LINE: usize = 1 << 20;

/// A results file read back (by `undo` and `verify`): records of any length, lines bounded.
pub(crate) type ResultsReader =
    csv::Reader<crate::files::LineCap<std::io::BufReader<std::fs::File>>>;

/// Opens a results file to read back — a regular file, never past a line of
/// [`MAX_READ_LINE`] bytes — with its size.
pub(crate) fn read_back(path: &Path) -> Result<(ResultsReader, u64), crate::files::Error> {
    let file = crate::files::open_regular(path, "results file", u64::MAX, true)?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let inner = std::io::BufReader::with_capacity(256 * 1024, file);
    let r = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(crate::files::LineCap::new(inner, MAX_READ_LINE));
    Ok((r, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_looking_cells_become_text() {
        assert_eq!(formula_safe("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(formula_safe("+1"), "'+1");
        assert_eq!(formula_safe("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(formula_safe("-2"), "'-2");
        assert_eq!(formula_safe("pump-17"), "pump-17");
        assert_eq!(formula_safe(""), "");
        assert_eq!(formula_safe("a\0b\x7f"), "a\\x00b\\x7F");
        assert_eq!(formula_safe("\0=1"), "\\x00=1");
    }
}
