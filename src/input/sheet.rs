//! Spreadsheets as input: a sheet of an `.xlsx`, `.xlsm`, `.xlsb`, `.xls` or `.ods` file,
//! read with calamine and handed on as CSV text, so every rule of a CSV input (validation,
//! carried columns, results and failures as CSV, fingerprint and resume) holds for it as it is.
//!
//! Guarantees: a spreadsheet is known by its first bytes, never by its name; the sheet is the
//! first visible one or `--sheet NAME`, chosen and checked when the file is opened (before any
//! API call); each sheet row is one CSV line, so a row's line is its row number in the
//! spreadsheet; a text cell is kept as written (ICCIDs keep their digits); a number is written
//! with every digit it is known to have, and one that cannot hold them all (16 or more digits,
//! as a spreadsheet makes of an ICCID typed into a number cell) is written as the spreadsheet
//! shows it (`8.93144040001234E+18`), which the ICCID check names with its fix; a line break
//! inside a cell reads as a space. `.xlsx` sheets are read streaming (the CSV text flows
//! through a bounded channel from a thread of its own); `.xls`, `.xlsb` and `.ods` sheets are
//! read whole by calamine first.

use std::io::{Read, Seek};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use calamine::{Data, Reader, Sheets};

/// Whether a file that starts with `head` is a spreadsheet: a zip (`.xlsx`, `.xlsm`, `.xlsb`,
/// `.ods`) or a compound document (`.xls`).
pub(crate) fn is_spreadsheet(head: &[u8]) -> bool {
    head.starts_with(b"PK\x03\x04")
        || head.starts_with(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1])
}

/// Why a sheet cannot be read (the reader names the file).
#[derive(Debug)]
pub(crate) enum SheetError {
    /// Not a workbook calamine can open, and what it said.
    Unreadable(String),
    /// `--sheet` names no sheet of the workbook.
    NoSuchSheet {
        /// The name asked for.
        name: String,
        /// The workbook's sheets, quoted, in order.
        sheets: String,
    },
}

fn unreadable(e: impl std::fmt::Display) -> SheetError {
    SheetError::Unreadable(e.to_string())
}

/// Most columns a sheet row has (Excel's limit); cells beyond it are not read.
const MAX_COLUMNS: usize = 16_384;

/// Opens the workbook in `source` and names the sheet to read: `wanted` (exactly, else the one
/// sheet of that name in any case), or the first visible sheet.
pub(crate) fn choose<RS: Read + Seek + Clone>(
    source: RS,
    wanted: Option<&str>,
) -> Result<String, SheetError> {
    let book = calamine::open_workbook_auto_from_rs(source).map_err(unreadable)?;
    let sheets = book.sheets_metadata();
    let names = || {
        let shown: Vec<String> = sheets.iter().map(|s| format!("{:?}", s.name)).collect();
        shown.join(", ")
    };
    let Some(wanted) = wanted else {
        return sheets
            .iter()
            .find(|s| s.visible == calamine::SheetVisible::Visible)
            .or(sheets.first())
            .map(|s| s.name.clone())
            .ok_or_else(|| unreadable("it has no sheet"));
    };
    if let Some(s) = sheets.iter().find(|s| s.name == wanted) {
        return Ok(s.name.clone());
    }
    let folded: Vec<&calamine::Sheet> = sheets
        .iter()
        .filter(|s| s.name.to_lowercase() == wanted.to_lowercase())
        .collect();
    match folded.as_slice() {
        [one] => Ok(one.name.clone()),
        _ => Err(SheetError::NoSuchSheet {
            name: wanted.to_owned(),
            sheets: names(),
        }),
    }
}

