//! The checkpoint journal: an append-only, versioned record of every row that started a
//! write and every row that finished.
//!
//! Format (version 4: the results it vouches for have `before` and `before_state` columns), one
//! record per line, each ending in its own CRC-32:
//!
//! ```text
//! SIMBULK-CHECKPOINT 4 {"job":{…},"results":"…","failures":"…","created":"…"}
//! S <results_len> <failures_len> <crc>        headers written
//! B <line> <crc>                              a write for this row is about to be sent
//! R <line> <k|s|f|i> <results_len> <failures_len> <crc>   one finished row
//! E <exit_code> <crc>                         every row of the job has a record
//! ```
//!
//! Guarantees: a torn or corrupt tail is detected (no newline, or a CRC mismatch) and
//! dropped with everything after it; each `R` record carries the byte lengths of the results
//! and failures files that include its row, and records are handed to the OS only after
//! those bytes, so on resume the outputs are cut back to exactly the rows the journal vouches
//! for; a row with a `B` record and no `R` record is exactly a row whose write may have been
//! applied by a run that ended without recording it. Details and the crash-point analysis:
//! `docs/design/checkpoint.md`.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use fixedbitset::FixedBitSet;
use serde::{Deserialize, Serialize};

use crate::files::{AppendFile, OpenMode};
use crate::output::row::{Tally, Verdict};

use super::fingerprint::JobIdentity;

/// The format version this build writes and reads.
pub(crate) const VERSION: u32 = 4;
const MAGIC: &str = "SIMBULK-CHECKPOINT";

/// The letter a verdict has in an `R` record.
fn letter(v: Verdict) -> char {
    match v {
        Verdict::Ok => 'k',
        Verdict::Skipped => 's',
        Verdict::Failed => 'f',
        Verdict::Invalid => 'i',
        Verdict::Pending => 'p',
    }
}

fn from_letter(c: &str) -> Option<Verdict> {
    Some(match c {
        "k" => Verdict::Ok,
        "s" => Verdict::Skipped,
        "f" => Verdict::Failed,
        "i" => Verdict::Invalid,
        "p" => Verdict::Pending,
        _ => return None,
    })
}

/// The header line's JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// What binds the checkpoint to its job.
    pub job: JobIdentity,
    /// The results file the job writes (absolute).
    pub results: PathBuf,
    /// The failures file the job writes (absolute).
    pub failures: PathBuf,
    /// When the job started (RFC 3339).
    pub created: String,
    /// The job's input (absolute), for the report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<PathBuf>,
    /// `--change-ref`: the change ticket the job belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_ref: Option<String>,
    /// The OS user who started the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    /// The simbulk version that started the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// An apply's plan: the arguments of `simbulk apply` that plan it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply_again: Option<String>,
}

pub use super::runs::{Run, RunStats};

/// Runs of a job remembered at most (later ones are counted).
pub const MAX_RUNS: usize = 1000;

/// What a journal says, read back.
#[derive(Debug, Clone)]
pub struct Replay {
    /// The journal's header.
    pub header: Header,
    /// The journal's format version.
    pub version: u32,
    /// Input lines recorded done.
    pub done: FixedBitSet,
    /// Input lines whose row started a write (done or not).
    pub started: FixedBitSet,
    /// The rows recorded, by outcome.
    pub tally: Tally,
    /// Lengths of the outputs the last good record vouches for (`None`: headers not written).
    pub results_len: Option<u64>,
    /// The length of the failures file the last good record vouches for.
    pub failures_len: u64,
    /// The exit code of a finished job.
    pub finished: Option<u8>,
    /// Bytes of the journal that are good (the rest is a torn tail).
    pub good_bytes: u64,
    /// A torn or foreign tail was left out.
    pub dropped_tail: bool,
    /// The job's runs, first to last (at most [`MAX_RUNS`]).
    pub runs: Vec<Run>,
}

