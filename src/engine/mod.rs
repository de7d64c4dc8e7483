//! The bulk engine, as stages: [`setup`] (paths, lock, checkpoint, outputs) → [`reader`]
//! (rows from the input, on their own thread) → [`plan`] (each window of up to 100 SIMs read
//! with one list call) → [`dispatcher`] (per-SIM order, the state carried from row to row,
//! concurrency, canary, stops and halts) → [`worker`] (one row: [`calls`] in a run,
//! [`preview`] in a preview) → [`recorder`] (the one owner of every output, on its own
//! thread).
//!
//! It writes no file except through the recorder and the setup; it knows the provider only
//! through `api`.

pub(crate) mod activation;
pub(crate) mod apply;
pub(crate) mod calls;
pub(crate) mod carry;
pub(crate) mod config;
pub(crate) mod diff;
pub(crate) mod dispatcher;
pub(crate) mod dry_run;
pub(crate) mod gate;
pub(crate) mod halt;
pub(crate) mod plan;
pub(crate) mod provider;
pub(crate) mod reader;
pub(crate) mod recorder;
pub(crate) mod retry;
pub(crate) mod rules;
pub(crate) mod run;
pub(crate) mod schedule;
pub(crate) mod setup;
pub(crate) mod threshold;
pub(crate) mod worker;

pub(crate) use config::default_paths;
pub use config::{Error, JobConfig, ResumeMode};
pub(crate) use dry_run::dry_run;
pub use provider::ConnectError;
pub use retry::RetryPolicy;
pub use run::run;
pub use threshold::Threshold;
