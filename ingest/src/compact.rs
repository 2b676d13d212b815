//! Compaction: the small files of a partition merged into one, without promolens' own queries ever
//! seeing an event twice or missing one while it runs. The files of `user_first_seen` (one per
//! flush and project) are merged the same way, into one row per user.
//!
//! The protocol, per partition (`launch_events/project=P/dt=D/`, `user_first_seen/project=P/`):
//! 1. write a marker `_compaction-<id>.json` naming the output file and the input files;
//! 2. write the output `part-…-compact.parquet` (one atomic put): from now on a reader that sees
//!    the marker and the output hides the inputs ([`crate::markers::visible_files`]);
//! 3. after a grace period (so that a query that listed the inputs before step 2 can still read
//!    them), delete the inputs, then the marker.
//!
//! A crash anywhere leaves a state readers handle and the next run finishes: a marker without its
//! output is dropped, a marker with its output gets its inputs deleted. Engines that do not read
//! markers (DuckDB, Spark) see the inputs and the output together only during the grace period;
//! run compaction in a quiet hour, or de-duplicate on `event_id`, if they read a live directory.
//! One compactor per data directory (concurrent compactors could merge the same inputs twice).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use arrow_array::{RecordBatch, StringArray};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::first_seen::earliest_per_user;
use crate::internal_events::InternalEvent;
use crate::markers::{
    MARKER_PREFIX, Marker, file_name, folder, is_data_file, is_marker, read_marker,
};
use crate::parquet_io::{Table, read_parquet, sort_for, write_parquet};
use crate::storage::Storage;

#[derive(Debug, Clone)]
pub struct CompactOptions {
    /// Only partitions with at least this many data files are merged.
    pub min_files: usize,
    /// How long replaced files stay readable after their replacement exists.
    pub grace: Duration,
    /// Only this project (all when `None`).
    pub project: Option<String>,
}

impl Default for CompactOptions {
    fn default() -> Self {
        CompactOptions {
            min_files: 2,
            grace: Duration::from_secs(60),
            project: None,
        }
    }
}

/// What one run did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct CompactSummary {
    /// `launch_events` and `events` partitions merged in this run.
    pub partitions: usize,
    /// Files merged away in this run.
    pub files_merged: usize,
    /// Events in the merged `launch_events` and `events` files.
    pub events: usize,
    /// Users in the merged `user_first_seen` files.
    pub users: usize,
    /// Earlier compactions finished (inputs deleted) in this run.
    pub finished: usize,
}

/// Runs one compaction pass over `launch_events`, `events` and `user_first_seen`.
pub async fn compact(storage: &Storage, options: &CompactOptions) -> Result<CompactSummary> {
    let started = std::time::Instant::now();
    let summary = compact_tables(storage, options).await?;
    crate::internal_events::CompactionDone {
        partitions: summary.partitions,
        files_merged: summary.files_merged,
        elapsed: started.elapsed(),
    }
    .emit();
    Ok(summary)
}

async fn compact_tables(storage: &Storage, options: &CompactOptions) -> Result<CompactSummary> {
    let writer = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let mut summary = CompactSummary::default();
    for table in [Table::LaunchEvents, Table::Events, Table::UserFirstSeen] {
        let name = table.name();
        let root = match &options.project {
            Some(p) => promolens_schemas::layout::project_dir(name, p),
            None => name.to_string(),
        };
        let store = storage.store.as_ref();
        let all: Vec<ObjectMeta> = store.list(Some(&storage.path(&root))).try_collect().await?;
        let mut partitions: BTreeMap<Path, Vec<ObjectMeta>> = BTreeMap::new();
        for meta in all {
            partitions
                .entry(folder(&meta.location))
                .or_default()
                .push(meta);
        }
        for (dir, files) in partitions {
            compact_partition(store, table, &dir, files, options, writer, &mut summary).await?;
        }
    }
    Ok(summary)
}

