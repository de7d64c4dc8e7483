//! Streaming the input CSV: dialect sniffing, header mapping, and per-row validation.
//!
//! Guarantees: the file is read record by record (never whole); only a regular file is read
//! (a pipe or FIFO is refused at once, never waited on); a problem with the file itself
//! (missing, empty, UTF-16, no `iccid` column, …) is a [`FileError`] raised before the first
//! row is handed out, naming the file, the line and the fix; a problem with one row becomes an
//! [`Item`] whose `parsed` is `Err(message)`, and reading goes on; each item carries the
//! physical line its record starts on and the record's exact bytes.
//!
//! [`Rows`], the records after the header: each record read (bounded by the tap below the
//! parser), its physical line (blank lines and quoted line breaks counted, LF or CRLF) and
//! exact bytes recovered, its cells validated into a [`Row`] or an [`Invalid`] reason.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::action::Action;
use super::iccid::Iccid;
use super::invalid::{Invalid, Reason};
use super::sheet::SheetError;

/// Options that fill cells a row leaves empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Defaults {
    /// The action of rows whose action cell is empty.
    pub action: Option<String>,
    /// The value of rows whose value cell is empty.
    pub value: Option<String>,
    /// The attribute name of rows whose attribute cell is empty.
    pub attribute: Option<String>,
    /// Actions the provider cannot do, with the reason: such a row is invalid (read, never
    /// sent).
    pub unsupported: Vec<(super::ActionKind, &'static str)>,
    /// The attribute names the provider takes, with the reason a row naming another is
    /// invalid (`None`: any name).
    pub attribute_names: Option<(&'static [&'static str], &'static str)>,
}

/// A file-level problem: the job stops before any API call.
#[expect(
    missing_docs,
    reason = "each variant's #[error] message is its documentation, naming its fields"
)]
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read input file {path}: {source}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "input {path} is {kind}, not a regular file; simbulk reads its input twice (a fingerprint for --resume, then row by row) and must be able to read it again on resume, so save it to a file first (e.g. `cat … > job.csv`) and run that"
    )]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error("input {} is a folder; give the job's file in it (e.g. {}/job.csv)", path.display(), path.display())]
    Directory { path: PathBuf },
    #[error(
        "input file {path} is empty; it needs a header line (e.g. iccid,action,value) and one row per SIM"
    )]
    Empty { path: PathBuf },
    #[error(
        "input file {path} is UTF-16 encoded (Excel's \"Unicode Text\"); save it as \"CSV UTF-8\" and run again"
    )]
    Utf16 { path: PathBuf },
    #[error(
        "input file {path}, line 1: the header is not valid UTF-8; save the file as \"CSV UTF-8\" and run again"
    )]
    HeaderNotUtf8 { path: PathBuf },
    #[error(
        "input file {path}, line 1: no iccid column (found: {found}); add a header line such as iccid,action,value,attribute, or give a plain list of ICCIDs with --action"
    )]
    NoIccidColumn { path: PathBuf, found: String },
    #[error(
        "input file {path}, line 1: column {name:?} appears twice (columns {first} and {second}); rename or remove one"
    )]
    DuplicateColumn {
        path: PathBuf,
        name: String,
        first: usize,
        second: usize,
    },
    #[error(
        "input file {path} has no action column; add one, or pass --action to apply one action to every row"
    )]
    NeedsAction { path: PathBuf },
    #[error(
        "input {path} is not a spreadsheet simbulk can read ({message}); save it again as .xlsx, or as \"CSV UTF-8\""
    )]
    Spreadsheet { path: PathBuf, message: String },
    #[error(
        "input {path} has no sheet {name:?} (its sheets: {sheets}); give one of those to --sheet"
    )]
    NoSuchSheet {
        path: PathBuf,
        name: String,
        sheets: String,
    },
    #[error(
        "--sheet names a sheet of a spreadsheet, and input {path} is a text file; leave --sheet out"
    )]
    SheetOfText { path: PathBuf },
    #[error("input file {path}, line {line}: {message}")]
    Csv {
        path: PathBuf,
        line: u64,
        message: String,
    },
}

