//! The ingest pipeline: dedupe, write-ahead log, buffer, Parquet.
//!
//! One thread, the committer, owns everything whose order matters: the dedupe index, the log and
//! the buffer. Request handlers (and backfill's parser threads) parse, decode, build the Arrow
//! columns, hash the ids and encode the log lines in parallel, then send their rows to it; it takes
//! every request waiting, dedupes them in arrival order, appends all accepted rows' lines to the
//! log with one `fdatasync` (group commit), slices the batches into the buffer and answers. When the buffer is old
//! or large enough, it seals the log segment and hands the buffer to the flusher task, which writes
//! one Parquet file per partition and then deletes the sealed segments.

mod buffer;
#[cfg(test)]
mod durability_tests;
mod spill;
#[cfg(test)]
mod testing;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use chrono_tz::Tz;
use object_store::{ObjectStoreExt, PutPayload};
use promolens_schemas::Limits;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};

use crate::dedupe::{DedupeIndex, load_partition_ids};
use crate::error::{Error, Result};
use crate::first_seen::{self, StoredFirstSeen, earliest_per_user};
use crate::internal_events::{FlushFailed, FlushStored, InternalEvent};
use crate::parquet_io::{Table, write_parquet};
use crate::partition::{PartitionKey, PartitionResolver, ProjectZones};
use crate::record::{LaunchRows, LaunchRowsBuilder};
use crate::storage::Storage;
use crate::wal::{Replay, Wal, delete_segments};

/// How the pipeline buffers and makes events durable.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Time zone of each project's `dt` partitions.
    pub zones: ProjectZones,
    /// Per-event size limits.
    pub limits: Limits,
    /// Live ingest over HTTP takes `ts` at most this many days before a request's receipt…
    pub ts_days_back: u32,
    /// …and this many days after it. (A backfill takes any time 2000–2099.)
    pub ts_days_ahead: u32,
    /// Flush the buffer to Parquet once it holds this many events…
    pub flush_rows: usize,
    /// …or once its oldest event has waited this long.
    pub flush_age: Duration,
    /// Folder of the write-ahead log; `None` for runs that need no per-request durability
    /// (backfill: its input file is the log, and re-running it adds nothing twice).
    pub wal_dir: Option<PathBuf>,
    /// Bound on the dedupe index, in event ids (16 bytes each plus table overhead).
    pub dedupe_max_ids: usize,
    /// Bound on the users remembered as stored in `user_first_seen` (24 bytes each), whose
    /// later launches add no row there ([`StoredFirstSeen`]).
    pub first_seen_max_users: usize,
    /// Backfill: a flush's small pieces of a day wait on local disk until the day has enough
    /// rows for a file ([`spill`]). Off for live ingest, whose rows become visible at each flush.
    pub spill: bool,
}

impl IngestConfig {
    /// Every project's days in `tz` (until `zones` says otherwise).
    pub fn new(tz: Tz) -> IngestConfig {
        IngestConfig {
            zones: ProjectZones::new(tz),
            limits: Limits::default(),
            ts_days_back: 400,
            ts_days_ahead: 1,
            flush_rows: 200_000,
            flush_age: Duration::from_secs(30),
            wal_dir: None,
            dedupe_max_ids: 4_000_000,
            first_seen_max_users: 1_000_000,
            spill: false,
        }
    }
}

/// What became of each row of one append.
#[derive(Debug, Clone, Default)]
pub struct AppendOutcome {
    /// One flag per row, in order: true when stored, false when its `event_id` was already there.
    pub stored: Vec<bool>,
}

impl AppendOutcome {
    pub fn accepted(&self) -> usize {
        self.stored.iter().filter(|s| **s).count()
    }
    pub fn duplicates(&self) -> usize {
        self.stored.len() - self.accepted()
    }
}

enum Command {
    Append {
        rows: LaunchRows,
        reply: oneshot::Sender<Result<AppendOutcome>>,
    },
    /// Flush whatever is buffered and answer once it is in Parquet.
    Flush {
        reply: oneshot::Sender<Result<()>>,
    },
    Tick,
    Shutdown {
        reply: oneshot::Sender<Result<()>>,
    },
}

