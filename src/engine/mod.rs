//! The bulk engine, as stages: [`setup`] (paths, lock, checkpoint, outputs) → [`reader`]
//! (rows from the input, on their own thread) → [`dispatcher`] (per-SIM order, concurrency,
//! stops and halts) → [`worker`] (one row's calls, retries, reconcile) → [`recorder`] (the
//! one owner of every output, on its own thread). A planning stage that reads live state in
//! batches slots in between the reader and the dispatcher.
//!
//! It writes no file except through the recorder and the setup; it knows the provider only
//! through `api`.

pub mod config;
pub mod dispatcher;
pub mod dry_run;
pub mod halt;
pub mod reader;
pub mod recorder;
pub mod retry;
pub mod rules;
pub mod run;
pub mod setup;
pub mod threshold;
pub mod worker;

pub use config::{Error, JobConfig, ResumeMode};
pub use dry_run::dry_run;
pub use retry::RetryPolicy;
pub use run::run;
pub use setup::default_paths;
pub use threshold::Threshold;