/// How the file is laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The field separator (sniffed: comma, semicolon, tab or pipe).
    pub delimiter: u8,
    /// A bare list of ICCIDs, one per line, without a header.
    pub headerless: bool,
    /// The header's names as written (for the failures CSV); `["iccid"]` when header-less.
    pub header: Vec<String>,
    /// The `iccid` column.
    pub iccid: usize,
    /// The `action` column, if any.
    pub action: Option<usize>,
    /// The `value` column, if any.
    pub value: Option<usize>,
    /// The `attribute` column, if any.
    pub attribute: Option<usize>,
    /// Indices of the columns carried through to the results, in file order.
    pub carried: Vec<usize>,
    /// The header line's exact bytes, line ending included (empty for a bare list).
    pub header_raw: Vec<u8>,
}

impl Layout {
    /// A bare list of ICCIDs, one per line.
    fn bare_list(delimiter: u8) -> Self {
        Layout {
            delimiter,
            headerless: true,
            header: vec!["iccid".into()],
            iccid: 0,
            action: None,
            value: None,
            attribute: None,
            carried: Vec::new(),
            header_raw: Vec::new(),
        }
    }

    /// Names of the carried-through columns.
    pub(crate) fn carried_names(&self) -> Vec<String> {
        self.carried
            .iter()
            .map(|&i| self.header[i].clone())
            .collect()
    }
}

/// A valid row: the SIM and what to do to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The SIM.
    pub iccid: Iccid,
    /// What to do to it.
    pub action: Action,
}

/// One record of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The line the record starts on (1-based, the header is line 1).
    pub line: u64,
    /// The record's cells as read (trimmed), for the results' carried columns.
    pub fields: Vec<String>,
    /// The record's exact bytes in the input, line ending included, for the failures file.
    pub raw: Vec<u8>,
    /// The row, or why it is invalid.
    pub parsed: Result<Row, Invalid>,
}

impl Item {
    pub(crate) fn cell(&self, idx: Option<usize>) -> &str {
        idx.and_then(|i| self.fields.get(i))
            .map_or("", String::as_str)
    }
}

/// Bytes looked at to sniff the dialect.
const SNIFF: usize = 64 * 1024;

/// An input file, opened once: the fingerprint and the rows are read through this one handle,
/// so a file renamed or replaced after the start is not what the job reads.
#[derive(Debug)]
pub(crate) struct InputFile {
    path: PathBuf,
    file: File,
    /// The sheet read, when the file is a spreadsheet (its rows are read as CSV text).
    sheet: Option<String>,
}

/// What kind of file a non-regular one is, for the message.
fn kind(t: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a pipe or FIFO";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if t.is_dir() {
        "a directory"
    } else {
        "not a file"
    }
}

impl InputFile {
    /// Opens `path` for reading; refuses anything but a regular file. Opening never waits
    /// (a FIFO without a writer would block an ordinary open, beyond the reach of signals).
    /// A spreadsheet's sheet is chosen now: `sheet`, or its first visible one; `sheet` for a
    /// file that is not a spreadsheet is refused.
    pub(crate) fn open(path: &Path, sheet: Option<&str>) -> Result<Self, FileError> {
        let unreadable = |source| FileError::Unreadable {
            path: path.to_owned(),
            source,
        };
        let mut o = std::fs::OpenOptions::new();
        o.read(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            o.custom_flags(libc::O_NONBLOCK);
        }
        let file = o.open(path).map_err(unreadable)?;
        let meta = file.metadata().map_err(unreadable)?;
        if meta.is_dir() {
            return Err(FileError::Directory {
                path: path.to_owned(),
            });
        }
        if !meta.is_file() {
            return Err(FileError::NotRegular {
                path: path.to_owned(),
                kind: kind(meta.file_type()),
            });
        }
        let mut head = [0u8; 8];
        let n = AtOffsets::new(&file, path)?
            .read(&mut head)
            .map_err(unreadable)?;
        let sheet = if super::sheet::is_spreadsheet(&head[..n]) {
            let chosen = super::sheet::choose(AtOffsets::new(&file, path)?, sheet);
            Some(chosen.map_err(|e| match e {
                SheetError::Unreadable(message) => FileError::Spreadsheet {
                    path: path.to_owned(),
                    message,
                },
                SheetError::NoSuchSheet { name, sheets } => FileError::NoSuchSheet {
                    path: path.to_owned(),
                    name,
                    sheets,
                },
            })?)
        } else if sheet.is_some() {
            return Err(FileError::SheetOfText {
                path: path.to_owned(),
            });
        } else {
            None
        };
        Ok(Self {
            path: path.to_owned(),
            file,
            sheet,
        })
    }