async fn compact_partition(
    store: &dyn ObjectStore,
    table: Table,
    dir: &Path,
    files: Vec<ObjectMeta>,
    options: &CompactOptions,
    writer: &str,
    summary: &mut CompactSummary,
) -> Result<()> {
    let present: HashMap<String, &ObjectMeta> = files
        .iter()
        .map(|m| (file_name(&m.location).to_string(), m))
        .collect();
    let now = chrono::Utc::now();
    let mut claimed: HashSet<String> = HashSet::new();
    // Finish or drop earlier compactions.
    for meta in files.iter().filter(|m| is_marker(&m.location)) {
        let marker = match read_marker(store, &meta.location).await {
            Ok(m) => m,
            Err(object_store::Error::NotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        if !present.contains_key(&marker.output) {
            // Died before its output was written: the inputs were never hidden.
            delete_quietly(store, &meta.location).await?;
            continue;
        }
        let age = (now - meta.last_modified).to_std().unwrap_or_default();
        if age >= options.grace {
            finish(store, dir, &marker, &meta.location).await?;
            summary.finished += 1;
        } else {
            // Still in its grace period: its output is new, and it is not merged again yet.
            claimed.insert(marker.output.clone());
        }
        // Replaced (or now deleted): never an input again.
        claimed.extend(marker.inputs.iter().cloned());
    }
    let inputs: Vec<&ObjectMeta> = files
        .iter()
        .filter(|m| is_data_file(&m.location) && !claimed.contains(file_name(&m.location)))
        .collect();
    if inputs.len() < options.min_files.max(2) {
        return Ok(());
    }
    let mut batches = Vec::new();
    for meta in &inputs {
        let bytes = store.get(&meta.location).await?.bytes().await?;
        batches.extend(read_parquet(bytes)?);
    }
    let (merged, rows) = tokio::task::spawn_blocking(move || merge(table, batches))
        .await
        .map_err(|e| Error::Stopped(format!("compaction task failed: {e}")))??;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let output = format!(
        "part-{}-{writer}-{}-compact.parquet",
        now.format("%Y%m%dT%H%M%S%3f"),
        &id[..8]
    );
    let marker = Marker {
        output: output.clone(),
        inputs: inputs
            .iter()
            .map(|m| file_name(&m.location).to_string())
            .collect(),
    };
    let marker_path = dir
        .clone()
        .join(format!("{MARKER_PREFIX}{id}.json").as_str());
    let marker_json = serde_json::to_vec(&marker)
        .map_err(|e| Error::io("encoding a compaction marker", e.into()))?;
    store
        .put_opts(
            &marker_path,
            PutPayload::from(marker_json),
            PutOptions::from(PutMode::Create),
        )
        .await?;
    store
        .put(
            &dir.clone().join(output.as_str()),
            PutPayload::from_bytes(merged),
        )
        .await?;
    summary.files_merged += inputs.len();
    match table {
        Table::LaunchEvents | Table::Events => {
            summary.partitions += 1;
            summary.events += rows;
        }
        Table::UserFirstSeen => summary.users += rows,
    }
    if options.grace.is_zero() {
        finish(store, dir, &marker, &marker_path).await?;
        summary.finished += 1;
    }
    Ok(())
}

/// Deletes a finished compaction's inputs, then its marker.
async fn finish(
    store: &dyn ObjectStore,
    dir: &Path,
    marker: &Marker,
    marker_path: &Path,
) -> Result<()> {
    for input in &marker.inputs {
        delete_quietly(store, &dir.clone().join(input.as_str())).await?;
    }
    delete_quietly(store, marker_path).await
}

async fn delete_quietly(store: &dyn ObjectStore, path: &Path) -> Result<()> {
    match store.delete(path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Merges the files of one folder of `table` into one file's bytes, and counts its rows.
fn merge(table: Table, batches: Vec<RecordBatch>) -> Result<(bytes::Bytes, usize)> {
    let merged = match table {
        Table::LaunchEvents | Table::Events => unique_events(table, batches)?,
        Table::UserFirstSeen => earliest_per_user(&batches)?,
    };
    Ok((
        write_parquet(table, std::slice::from_ref(&merged))?,
        merged.num_rows(),
    ))
}

/// Concatenates, keeps the first row of each `event_id`, sorts by `event_time`.
fn unique_events(table: Table, batches: Vec<RecordBatch>) -> Result<RecordBatch> {
    let all = arrow_select::concat::concat_batches(&table.schema(), &batches)?;
    let ids = all
        .column(0)
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| Error::Stopped("event_id column is not a string".into()))?;
    let mut seen = HashSet::with_capacity(all.num_rows());
    let first_of_each: arrow_array::UInt32Array = (0..all.num_rows() as u32)
        .filter(|&i| seen.insert(ids.value(i as usize)))
        .collect();
    let unique = arrow_select::take::take_record_batch(&all, &first_of_each)?;
    sort_for(table, &unique)
}
