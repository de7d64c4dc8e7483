//! The bulk engine: scheduling rows (per-ICCID order, bounded concurrency), doing each
//! row (pacing, retries, reconcile-before-repeat), halting and stopping, and recording
//! every outcome through one owner. It writes no file itself except through the recorder.

pub mod halt;
pub mod recorder;
pub mod retry;
pub mod run;
pub mod scheduler;
pub mod setup;
pub mod threshold;
pub mod worker;

pub use retry::RetryPolicy;
pub use run::{Fatal, JobConfig, ResumeMode, dry_run, run};
pub use setup::default_paths;
pub use threshold::Threshold;
