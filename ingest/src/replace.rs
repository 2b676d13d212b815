//! Replacing some files of a folder by one new file, without promolens' own queries ever seeing an
//! event twice or missing one: the protocol [`crate::compact`] (many small files merged into one)
//! and [`crate::reattribute`] (a day's files decoded again with new settings) share. Several
//! rewriters may run at once on one data directory (`serve`'s compaction and an operator's
//! `reattribute`, two servers): at most one of them replaces a given file.
//!
//! Per folder (`launch_events/project=P/dt=D/`, `user_first_seen/project=P/`):
//! 1. stage the output under a name no reader takes (`_compaction-<id>.staged`);
//! 2. write a marker `_compaction-<id>.json` naming the output file and the input files (a create
//!    that fails if it exists);
//! 3. list the folder again: if another marker names one of the inputs, or an input is gone,
//!    another rewriter came first: drop the marker and the staged file and yield ([`Replaced`]);
//! 4. move the staged file to the output's name: from now on a reader that sees the marker and
//!    the output hides the inputs ([`crate::markers::visible_files`]);
//! 5. after a grace period (so that a query that listed the inputs before step 4 can still read
//!    them), delete the inputs, then the marker.
//!
//! Of two rewriters that chose the same input, the later marker sees the earlier one at step 3
//! (listings are consistent, local and S3 alike), or sees the input gone when the earlier one has
//! finished (inputs are deleted before their marker): one yields, or both do, never neither.
//! Until the grace period has passed, a marker without its output is a rewriter between steps 2
//! and 4 (seconds: one listing and one move), and others leave its inputs alone; after it, the
//! rewriter is taken as dead and its marker dropped. A crash anywhere leaves a state readers
//! handle and the next run finishes ([`settle`]). Engines that do not read markers (DuckDB,
//! Spark) see the inputs and the output together only during the grace period; run compaction in
//! a quiet hour, or de-duplicate on `event_id`, if they read a live directory.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::error::{Error, Result};
use crate::markers::{MARKER_PREFIX, Marker, file_name, is_data_file, is_marker, read_marker};

/// A folder's state once the earlier replacements in it are finished or dropped ([`settle`]).
pub(crate) struct Settled<'f> {
    /// Data files no replacement claims: what a new replacement may take.
    pub inputs: Vec<&'f ObjectMeta>,
    /// Outputs of replacements still in their grace period: visible, not yet replaceable.
    pub pending: Vec<&'f ObjectMeta>,
    /// Whether another rewriter is between its marker and its output (its inputs are claimed
    /// and still visible).
    pub busy: bool,
    /// Earlier replacements finished (inputs deleted) here.
    pub finished: usize,
}

