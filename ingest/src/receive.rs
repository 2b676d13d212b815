//! One body of events received for a project (over HTTP, or any other door): decompressed,
//! parsed and validated off the async workers, appended (durable when this returns), counted.
//! The HTTP route (`promolens::api::events`) is a thin layer over [`receive`].

use bytes::Bytes;
use promolens_schemas::event::validate_project_name;
use serde::Serialize;

use crate::body::{Rejected, gunzip, parse_body};
use crate::error::{Error, Result};
use crate::internal_events::{EventsReceived, InternalEvent};
use crate::pipeline::Ingestor;

/// Default body limit: 10 MiB, before and after gzip decompression.
pub const DEFAULT_BODY_LIMIT: usize = 10 * 1024 * 1024;

/// What became of a body's events.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IngestReport {
    /// Events stored by this request.
    pub accepted: usize,
    /// Events whose `event_id` was already stored for the project (counted once, not stored again).
    pub duplicates: usize,
    /// Lines or elements that are not valid events, each with its index and reason: the first
    /// [`crate::body::LISTED_REJECTS`].
    pub rejected: Vec<Rejected>,
    /// How many lines or elements were rejected in all.
    pub rejected_count: usize,
}

impl IngestReport {
    /// Whether the body held no valid event at all (retrying it cannot help).
    pub fn nothing_valid(&self) -> bool {
        self.accepted + self.duplicates == 0
    }
}

/// Receives `raw` (gzip when `gzip`), at most `limit` bytes also once inflated, for `project`.
/// Live ingest's time window applies (see [`crate::IngestConfig::ts_days_back`]).
pub async fn receive(
    ingestor: &Ingestor,
    project: &str,
    raw: Bytes,
    gzip: bool,
    limit: usize,
) -> Result<IngestReport> {
    validate_project_name(project).map_err(Error::BadProject)?;
    let config = ingestor.config();
    let limits = promolens_schemas::Limits {
        ts_window: Some(promolens_schemas::TsWindow {
            received_ms: chrono::Utc::now().timestamp_millis(),
            days_back: config.ts_days_back,
            days_ahead: config.ts_days_ahead,
        }),
        ..config.limits.clone()
    };
    let rows = ingestor.rows(project);
    // Parsing, decoding and building columns are CPU work: keep them off the async workers.
    let parsed = tokio::task::spawn_blocking(move || {
        if gzip {
            parse_body(&gunzip(&raw, limit)?, rows, &limits)
        } else {
            parse_body(&raw, rows, &limits)
        }
    })
    .await
    .map_err(|e| Error::Stopped(format!("the parsing thread failed: {e}")))??;
    if parsed.rows.is_empty() && parsed.rejected.is_empty() {
        return Err(Error::BadBody("body holds no events".into()));
    }
    let outcome = if parsed.rows.is_empty() {
        Default::default()
    } else {
        ingestor.append(parsed.rows).await?
    };
    EventsReceived {
        project,
        accepted: outcome.accepted(),
        duplicates: outcome.duplicates(),
        rejected: parsed.rejected_count,
    }
    .emit();
    Ok(IngestReport {
        accepted: outcome.accepted(),
        duplicates: outcome.duplicates(),
        rejected: parsed.rejected,
        rejected_count: parsed.rejected_count,
    })
}
