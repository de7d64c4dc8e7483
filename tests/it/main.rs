//! One integration-test binary with topic modules (one link, shared helpers).

mod support;

mod contract;
mod endings;
mod engine;
mod faults;
mod hostile;
mod operator;
mod resume;
mod variant;