    /// The open file (its metadata: what it is, where it lives).
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// The input's text from its start, through this handle without moving its cursor: the
    /// file's bytes, or a spreadsheet's sheet as CSV.
    pub(crate) fn source(&self) -> Result<Box<dyn Read + Send>, FileError> {
        let at = AtOffsets::new(&self.file, &self.path)?;
        match &self.sheet {
            None => Ok(Box::new(at)),
            Some(sheet) => {
                super::sheet::csv_text(at, self.path.clone(), sheet.clone()).map_err(|source| {
                    FileError::Unreadable {
                        path: self.path.clone(),
                        source,
                    }
                })
            }
        }
    }
}

/// Opens `path` (a spreadsheet's `sheet`, or its first), sniffs its dialect and maps its
/// header.
pub fn open(
    path: &Path,
    sheet: Option<&str>,
    defaults: &Defaults,
) -> Result<(Layout, Rows), FileError> {
    rows(InputFile::open(path, sheet)?, defaults, None)
}

/// Sniffs the dialect of an opened input and maps its header; the rows follow. With
/// `expect_len` (the fingerprinted length) exactly that many bytes are read, and an input
/// that ends short is an error.
pub(crate) fn rows(
    input: InputFile,
    defaults: &Defaults,
    expect_len: Option<u64>,
) -> Result<(Layout, Rows), FileError> {
    let source = input.source()?;
    rows_from(input.path, source, defaults, expect_len)
}

impl InputFile {
    /// The rows once more, read at offsets through this handle (its cursor, and a reader of
    /// [`rows`] over it, are left alone): a second pass over the same bytes.
    pub(crate) fn rows_again(
        &self,
        defaults: &Defaults,
        expect_len: u64,
    ) -> Result<(Layout, Rows), FileError> {
        rows_from(
            self.path.clone(),
            self.source()?,
            defaults,
            Some(expect_len),
        )
    }
}

/// Reads a file from the start by offset, without moving the cursor its handle shares (a
/// clone reads on from where it was made, independently).
#[derive(Clone)]
struct AtOffsets {
    file: Arc<File>,
    pos: u64,
}