/// Handle to a running pipeline. Cheap to share behind an `Arc`.
pub struct Ingestor {
    commands: mpsc::Sender<Command>,
    config: IngestConfig,
    storage: Storage,
    stopped: Arc<AtomicBool>,
    flusher_stopped: Arc<AtomicBool>,
}

use buffer::Buffer;
use spill::{SPILL_BELOW_ROWS, Spill, write_files};

struct FlushJob {
    generation: u64,
    partitions: Buffer,
    /// Log segments covered by this job, deleted once it is stored.
    wal_upto: Option<u64>,
    done: Vec<oneshot::Sender<Result<()>>>,
}

impl Ingestor {
    /// Starts the pipeline on the current Tokio runtime, first replaying what the write-ahead log
    /// holds from an earlier process (and flushing it to Parquet).
    pub async fn start(storage: Storage, config: IngestConfig) -> Result<Ingestor> {
        let (wal, replay) = match &config.wal_dir {
            Some(dir) => {
                let (wal, replay) = Wal::open(dir)?;
                (Some(wal), Some(replay))
            }
            None => (None, None),
        };
        let (commands, receiver) = mpsc::channel(1024);
        // One job queued behind those being encoded: when storage is slower than ingest, the
        // committer waits (and requests with it) instead of buffering without bound.
        let (jobs, job_receiver) = mpsc::channel(1);
        let flushed = Arc::new(AtomicU64::new(0));
        let handle = Handle::current();
        let first_seen = Arc::new(Mutex::new(StoredFirstSeen::new(
            config.first_seen_max_users,
        )));
        let (wal_dir, flushed_by_flusher) = (config.wal_dir.clone(), flushed.clone());
        let storage_for_flusher = storage.clone();
        let flusher_stopped = Arc::new(AtomicBool::new(false));
        let flusher_ended = flusher_stopped.clone();
        let spill = if config.spill {
            Some(Spill::new()?)
        } else {
            None
        };
        tokio::spawn(async move {
            match spill {
                Some(spill) => {
                    run_spilling_flusher(
                        storage_for_flusher,
                        wal_dir,
                        job_receiver,
                        flushed_by_flusher,
                        first_seen,
                        spill,
                    )
                    .await
                }
                None => {
                    run_flusher(
                        storage_for_flusher,
                        wal_dir,
                        job_receiver,
                        flushed_by_flusher,
                        first_seen,
                    )
                    .await
                }
            }
            flusher_ended.store(true, Ordering::SeqCst);
        });
        let stopped = Arc::new(AtomicBool::new(false));
        let mut committer = Committer {
            config: config.clone(),
            storage: storage.clone(),
            handle,
            index: DedupeIndex::new(config.dedupe_max_ids),
            wal,
            buffer: Buffer::default(),
            partitions: PartitionResolver::new(config.zones.clone()),
            oldest: None,
            generation: 0,
            flushed: flushed.clone(),
            jobs,
        };
        let ticker = commands.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_millis(500));
            loop {
                interval.tick().await;
                if ticker.send(Command::Tick).await.is_err() {
                    break;
                }
            }
        });
        let thread_stopped = stopped.clone();
        let (ready, started) = oneshot::channel();
        std::thread::Builder::new()
            .name("promolens-commit".into())
            .spawn(move || {
                let replayed = match replay {
                    Some(replay) => committer.replay(replay),
                    None => Ok(()),
                };
                let failed = replayed.is_err();
                let _ = ready.send(replayed);
                if !failed {
                    committer.run(receiver);
                }
                thread_stopped.store(true, Ordering::SeqCst);
            })
            .map_err(|e| Error::io("starting the commit thread", e))?;
        started
            .await
            .map_err(|_| Error::Stopped("commit thread ended".into()))??;
        Ok(Ingestor {
            commands,
            config,
            storage,
            stopped,
            flusher_stopped,
        })
    }

    /// Whether the committer and the flusher are both running: a server without them would
    /// accept nothing (readiness, `/readyz`).
    pub fn is_running(&self) -> bool {
        !self.stopped.load(Ordering::SeqCst) && !self.flusher_stopped.load(Ordering::SeqCst)
    }

    pub fn config(&self) -> &IngestConfig {
        &self.config
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// An empty set of rows for `project`, received now, to fill and [`Ingestor::append`].
    pub fn rows(&self, project: &str) -> LaunchRowsBuilder {
        LaunchRowsBuilder::new(
            project,
            chrono::Utc::now().timestamp_millis(),
            self.config.wal_dir.is_some(),
        )
    }

    /// Dedupes and stores rows; when this returns `Ok`, the stored rows are durable (in the
    /// write-ahead log when there is one).
    pub async fn append(&self, rows: LaunchRows) -> Result<AppendOutcome> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Append { rows, reply }).await?;
        answer.await.map_err(|_| stopped())?
    }

    /// [`Ingestor::append`] for synchronous callers outside the runtime (backfill's reader thread).
    pub fn append_blocking(&self, rows: LaunchRows) -> Result<AppendOutcome> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .blocking_send(Command::Append { rows, reply })
            .map_err(|_| stopped())?;
        answer.blocking_recv().map_err(|_| stopped())?
    }

    /// Writes everything buffered to Parquet and waits until it is stored.
    pub async fn flush(&self) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Flush { reply }).await?;
        answer.await.map_err(|_| stopped())?
    }

    /// Flushes and stops. Later calls fail with [`Error::Stopped`].
    pub async fn shutdown(&self) -> Result<()> {
        if self.stopped.load(Ordering::SeqCst) {
            return Ok(());
        }
        let (reply, answer) = oneshot::channel();
        self.send(Command::Shutdown { reply }).await?;
        answer.await.map_err(|_| stopped())?
    }

    async fn send(&self, command: Command) -> Result<()> {
        self.commands.send(command).await.map_err(|_| stopped())
    }
}

