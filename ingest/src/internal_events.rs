//! What the ingest pipeline reports about itself: each runtime event is a struct whose `emit()`
//! writes its log line and counts it together, so that logs and `/metrics` never drift apart
//! (Vector's `internal_events` is the model). Without an installed recorder (a backfill, the CLI)
//! the counts go nowhere and only the log lines remain.

use std::time::Duration;

/// A runtime event: logged and counted by one call.
pub trait InternalEvent {
    fn emit(self);
}

/// The outcome of one ingest request's events.
pub struct EventsReceived<'a> {
    pub project: &'a str,
    pub accepted: usize,
    pub duplicates: usize,
    pub rejected: usize,
}

impl InternalEvent for EventsReceived<'_> {
    fn emit(self) {
        tracing::debug!(
            project = self.project,
            accepted = self.accepted,
            duplicates = self.duplicates,
            rejected = self.rejected,
            "events received"
        );
        for (outcome, n) in [
            ("accepted", self.accepted),
            ("duplicate", self.duplicates),
            ("rejected", self.rejected),
        ] {
            metrics::counter!("promolens_events_total", "outcome" => outcome).increment(n as u64);
        }
    }
}

/// One write-ahead log record made durable (written and `fdatasync`ed).
pub struct WalSynced {
    pub bytes: usize,
    pub elapsed: Duration,
}

impl InternalEvent for WalSynced {
    fn emit(self) {
        tracing::trace!(
            bytes = self.bytes,
            elapsed_ms = self.elapsed.as_secs_f64() * 1e3,
            "write-ahead log synced"
        );
        metrics::counter!("promolens_wal_syncs_total").increment(1);
        metrics::counter!("promolens_wal_bytes_total").increment(self.bytes as u64);
        metrics::histogram!("promolens_wal_sync_seconds").record(self.elapsed.as_secs_f64());
    }
}

/// A write-ahead log segment damaged in its middle (a record fails its checksum with more after
/// it): kept in `corrupt/`, replayed up to the damage.
pub struct WalSegmentQuarantined<'a> {
    pub segment: &'a std::path::Path,
    pub kept_at: &'a std::path::Path,
    pub offset: usize,
}

impl InternalEvent for WalSegmentQuarantined<'_> {
    fn emit(self) {
        tracing::error!(
            segment = %self.segment.display(),
            kept_at = %self.kept_at.display(),
            offset = self.offset,
            "write-ahead log segment damaged: events after the damage are not replayed; the \
             segment is kept for inspection"
        );
        metrics::counter!("promolens_wal_segments_quarantined_total").increment(1);
    }
}

/// A flush's files stored (Parquet of `launch_events` and `user_first_seen`).
pub struct FlushStored {
    pub files: usize,
    pub bytes: usize,
    pub elapsed: Duration,
}

impl InternalEvent for FlushStored {
    fn emit(self) {
        tracing::debug!(
            files = self.files,
            bytes = self.bytes,
            elapsed_ms = self.elapsed.as_secs_f64() * 1e3,
            "flush stored"
        );
        metrics::counter!("promolens_flushes_total").increment(1);
        metrics::counter!("promolens_files_written_total").increment(self.files as u64);
        metrics::counter!("promolens_file_bytes_written_total").increment(self.bytes as u64);
        metrics::histogram!("promolens_flush_seconds").record(self.elapsed.as_secs_f64());
    }
}

/// A flush that could not be stored: its events stay in the write-ahead log.
pub struct FlushFailed<'a> {
    pub error: &'a dyn std::fmt::Display,
}

impl InternalEvent for FlushFailed<'_> {
    fn emit(self) {
        tracing::error!(error = %self.error, "writing Parquet failed; the events stay in the write-ahead log");
        metrics::counter!("promolens_flush_errors_total").increment(1);
    }
}

/// One compaction run over the data directory.
pub struct CompactionDone {
    pub partitions: usize,
    pub files_merged: usize,
    pub elapsed: Duration,
}

impl InternalEvent for CompactionDone {
    fn emit(self) {
        if self.partitions > 0 {
            tracing::info!(
                partitions = self.partitions,
                files_merged = self.files_merged,
                elapsed_ms = self.elapsed.as_secs_f64() * 1e3,
                "compaction merged partitions"
            );
        }
        metrics::counter!("promolens_compactions_total").increment(1);
        metrics::counter!("promolens_compaction_partitions_total")
            .increment(self.partitions as u64);
        metrics::counter!("promolens_compaction_files_merged_total")
            .increment(self.files_merged as u64);
    }
}