impl AtOffsets {
    fn new(file: &File, path: &Path) -> Result<Self, FileError> {
        let file = file.try_clone().map_err(|source| FileError::Unreadable {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self {
            file: Arc::new(file),
            pos: 0,
        })
    }
}

impl Read for AtOffsets {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        loop {
            match self.file.read_at(buf, self.pos) {
                Ok(n) => {
                    self.pos += n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl std::io::Seek for AtOffsets {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        let len = self.file.metadata()?.len();
        let pos = match to {
            std::io::SeekFrom::Start(n) => Some(n),
            std::io::SeekFrom::End(d) => len.checked_add_signed(d),
            std::io::SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the start")
        })?;
        Ok(self.pos)
    }
}

fn rows_from(
    path: PathBuf,
    source: Box<dyn Read + Send>,
    defaults: &Defaults,
    expect_len: Option<u64>,
) -> Result<(Layout, Rows), FileError> {
    let mut buf = BufReader::with_capacity(256 * 1024, source);
    let head = buf
        .fill_buf()
        .map_err(|source| FileError::Unreadable {
            path: path.clone(),
            source,
        })?
        .to_vec();
    let (delimiter, headerless) = sniff(&path, &head[..head.len().min(SNIFF)])?;
    let shared = Arc::new(super::limit::Shared::default());
    let mut tap = super::limit::Limited::new(buf, shared.clone());
    if let Some(n) = expect_len {
        tap = tap.expect_len(n);
    }
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        // Records end at `\n` only, so a record's position is its true starting line in CRLF
        // files too; the `\r` left at the end of the last cell is removed by the trim.
        .terminator(csv::Terminator::Any(b'\n'))
        .from_reader(Box::new(tap) as Box<dyn Read + Send>);
    let layout = if headerless {
        if defaults.action.is_none() {
            return Err(FileError::NeedsAction { path });
        }
        Layout::bare_list(delimiter)
    } else {
        read_header(&mut rdr, &shared, &path, delimiter, defaults)?
    };
    let rows = Rows::new(rdr, layout.clone(), defaults.clone(), path, shared);
    Ok((layout, rows))
}

/// The dialect from the file's first bytes: its delimiter, and whether it is a bare list of
/// ICCIDs (its first cell is digits). Refuses an empty or UTF-16 file.
fn sniff(path: &Path, head: &[u8]) -> Result<(u8, bool), FileError> {
    let path = || path.to_owned();
    if head.starts_with(&[0xFF, 0xFE]) || head.starts_with(&[0xFE, 0xFF]) {
        return Err(FileError::Utf16 { path: path() });
    }
    let body = head.strip_prefix(&[0xEF, 0xBB, 0xBF][..]).unwrap_or(head);
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(FileError::Empty { path: path() });
    }
    let first_line = body.split(|&b| b == b'\n').next().unwrap_or(body);
    // UTF-16 without a BOM shows up as NULs between ASCII letters.
    if first_line.len() > 2
        && first_line.iter().filter(|&&b| b == 0).count() * 3 >= first_line.len()
    {
        return Err(FileError::Utf16 { path: path() });
    }
    let delimiter = sniff_delimiter(first_line);
    let first_cell: Vec<u8> = first_line
        .split(|&b| b == delimiter)
        .next()
        .unwrap_or_default()
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace() && *b != b'"')
        .collect();
    let headerless = !first_cell.is_empty() && first_cell.iter().all(u8::is_ascii_digit);
    Ok((delimiter, headerless))
}

/// Reads the header record and maps its columns; keeps its exact bytes for the failures file.
fn read_header(
    rdr: &mut csv::Reader<Box<dyn Read + Send>>,
    shared: &super::limit::Shared,
    path: &Path,
    delimiter: u8,
    defaults: &Defaults,
) -> Result<Layout, FileError> {
    let mut rec = csv::ByteRecord::new();
    let got = rdr.read_byte_record(&mut rec).map_err(|e| FileError::Csv {
        path: path.to_owned(),
        line: 1,
        message: e.to_string(),
    })?;
    if !got {
        return Err(FileError::Empty {
            path: path.to_owned(),
        });
    }
    shared.record_done();
    let from = rec.position().map_or(0, csv::Position::byte);
    let mut header_raw = shared.take(from, rdr.position().byte());
    let lead = header_raw.iter().take_while(|&&b| b == b'\n').count();
    header_raw.drain(..lead);
    let mut header = Vec::with_capacity(rec.len());
    for f in rec.iter() {
        let s = std::str::from_utf8(f).map_err(|_| FileError::HeaderNotUtf8 {
            path: path.to_owned(),
        })?;
        header.push(s.trim_start_matches('\u{feff}').trim().to_owned());
    }
    Ok(Layout {
        header_raw,
        ..map_header(path, delimiter, header, defaults)?
    })
}

fn sniff_delimiter(line: &[u8]) -> u8 {
    let mut counts = [0usize; 3];
    let mut quoted = false;
    for &b in line {
        match b {
            b'"' => quoted = !quoted,
            b',' if !quoted => counts[0] += 1,
            b';' if !quoted => counts[1] += 1,
            b'\t' if !quoted => counts[2] += 1,
            _ => {}
        }
    }
    let (best, n) = counts
        .iter()
        .enumerate()
        .max_by_key(|(i, n)| (**n, usize::MAX - i))
        .unwrap_or((0, &0));
    if *n == 0 {
        b','
    } else {
        [b',', b';', b'\t'][best]
    }
}

fn map_header(
    path: &Path,
    delimiter: u8,
    header: Vec<String>,
    defaults: &Defaults,
) -> Result<Layout, FileError> {
    let mut found: [Option<usize>; 4] = [None; 4];
    let mut carried = Vec::new();
    for (i, name) in header.iter().enumerate() {
        let slot = match name.to_ascii_lowercase().as_str() {
            "iccid" | "icc_id" => Some(0),
            "action" => Some(1),
            "value" => Some(2),
            "attribute" => Some(3),
            _ => None,
        };
        match slot {
            Some(s) => {
                if let Some(first) = found[s] {
                    return Err(FileError::DuplicateColumn {
                        path: path.to_owned(),
                        name: name.clone(),
                        first: first + 1,
                        second: i + 1,
                    });
                }
                found[s] = Some(i);
            }
            None => carried.push(i),
        }
    }
    let Some(iccid) = found[0] else {
        let shown: Vec<String> = header.iter().take(8).map(|h| format!("{h:?}")).collect();
        return Err(FileError::NoIccidColumn {
            path: path.to_owned(),
            found: if shown.is_empty() {
                "nothing".into()
            } else {
                shown.join(", ")
            },
        });
    };
    if found[1].is_none() && defaults.action.is_none() {
        return Err(FileError::NeedsAction {
            path: path.to_owned(),
        });
    }
    Ok(Layout {
        delimiter,
        headerless: false,
        header,
        iccid,
        action: found[1],
        value: found[2],
        attribute: found[3],
        carried,
        header_raw: Vec::new(),
    })
}

/// The records after the header, validated one by one.
pub struct Rows {
    rdr: csv::Reader<Box<dyn Read + Send>>,
    layout: Layout,
    defaults: Defaults,
    path: PathBuf,
    rec: csv::ByteRecord,
    /// Records whose cells were all empty (skipped, as spreadsheets pad files with them).
    pub blank: u64,
    limits: Arc<super::limit::Shared>,
}

/// The bytes as text, with each byte that is not UTF-8 shown as `\xNN`.
fn escape_invalid(b: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(b.len() + 8);
    for chunk in b.utf8_chunks() {
        out.push_str(chunk.valid());
        for x in chunk.invalid() {
            let _ = write!(out, "\\x{x:02X}");
        }
    }
    out
}

/// Most cells a row may have before it is refused (bounds the work per row).
const MAX_CELLS: usize = 10_000;

impl Rows {
    pub(super) fn new(
        rdr: csv::Reader<Box<dyn Read + Send>>,
        layout: Layout,
        defaults: Defaults,
        path: PathBuf,
        limits: Arc<super::limit::Shared>,
    ) -> Self {
        Self {
            rdr,
            layout,
            defaults,
            path,
            rec: csv::ByteRecord::new(),
            blank: 0,
            limits,
        }
    }