/// Why a journal cannot be used.
#[expect(
    missing_docs,
    reason = "each variant's #[error] message is its documentation, naming its fields"
)]
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot read checkpoint {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a simbulk checkpoint; point --checkpoint elsewhere or delete the file")]
    NotACheckpoint { path: PathBuf },
    #[error(
        "checkpoint {path} has format version {found}; this simbulk reads version {VERSION}. Finish the job with the simbulk that started it, or start again with --restart"
    )]
    Version { path: PathBuf, found: String },
    /// Not a regular file, or larger than a checkpoint of this job can be.
    #[error("{0}; it is not this job's checkpoint: point --checkpoint elsewhere, or use --restart")]
    Unusable(#[source] crate::files::Error),
}

/// What a journal may hold: the current sizes of the results and failures files (a record
/// claiming more than is there ends the good prefix), the highest line a record may name,
/// and the largest journal believed.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// The results file's current size in bytes.
    pub results: u64,
    /// The failures file's current size in bytes.
    pub failures: u64,
    /// The highest input line a record may name.
    pub max_line: usize,
    /// The largest journal believed.
    pub max_bytes: u64,
}

impl Bounds {
    /// For a job whose input has `lines` lines: room for a finished record and several
    /// started records per line.
    pub(crate) fn for_input(lines: u64) -> Self {
        Self {
            results: u64::MAX,
            failures: u64::MAX,
            max_line: usize::try_from(lines.saturating_add(1))
                .unwrap_or(MAX_LINE)
                .min(MAX_LINE),
            max_bytes: lines
                .saturating_add(1)
                .saturating_mul(256)
                .saturating_add(1 << 20),
        }
    }

    /// With the current sizes of the output files.
    pub(crate) fn with_outputs(self, results: u64, failures: u64) -> Self {
        Self {
            results,
            failures,
            ..self
        }
    }

    /// No bound but [`MAX_LINE`] (tests and tools).
    pub fn unlimited() -> Self {
        Self {
            results: u64::MAX,
            failures: u64::MAX,
            max_line: MAX_LINE,
            max_bytes: u64::MAX,
        }
    }
}

/// Longest header line read (its JSON holds two paths and a digest).
const MAX_HEADER: u64 = 64 << 10;
/// Longest record line read.
const MAX_RECORD: u64 = 128;

fn crc_line(body: &str) -> String {
    format!("{body} {:08x}\n", crc32fast::hash(body.as_bytes()))
}

fn check_crc(line: &str) -> Option<&str> {
    let (body, crc) = line.rsplit_once(' ')?;
    let want = u32::from_str_radix(crc, 16).ok()?;
    (crc.len() == 8 && crc32fast::hash(body.as_bytes()) == want).then_some(body)
}

/// Reads a journal, which must be a regular file (never a link) within `bounds`. Stops at the
/// first torn or corrupt record.
pub fn replay(path: &Path, bounds: Bounds) -> Result<Replay, JournalError> {
    let f = crate::files::open_regular(path, "--checkpoint", bounds.max_bytes, false)
        .map_err(JournalError::Unusable)?;
    replay_from(BufReader::with_capacity(256 * 1024, f), path, bounds)
}

/// Reads one line of at most `max` bytes into `line`; a longer one is cut there (and then
/// lacks its newline, as a torn record does).
fn read_line(r: &mut impl BufRead, line: &mut Vec<u8>, max: u64) -> std::io::Result<usize> {
    line.clear();
    r.take(max).read_until(b'\n', line)
}

/// Reads a journal from any reader, within `bounds`.
pub(crate) fn replay_from(
    mut r: impl BufRead,
    path: &Path,
    bounds: Bounds,
) -> Result<Replay, JournalError> {
    let io = |source| JournalError::Io {
        path: path.to_owned(),
        source,
    };
    let mut line = Vec::new();
    let n = read_line(&mut r, &mut line, MAX_HEADER).map_err(io)?;
    let header = read_header(&line[..n], path)?;
    let mut rep = Replay {
        header,
        version: VERSION,
        done: FixedBitSet::new(),
        started: FixedBitSet::new(),
        tally: Tally::default(),
        results_len: None,
        failures_len: 0,
        finished: None,
        runs: Vec::new(),
        good_bytes: n as u64,
        dropped_tail: false,
    };
    loop {
        let n = read_line(&mut r, &mut line, MAX_RECORD).map_err(io)?;
        if n == 0 {
            break;
        }
        let text = std::str::from_utf8(&line)
            .ok()
            .filter(|t| t.ends_with('\n'));
        let body = text.and_then(|t| check_crc(t.trim_end_matches('\n')));
        if body.and_then(|b| rep.apply(b, &bounds)).is_none() {
            rep.dropped_tail = true;
            break;
        }
        rep.good_bytes += n as u64;
    }
    Ok(rep)
}