/// The CSV text of `sheet` of the workbook in `source`, as it is made: a thread converts the
/// sheet and the reader takes its text in chunks (the thread ends when the reader is dropped).
pub(crate) fn csv_text<RS: Read + Seek + Clone + Send + 'static>(
    source: RS,
    path: PathBuf,
    sheet: String,
) -> std::io::Result<Box<dyn Read + Send>> {
    let (tx, rx) = sync_channel(4);
    std::thread::Builder::new()
        .name("simbulk-sheet".into())
        .spawn(move || {
            let mut out = Emitter::new(tx.clone());
            let done = convert(source, &sheet, &mut out).and_then(|()| out.finish());
            if let Err(e) = done {
                let _ = tx.send(Err(format!("{}: {e}", path.display())));
            }
        })?;
    Ok(Box::new(Chunks {
        rx,
        chunk: Vec::new(),
        at: 0,
    }))
}

/// Reads `sheet` cell by cell into `out`.
fn convert<RS: Read + Seek + Clone>(
    source: RS,
    sheet: &str,
    out: &mut Emitter,
) -> Result<(), String> {
    let book = calamine::open_workbook_auto_from_rs(source).map_err(|e| e.to_string())?;
    match book {
        Sheets::Xlsx(mut x) => {
            let mut cells = x.worksheet_cells_reader(sheet).map_err(|e| e.to_string())?;
            let first_col = cells.dimensions().start.1;
            while let Some(c) = cells.next_cell().map_err(|e| e.to_string())? {
                let (row, col) = c.get_position();
                let text = text_of(Data::from(c.get_value().clone()));
                out.cell(row, col.saturating_sub(first_col), text)?;
            }
        }
        mut other => {
            let range = other.worksheet_range(sheet).map_err(|e| e.to_string())?;
            let (row0, _) = range.start().unwrap_or((0, 0));
            for (row, col, v) in range.used_cells() {
                out.cell(row0 + row as u32, col as u32, text_of(v.clone()))?;
            }
        }
    }
    Ok(())
}

/// Bytes handed to the reader at a time.
const CHUNK: usize = 64 * 1024;

/// A chunk of CSV text, or why the sheet could not be read further.
type Chunk = Result<Vec<u8>, String>;

/// Writes cells, row by row, as CSV lines: a line per sheet row, blank ones included.
struct Emitter {
    tx: SyncSender<Chunk>,
    csv: csv::Writer<Vec<u8>>,
    /// The cells of the row being gathered, by column.
    row: Vec<String>,
    /// The sheet row being gathered (0-based).
    at: Option<u32>,
    /// The sheet rows written so far.
    written: u32,
}

impl Emitter {
    fn new(tx: SyncSender<Chunk>) -> Self {
        Self {
            tx,
            csv: writer(),
            row: Vec::new(),
            at: None,
            written: 0,
        }
    }

    fn cell(&mut self, row: u32, col: u32, text: String) -> Result<(), String> {
        if self.at != Some(row) {
            self.end_row()?;
            self.at = Some(row);
        }
        let col = col as usize;
        if col >= MAX_COLUMNS {
            return Ok(());
        }
        if self.row.len() <= col {
            self.row.resize(col + 1, String::new());
        }
        self.row[col] = text;
        Ok(())
    }

    /// Writes the gathered row at its line, after a blank line (`""`) for each row without
    /// cells.
    fn end_row(&mut self) -> Result<(), String> {
        let Some(at) = self.at.take() else {
            return Ok(());
        };
        let io = |e: csv::Error| e.to_string();
        while self.written < at {
            self.csv.write_record([""]).map_err(io)?;
            self.written += 1;
        }
        if self.row.iter().all(String::is_empty) {
            self.csv.write_record([""]).map_err(io)?;
        } else {
            self.csv.write_record(&self.row).map_err(io)?;
        }
        self.written += 1;
        self.row.clear();
        // The writer's own buffer reaches the Vec in blocks: a chunk is about CHUNK bytes.
        if self.csv.get_ref().len() >= CHUNK {
            self.send()?;
        }
        Ok(())
    }

    /// Hands the text written so far to the reader.
    fn send(&mut self) -> Result<(), String> {
        let full = std::mem::replace(&mut self.csv, writer());
        let chunk = full.into_inner().map_err(|e| e.to_string())?;
        if chunk.is_empty() {
            return Ok(());
        }
        self.tx
            .send(Ok(chunk))
            .map_err(|_| "the reader stopped".to_owned())
    }