fn stopped() -> Error {
    Error::Stopped("it has shut down".into())
}

struct Committer {
    config: IngestConfig,
    storage: Storage,
    handle: Handle,
    index: DedupeIndex,
    wal: Option<Wal>,
    buffer: Buffer,
    partitions: PartitionResolver,
    oldest: Option<Instant>,
    generation: u64,
    /// Number of flush jobs stored so far (generations `0..flushed`), set by the flusher.
    flushed: Arc<AtomicU64>,
    jobs: mpsc::Sender<FlushJob>,
}

impl Committer {
    fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        const MAX_GROUP: usize = 512;
        while let Some(first) = commands.blocking_recv() {
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match commands.try_recv() {
                    Ok(c) => group.push(c),
                    Err(_) => break,
                }
            }
            let mut appends = Vec::new();
            let mut flush_waiters = Vec::new();
            let mut shutdown = None;
            for command in group {
                match command {
                    Command::Append { rows, reply } => appends.push((rows, reply)),
                    Command::Flush { reply } => flush_waiters.push(reply),
                    Command::Tick => {}
                    Command::Shutdown { reply } => shutdown = Some(reply),
                }
            }
            if !appends.is_empty() {
                self.commit_group(appends);
            }
            let due = self.buffer.rows() >= self.config.flush_rows
                || self
                    .oldest
                    .is_some_and(|t| t.elapsed() >= self.config.flush_age);
            if due || !flush_waiters.is_empty() || shutdown.is_some() {
                let mut waiters = flush_waiters;
                let (done, wait) = oneshot::channel();
                if shutdown.is_some() {
                    waiters.push(done);
                }
                if let Err(e) = self.rotate_and_flush(waiters) {
                    tracing::error!(error = %e, "could not start a flush");
                }
                if let Some(reply) = shutdown {
                    let result = wait
                        .blocking_recv()
                        .unwrap_or_else(|_| Err(Error::Stopped("flusher ended".into())));
                    let _ = reply.send(result);
                    return;
                }
            }
        }
    }

    /// Dedupes, logs and buffers a group of appends, then answers each.
    fn commit_group(&mut self, appends: Vec<(LaunchRows, oneshot::Sender<Result<AppendOutcome>>)>) {
        let mut payload = Vec::new();
        let mut decided = Vec::with_capacity(appends.len());
        for (rows, reply) in appends {
            if self.wal.is_some() && !rows.has_wal_lines() {
                let _ = reply.send(Err(Error::Stopped(
                    "rows without write-ahead log lines sent to a logging pipeline (use Ingestor::rows)".into(),
                )));
                continue;
            }
            match self.dedupe(&rows) {
                Ok((stored, groups)) => {
                    if self.wal.is_some() {
                        for i in (0..rows.len()).filter(|&i| stored[i]) {
                            payload.extend_from_slice(rows.wal_line(i).unwrap_or_default());
                        }
                    }
                    decided.push((rows, stored, groups, reply));
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            }
        }
        if let (Some(wal), false) = (&mut self.wal, payload.is_empty())
            && let Err(e) = wal.append(&payload)
        {
            tracing::error!(error = %e, "write-ahead log append failed; the requests get an error");
            let message = e.to_string();
            for (rows, stored, groups, reply) in decided {
                for (key, group) in &groups {
                    for &row in group.iter().filter(|&&row| stored[row as usize]) {
                        self.index.remove(key, rows.ids[row as usize]);
                    }
                }
                let _ = reply.send(Err(Error::Stopped(format!(
                    "durable write failed: {message}"
                ))));
            }
            return;
        }
        for (rows, stored, groups, reply) in decided {
            self.buffer_rows(&rows, groups, &stored);
            if !self.buffer.is_empty() && self.oldest.is_none() {
                self.oldest = Some(Instant::now());
            }
            let _ = reply.send(Ok(AppendOutcome { stored }));
        }
    }

    /// Adds the stored rows to the buffer, by partition; nothing is copied ([`Buffer`]).
    fn buffer_rows(&mut self, rows: &LaunchRows, mut groups: Partitioned, stored: &[bool]) {
        for (_, indices) in &mut groups {
            indices.retain(|&row| stored[row as usize]);
        }
        self.buffer.add(&rows.batch, groups);
    }

    /// Marks each row stored or duplicate, loading partitions' ids from Parquet on first use.
    /// Returns the flags and the rows of each partition.
    fn dedupe(&mut self, rows: &LaunchRows) -> Result<(Vec<bool>, Partitioned)> {
        let keys: Vec<Arc<PartitionKey>> = rows
            .event_times()
            .iter()
            .map(|&t| self.partitions.key(&rows.project, t))
            .collect();
        let groups = rows_by_partition(&keys);
        let mut stored = vec![false; rows.len()];
        for (key, group) in &groups {
            if !self.index.is_loaded(key) {
                let ids = self
                    .handle
                    .block_on(load_partition_ids(&self.storage, key))?;
                self.index.insert_loaded(PartitionKey::clone(key), ids);
            }
            let ids = group
                .iter()
                .map(|&row| (row as usize, rows.ids[row as usize]));
            self.index
                .insert_rows(key, ids, self.generation, &mut stored);
        }
        Ok((stored, groups))
    }

    /// Restores what an earlier process left in the write-ahead log and writes it to Parquet.
    /// Segment by segment: a buffer that fills is flushed on the way (its segments are deleted
    /// only by the last flush, once everything replayed is in Parquet).
    fn replay(&mut self, replay: Replay) -> Result<()> {
        if replay.segments.is_empty() {
            return Ok(());
        }
        let (mut replayed, mut restored) = (0, 0);
        for &segment in &replay.segments {
            for rows in replay.read(segment)? {
                replayed += rows.len();
                restored += self.accept(rows)?.accepted();
            }
            if self.buffer.rows() >= self.config.flush_rows {
                self.flush(Vec::new(), None)?;
            }
        }
        tracing::info!(replayed, restored, "replayed the write-ahead log");
        let (done, wait) = oneshot::channel();
        self.flush(vec![done], replay.last_segment())?;
        wait.blocking_recv()
            .map_err(|_| Error::Stopped("flusher ended".into()))?
    }

    /// Used for the replay at start: dedupe and buffer without logging again.
    fn accept(&mut self, rows: LaunchRows) -> Result<AppendOutcome> {
        let (stored, groups) = self.dedupe(&rows)?;
        self.buffer_rows(&rows, groups, &stored);
        Ok(AppendOutcome { stored })
    }

    fn rotate_and_flush(&mut self, done: Vec<oneshot::Sender<Result<()>>>) -> Result<()> {
        let sealed = match &mut self.wal {
            Some(wal) if !self.buffer.is_empty() => Some(wal.rotate()?),
            _ => None,
        };
        self.flush(done, sealed)
    }

    fn flush(
        &mut self,
        done: Vec<oneshot::Sender<Result<()>>>,
        wal_upto: Option<u64>,
    ) -> Result<()> {
        let partitions = std::mem::take(&mut self.buffer);
        self.oldest = None;
        let job = FlushJob {
            generation: self.generation,
            partitions,
            wal_upto,
            done,
        };
        self.generation += 1;
        let result = self
            .jobs
            .blocking_send(job)
            .map_err(|_| Error::Stopped("flusher ended".into()));
        let flushed = self.flushed.load(Ordering::SeqCst);
        self.index.evict(flushed.checked_sub(1));
        result
    }
}