/// The header line: magic, version, the job's JSON.
fn read_header(first: &[u8], path: &Path) -> Result<Header, JournalError> {
    let first = std::str::from_utf8(first).unwrap_or("");
    let not_cp = || JournalError::NotACheckpoint {
        path: path.to_owned(),
    };
    let rest = first
        .strip_prefix(MAGIC)
        .and_then(|s| s.strip_prefix(' '))
        .ok_or_else(not_cp)?;
    let (version, json) = rest.split_once(' ').ok_or_else(not_cp)?;
    if version != VERSION.to_string() {
        return Err(JournalError::Version {
            path: path.to_owned(),
            found: version.chars().take(20).collect(),
        });
    }
    if !first.ends_with('\n') {
        return Err(not_cp());
    }
    serde_json::from_str(json.trim_end()).map_err(|_| not_cp())
}

impl Replay {
    /// Applies one record whose CRC is good; `None` when it makes no sense (the good prefix
    /// ends before it).
    fn apply(&mut self, body: &str, b: &Bounds) -> Option<()> {
        let lens = |x: &str, y: &str| -> Option<(u64, u64)> {
            let (x, y) = (x.parse().ok()?, y.parse().ok()?);
            (x <= b.results && y <= b.failures).then_some((x, y))
        };
        let f: Vec<&str> = body.split(' ').collect();
        match f.as_slice() {
            ["S", x, y, rest @ ..] if rest.len() <= 1 => {
                let (x, y) = lens(x, y)?;
                self.results_len = Some(x);
                self.failures_len = y;
                if self.runs.len() < MAX_RUNS {
                    self.runs.push(Run {
                        started_ms: rest.first().and_then(|m| m.parse().ok()),
                        ..Run::default()
                    });
                }
            }
            ["X", rest @ ..] => {
                let end = super::runs::parse_end(rest)?;
                if let Some(run) = self.runs.last_mut() {
                    run.end(end);
                }
            }
            ["B", l] => {
                put(&mut self.started, line_number(l, b.max_line)?);
            }
            ["R", l, v, x, y] => {
                let (l, v, (x, y)) = (line_number(l, b.max_line)?, from_letter(v)?, lens(x, y)?);
                if !put(&mut self.done, l) {
                    self.tally.add(v);
                }
                self.results_len = Some(x);
                self.failures_len = y;
            }
            ["E", c] => self.finished = Some(c.parse().ok()?),
            _ => return None,
        }
        Some(())
    }
}

/// Now, in milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    (crate::clock::epoch_seconds() * 1000.0) as u64
}

/// Longest line number a record may name: a bitset over a billion lines is 128 MiB, and no
/// job has that many rows; a larger number is corruption, not a row.
pub(crate) const MAX_LINE: usize = 1 << 30;

fn line_number(s: &str, max: usize) -> Option<usize> {
    s.parse::<usize>().ok().filter(|l| *l <= max.min(MAX_LINE))
}

/// Sets bit `l`, growing the set; returns whether it was set before.
fn put(set: &mut FixedBitSet, l: usize) -> bool {
    if l >= set.len() {
        set.grow((l + 1).max(set.len() * 2).min(MAX_LINE + 1));
    }
    set.put(l)
}

impl Replay {
    /// Rows that started a write and have no record: their write may have been applied.
    pub(crate) fn in_doubt(&self) -> FixedBitSet {
        let mut s = self.started.clone();
        s.difference_with(&self.done);
        s
    }
}

/// The journal being written.
pub struct Journal {
    file: AppendFile,
}