    /// The SHA-256 and length of every byte read, once the whole input has been read (to
    /// compare with the fingerprint taken at the start: a file changed while the job ran).
    pub(crate) fn seen(&self) -> Option<super::limit::Seen> {
        self.limits.seen()
    }

    fn item(&self, line: u64, raw: Vec<u8>) -> Item {
        let rec = &self.rec;
        let mut fields = Vec::with_capacity(rec.len().min(MAX_CELLS));
        let mut utf8 = true;
        for f in rec.iter().take(MAX_CELLS) {
            match std::str::from_utf8(f) {
                Ok(s) => fields.push(s.to_owned()),
                Err(_) => {
                    utf8 = false;
                    fields.push(escape_invalid(f));
                }
            }
        }
        let l = &self.layout;
        // The record's own line breaks (quoted cells), not its terminator.
        let breaks = raw
            .strip_suffix(b"\n")
            .unwrap_or(&raw)
            .iter()
            .filter(|&&b| b == b'\n')
            .count() as u64;
        let cut = self.limits.was_cut(line, line + breaks);
        let parsed = if cut {
            Err(Invalid::new(
                Reason::LineTooLong,
                format!(
                    "the line is longer than {} MiB and was cut; a row is a few hundred bytes, check the file",
                    super::limit::MAX_LINE >> 20
                ),
            ))
        } else if !utf8 {
            Err(Invalid::new(
                Reason::NotUtf8,
                "the row is not valid UTF-8; save the file as \"CSV UTF-8\"",
            ))
        } else if l.headerless && fields.iter().skip(1).any(|f| !f.is_empty()) {
            Err(Invalid::new(
                Reason::CellsInList,
                "a list without a header has one ICCID per line; add a header line (e.g. iccid,action,value) to give other columns",
            ))
        } else if rec.len() > l.header.len() && !l.headerless {
            Err(Invalid::new(
                Reason::TooManyCells,
                format!(
                    "the row has {} cells but the header has {}; quote cells that contain the delimiter {:?}",
                    rec.len(),
                    l.header.len(),
                    l.delimiter as char
                ),
            ))
        } else {
            self.validate(&fields)
        };
        Item {
            line,
            fields,
            raw,
            parsed,
        }
    }

