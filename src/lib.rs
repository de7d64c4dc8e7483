//! simbulk: bulk changes to IoT SIM cards through a provider's SIM REST API.
//!
//! Data flow: `input` (streamed CSV) → `engine` (scheduler, workers, retries, reconcile)
//! → `api` (token cache, pacing, typed calls) → the provider; every outcome goes through the
//! engine's recorder to `output` (results, failures, progress, summary) and `checkpoint`
//! (crash-safe journal). `sim` is an independent implementation of the same contract.

pub mod api;
pub mod checkpoint;
mod clock;
pub mod commands;
pub mod engine;
mod exit;
pub mod files;
pub mod input;
pub mod model;
pub mod output;
mod report;
mod signal;
pub mod sim;