/// The rows of a batch by partition: each partition once, in order of first appearance, with
/// its row numbers in order.
type Partitioned = Vec<(Arc<PartitionKey>, Vec<u32>)>;

/// Groups rows by partition ([`Partitioned`]). Keys of one day are one `Arc` (see
/// [`PartitionResolver`]), so rows are grouped by pointer, without comparing strings.
fn rows_by_partition(keys: &[Arc<PartitionKey>]) -> Partitioned {
    let mut groups: Partitioned = Vec::new();
    let mut last = 0;
    for (row, key) in keys.iter().enumerate() {
        // Most rows are of the previous row's partition; else a short search (a batch spans
        // few days).
        if !groups.get(last).is_some_and(|(k, _)| Arc::ptr_eq(k, key)) {
            last = match groups.iter().position(|(k, _)| Arc::ptr_eq(k, key)) {
                Some(i) => i,
                None => {
                    groups.push((key.clone(), Vec::new()));
                    groups.len() - 1
                }
            };
        }
        groups[last].1.push(row as u32);
    }
    groups
}

/// Flush jobs encoded at the same time (on blocking threads). Two keep both cores busy at the end
/// of a backfill, when only encoding is left; their files are still stored in job order.
const ENCODING_AT_ONCE: usize = 2;
/// Encoded jobs that may wait for an earlier, slower one before they are stored.
const ENCODED_WAITING: usize = 8;

