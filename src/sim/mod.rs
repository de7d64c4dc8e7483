//! The SIM API simulator: a faithful, fast, seeded implementation of `../shared/sim-api`
//! with fault injection and an introspection surface (`/__sim/stats`, `/__sim/ledger`).
//!
//! It shares only `model` with the client, so it is a second, independent reading of the
//! contract.

mod admin;
pub mod auth;
pub mod config;
pub mod faults;
mod handle;
pub mod ledger;
pub mod limits;
mod list;
mod persist;
mod routes;
pub mod rules;
pub mod seed;
mod server;
pub mod state;

pub use config::{
    AfterApply, ClientConfig, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, FaultConfig, Permission,
    SimConfig,
};
pub use handle::SimServer;
pub use ledger::{LedgerEntry, StatsReport};
pub use persist::SimError;
