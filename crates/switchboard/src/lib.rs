//! The Switchboard daemon: configuration, the SIP core that joins the registrar,
//! authentication and transactions, and the async shell that runs it.
//!
//! The binary (`main.rs`) is a thin command-line front; everything here is a library so
//! that tests, benchmarks and fuzz targets can drive the same code.

pub mod api;
pub mod board;
pub mod client;
pub mod config;
pub mod core;
pub mod directory;
pub mod executor;
pub mod explain;
pub mod logging;
pub mod mail;
pub mod metrics;
pub mod policy_source;
pub mod presence_service;
pub mod profiles;
pub mod records;
pub mod server;
#[cfg(test)]
mod test_harness;
pub mod voice;
pub mod voicemail;