/// Finishes the earlier replacements of a folder whose grace period has passed, drops those that
/// died before their output (and staged files left behind), and says what is left (`files` is
/// the folder's listing).
pub(crate) async fn settle<'f>(
    store: &dyn ObjectStore,
    dir: &Path,
    files: &'f [ObjectMeta],
    grace: Duration,
) -> Result<Settled<'f>> {
    let present: HashMap<&str, &ObjectMeta> =
        files.iter().map(|m| (file_name(&m.location), m)).collect();
    let now = chrono::Utc::now();
    let age = |meta: &ObjectMeta| (now - meta.last_modified).to_std().unwrap_or_default();
    let mut claimed: HashSet<String> = HashSet::new();
    let mut settled = Settled {
        inputs: Vec::new(),
        pending: Vec::new(),
        busy: false,
        finished: 0,
    };
    for meta in files.iter().filter(|m| is_marker(&m.location)) {
        let marker = match read_marker(store, &meta.location).await {
            Ok(m) => m,
            Err(object_store::Error::NotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        match present.get(marker.output.as_str()) {
            None if age(meta) >= grace => {
                // Died before its output was stored: the inputs were never hidden.
                delete_quietly(store, &meta.location).await?;
                continue;
            }
            None => settled.busy = true,
            Some(_) if age(meta) >= grace => {
                finish(store, dir, &marker, &meta.location).await?;
                settled.finished += 1;
            }
            Some(output) => {
                // Still in its grace period: its output is new, and it is not replaced again yet.
                claimed.insert(marker.output.clone());
                settled.pending.push(output);
            }
        }
        // Being replaced (or now deleted): never an input again.
        claimed.extend(marker.inputs.iter().cloned());
    }
    for meta in files.iter().filter(|m| is_staged(&m.location)) {
        if age(meta) >= grace {
            delete_quietly(store, &meta.location).await?;
        }
    }
    settled.inputs = files
        .iter()
        .filter(|m| is_data_file(&m.location) && !claimed.contains(file_name(&m.location)))
        .collect();
    Ok(settled)
}

/// The bytes of `files`, or `None` when one is gone: another rewriter replaced it since the
/// folder was listed (the caller yields, or lists again).
pub(crate) async fn read_all(
    store: &dyn ObjectStore,
    files: &[&ObjectMeta],
) -> Result<Option<Vec<bytes::Bytes>>> {
    let mut contents = Vec::with_capacity(files.len());
    for meta in files {
        match store.get(&meta.location).await {
            Ok(got) => contents.push(got.bytes().await?),
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Some(contents))
}

/// What [`replace`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replaced {
    /// The output is stored and the inputs hidden; `deleted` when they are deleted already (a
    /// zero grace), else the next run's [`settle`] deletes them.
    Done { deleted: bool },
    /// Another rewriter took some of the inputs first: nothing was changed.
    Yielded,
}

const STAGED_SUFFIX: &str = ".staged";

/// A staged output, or what an upload killed midway left of one (or of a marker): the local
/// store writes `<name>#<n>` and renames it when complete.
fn is_staged(path: &Path) -> bool {
    let name = file_name(path);
    name.starts_with(MARKER_PREFIX) && !is_marker(path)
}

/// Replaces `inputs` (files of `dir`) by one file with `output` as its bytes, named with
/// `writer` (this run) and `kind`, unless another rewriter took one of them first.
pub(crate) async fn replace(
    store: &dyn ObjectStore,
    dir: &Path,
    inputs: &[&ObjectMeta],
    output: bytes::Bytes,
    writer: &str,
    kind: &str,
    grace: Duration,
) -> Result<Replaced> {
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
    let staged = dir
        .clone()
        .join(format!("{MARKER_PREFIX}{id}{STAGED_SUFFIX}").as_str());
    store.put(&staged, PutPayload::from_bytes(output)).await?;
    let marker_path = dir
        .clone()
        .join(format!("{MARKER_PREFIX}{id}.json").as_str());
    let marker_json = serde_json::to_vec(&marker)
        .map_err(|e| Error::io("encoding a compaction marker", e.into()))?;
    let claimed_at = std::time::Instant::now();
    store
        .put_opts(
            &marker_path,
            PutPayload::from(marker_json),
            PutOptions::from(PutMode::Create),
        )
        .await?;
    // A claim that took longer than half the grace period may be taken for dead by others.
    let slow = !grace.is_zero() && claimed_at.elapsed() > grace / 2;
    if slow || !first_to_claim(store, dir, &marker, &marker_path).await? {
        delete_quietly(store, &marker_path).await?;
        delete_quietly(store, &staged).await?;
        return Ok(Replaced::Yielded);
    }
    store
        .rename(&staged, &dir.clone().join(name.as_str()))
        .await?;
    if grace.is_zero() {
        finish(store, dir, &marker, &marker_path).await?;
        return Ok(Replaced::Done { deleted: true });
    }
    Ok(Replaced::Done { deleted: false })
}

/// Whether `marker` (stored at `own`) is the only claim on its inputs, and they are all still
/// there.
async fn first_to_claim(
    store: &dyn ObjectStore,
    dir: &Path,
    marker: &Marker,
    own: &Path,
) -> Result<bool> {
    let files: Vec<ObjectMeta> = store.list(Some(dir)).try_collect().await?;
    let names: HashSet<&str> = files.iter().map(|m| file_name(&m.location)).collect();
    if !marker.inputs.iter().all(|i| names.contains(i.as_str())) {
        return Ok(false);
    }
    let ours: HashSet<&str> = marker.inputs.iter().map(String::as_str).collect();
    for meta in files
        .iter()
        .filter(|m| is_marker(&m.location) && &m.location != own)
    {
        let other = match read_marker(store, &meta.location).await {
            Ok(other) => other,
            // Finished meanwhile: its inputs are deleted, which the check above would have seen
            // had they been ours; list again to be sure.
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        if other.inputs.iter().any(|i| ours.contains(i.as_str())) {
            return Ok(false);
        }
    }
    Ok(true)
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
