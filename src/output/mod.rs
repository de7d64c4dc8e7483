//! Everything the user reads: results and failures files, progress, and the summary.
//! Nothing here decides an outcome.

pub(crate) mod groups;
pub(crate) mod metrics;
pub(crate) mod progress;
pub(crate) mod results;
pub(crate) mod row;
pub(crate) mod stdout;
pub(crate) mod summary;

pub use results::ResultsFile;
pub(crate) use results::{FailuresFile, unguarded};
pub use row::{Before, RowResult, Tally, Verdict};
pub use summary::Summary;
