//! Backfill: NDJSON files (plain or `.gz`) streamed through the same validation, decoding and
//! dedupe as live ingest, with bounded memory whatever the file size.
//!
//! Rejected lines go, with their file, line number and reason, to a quarantine file under the data
//! directory (`_quarantine/backfill-….ndjson`). Re-running a backfill stores nothing twice.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use object_store::{ObjectStoreExt, PutPayload};
use serde::Serialize;
use tokio::runtime::Handle;

use crate::body::parse_event;
use crate::error::{Error, Result};
use crate::pipeline::Ingestor;

/// Rows handed to the pipeline at a time.
const BATCH_ROWS: usize = 8192;

/// What a backfill did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct BackfillSummary {
    /// Non-blank lines read.
    pub read: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: u64,
    /// Where the rejected lines were written (a path inside the data directory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<String>,
}

/// Progress as it goes, for a progress bar or log lines.
pub trait Progress: Send + Sync {
    /// A new file starts; `size` is its size on disk (compressed for `.gz`).
    fn file(&self, path: &Path, size: u64);
    /// `bytes` of the current file (on disk) have been read so far.
    fn advance(&self, bytes: u64, summary: &BackfillSummary);
}

/// A quarantine entry.
#[derive(Serialize)]
struct Quarantined<'a> {
    file: &'a str,
    /// 1-based line number.
    line: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    reason: String,
    raw: std::borrow::Cow<'a, str>,
}

/// Backfills `files` into `project`. Blocking: call it from a blocking thread of the runtime.
pub fn backfill(
    ingestor: &Ingestor,
    project: &str,
    files: &[PathBuf],
    progress: &dyn Progress,
) -> Result<BackfillSummary> {
    promolens_schemas::event::validate_project_name(project).map_err(Error::BadProject)?;
    let mut summary = BackfillSummary::default();
    let mut quarantine = tempfile_in_temp_dir()?;
    let limits = ingestor.config().limits.clone();
    let received_at = chrono::Utc::now().timestamp_millis();
    for path in files {
        let file =
            File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        progress.file(path, size);
        let counter = Arc::new(AtomicU64::new(0));
        let counted = CountingReader {
            inner: file,
            count: counter.clone(),
        };
        let reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
            Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
                1 << 20,
                counted,
            )))
        } else {
            Box::new(counted)
        };
        let mut reader = BufReader::with_capacity(1 << 20, reader);
        let display = path.display().to_string();
        let mut line = Vec::with_capacity(1024);
        let mut line_no = 0u64;
        let mut batch = Vec::with_capacity(BATCH_ROWS);
        loop {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .map_err(|e| Error::io(format!("reading {display} at line {}", line_no + 1), e))?;
            if n == 0 {
                break;
            }
            line_no += 1;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            summary.read += 1;
            let outcome = match std::str::from_utf8(&line) {
                Ok(text) => parse_event(text, project, received_at, &limits)
                    .map_err(|e| (e.field().map(str::to_string), e.to_string())),
                Err(e) => Err((
                    None,
                    format!("line is not valid UTF-8 (at byte {})", e.valid_up_to()),
                )),
            };
            match outcome {
                Ok(row) => batch.push(row),
                Err((field, reason)) => {
                    summary.rejected += 1;
                    let entry = Quarantined {
                        file: &display,
                        line: line_no,
                        field: field.as_deref(),
                        reason,
                        raw: String::from_utf8_lossy(line.trim_ascii_end()),
                    };
                    serde_json::to_writer(&mut quarantine.0, &entry)
                        .map_err(|e| Error::io("writing the quarantine", e.into()))?;
                    quarantine
                        .0
                        .write_all(b"\n")
                        .map_err(|e| Error::io("writing the quarantine", e))?;
                }
            }
            if batch.len() >= BATCH_ROWS {
                send(ingestor, &mut batch, &mut summary)?;
                progress.advance(counter.load(Ordering::Relaxed), &summary);
            }
        }
        send(ingestor, &mut batch, &mut summary)?;
        progress.advance(counter.load(Ordering::Relaxed), &summary);
    }
    if summary.rejected > 0 {
        summary.quarantine = Some(store_quarantine(ingestor, quarantine)?);
    }
    Ok(summary)
}

fn send(
    ingestor: &Ingestor,
    batch: &mut Vec<crate::record::LaunchRow>,
    summary: &mut BackfillSummary,
) -> Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let outcome = ingestor.append_blocking(std::mem::take(batch))?;
    summary.accepted += outcome.accepted() as u64;
    summary.duplicates += outcome.duplicates() as u64;
    Ok(())
}

struct QuarantineFile(std::io::BufWriter<File>, PathBuf);

impl Drop for QuarantineFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.1);
    }
}

fn tempfile_in_temp_dir() -> Result<QuarantineFile> {
    let path = std::env::temp_dir().join(format!(
        "promolens-quarantine-{}.ndjson",
        uuid::Uuid::new_v4().simple()
    ));
    let file =
        File::create(&path).map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    Ok(QuarantineFile(std::io::BufWriter::new(file), path))
}

fn store_quarantine(ingestor: &Ingestor, mut quarantine: QuarantineFile) -> Result<String> {
    quarantine
        .0
        .flush()
        .map_err(|e| Error::io("writing the quarantine", e))?;
    let bytes =
        std::fs::read(&quarantine.1).map_err(|e| Error::io("reading back the quarantine", e))?;
    let relative = format!(
        "_quarantine/backfill-{}-{}.ndjson",
        chrono::Utc::now().format("%Y%m%dT%H%M%S"),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let storage = ingestor.storage();
    let path = storage.path(&relative);
    Handle::current().block_on(storage.store.put(&path, PutPayload::from(bytes)))?;
    Ok(match &storage.local_dir {
        Some(dir) => dir.join(&relative).display().to_string(),
        None => format!("{}{}", storage.store_url, path),
    })
}

struct CountingReader<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}
