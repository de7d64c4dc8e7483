//! The tap under the CSV parser: bounds on what one row may cost in memory, the raw bytes of
//! each record, and a digest of every byte read.
//!
//! Guarantees: no physical line longer than [`MAX_LINE`] bytes reaches the parser (the rest
//! of such a line is skipped and the line is reported, so its row becomes `invalid` and the
//! job goes on); no record may grow past [`MAX_RECORD`] bytes (an unbalanced quote that would
//! swallow the rest of the file), which ends reading with a clear error instead; the bytes the
//! parser saw are kept from the oldest record not yet taken, so each record's exact input
//! bytes (and the physical line it starts on) can be recovered; at the end of the input the
//! SHA-256 and length of every byte read (cut ones included) are known, to compare with the
//! fingerprint taken before the run; given the fingerprinted length, reading ends exactly
//! there (bytes appended later are not part of the job) and a source that ends short of it is
//! an error, so a file truncated under the job never yields its cut last line as a row.

use std::collections::BTreeSet;
use std::io::{self, BufRead, Read};
use std::sync::{Arc, Mutex};

use sha2::{Digest as _, Sha256};

/// Longest physical line kept.
pub(crate) const MAX_LINE: u64 = 1 << 20;
/// Longest record (a quoted cell may span lines).
pub(crate) const MAX_RECORD: u64 = 8 << 20;

/// What a whole read of the input saw: its SHA-256 (hex) and length in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seen {
    pub(crate) sha256: String,
    pub(crate) bytes: u64,
}

/// What the tap shares with the row iterator.
#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<TapState>,
    /// Whether records' bytes are kept for [`Shared::take`].
    capture: bool,
}

impl Default for Shared {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            capture: true,
        }
    }
}

#[derive(Debug, Default)]
struct TapState {
    /// Lines whose tail was cut.
    cut: BTreeSet<u64>,
    /// Bytes handed to the parser since the last record it returned.
    since_record: u64,
    /// Bytes handed to the parser and not yet taken by a record: `buf[taken..]` starts at
    /// stream offset `start`.
    buf: Vec<u8>,
    taken: usize,
    start: u64,
    /// Set once the source is exhausted.
    end: Option<Seen>,
}

