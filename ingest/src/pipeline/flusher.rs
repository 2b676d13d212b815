//! The flusher: encodes flush jobs (a few at a time) and stores their files in job order, then
//! deletes the log segments they cover and answers whoever waits; the backfill's variant spills
//! small pieces of a day to local disk first.

use super::encode::{encode_first_seen, encode_flush};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_array::RecordBatch;
use object_store::{ObjectStoreExt, PutPayload};
use tokio::sync::mpsc;

use super::FlushJob;
use super::spill::{SPILL_BELOW_ROWS, Spill, write_files};
use crate::error::{Error, Result};
use crate::first_seen::StoredFirstSeen;
use crate::internal_events::{FlushFailed, FlushStored, InternalEvent};
use crate::parquet_io::write_parquet;
use crate::storage::Storage;
use crate::wal::delete_segments;

/// Flush jobs encoded at the same time (on blocking threads). Two keep both cores busy at the end
/// of a backfill, when only encoding is left; their files are still stored in job order.
pub(super) const ENCODING_AT_ONCE: usize = 2;
/// Encoded jobs that may wait for an earlier, slower one before they are stored.
pub(super) const ENCODED_WAITING: usize = 8;

/// Encodes flush jobs (up to [`ENCODING_AT_ONCE`] at a time) and stores them in order, one at a
/// time, so that log segments are deleted only after every earlier job is stored. A job whose
/// encoding ends early frees its slot at once (its files wait, compressed): a slow job never
/// leaves a core idle while the committer waits to hand over the next one.
pub(super) async fn run_flusher(
    storage: Storage,
    wal_dir: Option<PathBuf>,
    mut jobs: mpsc::Receiver<FlushJob>,
    flushed: Arc<AtomicU64>,
    first_seen: Arc<Mutex<StoredFirstSeen>>,
) {
    use futures::StreamExt;
    let mut names = FileNames::new();
    let mut sequence = 0u64;
    // After a job fails for good, no segment may be deleted any more: the next start replays them.
    let mut keep_wal = false;
    let mut encoding = futures::stream::FuturesUnordered::new();
    // Encoded jobs by sequence number, waiting for their turn to be stored.
    let mut encoded = std::collections::BTreeMap::new();
    let mut next_to_store = 1u64;
    let mut open = true;
    while open || !encoding.is_empty() || !encoded.is_empty() {
        tokio::select! {
            job = jobs.recv(), if open
                && encoding.len() < ENCODING_AT_ONCE
                && encoded.len() < ENCODED_WAITING => {
                let Some(mut job) = job else {
                    open = false;
                    continue;
                };
                sequence += 1;
                let name = names.next();
                let partitions = std::mem::take(&mut job.partitions);
                let first_seen = first_seen.clone();
                let encode = tokio::task::spawn_blocking(move || {
                    encode_flush(partitions, &name, &first_seen)
                });
                let seq = sequence;
                encoding.push(async move {
                    let files = encode
                        .await
                        .map_err(|e| Error::Stopped(format!("encoder task failed: {e}")))
                        .and_then(|files| files);
                    (seq, job, files)
                });
            }
            Some((seq, job, files)) = encoding.next(), if !encoding.is_empty() => {
                encoded.insert(seq, (job, files));
                while let Some((job, files)) = encoded.remove(&next_to_store) {
                    let result = match files {
                        Ok(flush) => store_flush(&storage, &first_seen, flush).await,
                        Err(e) => Err(e),
                    };
                    finish_job(job, result, &wal_dir, &mut keep_wal, &flushed);
                    next_to_store += 1;
                }
            }
        }
    }
}

/// Names of the files a flusher writes: `part-<time>-<writer>-<sequence>.parquet`, unique
/// across processes and in the order written.
pub(super) struct FileNames {
    writer_id: String,
    sequence: u64,
}

