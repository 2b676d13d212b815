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
mod cold_partition_tests;
mod committer;
#[cfg(test)]
mod durability_tests;
mod encode;
mod flusher;
mod spill;
#[cfg(test)]
mod testing;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono_tz::Tz;
use promolens_schemas::Limits;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};

use crate::attributors::Attributors;
use crate::dedupe::DedupeIndex;
use crate::error::{Error, Result};
use crate::first_seen::StoredFirstSeen;
use crate::partition::{PartitionKey, PartitionResolver, ProjectZones};
use crate::record::{Rows, RowsBuilder};
use crate::storage::Storage;
use crate::wal::Wal;

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
    /// Each project's current attribution settings, which decode its launches.
    pub attributors: Arc<Attributors>,
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
            attributors: Arc::default(),
        }
    }
}

/// What became of each row of one append.
#[derive(Debug, Clone, Default)]
pub struct AppendOutcome {
    /// One flag per row, table by table ([`Rows::tables`]) and in order within each: true when
    /// stored, false when its `event_id` was already there.
    pub stored: Vec<bool>,
}

impl AppendOutcome {
    fn of(per_table: Vec<Vec<bool>>) -> AppendOutcome {
        AppendOutcome {
            stored: per_table.concat(),
        }
    }

    pub fn accepted(&self) -> usize {
        self.stored.iter().filter(|s| **s).count()
    }
    pub fn duplicates(&self) -> usize {
        self.stored.len() - self.accepted()
    }
}

enum Command {
    Append {
        rows: Rows,
        reply: oneshot::Sender<Result<AppendOutcome>>,
    },
    /// Flush whatever is buffered and answer once it is in Parquet.
    Flush {
        reply: oneshot::Sender<Result<()>>,
    },
    /// The event ids stored in a partition, read off the committer thread (see
    /// [`Committer::start_loading`]).
    Loaded {
        key: PartitionKey,
        ids: Result<crate::dedupe::IdSet>,
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
use committer::Committer;
use flusher::{run_flusher, run_spilling_flusher};
use spill::Spill;

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
            loading: Default::default(),
            parked: Vec::new(),
            loads: commands.downgrade(),
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
    pub fn rows(&self, project: &str) -> RowsBuilder {
        RowsBuilder::new(
            project,
            chrono::Utc::now().timestamp_millis(),
            self.config.wal_dir.is_some(),
        )
        .with_attributor(self.config.attributors.current(project))
    }

    /// Dedupes and stores rows; when this returns `Ok`, the stored rows are durable (in the
    /// write-ahead log when there is one).
    pub async fn append(&self, rows: Rows) -> Result<AppendOutcome> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Append { rows, reply }).await?;
        answer.await.map_err(|_| stopped())?
    }

    /// [`Ingestor::append`] for synchronous callers outside the runtime (backfill's reader thread).
    pub fn append_blocking(&self, rows: Rows) -> Result<AppendOutcome> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use committer::rows_by_partition;

    #[test]
    fn rows_are_grouped_by_partition_in_order_of_first_appearance() {
        let day = |dt: &str| {
            Arc::new(PartitionKey {
                table: crate::parquet_io::Table::LaunchEvents,
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
        let folder = crate::first_seen::relative_dir("p");
        testing::stored_rows(storage, &folder, ["user_id", "first_time"]).await
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
    async fn core_events_are_stored_apart_deduped_replayed_and_compacted_like_launches() {
        let wal_dir = tempfile::tempdir().unwrap();
        let storage = Storage::open("memory://").unwrap();
        let mut config = IngestConfig::new(chrono_tz::UTC);
        config.wal_dir = Some(wal_dir.path().to_path_buf());
        config.ts_days_back = 100_000;
        let ts = 1_763_942_400_000i64;
        let body = |ids: &[(&str, &str)]| {
            ids.iter()
                .enumerate()
                .map(|(i, (id, event))| {
                    let t = ts + i as i64;
                    match *event {
                        "launch" => format!(r#"{{"event_id":"{id}","user_id":"a","ts":{t}}}"#),
                        name => format!(
                            r#"{{"event":"{name}","event_id":"{id}","user_id":"b","ts":{t},"props":{{"amount":2}}}}"#
                        ),
                    }
                })
                .collect::<Vec<_>>()
        };
        let append = |ingestor: &Ingestor, lines: Vec<String>| {
            let mut rows = ingestor.rows("p");
            for line in &lines {
                rows.push_json(line, &Default::default()).unwrap();
            }
            rows.finish().unwrap()
        };
        {
            let ingestor = Ingestor::start(storage.clone(), config.clone())
                .await
                .unwrap();
            let rows = append(
                &ingestor,
                body(&[("l1", "launch"), ("p1", "purchase"), ("s1", "signup")]),
            );
            assert_eq!(ingestor.append(rows).await.unwrap().accepted(), 3);
            ingestor.flush().await.unwrap();
            // A retry of the whole body, and one new purchase: only the purchase is stored.
            let rows = append(
                &ingestor,
                body(&[
                    ("l1", "launch"),
                    ("p1", "purchase"),
                    ("s1", "signup"),
                    ("p2", "purchase"),
                ]),
            );
            let outcome = ingestor.append(rows).await.unwrap();
            assert_eq!((outcome.accepted(), outcome.duplicates()), (1, 3));
            // The process dies here: `p2` is only in the write-ahead log.
            std::mem::forget(ingestor);
        }
        let ingestor = Ingestor::start(storage.clone(), config).await.unwrap();
        let rows = append(&ingestor, body(&[("p2", "purchase")]));
        assert_eq!(
            ingestor.append(rows).await.unwrap().duplicates(),
            1,
            "replayed, then known"
        );
        ingestor.shutdown().await.unwrap();
        let ids = |folder: &'static str| {
            let storage = storage.clone();
            async move {
                let mut ids: Vec<String> =
                    testing::stored_rows(&storage, folder, ["event_id", "event_time"])
                        .await
                        .into_iter()
                        .map(|(id, _)| id)
                        .collect();
                ids.sort();
                ids
            }
        };
        assert_eq!(ids("launch_events").await, ["l1"]);
        assert_eq!(ids("events").await, ["p1", "p2", "s1"]);
        // First seen comes from launches only: `b` bought but never launched.
        let folder = crate::first_seen::relative_dir("p");
        let users = testing::stored_rows(&storage, &folder, ["user_id", "first_time"]).await;
        assert_eq!(users, [("a".to_string(), ts)]);
        let options = crate::compact::CompactOptions {
            grace: Duration::ZERO,
            ..Default::default()
        };
        let summary = crate::compact::compact(&storage, &options).await.unwrap();
        assert_eq!(
            (summary.partitions, summary.events),
            (1, 3),
            "the events' two files merged"
        );
        assert_eq!(ids("events").await, ["p1", "p2", "s1"]);
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
                        promolens_schemas::Event::parse(&line, &Default::default()).unwrap();
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
        let ids = testing::stored_event_ids(&storage).await;
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
