//! The SIM API client: token cache, pacing, typed endpoints and error classification.
//! It knows nothing about rows or files.

pub(crate) mod body;
pub(crate) mod calls;
pub(crate) mod client;
pub(crate) mod emnify;
pub(crate) mod error;
pub(crate) mod pace;
pub(crate) mod super_sim;
pub(crate) mod tls;
pub(crate) mod token;
pub(crate) mod url;
pub mod wire;

pub(crate) use calls::CallCounts;
pub(crate) use client::Client;
pub use client::{Api, Endpoint};
pub use error::ApiError;
pub use error::SetupError;
pub(crate) use pace::Pacer;
pub use tls::plain_client;
pub(crate) use url::check_url;