impl FileNames {
    fn new() -> FileNames {
        FileNames {
            writer_id: uuid::Uuid::new_v4().simple().to_string()[..8].to_string(),
            sequence: 0,
        }
    }

    fn next(&mut self) -> String {
        self.sequence += 1;
        format!(
            "part-{}-{}-{:06}.parquet",
            chrono::Utc::now().format("%Y%m%dT%H%M%S%3f"),
            self.writer_id,
            self.sequence
        )
    }
}

/// The flusher of a backfill ([`IngestConfig::spill`]): encodes flush jobs one at a time, writing
/// each day's rows to Parquet when they are many and to the [`Spill`] when they are a small
/// piece (or the day already has a spill), and stores each job's `user_first_seen` files at once
/// (later jobs then leave out the users they cover). A day's spill becomes a file once it is
/// large enough, once a job passes without adding to it, when someone waits for a flush, and at
/// the end. A job counts as flushed (its waiters answered, its dedupe ids evictable) once all
/// its rows are stored.
pub(super) async fn run_spilling_flusher(
    storage: Storage,
    wal_dir: Option<PathBuf>,
    mut jobs: mpsc::Receiver<FlushJob>,
    flushed: Arc<AtomicU64>,
    first_seen: Arc<Mutex<StoredFirstSeen>>,
    mut spill: Spill,
) {
    let mut names = FileNames::new();
    let mut keep_wal = false;
    // Jobs with rows in the spill, in order, with their outcome so far.
    let mut waiting: VecDeque<(u64, FlushJob, Result<()>)> = VecDeque::new();
    let mut sequence = 0u64;
    loop {
        let job = jobs.recv().await;
        let end = job.is_none();
        if let Some(mut job) = job {
            sequence += 1;
            let partitions = std::mem::take(&mut job.partitions);
            let (memory, name, seq) = (first_seen.clone(), names.next(), sequence);
            let encoded = tokio::task::spawn_blocking(move || {
                let mut launches = Vec::new();
                let flush = encode_first_seen(partitions, &name, &memory, |key, batches| {
                    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
                    if spill.holds(key) || rows < SPILL_BELOW_ROWS {
                        spill.write(key, batches, seq)
                    } else {
                        launches.push((
                            format!("{}/{name}", key.relative_dir()),
                            write_parquet(key.table, batches)?,
                        ));
                        Ok(())
                    }
                })
                .map(|mut flush| {
                    flush.files.extend(launches);
                    flush
                });
                (spill, flush)
            })
            .await;
            let result = match encoded {
                Ok((returned, flush)) => {
                    spill = returned;
                    match flush {
                        Ok(flush) => store_flush(&storage, &first_seen, flush).await,
                        Err(e) => Err(e),
                    }
                }
                Err(e) => {
                    // The spill went with the task: stop here, every waiting job lost rows.
                    let message = format!("encoder task failed: {e}");
                    fail_all(&mut waiting, &message);
                    for (_, job, result) in waiting.drain(..) {
                        finish_job(job, result, &wal_dir, &mut keep_wal, &flushed);
                    }
                    finish_job(
                        job,
                        Err(Error::Stopped(message)),
                        &wal_dir,
                        &mut keep_wal,
                        &flushed,
                    );
                    return;
                }
            };
            waiting.push_back((sequence, job, result));
        }
        let someone_waits = waiting.iter().any(|(_, job, _)| !job.done.is_empty());
        let taken = spill.take(end || someone_waits, sequence.saturating_sub(1));
        if !taken.is_empty() {
            let name = names.next();
            let stored = match tokio::task::spawn_blocking(move || write_files(taken, &name)).await
            {
                Ok(Ok(files)) => store_files(&storage, files).await,
                Ok(Err(e)) => Err(e),
                Err(e) => Err(Error::Stopped(format!("encoder task failed: {e}"))),
            };
            if let Err(e) = stored {
                // Which jobs had rows in them is not tracked: fail every job still waiting.
                fail_all(&mut waiting, &e.to_string());
            }
        }
        let oldest_spilled = spill.oldest_job();
        while let Some((seq, ..)) = waiting.front()
            && oldest_spilled.is_none_or(|oldest| *seq < oldest)
        {
            let Some((_, job, result)) = waiting.pop_front() else {
                break;
            };
            finish_job(job, result, &wal_dir, &mut keep_wal, &flushed);
        }
        if end {
            break;
        }
    }
}

