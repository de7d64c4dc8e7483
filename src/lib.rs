//! simbulk: bulk changes to IoT SIM cards through a provider's SIM REST API.
//!
//! Data flow (one way): `commands` → `engine` (setup, reader, dispatcher, workers, recorder)
//! → `api` (TLS, token cache, pacing, typed calls) → the provider; every outcome goes
//! through the engine's recorder to `output` (results, failures, progress, summary) and
//! `checkpoint` (crash-safe journal). `sim` is an independent implementation of the same
//! contract, sharing only `model`. The map: `docs/design/architecture.md`.
//!
//! The public surface is what tests, benches and a library user need: the simulator
//! ([`sim::SimServer`]), the engine entry ([`engine::run`] with [`engine::JobConfig`]), the
//! input reader ([`input::open`]), the checkpoint journal and the results types.

// A long function is a smell to look at (thresholds in clippy.toml); one kept whole says why.
#![warn(clippy::too_many_lines)]
#![warn(missing_docs)]

pub mod api;
mod bloom;
pub mod checkpoint;
use simbulk_model::clock;
pub mod commands;
pub mod engine;
pub mod exit;
pub mod files;
pub mod input;
pub use simbulk_model as model;
pub mod output;
pub mod quota;
mod report;
mod signal;
pub use simbulk_sim as sim;
mod undo;
mod verify;