impl Shared {
    /// A tap that keeps no record bytes (for a reader that never takes them).
    pub(crate) fn without_capture() -> Self {
        Self {
            state: Mutex::default(),
            capture: false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TapState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a line in `first..=last` was cut; forgets cut lines before `first`.
    pub(crate) fn was_cut(&self, first: u64, last: u64) -> bool {
        let mut g = self.lock();
        let keep = g.cut.split_off(&first);
        let here = keep.first().is_some_and(|l| *l <= last);
        g.cut = keep;
        here
    }

    /// The parser returned a record.
    pub(crate) fn record_done(&self) {
        self.lock().since_record = 0;
    }

    /// Takes the bytes of the record the parser reported at `[from, to)` (stream offsets), and
    /// forgets everything before `to`. Returns the bytes, or nothing when they are no longer
    /// held (which the parser's own bookkeeping never causes).
    pub(crate) fn take(&self, from: u64, to: u64) -> Vec<u8> {
        let mut g = self.lock();
        let held = g.buf.len() - g.taken;
        let (a, b) = (
            from.saturating_sub(g.start).min(held as u64) as usize,
            to.saturating_sub(g.start).min(held as u64) as usize,
        );
        let base = g.taken;
        let out = g.buf[base + a..base + b.max(a)].to_vec();
        g.taken += b;
        g.start += b as u64;
        // Compact now and then, not per record: the held tail is at most one parser buffer.
        if g.taken > 64 * 1024 && g.taken * 2 > g.buf.len() {
            let t = g.taken;
            g.buf.drain(..t);
            g.taken = 0;
        }
        out
    }

    /// The digest and length of everything read, once the source is exhausted.
    pub(crate) fn seen(&self) -> Option<Seen> {
        self.lock().end.clone()
    }
}

pub(crate) struct Limited<R> {
    inner: R,
    shared: Arc<Shared>,
    line: u64,
    line_bytes: u64,
    skipping: bool,
    hash: Sha256,
    total: u64,
    /// The length the input had when it was fingerprinted.
    expect: Option<u64>,
}

impl<R: BufRead> Limited<R> {
    pub(crate) fn new(inner: R, shared: Arc<Shared>) -> Self {
        Self {
            inner,
            shared,
            line: 1,
            line_bytes: 0,
            skipping: false,
            hash: Sha256::new(),
            total: 0,
            expect: None,
        }
    }

    /// Reads exactly `n` bytes of the source: fewer is an error, more are not read.
    pub(crate) fn expect_len(mut self, n: u64) -> Self {
        self.expect = Some(n);
        self
    }
}

/// The source's bytes up to the expected length (`total` read so far); empty at its end.
fn fill<R: BufRead>(inner: &mut R, total: u64, expect: Option<u64>) -> io::Result<&[u8]> {
    let avail = inner.fill_buf()?;
    match expect {
        None => Ok(avail),
        Some(n) if avail.is_empty() && total < n => Err(io::Error::other(format!(
            "the file ends after {total} bytes but had {n} when the job started: it changed while the job ran"
        ))),
        Some(n) => {
            let left = usize::try_from(n - total.min(n)).unwrap_or(usize::MAX);
            Ok(&avail[..avail.len().min(left)])
        }
    }
}

impl<R: BufRead> Limited<R> {
    fn consume(&mut self, n: usize) {
        // Every source byte goes into the digest, also those of cut lines.
        if let Ok(avail) = self.inner.fill_buf() {
            let n = n.min(avail.len());
            self.hash.update(&avail[..n]);
            self.total += n as u64;
            self.inner.consume(n);
        }
    }

    fn at_end(&mut self) {
        let mut g = self.shared.lock();
        if g.end.is_none() {
            let sha256 =
                self.hash
                    .clone()
                    .finalize()
                    .iter()
                    .fold(String::with_capacity(64), |mut s, b| {
                        use std::fmt::Write;
                        let _ = write!(s, "{b:02x}");
                        s
                    });
            g.end = Some(Seen {
                sha256,
                bytes: self.total,
            });
        }
    }
}

impl<R: BufRead> Read for Limited<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            let avail = fill(&mut self.inner, self.total, self.expect)?;
            if avail.is_empty() {
                self.at_end();
                return Ok(0);
            }
            if out.is_empty() {
                return Ok(0);
            }
            if self.skipping {
                // Drop bytes up to the end of the over-long line (its newline is kept).
                match avail.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        self.consume(i);
                        self.skipping = false;
                        self.line_bytes = 0;
                    }
                    None => {
                        let n = avail.len();
                        self.consume(n);
                    }
                }
                continue;
            }
            let take = avail.len().min(out.len());
            let mut n = 0;
            while n < take {
                let b = avail[n];
                if b == b'\n' {
                    self.line += 1;
                    self.line_bytes = 0;
                    n += 1;
                    continue;
                }
                if self.line_bytes >= MAX_LINE {
                    break;
                }
                self.line_bytes += 1;
                n += 1;
            }
            if n == 0 {
                // The line is over the limit: drop the rest of it.
                self.shared.lock().cut.insert(self.line);
                self.skipping = true;
                continue;
            }
            out[..n].copy_from_slice(&avail[..n]);
            let since = {
                let capture = self.shared.capture;
                let mut g = self.shared.lock();
                if capture {
                    g.buf.extend_from_slice(&out[..n]);
                }
                g.since_record += n as u64;
                g.since_record
            };
            self.consume(n);
            if since > MAX_RECORD {
                return Err(io::Error::other(format!(
                    "a record grows past {} MiB near line {}; look for an unbalanced quote (\") before it",
                    MAX_RECORD >> 20,
                    self.line
                )));
            }
            return Ok(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_cut_and_reported_and_short_ones_pass() {
        let mut data = b"a,b\n".to_vec();
        data.extend(std::iter::repeat_n(b'x', (MAX_LINE + 10) as usize));
        data.extend_from_slice(b"\nc,d\n");
        let shared = Arc::new(Shared::default());
        let mut r = Limited::new(io::BufReader::new(&data[..]), shared.clone());
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out.len() as u64, 4 + MAX_LINE + 1 + 4);
        assert!(out.ends_with(b"\nc,d\n"));
        assert!(!shared.was_cut(1, 1));
        assert!(shared.was_cut(1, 2));
        assert!(shared.was_cut(2, 2));
        let seen = shared.seen().unwrap();
        assert_eq!(seen.bytes, data.len() as u64, "cut bytes are digested too");
    }

    #[test]
    fn a_runaway_record_is_an_error() {
        let line = [b'y'; 1000];
        let mut data = Vec::new();
        while (data.len() as u64) < MAX_RECORD + 10_000 {
            data.extend_from_slice(&line);
            data.push(b'\n');
        }
        let shared = Arc::new(Shared::default());
        let mut r = Limited::new(io::BufReader::new(&data[..]), shared);
        let mut out = Vec::new();
        let e = r.read_to_end(&mut out).unwrap_err();
        assert!(e.to_string().contains("unbalanced quote"));
    }

    #[test]
    fn reading_stops_at_the_expected_length_and_a_short_source_is_an_error() {
        let data = b"a,b\nc,d\nappended\n";
        let shared = Arc::new(Shared::default());
        let mut r = Limited::new(io::BufReader::new(&data[..]), shared.clone()).expect_len(8);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"a,b\nc,d\n");
        assert_eq!(shared.seen().unwrap().bytes, 8);
        let shared = Arc::new(Shared::default());
        let mut r = Limited::new(io::BufReader::new(&data[..6]), shared).expect_len(8);
        let e = r.read_to_end(&mut Vec::new()).unwrap_err();
        assert!(e.to_string().contains("changed while the job ran"), "{e}");
    }

    #[test]
    fn taken_records_are_the_bytes_the_parser_saw_and_the_window_stays_small() {
        let mut data = Vec::new();
        for i in 0..20_000 {
            data.extend_from_slice(format!("row{i},x\n").as_bytes());
        }
        let shared = Arc::new(Shared::default());
        let mut r = Limited::new(io::BufReader::new(&data[..]), shared.clone());
        let mut out = [0u8; 8192];
        let (mut pos, mut seen) = (0u64, 0u64);
        let mut i = 0;
        loop {
            let n = r.read(&mut out).unwrap();
            if n == 0 {
                break;
            }
            // Take every whole line read so far, as the parser would report them.
            seen += n as u64;
            let mut at = pos;
            while let Some(end) = data[at as usize..seen as usize]
                .iter()
                .position(|&b| b == b'\n')
                .map(|e| at + e as u64 + 1)
            {
                assert_eq!(shared.take(at, end), format!("row{i},x\n").into_bytes());
                i += 1;
                at = end;
            }
            pos = at;
            let g = shared.lock();
            assert!(g.buf.len() < 200 * 1024, "{}", g.buf.len());
        }
        assert_eq!(i, 20_000);
    }
}
