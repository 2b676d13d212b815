//! The committer: the one thread that owns the order-dependent state (dedupe index, write-ahead
//! log, buffer), takes every waiting request at once (group commit), and hands flush jobs over.
//!
//! It never waits on storage for a request: an append touching a partition whose stored event
//! ids are not in the index yet is parked while a task reads them (a LIST and the files' id
//! columns), and the committer goes on answering every other request. When the ids arrive
//! ([`Command::Loaded`]), the parked appends are taken again, in their order of arrival.

use std::collections::HashSet;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};

use super::buffer::Buffer;
use super::{AppendOutcome, Command, FlushJob, IngestConfig};
use crate::dedupe::{DedupeIndex, load_partition_ids};
use crate::error::{Error, Result};
use crate::partition::{PartitionKey, PartitionResolver};
use crate::record::Rows;
use crate::storage::Storage;
use crate::wal::{Replay, Wal};

/// An append waiting for the stored ids of partitions being read.
type Parked = (Rows, oneshot::Sender<Result<AppendOutcome>>);

pub(super) struct Committer {
    pub(super) config: IngestConfig,
    pub(super) storage: Storage,
    pub(super) handle: Handle,
    pub(super) index: DedupeIndex,
    /// Partitions whose stored ids are being read.
    pub(super) loading: HashSet<PartitionKey>,
    /// Appends waiting for some of those, in order of arrival.
    pub(super) parked: Vec<Parked>,
    /// Where a load sends its ids (weak: the channel still closes when the handles go).
    pub(super) loads: mpsc::WeakSender<Command>,
    pub(super) wal: Option<Wal>,
    pub(super) buffer: Buffer,
    pub(super) partitions: PartitionResolver,
    pub(super) oldest: Option<Instant>,
    pub(super) generation: u64,
    /// Number of flush jobs stored so far (generations `0..flushed`), set by the flusher.
    pub(super) flushed: Arc<AtomicU64>,
    pub(super) jobs: mpsc::Sender<FlushJob>,
}