    fn finish(&mut self) -> Result<(), String> {
        self.end_row()?;
        self.send()
    }
}

/// A CSV writer of lines ended by `\n`, rows of any width.
fn writer() -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .flexible(true)
        .from_writer(Vec::with_capacity(CHUNK + 4096))
}

/// The reader's side: the chunks in order, then the end (or the converter's error).
struct Chunks {
    rx: Receiver<Chunk>,
    chunk: Vec<u8>,
    at: usize,
}

impl Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.rx.recv() {
                Ok(Ok(c)) => {
                    self.chunk = c;
                    self.at = 0;
                }
                Ok(Err(e)) => return Err(std::io::Error::other(e)),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// The largest integer a number cell holds exactly (2⁵³): beyond it, digits are lost.
const EXACT: f64 = 9_007_199_254_740_992.0;

/// A number as text: an integer with all its digits while it has them all, else as a
/// spreadsheet shows a long number (`8.93144040001234E+18`), which no ICCID check mistakes for
/// one.
pub(crate) fn number_text(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < EXACT {
        return format!("{v:.0}");
    }
    if v.is_finite() && v.fract() == 0.0 {
        let s = format!("{v:.14E}");
        return match s.split_once('E') {
            Some((m, e)) if !e.starts_with('-') => format!("{m}E+{e}"),
            _ => s,
        };
    }
    format!("{v}")
}

/// A cell's text as a person reads it in the spreadsheet.
fn text_of(v: Data) -> String {
    match v {
        Data::Float(f) => number_text(f),
        Data::String(s) => one_line(s),
        Data::DateTime(d) if d.is_datetime() => date_text(&d),
        other => one_line(other.to_string()),
    }
}

/// `text` with each line break as a space (a row stays one line).
fn one_line(text: String) -> String {
    if text.contains(['\n', '\r']) {
        text.replace("\r\n", " ").replace(['\n', '\r'], " ")
    } else {
        text
    }
}

/// A date or time cell as ISO 8601 (`2026-12-01`, `2026-12-01T08:30:00`).
fn date_text(d: &calamine::ExcelDateTime) -> String {
    let (y, mo, day, h, mi, s, ms) = d.to_ymd_hms_milli();
    match (h, mi, s, ms) {
        (0, 0, 0, 0) => format!("{y:04}-{mo:02}-{day:02}"),
        (_, _, _, 0) => format!("{y:04}-{mo:02}-{day:02}T{h:02}:{mi:02}:{s:02}"),
        _ => format!("{y:04}-{mo:02}-{day:02}T{h:02}:{mi:02}:{s:02}.{ms:03}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_the_digits_they_have_and_show_the_ones_they_lost() {
        assert_eq!(number_text(42.0), "42");
        assert_eq!(number_text(-7.0), "-7");
        assert_eq!(number_text(123_456_789_012_345.0), "123456789012345");
        assert_eq!(number_text(2.5), "2.5");
        // An ICCID typed into a number cell: 15 digits kept, the rest gone.
        assert_eq!(number_text(8.931_440_400_012_34e18), "8.93144040001234E+18");
        assert_eq!(number_text(8.931_000_1e19), "8.93100010000000E+19");
    }

    #[test]
    fn a_line_break_in_a_cell_is_a_space() {
        assert_eq!(one_line("a\r\nb\nc".into()), "a b c");
        assert_eq!(one_line("plain".into()), "plain");
    }

    #[test]
    fn only_zip_and_compound_files_are_spreadsheets() {
        assert!(is_spreadsheet(b"PK\x03\x04rest"));
        assert!(is_spreadsheet(&[
            0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1, 0
        ]));
        assert!(!is_spreadsheet(b"iccid,action\n"));
        assert!(!is_spreadsheet(b"PK"));
    }
}
