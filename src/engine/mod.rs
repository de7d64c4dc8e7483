//! The bulk engine, as stages: [`setup`] (paths, lock, checkpoint, outputs) → [`reader`]
//! (rows from the input, on their own thread) → [`dispatcher`] (per-SIM order, concurrency,
//! stops and halts) → [`worker`] (one row's calls, retries, reconcile) → [`recorder`] (the
//! one owner of every output, on its own thread). A planning stage that reads live state in
//! batches slots in between the reader and the dispatcher.
//!
//! It writes no file except through the recorder and the setup; it knows the provider only
//! through `api`.

pub(crate) mod config;
pub(crate) mod dispatcher;
pub(crate) mod dry_run;
pub(crate) mod halt;
pub(crate) mod reader;
pub(crate) mod recorder;
pub(crate) mod retry;
pub(crate) mod rules;
pub(crate) mod run;
pub(crate) mod setup;
pub(crate) mod threshold;
pub(crate) mod worker;

pub use config::{Error, JobConfig, ResumeMode};
pub(crate) use dry_run::dry_run;
pub use retry::RetryPolicy;
pub use run::run;
pub(crate) use setup::default_paths;
pub use threshold::Threshold;