impl Committer {
    pub(super) fn run(mut self, mut commands: mpsc::Receiver<Command>) {
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
            let mut loaded = false;
            for command in group {
                match command {
                    Command::Append { rows, reply } => appends.push((rows, reply)),
                    Command::Flush { reply } => flush_waiters.push(reply),
                    Command::Loaded { key, ids } => {
                        self.take_loaded(key, ids);
                        loaded = true;
                    }
                    Command::Tick => {}
                    Command::Shutdown { reply } => shutdown = Some(reply),
                }
            }
            if loaded || shutdown.is_some() {
                // Parked appends arrived first: they go first. On shutdown, each waits for its
                // ids here rather than being dropped.
                let mut waiting = std::mem::take(&mut self.parked);
                waiting.append(&mut appends);
                appends = waiting;
            }
            if !appends.is_empty() {
                self.commit_group(appends, shutdown.is_none());
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

    /// Dedupes, logs and buffers a group of appends, then answers each; with `park`, an append
    /// that touches a partition whose ids are not loaded waits for them (and the others go on).
    fn commit_group(&mut self, appends: Vec<Parked>, park: bool) {
        let mut payload = Vec::new();
        let mut decided = Vec::with_capacity(appends.len());
        for (rows, reply) in appends {
            if self.wal.is_some() && !rows.has_wal_lines() {
                let _ = reply.send(Err(Error::Stopped(
                    "rows without write-ahead log lines sent to a logging pipeline (use Ingestor::rows)".into(),
                )));
                continue;
            }
            let groups = self.partition_groups(&rows);
            if park {
                let cold: Vec<PartitionKey> = groups
                    .iter()
                    .flatten()
                    .filter(|(key, _)| !self.index.is_loaded(key))
                    .map(|(key, _)| PartitionKey::clone(key))
                    .collect();
                if !cold.is_empty() {
                    for key in cold {
                        self.start_loading(key);
                    }
                    self.parked.push((rows, reply));
                    continue;
                }
            }
            match self.dedupe(&rows, groups) {
                Ok((stored, groups)) => {
                    if self.wal.is_some() {
                        for (table, stored) in rows.tables.iter().zip(&stored) {
                            for i in (0..table.len()).filter(|&i| stored[i]) {
                                payload.extend_from_slice(table.wal_line(i).unwrap_or_default());
                            }
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
                for ((table, stored), groups) in rows.tables.iter().zip(&stored).zip(&groups) {
                    for (key, group) in groups {
                        for &row in group.iter().filter(|&&row| stored[row as usize]) {
                            self.index.remove(key, table.ids[row as usize]);
                        }
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
            let _ = reply.send(Ok(AppendOutcome::of(stored)));
        }
    }

    /// Adds the stored rows to the buffer, by partition; nothing is copied ([`Buffer`]).
    fn buffer_rows(&mut self, rows: &Rows, groups: Vec<Partitioned>, stored: &[Vec<bool>]) {
        for ((table, mut groups), stored) in rows.tables.iter().zip(groups).zip(stored) {
            for (_, indices) in &mut groups {
                indices.retain(|&row| stored[row as usize]);
            }
            self.buffer.add(&table.batch, groups);
        }
    }

    /// Per table of the rows, the rows of each partition they fall in.
    fn partition_groups(&mut self, rows: &Rows) -> Vec<Partitioned> {
        rows.tables
            .iter()
            .map(|table| {
                let keys: Vec<Arc<PartitionKey>> = table
                    .event_times()
                    .iter()
                    .map(|&t| self.partitions.key(table.table, &rows.project, t))
                    .collect();
                rows_by_partition(&keys)
            })
            .collect()
    }

    /// Reads a partition's stored ids on a task of the runtime, which sends them back as
    /// [`Command::Loaded`]; once per partition however many appends wait for it.
    fn start_loading(&mut self, key: PartitionKey) {
        if !self.loading.insert(key.clone()) {
            return;
        }
        let (storage, loads) = (self.storage.clone(), self.loads.clone());
        self.handle.spawn(async move {
            let ids = load_partition_ids(&storage, &key).await;
            if let Some(commands) = loads.upgrade() {
                // The committer has ended when this fails: nobody waits any more.
                let _ = commands.send(Command::Loaded { key, ids }).await;
            }
        });
    }

    /// A partition's ids, read: into the index. When they could not be read, the appends
    /// waiting for them are answered with the error (nothing of theirs was stored).
    fn take_loaded(&mut self, key: PartitionKey, ids: Result<crate::dedupe::IdSet>) {
        self.loading.remove(&key);
        match ids {
            Ok(ids) => {
                if !self.index.is_loaded(&key) {
                    self.index.insert_loaded(key, ids);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, partition = ?key, "could not read a partition's stored event ids");
                let message = format!(
                    "reading the events stored for {} {}: {e}",
                    key.project, key.dt
                );
                let parked = std::mem::take(&mut self.parked);
                for (rows, reply) in parked {
                    if self
                        .partition_groups(&rows)
                        .iter()
                        .flatten()
                        .any(|(k, _)| **k == key)
                    {
                        let _ = reply.send(Err(Error::StorageUnavailable(message.clone())));
                    } else {
                        self.parked.push((rows, reply));
                    }
                }
            }
        }
    }

    /// Marks each row of each table stored or duplicate, loading partitions' ids from Parquet
    /// on first use (blocking: at start, on shutdown). Returns the flags and the rows of each
    /// partition.
    #[allow(clippy::type_complexity)]
    fn dedupe(
        &mut self,
        rows: &Rows,
        groups: Vec<Partitioned>,
    ) -> Result<(Vec<Vec<bool>>, Vec<Partitioned>)> {
        let mut flags = Vec::with_capacity(rows.tables.len());
        for (table, groups) in rows.tables.iter().zip(&groups) {
            let mut stored = vec![false; table.len()];
            for (key, group) in groups {
                if !self.index.is_loaded(key) {
                    let ids = self
                        .handle
                        .block_on(load_partition_ids(&self.storage, key))?;
                    self.index.insert_loaded(PartitionKey::clone(key), ids);
                }
                let ids = group
                    .iter()
                    .map(|&row| (row as usize, table.ids[row as usize]));
                self.index
                    .insert_rows(key, ids, self.generation, &mut stored);
            }
            flags.push(stored);
        }
        Ok((flags, groups))
    }

    /// Restores what an earlier process left in the write-ahead log and writes it to Parquet.
    /// Segment by segment: a buffer that fills is flushed on the way (its segments are deleted
    /// only by the last flush, once everything replayed is in Parquet).
    pub(super) fn replay(&mut self, replay: Replay) -> Result<()> {
        if replay.segments.is_empty() {
            return Ok(());
        }
        let (mut replayed, mut restored) = (0, 0);
        for &segment in &replay.segments {
            for rows in replay.read(segment, &self.config.attributors)? {
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
    fn accept(&mut self, rows: Rows) -> Result<AppendOutcome> {
        let groups = self.partition_groups(&rows);
        let (stored, groups) = self.dedupe(&rows, groups)?;
        self.buffer_rows(&rows, groups, &stored);
        Ok(AppendOutcome::of(stored))
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
pub(super) type Partitioned = Vec<(Arc<PartitionKey>, Vec<u32>)>;

/// Groups rows by partition ([`Partitioned`]). Keys of one day are one `Arc` (see
/// [`PartitionResolver`]), so rows are grouped by pointer, without comparing strings.
pub(super) fn rows_by_partition(keys: &[Arc<PartitionKey>]) -> Partitioned {
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
