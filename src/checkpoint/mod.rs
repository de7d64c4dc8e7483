//! The checkpoint: a versioned, crash-safe journal of finished rows, bound to its job by a
//! fingerprint, and a lock so that one run at a time uses it. Nothing here knows HTTP.

pub(crate) mod fingerprint;
pub(crate) mod journal;
pub(crate) mod lock;
pub(crate) mod runs;

pub use fingerprint::JobIdentity;
pub(crate) use fingerprint::digest_file;
pub use journal::{Bounds, Header, Journal, JournalError, Replay, Run, RunStats, replay};
pub use lock::{JobLock, LockError};
