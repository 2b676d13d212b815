//! The audit log: one record per change (authorization, keys, invitations, codes created,
//! renamed, deleted, batches, attribution settings), queryable as the table `audit_log`.
//!
//! Changes are rare next to events, so each record is its own small JSON file,
//! `audit_log/project=<P>/dt=<UTC day>/<time>-<uuid>.json`: written once, never rewritten, so
//! that two servers on one data directory never lose each other's records.

use chrono::{DateTime, SecondsFormat, Utc};
use object_store::{ObjectStoreExt, PutPayload};
use promolens_ingest::Storage;
use serde::Serialize;

use crate::error::{Error, Result};

pub const AUDIT_LOG: &str = "audit_log";

/// Whether the change was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Failed,
}

/// One change, as recorded.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditRecord<'a> {
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    /// The key that made the change, or `operator` for the CLI on the data directory.
    pub key_id: &'a str,
    /// `authorization.set`, `key.create`, `code.rename`, …
    pub action: &'a str,
    /// What was changed: a key id, a code id, `12 codes`.
    pub target: &'a str,
    pub outcome: Outcome,
}

#[derive(Clone)]
pub struct AuditLog {
    storage: Storage,
}

impl AuditLog {
    pub fn new(storage: Storage) -> AuditLog {
        AuditLog { storage }
    }

    /// Records a change. A record that cannot be written fails the call: a change the log
    /// does not show must not be reported as done.
    pub async fn record(
        &self,
        project: &str,
        key_id: &str,
        action: &str,
        target: &str,
        outcome: Outcome,
    ) -> Result<()> {
        let now = Utc::now();
        let record = AuditRecord {
            time: now.to_rfc3339_opts(SecondsFormat::Millis, true),
            key_id,
            action,
            target,
            outcome,
        };
        let mut line = serde_json::to_vec(&record).map_err(|e| Error::Storage(e.to_string()))?;
        line.push(b'\n');
        let path = self.storage.path(&file_name(project, now));
        self.storage
            .store
            .put(&path, PutPayload::from(line))
            .await
            .map_err(|e| Error::Storage(format!("writing the audit log: {e}")))?;
        Ok(())
    }
}

fn file_name(project: &str, time: DateTime<Utc>) -> String {
    let day = time.format("%Y-%m-%d").to_string();
    format!(
        "{}/{}-{}.json",
        promolens_schemas::layout::day_dir(AUDIT_LOG, project, &day),
        time.format("%Y%m%dT%H%M%S%.3fZ"),
        uuid::Uuid::new_v4().simple()
    )
}
