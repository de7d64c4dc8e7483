//! Bounds on what one row may cost in memory, enforced under the CSV parser.
//!
//! Guarantees: no physical line longer than [`MAX_LINE`] bytes reaches the parser (the rest
//! of such a line is skipped and the line is reported, so its row becomes `invalid` and the
//! job goes on); no record may grow past [`MAX_RECORD`] bytes (an unbalanced quote that would
//! swallow the rest of the file), which ends reading with a clear error instead.

use std::collections::BTreeSet;
use std::io::{self, BufRead, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Longest physical line kept.
pub const MAX_LINE: u64 = 1 << 20;
/// Longest record (a quoted cell may span lines).
pub const MAX_RECORD: u64 = 8 << 20;

/// What the limiter shares with the row iterator.
#[derive(Debug, Default)]
pub struct Shared {
    /// Lines whose tail was cut.
    pub cut: Mutex<BTreeSet<u64>>,
    /// Bytes handed to the parser since the last record it returned.
    pub since_record: AtomicU64,
}

pub struct Limited<R> {
    inner: R,
    shared: Arc<Shared>,
    line: u64,
    line_bytes: u64,
    skipping: bool,
}

impl<R: BufRead> Limited<R> {
    pub fn new(inner: R, shared: Arc<Shared>) -> Self {
        Self {
            inner,
            shared,
            line: 1,
            line_bytes: 0,
            skipping: false,
        }
    }
}

impl<R: BufRead> Read for Limited<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            let avail = self.inner.fill_buf()?;
            if avail.is_empty() || out.is_empty() {
                return Ok(0);
            }
            if self.skipping {
                match avail.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        self.inner.consume(i);
                        self.skipping = false;
                        self.line_bytes = 0;
                    }
                    None => {
                        let n = avail.len();
                        self.inner.consume(n);
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
                self.shared
                    .cut
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(self.line);
                self.skipping = true;
                continue;
            }
            out[..n].copy_from_slice(&avail[..n]);
            self.inner.consume(n);
            let since = self
                .shared
                .since_record
                .fetch_add(n as u64, Ordering::Relaxed)
                + n as u64;
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
        assert_eq!(
            shared
                .cut
                .lock()
                .unwrap()
                .iter()
                .copied()
                .collect::<Vec<_>>(),
            vec![2]
        );
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
}
