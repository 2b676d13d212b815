//! Decoding stored launches again with a project's current attribution settings (aliases,
//! normalisation), day by day from a given day: `promolens reattribute`.
//!
//! Each day's visible files are read, every launch's attribution columns are decoded again from
//! its stored scene value and `query`, and the day's files are replaced by one file through the
//! protocol of [`crate::replace`]: the old files are hidden once the new one is stored and
//! deleted after the grace period. A day whose launches all carry the current settings version is
//! left as it is, so a run that was interrupted (even by SIGKILL) is finished by running it
//! again, and nothing is lost or doubled. It may run while `serve` compacts: a day whose files
//! another rewriter is replacing waits until that replacement is settled.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::Int32Type;
use arrow_array::{Array, ArrayRef, RecordBatch};
use chrono::NaiveDate;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore};
use promolens_schemas::Attributor;
use promolens_schemas::tables::SETTINGS_VERSION;
use serde::Serialize;

use crate::compact::unique_events;
use crate::error::{Error, Result};
use crate::markers::folder;
use crate::parquet_io::{Table, read_columns, read_parquet, write_parquet};
use crate::record::AttributionColumns;
use crate::replace::{Replaced, read_all, replace, settle};
use crate::storage::Storage;

#[derive(Debug, Clone)]
pub struct ReattributeOptions {
    pub project: String,
    /// The first day (the project's `dt`) decoded again; every later stored day follows.
    pub from: NaiveDate,
    /// How long replaced files stay readable after their replacement exists.
    pub grace: Duration,
}

/// What one run did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ReattributeSummary {
    /// The settings version the days now carry.
    pub settings_version: u32,
    /// Days decoded again in this run.
    pub days: usize,
    /// Days already at this version (left as they were).
    pub days_up_to_date: usize,
    /// Launches decoded again.
    pub events: usize,
    /// Earlier replacements finished (their old files deleted) in this run.
    pub finished: usize,
}

/// Decodes `options.project`'s launches from `options.from` on again with `attributor`.
pub async fn reattribute(
    storage: &Storage,
    attributor: Arc<Attributor>,
    options: &ReattributeOptions,
) -> Result<ReattributeSummary> {
    let table = Table::LaunchEvents;
    let root = storage.path(&promolens_schemas::layout::project_dir(
        table.name(),
        &options.project,
    ));
    let store = storage.store.clone();
    let listed: Vec<ObjectMeta> = store.list(Some(&root)).try_collect().await?;
    let mut days: BTreeMap<NaiveDate, Path> = BTreeMap::new();
    for meta in listed {
        let dir = folder(&meta.location);
        let Some(day) = day_of(&dir) else { continue };
        if day >= options.from {
            days.entry(day).or_insert(dir);
        }
    }
    let writer = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let results: Vec<DayOutcome> = futures::stream::iter(days.into_values())
        .map(|dir| {
            let (store, attributor, writer) = (store.clone(), attributor.clone(), writer.clone());
            async move {
                reattribute_day(store.as_ref(), &dir, attributor, &writer, options.grace).await
            }
        })
        .buffer_unordered(workers)
        .try_collect()
        .await?;
    let mut summary = ReattributeSummary {
        settings_version: attributor.version(),
        ..ReattributeSummary::default()
    };
    for outcome in results {
        summary.finished += outcome.finished;
        match outcome.events {
            Some(events) => {
                summary.days += 1;
                summary.events += events;
            }
            None => summary.days_up_to_date += 1,
        }
    }
    tracing::info!(
        project = %options.project,
        settings_version = summary.settings_version,
        days = summary.days,
        events = summary.events,
        "reattributed"
    );
    Ok(summary)
}

/// The day of a `…/dt=YYYY-MM-DD` folder.
fn day_of(dir: &Path) -> Option<NaiveDate> {
    let last = dir.filename()?;
    NaiveDate::parse_from_str(last.strip_prefix("dt=")?, "%Y-%m-%d").ok()
}

struct DayOutcome {
    /// Launches decoded again; `None` when the day was already up to date.
    events: Option<usize>,
    finished: usize,
}