pub(super) fn fail_all(waiting: &mut VecDeque<(u64, FlushJob, Result<()>)>, message: &str) {
    for (_, _, result) in waiting.iter_mut() {
        if result.is_ok() {
            *result = Err(Error::Stopped(format!("writing Parquet failed: {message}")));
        }
    }
}

/// Stores a flush's files and remembers its `user_first_seen` rows as stored.
pub(super) async fn store_flush(
    storage: &Storage,
    memory: &Mutex<StoredFirstSeen>,
    flush: EncodedFlush,
) -> Result<()> {
    let started = std::time::Instant::now();
    let (files, bytes) = (
        flush.files.len(),
        flush.files.iter().map(|(_, b)| b.len()).sum(),
    );
    store_files(storage, flush.files).await?;
    FlushStored {
        files,
        bytes,
        elapsed: started.elapsed(),
    }
    .emit();
    remember_first_seen(memory, &flush.first_seen);
    Ok(())
}

/// After a job is stored (or failed for good): deletes the log segments it covers, records it as
/// flushed, and answers whoever waits for it.
pub(super) fn finish_job(
    job: FlushJob,
    result: Result<()>,
    wal_dir: &Option<PathBuf>,
    keep_wal: &mut bool,
    flushed: &AtomicU64,
) {
    if let Err(e) = &result {
        FlushFailed { error: e }.emit();
        *keep_wal = true;
    }
    if let (Some(dir), Some(upto), false) = (wal_dir, job.wal_upto, *keep_wal)
        && let Err(e) = delete_segments(dir, upto)
    {
        tracing::warn!(error = %e, "could not delete flushed write-ahead log segments");
    }
    if result.is_ok() {
        flushed.store(job.generation + 1, Ordering::SeqCst);
    }
    let message = result.as_ref().err().map(|e| e.to_string());
    for waiter in job.done {
        let _ = waiter.send(match &message {
            None => Ok(()),
            Some(m) => Err(Error::Stopped(format!("flush failed: {m}"))),
        });
    }
}

/// Stores the files of one flush in order (each project's `user_first_seen` file before its
/// launches, see [`crate::first_seen`]), retrying transient storage errors.
pub(super) async fn store_files(
    storage: &Storage,
    files: Vec<(String, bytes::Bytes)>,
) -> Result<()> {
    for (relative, bytes) in files {
        let path = storage.path(&relative);
        let mut attempt = 0;
        loop {
            match storage
                .store
                .put(&path, PutPayload::from_bytes(bytes.clone()))
                .await
            {
                Ok(_) => break,
                Err(e) if attempt < 4 => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "storing Parquet failed, retrying");
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// One flush encoded: its files, in the order they must be stored, and the `user_first_seen`
/// rows among them per project.
pub(super) struct EncodedFlush {
    pub(super) files: Vec<(String, bytes::Bytes)>,
    pub(super) first_seen: Vec<(String, RecordBatch)>,
}

/// Records a stored flush's `user_first_seen` rows (see [`StoredFirstSeen`]).
pub(super) fn remember_first_seen(memory: &Mutex<StoredFirstSeen>, rows: &[(String, RecordBatch)]) {
    // A poisoned lock only means a panic elsewhere; the memory itself is still consistent
    // (each `record` call completes or panics before changing a project's map).
    let mut memory = memory
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for (project, batch) in rows {
        if let Err(e) = memory.record(project, batch) {
            tracing::warn!(error = %e, "could not remember stored first-seen rows");
        }
    }
}