impl Journal {
    /// Starts a new journal (mode 0600) with its header line.
    pub fn create(path: &Path, header: &Header) -> std::io::Result<Self> {
        let mut file = AppendFile::open(path, OpenMode::Truncate, 0o600)?;
        // A checkpoint that existed (a --restart) keeps its old mode unless told.
        file.set_mode(0o600)?;
        let json = serde_json::to_string(header).map_err(std::io::Error::other)?;
        file.buf()
            .extend_from_slice(format!("{MAGIC} {VERSION} {json}\n").as_bytes());
        Ok(Self { file })
    }

    /// Continues a journal after its good prefix.
    pub(crate) fn resume(path: &Path, good_bytes: u64) -> std::io::Result<Self> {
        Ok(Self {
            file: AppendFile::open(path, OpenMode::KeepPrefix(good_bytes), 0o600)?,
        })
    }

    /// A run starts with the results and failures files at these lengths.
    pub fn start(&mut self, results_len: u64, failures_len: u64) {
        let l = crc_line(&format!("S {results_len} {failures_len} {}", now_ms()));
        self.file.buf().extend_from_slice(l.as_bytes());
    }

    /// A write for the row on `line` is about to be sent.
    pub(crate) fn started(&mut self, line: u64) {
        let l = crc_line(&format!("B {line}"));
        self.file.buf().extend_from_slice(l.as_bytes());
    }

    /// The row on `line` finished with `verdict`; the outputs are now this long.
    pub fn row(&mut self, line: u64, verdict: Verdict, results_len: u64, failures_len: u64) {
        let l = crc_line(&format!(
            "R {line} {} {results_len} {failures_len}",
            letter(verdict)
        ));
        self.file.buf().extend_from_slice(l.as_bytes());
    }

    /// The run ends with this exit code, having sent and met `stats`.
    pub(crate) fn ran(&mut self, code: u8, stats: RunStats) {
        let l = crc_line(&super::runs::end_record(code, now_ms(), stats));
        self.file.buf().extend_from_slice(l.as_bytes());
    }

    pub(crate) fn end(&mut self, code: u8) {
        let l = crc_line(&format!("E {code}"));
        self.file.buf().extend_from_slice(l.as_bytes());
    }

    /// Hands the buffered records to the operating system.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }

    pub(crate) fn sync(&self) -> std::io::Result<()> {
        self.file.sync()
    }

    pub(crate) fn pending(&self) -> usize {
        self.file.pending()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header() -> Header {
        Header {
            job: JobIdentity {
                input_sha256: "ab".into(),
                input_bytes: 3,
                action: None,
                value: None,
                attribute: None,
                preview: false,
            },
            results: "r.csv".into(),
            failures: "f.csv".into(),
            created: "now".into(),
            input: None,
            change_ref: Some("CHG-1".into()),
            operator: None,
            version: None,
            apply_again: None,
        }
    }

    fn sample(dir: &Path) -> PathBuf {
        let p = dir.join("j.checkpoint");
        let mut j = Journal::create(&p, &header()).unwrap();
        j.start(10, 5);
        j.started(2);
        j.row(2, Verdict::Ok, 20, 5);
        j.row(3, Verdict::Failed, 30, 9);
        j.started(7);
        j.row(5, Verdict::Skipped, 40, 9);
        j.flush().unwrap();
        p
    }

    #[test]
    fn replay_reads_back_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let p = sample(dir.path());
        let r = replay(&p, Bounds::unlimited()).unwrap();
        assert_eq!(r.header, header());
        assert_eq!(r.done.ones().collect::<Vec<_>>(), vec![2, 3, 5]);
        assert_eq!((r.results_len, r.failures_len), (Some(40), 9));
        assert_eq!(
            r.tally,
            Tally {
                ok: 1,
                skipped: 1,
                failed: 1,
                invalid: 0,
                pending: 0
            }
        );
        assert!(!r.dropped_tail);
        assert_eq!(r.started.ones().collect::<Vec<_>>(), vec![2, 7]);
        assert_eq!(r.in_doubt().ones().collect::<Vec<_>>(), vec![7]);
    }

