//! simbulk: bulk changes to IoT SIM cards through a provider's SIM REST API.
//!
//! Data flow: `input` (streamed CSV) → `engine` (scheduler, workers, retries, reconcile)
//! → `api` (token cache, pacing, typed calls) → the provider; every outcome goes through the
//! engine's recorder to `output` (results, failures, progress, summary) and `checkpoint`
//! (crash-safe journal). `sim` is an independent implementation of the same contract.

pub mod api;
pub mod app;
pub mod bench;
pub mod checkpoint;
pub mod cli;
pub mod demo;
pub mod durable;
pub mod engine;
pub mod exit;
pub mod export;
pub mod files;
pub mod input;
pub mod job;
pub mod model;
pub mod output;
pub mod preview;
pub mod report;
pub mod signal;
pub mod sim;
