//! promolens ingest: launch events in, hive-partitioned Parquet out.
//!
//! Events arrive as bodies ([`receive`], which the host's HTTP route calls) or from files
//! ([`backfill`]); both parse and validate with
//! the `schemas` wire format, decode attribution with the one `schemas` decoder, and go through the
//! same [`pipeline`]: dedupe by `event_id` ([`dedupe`]), the write-ahead log that makes a 2xx
//! durable ([`wal`]), a buffer, and Parquet files written through object_store ([`storage`]),
//! with each user's earliest launch kept beside them ([`first_seen`]) and small files merged by
//! [`compact`]. Each project's launches are decoded with its current attribution settings
//! ([`attributors`]); [`reattribute`] decodes stored days again after the settings change.
//!
//! Depends on `schemas` only among our crates; must not depend on `host` (queries live there),
//! nor on an HTTP framework (routes, status codes and the JSON error live in `host::api`).

pub mod attributors;
pub mod backfill;
pub mod body;
pub mod compact;
pub mod dedupe;
pub mod durable_store;
pub mod error;
pub mod first_seen;
pub mod internal_events;
pub mod markers;
pub mod parquet_io;
pub mod partition;
pub mod pipeline;
pub mod reattribute;
pub mod receive;
pub mod record;
pub mod replace;
pub mod storage;
pub mod visible_store;
pub mod wal;

pub use attributors::Attributors;
pub use error::{Error, Result};
pub use partition::ProjectZones;
pub use pipeline::{AppendOutcome, IngestConfig, Ingestor};
pub use storage::Storage;
