//! One integration-test binary with topic modules (one link, shared helpers).

mod support;

mod apply;
mod architecture;
mod contract;
mod emnify_sim;
mod endings;
mod engine;
mod faults;
mod hostile;
mod hostile_provider;
mod knowledge;
mod morning;
mod operator;
mod plan;
mod profiles;
mod providers;
mod quota;
mod resume;
mod snapshots;
mod spreadsheets;
mod super_sim;
mod variant;
mod watch;
