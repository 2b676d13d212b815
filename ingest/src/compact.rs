//! Compaction: the small files of a partition merged into one, without promolens' own queries ever
//! seeing an event twice or missing one while it runs. The files of `user_first_seen` (one per
//! flush and project) are merged the same way, into one row per user.
//!
//! The files are replaced by the protocol of [`crate::replace`]: a crash anywhere leaves a state
//! readers handle and the next run finishes, and a partition another rewriter (a `reattribute`,
//! another server) is replacing is left to it.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use arrow_array::{RecordBatch, StringArray};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::first_seen::earliest_per_user;
use crate::internal_events::InternalEvent;
use crate::markers::folder;
use crate::parquet_io::{Table, read_parquet, sort_for, write_parquet};
use crate::replace::{Replaced, read_all, replace, settle};
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
    let settled = settle(store, dir, &files, options.grace).await?;
    summary.finished += settled.finished;
    let inputs = settled.inputs;
    if inputs.len() < options.min_files.max(2) {
        return Ok(());
    }
    // Gone since the listing: another rewriter has this partition; the next run looks again.
    let Some(contents) = read_all(store, &inputs).await? else {
        return Ok(());
    };
    let mut batches = Vec::new();
    for bytes in contents {
        batches.extend(read_parquet(table, bytes)?);
    }
    let (merged, rows) = tokio::task::spawn_blocking(move || merge(table, batches))
        .await
        .map_err(|e| Error::Stopped(format!("compaction task failed: {e}")))??;
    let replaced = replace(
        store,
        dir,
        &inputs,
        merged,
        writer,
        "compact",
        options.grace,
    )
    .await?;
    // Another rewriter (a `reattribute`, another server) took this partition first: the next
    // run looks again.
    let Replaced::Done { deleted } = replaced else {
        return Ok(());
    };
    summary.files_merged += inputs.len();
    match table {
        Table::LaunchEvents | Table::Events => {
            summary.partitions += 1;
            summary.events += rows;
        }
        Table::UserFirstSeen => summary.users += rows,
    }
    summary.finished += usize::from(deleted);
    Ok(())
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
pub(crate) fn unique_events(table: Table, batches: Vec<RecordBatch>) -> Result<RecordBatch> {
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