/// Encodes flush jobs (up to [`ENCODING_AT_ONCE`] at a time) and stores them in order, one at a
/// time, so that log segments are deleted only after every earlier job is stored. A job whose
/// encoding ends early frees its slot at once (its files wait, compressed): a slow job never
/// leaves a core idle while the committer waits to hand over the next one.
async fn run_flusher(
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
struct FileNames {
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
async fn run_spilling_flusher(
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
                            write_parquet(Table::LaunchEvents, batches)?,
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

fn fail_all(waiting: &mut VecDeque<(u64, FlushJob, Result<()>)>, message: &str) {
    for (_, _, result) in waiting.iter_mut() {
        if result.is_ok() {
            *result = Err(Error::Stopped(format!("writing Parquet failed: {message}")));
        }
    }
}

/// Stores a flush's files and remembers its `user_first_seen` rows as stored.
async fn store_flush(
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
fn finish_job(
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
async fn store_files(storage: &Storage, files: Vec<(String, bytes::Bytes)>) -> Result<()> {
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
struct EncodedFlush {
    files: Vec<(String, bytes::Bytes)>,
    first_seen: Vec<(String, RecordBatch)>,
}

/// Records a stored flush's `user_first_seen` rows (see [`StoredFirstSeen`]).
fn remember_first_seen(memory: &Mutex<StoredFirstSeen>, rows: &[(String, RecordBatch)]) {
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

/// Encodes one flush, its files named `name` in their folders. A project's `user_first_seen`
/// file holds only the rows no stored file covers, and is left out when there are none.
fn encode_flush(
    partitions: Buffer,
    name: &str,
    stored_first_seen: &Mutex<StoredFirstSeen>,
) -> Result<EncodedFlush> {
    let mut launches = Vec::new();
    let mut flush = encode_first_seen(partitions, name, stored_first_seen, |key, batches| {
        launches.push((
            format!("{}/{name}", key.relative_dir()),
            write_parquet(Table::LaunchEvents, batches)?,
        ));
        Ok(())
    })?;
    flush.files.extend(launches);
    Ok(flush)
}

/// Hands each partition's rows, in time order, to `launches`, and encodes each project's
/// `user_first_seen` file of the flush (named `name`).
fn encode_first_seen(
    partitions: Buffer,
    name: &str,
    stored_first_seen: &Mutex<StoredFirstSeen>,
    mut launches: impl FnMut(&Arc<PartitionKey>, &[RecordBatch]) -> Result<()>,
) -> Result<EncodedFlush> {
    let mut files = Vec::new();
    let mut first_seen = Vec::new();
    let mut project_batches: Vec<RecordBatch> = Vec::new();
    let mut partitions = partitions.into_partitions().peekable();
    // Partitions are ordered by project, then day.
    while let Some((key, batches)) = partitions.next() {
        let batches = batches?;
        launches(&key, &batches)?;
        // Only `user_id` and `event_time` are needed further: the other columns are freed now.
        for batch in batches {
            project_batches.push(batch.project(&[1, 2])?);
        }
        if partitions
            .peek()
            .is_none_or(|(next, _)| next.project != key.project)
        {
            let users = earliest_per_user(&project_batches)?;
            project_batches.clear();
            let users = stored_first_seen
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .not_covered(&key.project, users)?;
            if users.num_rows() == 0 {
                continue;
            }
            files.push((
                format!("{}/{name}", first_seen::relative_dir(&key.project)),
                write_parquet(Table::UserFirstSeen, std::slice::from_ref(&users))?,
            ));
            first_seen.push((key.project.clone(), users));
        }
    }
    Ok(EncodedFlush { files, first_seen })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_grouped_by_partition_in_order_of_first_appearance() {
        let day = |dt: &str| {
            Arc::new(PartitionKey {
                project: "p".into(),
                dt: dt.into(),
            })
        };
        let (a, b, c) = (day("2025-01-01"), day("2025-01-02"), day("2025-01-03"));
        assert!(rows_by_partition(&[]).is_empty());
        let keys = [&a, &a, &b, &a, &c, &b, &b].map(Arc::clone);
        let groups: Vec<(String, Vec<u32>)> = rows_by_partition(&keys)
            .into_iter()
            .map(|(k, rows)| (k.dt.clone(), rows))
            .collect();
        assert_eq!(
            groups,
            [
                ("2025-01-01".to_string(), vec![0, 1, 3]),
                ("2025-01-02".to_string(), vec![2, 5, 6]),
                ("2025-01-03".to_string(), vec![4]),
            ]
        );
    }

    /// Every `user_first_seen` row stored, as (user, first time), in file order.
    async fn first_seen_rows(storage: &Storage) -> Vec<(String, i64)> {
        use futures::TryStreamExt;
        let folder = storage.path(&first_seen::relative_dir("p"));
        let mut files: Vec<_> = storage
            .store
            .list(Some(&folder))
            .try_collect()
            .await
            .unwrap();
        files.sort_by(|a, b| a.location.cmp(&b.location));
        let mut rows = Vec::new();
        for file in files {
            let bytes = storage
                .store
                .get(&file.location)
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            rows.extend(testing::text_and_time(bytes, ["user_id", "first_time"]));
        }
        rows
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_returning_users_later_flushes_add_no_first_seen_row_an_earlier_launch_does() {
        let storage = Storage::open("memory://").unwrap();
        let ingestor = Ingestor::start(storage.clone(), IngestConfig::new(chrono_tz::UTC))
            .await
            .unwrap();
        // Launches on days of November 2025.
        let send = |lines: &[(&str, &str, i64)]| {
            let mut rows = ingestor.rows("p");
            for (id, user, day) in lines {
                let ts = format!("2025-11-{day:02}T08:00:00Z");
                let line = format!(r#"{{"event_id":"{id}","user_id":"{user}","ts":"{ts}"}}"#);
                rows.push_json(&line, &Default::default()).unwrap();
            }
            rows.finish().unwrap()
        };
        let day = |day: i64| 1_761_955_200_000 + (day - 1) * 86_400_000 + 8 * 3_600_000;
        ingestor.append(send(&[("e1", "a", 10)])).await.unwrap();
        ingestor.flush().await.unwrap();
        // `a` returns later (covered by the stored row), `b` is new.
        ingestor
            .append(send(&[("e2", "a", 11), ("e3", "b", 11)]))
            .await
            .unwrap();
        ingestor.flush().await.unwrap();
        // Only `a` again, later still: no file at all.
        ingestor.append(send(&[("e4", "a", 12)])).await.unwrap();
        ingestor.flush().await.unwrap();
        // A late launch of `a`, before the stored one: it lowers the minimum, so it is kept.
        ingestor.append(send(&[("e5", "a", 9)])).await.unwrap();
        ingestor.flush().await.unwrap();
        ingestor.shutdown().await.unwrap();
        assert_eq!(
            first_seen_rows(&storage).await,
            [
                ("a".to_string(), day(10)),
                ("b".to_string(), day(11)),
                ("a".to_string(), day(9))
            ]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_log_longer_than_the_buffer_is_replayed_segment_by_segment_each_event_once() {
        let wal_dir = tempfile::tempdir().unwrap();
        {
            let (mut wal, _) = Wal::open(wal_dir.path()).unwrap();
            // Four segments of three events; `e3` is logged twice (a retried request).
            for segment in 0..4 {
                let mut payload = Vec::new();
                for n in 0..3 {
                    let id = if segment == 1 && n == 0 {
                        3
                    } else {
                        segment * 3 + n + 1
                    };
                    let line = format!(
                        r#"{{"event_id":"e{id}","user_id":"u{id}","ts":{}}}"#,
                        1_763_942_400_000i64 + id * 86_400_000
                    );
                    let event =
                        promolens_schemas::LaunchEvent::parse(&line, &Default::default()).unwrap();
                    crate::record::encode_line("p", 1_763_942_400_000, &event, &mut payload);
                }
                wal.append(&payload).unwrap();
                wal.rotate().unwrap();
            }
        }
        let storage = Storage::open("memory://").unwrap();
        let mut config = IngestConfig::new(chrono_tz::UTC);
        config.wal_dir = Some(wal_dir.path().to_path_buf());
        // Smaller than the log: the replay flushes on the way.
        config.flush_rows = 4;
        let ingestor = Ingestor::start(storage.clone(), config).await.unwrap();
        ingestor.shutdown().await.unwrap();
        use futures::TryStreamExt;
        let files: Vec<_> = storage
            .store
            .list(Some(&storage.path("launch_events")))
            .try_collect()
            .await
            .unwrap();
        let mut ids = Vec::new();
        for file in files {
            let bytes = storage
                .store
                .get(&file.location)
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            ids.extend(
                testing::text_and_time(bytes, ["event_id", "event_time"])
                    .into_iter()
                    .map(|(id, _)| id),
            );
        }
        ids.sort();
        let expected: Vec<String> = [1, 10, 11, 12, 2, 3, 5, 6, 7, 8, 9]
            .iter()
            .map(|n| format!("e{n}"))
            .collect();
        assert_eq!(ids, expected);
        // The replayed segments are gone once their events are in Parquet.
        let left = crate::wal::Wal::open(wal_dir.path()).unwrap().1.segments;
        assert!(left.iter().all(|&s| s > 5), "{left:?}");
    }
}