    #[test]
    fn a_line_number_past_the_bound_is_corruption_not_a_huge_bitset() {
        let dir = tempfile::tempdir().unwrap();
        let p = sample(dir.path());
        let mut j = Journal::resume(&p, std::fs::metadata(&p).unwrap().len()).unwrap();
        j.row(u64::MAX, Verdict::Ok, 40, 9);
        j.flush().unwrap();
        let r = replay(&p, Bounds::unlimited()).unwrap();
        assert!(r.dropped_tail);
        assert_eq!(r.done.ones().collect::<Vec<_>>(), vec![2, 3, 5]);
        assert!(r.done.len() < 1024);
    }

    #[test]
    fn a_checkpoint_too_large_for_its_input_or_not_a_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("zeros");
        std::fs::File::create(&p)
            .unwrap()
            .set_len((1 << 20) + 256 * 4 + 1)
            .unwrap();
        let e = replay(&p, Bounds::for_input(3)).unwrap_err();
        assert!(matches!(e, JournalError::Unusable(_)), "{e}");
        assert!(e.to_string().contains("--restart"), "{e}");
        let e = replay(Path::new("/dev/zero"), Bounds::for_input(3)).unwrap_err();
        assert!(e.to_string().contains("a device"), "{e}");
        // A long line without a newline is read only up to its bound.
        std::fs::write(&p, vec![b'S'; 10 << 20]).unwrap();
        let e = replay(&p, Bounds::unlimited()).unwrap_err();
        assert!(matches!(e, JournalError::NotACheckpoint { .. }), "{e}");
        // A record naming a line past the input is corruption.
        let q = sample(dir.path());
        let r = replay(&q, Bounds::for_input(4)).unwrap();
        assert_eq!(
            r.done.ones().collect::<Vec<_>>(),
            vec![2, 3],
            "line 5 > 4 + 1"
        );
    }

    #[test]
    fn a_torn_last_record_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let p = sample(dir.path());
        let full = std::fs::read(&p).unwrap();
        std::fs::write(&p, &full[..full.len() - 4]).unwrap();
        let r = replay(&p, Bounds::unlimited()).unwrap();
        assert!(r.dropped_tail);
        assert_eq!(r.done.ones().collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(r.results_len, Some(30));
        let mut j = Journal::resume(&p, r.good_bytes).unwrap();
        j.row(5, Verdict::Ok, 41, 9);
        j.flush().unwrap();
        let r2 = replay(&p, Bounds::unlimited()).unwrap();
        assert!(!r2.dropped_tail);
        assert_eq!(r2.done.ones().collect::<Vec<_>>(), vec![2, 3, 5]);
    }

    #[test]
    fn a_record_claiming_more_output_than_exists_ends_the_good_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let p = sample(dir.path());
        let r = replay(&p, Bounds::unlimited().with_outputs(35, 100)).unwrap();
        assert_eq!(r.done.ones().collect::<Vec<_>>(), vec![2, 3]);
    }

    #[test]
    fn other_versions_and_other_files_are_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("old");
        std::fs::write(&p, "SIMBULK-CHECKPOINT 1 {}\n").unwrap();
        let e = replay(&p, Bounds::unlimited()).unwrap_err();
        assert!(matches!(e, JournalError::Version { .. }), "{e}");
        assert!(e.to_string().contains("--restart"));
        std::fs::write(&p, "iccid,action\n").unwrap();
        assert!(matches!(
            replay(&p, Bounds::unlimited()).unwrap_err(),
            JournalError::NotACheckpoint { .. }
        ));
    }

    proptest! {
        #[test]
        fn any_prefix_or_garbage_tail_replays_to_a_prefix_of_the_rows(cut in 0usize..400, garbage in proptest::collection::vec(any::<u8>(), 0..64)) {
            let dir = tempfile::tempdir().unwrap();
            let p = sample(dir.path());
            let full = std::fs::read(&p).unwrap();
            let mut bytes = full[..cut.min(full.len())].to_vec();
            bytes.extend_from_slice(&garbage);
            std::fs::write(&p, &bytes).unwrap();
            if let Ok(r) = replay(&p, Bounds::unlimited()) {
                let done: Vec<usize> = r.done.ones().collect();
                prop_assert!([vec![], vec![2], vec![2, 3], vec![2, 3, 5]].contains(&done));
            }
        }
    }
}
