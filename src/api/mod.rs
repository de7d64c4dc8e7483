//! The SIM API client: token cache, pacing, typed endpoints and error classification.
//! It knows nothing about rows or files.

pub mod body;
pub mod client;
pub mod error;
pub mod pace;
pub mod tls;
pub mod token;

pub use client::{Client, Endpoint, Reply, check_url};
pub use error::{ApiError, SetupError};
pub use pace::Pacer;