    fn validate(&self, fields: &[String]) -> Result<Row, Invalid> {
        let l = &self.layout;
        let cell = |idx: Option<usize>, default: &Option<String>| -> String {
            let v = idx.and_then(|i| fields.get(i)).map_or("", String::as_str);
            if v.is_empty() {
                default.clone().unwrap_or_default()
            } else {
                v.to_owned()
            }
        };
        let iccid = Iccid::parse(fields.get(l.iccid).map_or("", String::as_str))?;
        let action = Action::build(
            &cell(l.action, &self.defaults.action),
            &cell(l.value, &self.defaults.value),
            &cell(l.attribute, &self.defaults.attribute),
        )?;
        let kind = action.kind();
        if let Some((_, why)) = self.defaults.unsupported.iter().find(|(k, _)| *k == kind) {
            return Err(Invalid::new(Reason::Unsupported, *why));
        }
        if let (Some((names, why)), Some(name)) =
            (self.defaults.attribute_names, action.attribute_name())
            && !names.contains(&name)
        {
            return Err(Invalid::new(Reason::Unsupported, why));
        }
        Ok(Row { iccid, action })
    }
}

impl Iterator for Rows {
    type Item = Result<Item, FileError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.rdr.read_byte_record(&mut self.rec) {
                Ok(false) => return None,
                Ok(true) => {
                    self.limits.record_done();
                    // The parser reports a record from the end of the one before, blank lines
                    // included: the record's own first line is after those line breaks.
                    let (from, reported) =
                        self.rec.position().map_or((0, 0), |p| (p.byte(), p.line()));
                    let mut raw = self.limits.take(from, self.rdr.position().byte());
                    let lead = raw.iter().take_while(|&&b| b == b'\n').count();
                    raw.drain(..lead);
                    if self.rec.iter().all(<[u8]>::is_empty) {
                        self.blank += 1;
                        continue;
                    }
                    return Some(Ok(self.item(reported + lead as u64, raw)));
                }
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line());
                    return Some(Err(FileError::Csv {
                        path: self.path.clone(),
                        line,
                        message: e.to_string(),
                    }));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::action::ActionKind;
    use crate::input::testing::read;

    const A: &str = "8944500990000012342";

    #[test]
    fn comma_semicolon_and_tab_files_with_bom_and_crlf() {
        for (sep, bom) in [(",", false), (";", true), ("\t", false)] {
            let mut s = if bom {
                "\u{feff}".to_string()
            } else {
                String::new()
            };
            s += &format!(
                "ICCID{sep}Action{sep}Value{sep}order\r\n {A} {sep}set-package{sep}20418{sep}PO-1\r\n"
            );
            let (l, items) = read(s.as_bytes(), &Defaults::default()).unwrap();
            assert_eq!(l.delimiter, sep.as_bytes()[0]);
            assert_eq!(l.carried_names(), vec!["order"]);
            assert_eq!(items.len(), 1);
            assert_eq!(items[0].line, 2, "sep {sep:?} bom {bom}");
            let row = items[0].parsed.clone().unwrap();
            assert_eq!(row.action.kind(), ActionKind::SetPackage);
            assert_eq!(items[0].fields[3], "PO-1");
        }
    }

