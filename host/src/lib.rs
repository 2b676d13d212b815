//! The promolens platform: DataFusion over the tables ingest writes, the acquisition analysis
//! and analysis specs (saved or not), read-only SQL, code management, projects/keys/roles ([`access`]), the HTTP API ([`api`]:
//! routes, layers, the JSON error) that [`server`] serves, and the `promolens` CLI's work.
//!
//! May depend on `schemas` and `ingest`; nothing depends on it.

pub mod access;
pub mod acquisition;
pub mod analysis;
pub mod api;
pub mod attribution_settings;
pub mod code_links;
pub mod codes;
pub mod config;
pub mod demo;
pub mod error;
pub mod generator;
pub mod internal_events;
pub mod output;
pub mod postgres;
pub mod props;
pub mod records;
pub mod saved_analyses;
pub mod server;
pub mod sql;
pub mod tables;

pub use error::{Error, Result};