/// Decodes one day again. Another rewriter (`serve`'s compaction, another server) may be
/// replacing some of its files: the day waits until those are settled, for as long as a grace
/// period allows them, then goes on.
async fn reattribute_day(
    store: &dyn ObjectStore,
    dir: &Path,
    attributor: Arc<Attributor>,
    writer: &str,
    grace: Duration,
) -> Result<DayOutcome> {
    let version = attributor.version();
    let patience = grace * 2 + Duration::from_secs(30);
    let started = std::time::Instant::now();
    let mut finished = 0;
    // Whether each pending output (another rewriter's, in its grace period) carries the version:
    // a stored file does not change, so each is read once however long the day waits.
    let mut current: HashMap<Path, bool> = HashMap::new();
    loop {
        let files: Vec<ObjectMeta> = store.list(Some(dir)).try_collect().await?;
        let settled = settle(store, dir, &files, grace).await?;
        finished += settled.finished;
        // Outputs in their grace period stay as they are: they must already be current. A file
        // gone since the listing was replaced meanwhile: list again.
        let mut settled_here = !settled.busy;
        for meta in settled.pending.iter().copied() {
            if !settled_here {
                break;
            }
            if !current.contains_key(&meta.location) {
                let Some(mut file) = read_all(store, &[meta]).await? else {
                    settled_here = false;
                    break;
                };
                let carries = carries_version(file.remove(0), version)?;
                current.insert(meta.location.clone(), carries);
            }
            settled_here &= current[&meta.location];
        }
        let inputs = settled.inputs;
        let contents = if settled_here {
            read_all(store, &inputs).await?
        } else {
            None
        };
        if let Some(contents) = contents {
            let decoder = attributor.clone();
            let written = tokio::task::spawn_blocking(move || decoded_day(contents, &decoder))
                .await
                .map_err(|e| Error::Stopped(format!("reattribute task failed: {e}")))??;
            let Some((output, rows)) = written else {
                return Ok(DayOutcome {
                    events: None,
                    finished,
                });
            };
            let kind = format!("v{version}");
            if let Replaced::Done { deleted } =
                replace(store, dir, &inputs, output, writer, &kind, grace).await?
            {
                return Ok(DayOutcome {
                    events: Some(rows),
                    finished: finished + usize::from(deleted),
                });
            }
        }
        if started.elapsed() > patience {
            return Err(Error::Stopped(format!(
                "{dir}: another process kept rewriting this day's files for {} s; run \
                 reattribute again",
                patience.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A day's files (their bytes) decoded again into one file's bytes and its row count; `None`
/// when every launch already carries the attributor's version.
fn decoded_day(
    contents: Vec<bytes::Bytes>,
    attributor: &Attributor,
) -> Result<Option<(bytes::Bytes, usize)>> {
    let mut stale = false;
    for file in &contents {
        stale |= !carries_version(file.clone(), attributor.version())?;
    }
    if !stale {
        return Ok(None);
    }
    let mut decoded = Vec::new();
    for file in contents {
        for batch in read_parquet(Table::LaunchEvents, file)? {
            decoded.push(decode_again(&batch, attributor)?);
        }
    }
    let merged = unique_events(Table::LaunchEvents, decoded)?;
    let rows = merged.num_rows();
    Ok(Some((
        write_parquet(Table::LaunchEvents, std::slice::from_ref(&merged))?,
        rows,
    )))
}

/// Whether every launch of a stored file was decoded with settings `version` (a file from before
/// settings existed has no version column: version 0).
fn carries_version(file: bytes::Bytes, version: u32) -> Result<bool> {
    let has_column =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file.clone())?
            .schema()
            .column_with_name(SETTINGS_VERSION)
            .is_some();
    if !has_column {
        return Ok(version == 0);
    }
    let expected = i32::try_from(version).unwrap_or(i32::MAX);
    for batch in read_columns(file, &[SETTINGS_VERSION])? {
        let versions = batch.column(0).as_primitive::<Int32Type>();
        if versions.null_count() > 0 && expected != 0
            || versions.iter().flatten().any(|v| v != expected)
        {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A batch of `launch_events` with its attribution columns decoded again from `scene` and
/// `query` by `attributor`.
pub fn decode_again(batch: &RecordBatch, attributor: &Attributor) -> Result<RecordBatch> {
    let schema = batch.schema();
    let index = |name: &str| schema.index_of(name).map_err(Error::from);
    let scenes = batch.column(index("scene")?).as_primitive::<Int32Type>();
    let queries = batch.column(index("query")?).as_map();
    let keys = queries.keys().as_string::<i32>();
    let values = queries.values().as_string::<i32>();
    let offsets = queries.value_offsets();
    let mut columns = AttributionColumns::with_capacity(batch.num_rows());
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    for row in 0..batch.num_rows() {
        pairs.clear();
        if queries.is_valid(row) {
            let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
            pairs.extend((start..end).map(|i| {
                let value = if values.is_valid(i) {
                    values.value(i)
                } else {
                    ""
                };
                (keys.value(i), value)
            }));
        }
        let scene = scenes.is_valid(row).then(|| scenes.value(row));
        columns.push(&attributor.decode(scene, &pairs), attributor.version());
    }
    let (decoded, version) = columns.finish();
    let first = index("code_id")?;
    let mut all: Vec<ArrayRef> = batch.columns().to_vec();
    for (offset, column) in decoded.into_iter().enumerate() {
        all[first + offset] = column;
    }
    all[index(SETTINGS_VERSION)?] = version;
    Ok(RecordBatch::try_new(schema, all)?)
}
