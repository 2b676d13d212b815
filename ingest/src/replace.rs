//! Replacing some files of a folder by one new file, without promolens' own queries ever seeing an
//! event twice or missing one: the protocol [`crate::compact`] (many small files merged into one)
//! and [`crate::reattribute`] (a day's files decoded again with new settings) share.
//!
//! Per folder (`launch_events/project=P/dt=D/`, `user_first_seen/project=P/`):
//! 1. write a marker `_compaction-<id>.json` naming the output file and the input files;
//! 2. write the output (one atomic put): from now on a reader that sees the marker and the output
//!    hides the inputs ([`crate::markers::visible_files`]);
//! 3. after a grace period (so that a query that listed the inputs before step 2 can still read
//!    them), delete the inputs, then the marker.
//!
//! A crash anywhere leaves a state readers handle and the next run finishes ([`settle`]): a
//! marker without its output is dropped, a marker with its output gets its inputs deleted. Engines
//! that do not read markers (DuckDB, Spark) see the inputs and the output together only during the
//! grace period; run compaction in a quiet hour, or de-duplicate on `event_id`, if they read a
//! live directory. One rewriter per data directory (two could replace the same inputs twice).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::error::{Error, Result};
use crate::markers::{MARKER_PREFIX, Marker, file_name, is_data_file, is_marker, read_marker};

/// Finishes or drops the earlier replacements in a folder (`files` is its listing) and returns
/// its data files that no replacement still in its grace period claims, with how many earlier
/// replacements were finished.
pub(crate) async fn settle<'f>(
    store: &dyn ObjectStore,
    dir: &Path,
    files: &'f [ObjectMeta],
    grace: Duration,
) -> Result<(Vec<&'f ObjectMeta>, usize)> {
    let present: HashMap<&str, &ObjectMeta> =
        files.iter().map(|m| (file_name(&m.location), m)).collect();
    let now = chrono::Utc::now();
    let mut claimed: HashSet<String> = HashSet::new();
    let mut finished = 0;
    for meta in files.iter().filter(|m| is_marker(&m.location)) {
        let marker = match read_marker(store, &meta.location).await {
            Ok(m) => m,
            Err(object_store::Error::NotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        if !present.contains_key(marker.output.as_str()) {
            // Died before its output was written: the inputs were never hidden.
            delete_quietly(store, &meta.location).await?;
            continue;
        }
        let age = (now - meta.last_modified).to_std().unwrap_or_default();
        if age >= grace {
            finish(store, dir, &marker, &meta.location).await?;
            finished += 1;
        } else {
            // Still in its grace period: its output is new, and it is not replaced again yet.
            claimed.insert(marker.output.clone());
        }
        // Replaced (or now deleted): never an input again.
        claimed.extend(marker.inputs.iter().cloned());
    }
    let inputs = files
        .iter()
        .filter(|m| is_data_file(&m.location) && !claimed.contains(file_name(&m.location)))
        .collect();
    Ok((inputs, finished))
}

/// Replaces `inputs` (files of `dir`) by one file with `output` as its bytes, named with
/// `writer` (this run) and `kind`. Returns whether the inputs are already deleted (a zero grace);
/// otherwise the next run's [`settle`] deletes them.
pub(crate) async fn replace(
    store: &dyn ObjectStore,
    dir: &Path,
    inputs: &[&ObjectMeta],
    output: bytes::Bytes,
    writer: &str,
    kind: &str,
    grace: Duration,
) -> Result<bool> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let name = format!(
        "part-{}-{writer}-{}-{kind}.parquet",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%3f"),
        &id[..8]
    );
    let marker = Marker {
        output: name.clone(),
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
            &dir.clone().join(name.as_str()),
            PutPayload::from_bytes(output),
        )
        .await?;
    if grace.is_zero() {
        finish(store, dir, &marker, &marker_path).await?;
        return Ok(true);
    }
    Ok(false)
}

/// Deletes a finished replacement's inputs, then its marker.
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
