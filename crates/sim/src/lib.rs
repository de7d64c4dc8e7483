//! The SIM API simulator: a faithful, fast, seeded implementation of `docs/sim-api`
//! with fault injection and an introspection surface (`/__sim/stats`, `/__sim/ledger`).
//!
//! It shares only `simbulk-model` with the client (a dependency fact: this crate depends on
//! nothing of the client's), so it is a second, independent reading of the contract.

#![warn(missing_docs)]
// A long function is a smell to look at (thresholds in clippy.toml); one kept whole says why.
#![warn(clippy::too_many_lines)]

use simbulk_model as model;
use simbulk_model::clock;

mod admin;
mod app;
pub(crate) mod auth;
pub(crate) mod config;
pub(crate) mod emnify;
pub(crate) mod faults;
mod handle;
pub(crate) mod ledger;
pub(crate) mod limits;
mod list;
mod persist;
mod routes;
pub(crate) mod rules;
pub mod seed;
mod server;
pub mod state;
pub(crate) mod twilio;

pub use config::{
    AfterApply, ClientConfig, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, FaultConfig, Permission,
    Provider, SimConfig, default_clients,
};
pub use handle::SimServer;
pub use ledger::{LedgerEntry, StatsReport};
pub use persist::SimError;
pub use twilio::account_sid as twilio_account_sid;
