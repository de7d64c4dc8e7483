//! The rows of an input after its header: each record read (bounded by the tap below the
//! parser), its physical line and exact bytes recovered, its cells validated into a [`Row`]
//! or an [`Invalid`] reason.
//!
//! Guarantees: a problem with one row never stops reading (it becomes an invalid item); the
//! item's `line` is the physical line its record starts on (blank lines and quoted line
//! breaks counted, LF or CRLF), and its `raw` the record's exact bytes.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use super::action::Action;
use super::iccid::Iccid;
use super::invalid::{Invalid, Reason};
use super::reader::{Defaults, FileError, Item, Layout, Row};

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
    use super::super::reader::open;
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
        let (_, mut rows) = open(f.path(), &Defaults::default()).unwrap();
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
            if let Ok((_, rows)) = open(f.path(), &d) {
                for r in rows.take(10_000) { let _ = r; }
            }
        }

        #[test]
        fn arbitrary_csv_rows_never_panic(rows in proptest::collection::vec(proptest::collection::vec("[ -~]{0,30}", 0..6), 0..20)) {
            let mut s = String::from("iccid,action,value,attribute,x\n");
            for r in rows { s += &r.join(","); s.push('\n'); }
            let f = file(s.as_bytes());
            let (_, rows) = open(f.path(), &Defaults::default()).unwrap();
            for r in rows { let _ = r; }
        }
    }
}