    #[test]
    fn a_bare_list_of_iccids_needs_and_uses_action() {
        let body = format!("{A}\n{A}\n");
        assert!(matches!(
            read(body.as_bytes(), &Defaults::default()),
            Err(FileError::NeedsAction { .. })
        ));
        let d = Defaults {
            action: Some("activate".into()),
            ..Defaults::default()
        };
        let (l, items) = read(body.as_bytes(), &d).unwrap();
        assert!(l.headerless);
        assert_eq!(items.iter().map(|i| i.line).collect::<Vec<_>>(), vec![1, 2]);
        assert!(items.iter().all(|i| i.parsed.is_ok()));
    }

    #[test]
    fn file_level_problems_name_the_file_and_the_fix() {
        let d = Defaults::default();
        assert!(matches!(read(b"", &d), Err(FileError::Empty { .. })));
        assert!(matches!(
            read(b"\xEF\xBB\xBF\n", &d),
            Err(FileError::Empty { .. })
        ));
        assert!(matches!(
            read(b"\xFF\xFEi\0c\0", &d),
            Err(FileError::Utf16 { .. })
        ));
        let e = read(b"sim,action\n", &d).unwrap_err();
        assert!(e.to_string().contains("no iccid column"), "{e}");
        assert!(matches!(
            read(b"iccid,ICCID,action\n", &d),
            Err(FileError::DuplicateColumn { .. })
        ));
        assert!(matches!(
            read(b"iccid,value\n", &d),
            Err(FileError::NeedsAction { .. })
        ));
        let missing = open(Path::new("/nonexistent/x.csv"), None, &d)
            .err()
            .unwrap();
        assert!(missing.to_string().contains("/nonexistent/x.csv"));
    }

    #[test]
    fn blank_lines_before_the_header_and_in_a_bare_list() {
        let body = format!("\n\niccid,action\n{A},activate\n");
        let (l, items) = read(body.as_bytes(), &Defaults::default()).unwrap();
        assert_eq!(l.header_raw, b"iccid,action\n");
        assert_eq!(items[0].line, 4);
        let d = Defaults {
            action: Some("activate".into()),
            ..Defaults::default()
        };
        let (_, items) = read(format!("{A}\n\n{A}\n").as_bytes(), &d).unwrap();
        assert_eq!(items.iter().map(|i| i.line).collect::<Vec<_>>(), vec![1, 3]);
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_is_refused_at_once_without_waiting_for_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pipe.csv");
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo reads the C string we pass.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = InputFile::open(&p, None).unwrap_err();
        assert!(matches!(e, FileError::NotRegular { .. }), "{e}");
        assert!(e.to_string().contains("save it to a file first"), "{e}");
        let e = InputFile::open(dir.path(), None).unwrap_err();
        assert!(e.to_string().contains("is a folder"), "{e}");
        assert!(!e.to_string().contains("cat "), "{e}");
    }
}

/// The row stream's own tests.
#[cfg(test)]
mod rows_tests {
    use super::*;
    use crate::input::testing::{file, read};
    use proptest::prelude::*;

    const A: &str = "8944500990000012342";

    #[test]
    fn bad_rows_are_items_with_a_reason_and_reading_goes_on() {
        let body = format!(
            "iccid,action\n123,activate\n{A},explode\n{A},activate,extra\n,,\n{A},activate\n"
        );
        let (_, items) = read(body.as_bytes(), &Defaults::default()).unwrap();
        assert_eq!(items.len(), 4);
        let why = |i: usize| items[i].parsed.as_ref().unwrap_err().message.clone();
        assert!(why(0).contains("19 or 20"));
        assert!(why(1).contains("unknown action"));
        assert!(why(2).contains("3 cells"));
        assert_eq!(
            items[0].parsed.as_ref().unwrap_err().reason,
            Reason::IccidLength
        );
        assert!(items[3].parsed.is_ok());
        assert_eq!(items[3].line, 6);
    }

