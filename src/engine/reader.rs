//! The reader stage: rows read on a thread of their own and sent to the dispatcher in
//! batches; at the end, what the reader saw of the input, to compare with its fingerprint.
//!
//! Guarantees: reading pauses when the dispatcher is behind (a bounded channel of batches);
//! the thread ends when the dispatcher stops listening.

use crate::checkpoint::JobIdentity;
use crate::input::{self, FileError, Item};

/// Rows travel from the reader in batches, so the reader and the dispatcher wake each other
/// once per batch rather than once per row.
pub(crate) type Batch = Vec<Result<Item, FileError>>;

/// Rows per batch from the reader.
pub(crate) const BATCH: usize = 128;

/// The reader thread: rows in batches to the dispatcher; at the end, the blank rows it skipped
/// and what it saw of the input (when it read to the end).
pub(crate) type Reader = std::thread::JoinHandle<(u64, Option<input::limit::Seen>)>;

pub(crate) fn start(
    rows: input::Rows,
    tx: tokio::sync::mpsc::Sender<Batch>,
) -> std::io::Result<Reader> {
    std::thread::Builder::new()
        .name("simbulk-reader".into())
        .spawn(move || {
            let mut rows = rows;
            let mut batch = Vec::with_capacity(BATCH);
            for item in rows.by_ref() {
                let stop = item.is_err();
                batch.push(item);
                if (batch.len() == BATCH || stop)
                    && tx
                        .blocking_send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))
                        .is_err()
                {
                    return (rows.blank, None);
                }
                if stop {
                    return (rows.blank, None);
                }
            }
            if !batch.is_empty() && tx.blocking_send(batch).is_err() {
                return (rows.blank, None);
            }
            (rows.blank, rows.seen())
        })
}

/// Joins the reader, which read to the end: the blank rows it skipped, and how the input
/// differs from its fingerprint if it changed during the run.
pub(crate) async fn check_input(reader: Reader, identity: &JobIdentity) -> (u64, Option<String>) {
    let (blank, seen) = tokio::task::spawn_blocking(move || reader.join())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or((0, None));
    let changed = match seen {
        Some(s) if s.sha256 == identity.input_sha256 && s.bytes == identity.input_bytes => None,
        Some(s) if s.bytes != identity.input_bytes => Some(format!(
            "{} bytes at the start, {} bytes now",
            identity.input_bytes, s.bytes
        )),
        _ => Some("same size, different content".to_owned()),
    };
    (blank, changed)
}
