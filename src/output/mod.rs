//! Everything the user reads: results and failures files, progress, and the summary.
//! Nothing here decides an outcome.

pub mod progress;
pub mod results;
pub mod row;
pub mod stdout;
pub mod summary;

pub use results::{FailuresFile, ResultsFile, formula_safe};
pub use row::{RowResult, Tally, Verdict};
pub use summary::Summary;