    #[test]
    fn quoted_cells_keep_delimiters_and_newlines() {
        let body = format!("iccid,action,note\n{A},activate,\"a, b\nc\"\n{A},suspend,x\n");
        let (_, items) = read(body.as_bytes(), &Defaults::default()).unwrap();
        assert_eq!(items[0].fields[2], "a, b\nc");
        assert_eq!(items[1].line, 4);
    }

    fn lines_and_raw(bytes: &[u8]) -> Vec<(u64, Vec<u8>)> {
        let (_, items) = read(bytes, &Defaults::default()).unwrap();
        items.into_iter().map(|i| (i.line, i.raw)).collect()
    }

    #[test]
    fn line_is_the_physical_line_after_blank_lines_in_lf_files() {
        let body = format!("iccid,action\n{A},activate\n\n{A},suspend\n\n\n\n{A},unsuspend\n");
        let got = lines_and_raw(body.as_bytes());
        assert_eq!(
            got.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
            vec![2, 4, 8]
        );
        assert_eq!(got[1].1, format!("{A},suspend\n").into_bytes());
    }

    #[test]
    fn line_is_the_physical_line_in_crlf_files_with_blank_lines() {
        let body = format!("iccid,action\r\n{A},activate\r\n\r\n\r\n{A},suspend\r\n");
        let got = lines_and_raw(body.as_bytes());
        assert_eq!(got.iter().map(|(l, _)| *l).collect::<Vec<_>>(), vec![2, 5]);
        assert_eq!(got[1].1, format!("{A},suspend\r\n").into_bytes());
    }

    #[test]
    fn line_is_where_a_record_with_multi_line_cells_starts() {
        let body = format!(
            "iccid,action,note\n{A},activate,\"one\n\ntwo\"\n\n{A},suspend,\"a\r\nb\"\r\n{A},unsuspend,x"
        );
        let got = lines_and_raw(body.as_bytes());
        assert_eq!(
            got.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
            vec![2, 6, 8]
        );
        assert_eq!(
            got[0].1,
            format!("{A},activate,\"one\n\ntwo\"\n").into_bytes()
        );
        assert_eq!(
            got[2].1,
            format!("{A},unsuspend,x").into_bytes(),
            "no final newline"
        );
    }

    #[test]
    fn raw_bytes_keep_nuls_and_invalid_utf8_exactly() {
        let mut body = b"iccid,action,note\r\n".to_vec();
        let row = [A.as_bytes(), b",activate,caf\xe9\0x\r\n"].concat();
        body.extend_from_slice(&row);
        let (l, items) = read(&body, &Defaults::default()).unwrap();
        assert_eq!(l.header_raw, b"iccid,action,note\r\n");
        assert_eq!(items[0].raw, row);
        assert!(items[0].parsed.is_err());
    }

    #[test]
    fn the_digest_of_what_was_read_is_known_at_the_end() {
        let body = format!("iccid,action\n{A},activate\n");
        let f = file(body.as_bytes());
        let (_, mut rows) = open(f.path(), None, &Defaults::default()).unwrap();
        assert!(rows.seen().is_none());
        while rows.next().is_some() {}
        let seen = rows.seen().unwrap();
        assert_eq!(seen.bytes, body.len() as u64);
        use sha2::Digest;
        let want: String = sha2::Sha256::digest(body.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(seen.sha256, want);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let d = Defaults { action: Some("activate".into()), ..Defaults::default() };
            let f = file(&bytes);
            if let Ok((_, rows)) = open(f.path(), None, &d) {
                for r in rows.take(10_000) { let _ = r; }
            }
        }

        #[test]
        fn arbitrary_csv_rows_never_panic(rows in proptest::collection::vec(proptest::collection::vec("[ -~]{0,30}", 0..6), 0..20)) {
            let mut s = String::from("iccid,action,value,attribute,x\n");
            for r in rows { s += &r.join(","); s.push('\n'); }
            let f = file(s.as_bytes());
            let (_, rows) = open(f.path(), None, &Defaults::default()).unwrap();
            for r in rows { let _ = r; }
        }
    }
}
