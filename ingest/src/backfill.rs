//! Backfill: NDJSON files (plain or `.gz`) streamed through the same validation, decoding and
//! dedupe as live ingest, with bounded memory whatever the file size.
//!
//! Rejected lines go, with their file, line number and reason, to a quarantine file under the data
//! directory (`_quarantine/backfill-….ndjson`). Re-running a backfill stores nothing twice.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use promolens_schemas::Limits;

use object_store::{ObjectStoreExt, PutPayload};
use serde::Serialize;
use tokio::runtime::Handle;

use crate::error::{Error, Result};
use crate::pipeline::Ingestor;
use crate::record::{Rows, RowsBuilder};

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
///
/// Per file, a reader thread cuts the (decompressed) stream into chunks of whole lines, parser
/// threads (one per core) validate and decode them, and this thread hands the rows to the
/// pipeline in file order (so that "first occurrence wins" and line numbers stay exact). Memory
/// is bounded by the chunks in flight, whatever the file size.
pub fn backfill(
    ingestor: &Ingestor,
    project: &str,
    files: &[PathBuf],
    progress: &dyn Progress,
) -> Result<BackfillSummary> {
    promolens_schemas::event::validate_project_name(project).map_err(Error::BadProject)?;
    let mut run = Run {
        ingestor,
        project,
        received_at: chrono::Utc::now().timestamp_millis(),
        summary: BackfillSummary::default(),
        quarantine: tempfile_in_temp_dir()?,
        progress,
    };
    for path in files {
        run.file(path)?;
    }
    let Run {
        mut summary,
        quarantine,
        ..
    } = run;
    if summary.rejected > 0 {
        summary.quarantine = Some(store_quarantine(ingestor, quarantine)?);
    }
    Ok(summary)
}

/// Bytes of text per chunk handed to a parser.
const CHUNK_BYTES: usize = 1 << 20;
/// A line longer than this is cut (and rejected as malformed) rather than buffered further.
const MAX_LINE_BYTES: usize = 64 << 20;

/// Whole lines of one file.
struct Chunk {
    seq: u64,
    /// 1-based number of the chunk's first line.
    first_line: u64,
    text: Vec<u8>,
}

/// A rejected line: its number, the field at fault, the reason, the line itself.
type Reject = (u64, Option<String>, String, String);

/// A chunk parsed.
struct Parsed {
    seq: u64,
    rows: Result<Rows>,
    rejects: Vec<Reject>,
    read: u64,
    /// Lines whose `event_id` came earlier in the same chunk.
    duplicates: u64,
}

struct Run<'a> {
    ingestor: &'a Ingestor,
    project: &'a str,
    received_at: i64,
    summary: BackfillSummary,
    quarantine: QuarantineFile,
    progress: &'a dyn Progress,
}

impl Run<'_> {
    fn file(&mut self, path: &Path) -> Result<()> {
        let file =
            File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        self.progress.file(path, size);
        let counter = Arc::new(AtomicU64::new(0));
        let counted = CountingReader {
            inner: file,
            count: counter.clone(),
        };
        let reader: Box<dyn Read + Send> = if path.extension().is_some_and(|e| e == "gz") {
            Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
                1 << 20,
                counted,
            )))
        } else {
            Box::new(counted)
        };
        let display = path.display().to_string();
        let workers = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(1, 8);
        let (chunks, chunk_receiver) = mpsc::sync_channel::<Chunk>(workers);
        let chunk_receiver = Mutex::new(chunk_receiver);
        // Parsed chunks' buffers go back to the reader, which fills them again.
        let (recycle, recycled) = mpsc::channel::<Vec<u8>>();
        // Parsed chunks wait for the committer while a flush is handed over.
        let (parsed_sender, parsed) = mpsc::sync_channel::<Parsed>(2 * workers);
        let limits = self.ingestor.config().limits.clone();
        let with_wal_lines = self.ingestor.config().wal_dir.is_some();
        let (project, received_at) = (self.project, self.received_at);
        let attributor = self.ingestor.config().attributors.current(project);
        // Launch lines are rarely shorter than 200 bytes: a chunk's columns do not grow.
        let new_rows = move || {
            RowsBuilder::with_capacity(project, received_at, with_wal_lines, CHUNK_BYTES / 200)
                .with_attributor(attributor.clone())
        };
        std::thread::scope(|scope| {
            let reader = scope.spawn(|| read_chunks(reader, chunks, recycled, &display));
            for _ in 0..workers {
                let sender = parsed_sender.clone();
                let recycle = recycle.clone();
                let (receiver, limits, new_rows) = (&chunk_receiver, &limits, &new_rows);
                scope.spawn(move || {
                    loop {
                        let chunk = match receiver.lock() {
                            Ok(r) => r.recv(),
                            Err(_) => return,
                        };
                        let Ok(mut chunk) = chunk else { return };
                        let parsed = parse_chunk(&chunk, new_rows(), limits);
                        // The reader may have finished: then the buffer is simply freed.
                        let _ = recycle.send(std::mem::take(&mut chunk.text));
                        if sender.send(parsed).is_err() {
                            return;
                        }
                    }
                });
            }
            drop((parsed_sender, recycle));
            // Back in file order.
            let mut waiting = BTreeMap::new();
            let mut next = 0u64;
            for chunk in parsed {
                waiting.insert(chunk.seq, chunk);
                while let Some(chunk) = waiting.remove(&next) {
                    self.consume(chunk, &display)?;
                    self.progress
                        .advance(counter.load(Ordering::Relaxed), &self.summary);
                    next += 1;
                }
            }
            reader
                .join()
                .map_err(|_| Error::Stopped("the backfill reader panicked".into()))?
        })
    }

    fn consume(&mut self, chunk: Parsed, display: &str) -> Result<()> {
        self.summary.read += chunk.read;
        self.summary.duplicates += chunk.duplicates;
        for (line, field, reason, raw) in chunk.rejects {
            self.summary.rejected += 1;
            let entry = Quarantined {
                file: display,
                line,
                field: field.as_deref(),
                reason,
                raw: raw.into(),
            };
            let writer = &mut self.quarantine.0;
            serde_json::to_writer(&mut *writer, &entry)
                .map_err(|e| Error::io("writing the quarantine", e.into()))?;
            writer
                .write_all(b"\n")
                .map_err(|e| Error::io("writing the quarantine", e))?;
        }
        let rows = chunk.rows?;
        if rows.is_empty() {
            return Ok(());
        }
        let outcome = self.ingestor.append_blocking(rows)?;
        self.summary.accepted += outcome.accepted() as u64;
        self.summary.duplicates += outcome.duplicates() as u64;
        Ok(())
    }
}

/// Cuts the stream into chunks of whole lines.
///
/// Chunks are read into buffers the parsers hand back once done with them: a fresh buffer would
/// be zeroed by `Read` before every fill (a memset of the whole file, 1.6% of a backfill).
fn read_chunks(
    mut reader: Box<dyn Read + Send>,
    chunks: mpsc::SyncSender<Chunk>,
    recycled: mpsc::Receiver<Vec<u8>>,
    display: &str,
) -> Result<()> {
    // `buffer[..filled]` holds text not yet sent; `buffer` is initialized to its full length.
    let mut buffer = vec![0u8; CHUNK_BYTES];
    let mut filled = 0;
    let mut seq = 0;
    let mut next_line = 1u64;
    let mut eof = false;
    while !eof {
        // Fill the buffer (further when one line is longer than it).
        while filled < buffer.len() {
            let read = match reader.read(&mut buffer[filled..]) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(read) => read,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(Error::io(
                        format!("reading {display} near line {next_line}"),
                        e,
                    ));
                }
            };
            filled += read;
        }
        let cut = if eof {
            filled
        } else {
            match memchr::memrchr(b'\n', &buffer[..filled]) {
                Some(at) => at + 1,
                None if filled >= MAX_LINE_BYTES => filled,
                None => {
                    buffer.resize(buffer.len() + CHUNK_BYTES / 4, 0);
                    continue;
                }
            }
        };
        if cut == 0 {
            continue;
        }
        // The partial last line starts the next buffer.
        let mut next = recycled.try_recv().unwrap_or_default();
        next.resize(CHUNK_BYTES.max(filled - cut + CHUNK_BYTES / 4), 0);
        next[..filled - cut].copy_from_slice(&buffer[cut..filled]);
        let mut text = std::mem::replace(&mut buffer, next);
        filled -= cut;
        text.truncate(cut);
        let lines = memchr::memchr_iter(b'\n', &text).count() as u64
            + u64::from(text.last().is_some_and(|&b| b != b'\n'));
        let chunk = Chunk {
            seq,
            first_line: next_line,
            text,
        };
        seq += 1;
        next_line += lines;
        if chunks.send(chunk).is_err() {
            // The consumer stopped: it has the error to report.
            return Ok(());
        }
    }
    Ok(())
}

fn parse_chunk(chunk: &Chunk, mut rows: RowsBuilder, limits: &Limits) -> Parsed {
    let mut rejects = Vec::new();
    let (mut read, mut duplicates) = (0, 0);
    let mut kept = Vec::with_capacity(CHUNK_BYTES / 200);
    let text = chunk.text.strip_suffix(b"\n").unwrap_or(&chunk.text);
    let mut start = 0;
    let ends = memchr::memchr_iter(b'\n', text).chain(std::iter::once(text.len()));
    for (i, end) in ends.enumerate() {
        let line = &text[start..end];
        start = end + 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        read += 1;
        let outcome = match std::str::from_utf8(line) {
            Ok(text) => match rows.parse_once(text, limits) {
                Ok(Some(event)) => {
                    kept.push(event);
                    Ok(())
                }
                Ok(None) => {
                    duplicates += 1;
                    Ok(())
                }
                Err(e) => Err((e.field().map(str::to_string), e.to_string())),
            },
            Err(e) => Err((
                None,
                format!("line is not valid UTF-8 (at byte {})", e.valid_up_to()),
            )),
        };
        if let Err((field, reason)) = outcome {
            rejects.push((
                chunk.first_line + i as u64,
                field,
                reason,
                String::from_utf8_lossy(line.trim_ascii_end()).into_owned(),
            ));
        }
    }
    rows.push_in_time_order(&kept);
    Parsed {
        seq: chunk.seq,
        rows: rows.finish(),
        rejects,
        read,
        duplicates,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that returns at most `step` bytes per call, as pipes and decoders do.
    struct Trickle {
        data: Vec<u8>,
        at: usize,
        step: usize,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.step).min(self.data.len() - self.at);
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    fn chunks_of(data: &[u8], step: usize) -> Vec<Chunk> {
        let reader = Box::new(Trickle {
            data: data.to_vec(),
            at: 0,
            step,
        });
        let (chunks, received) = mpsc::sync_channel(1);
        let (recycle, recycled) = mpsc::channel();
        std::thread::scope(|scope| {
            let reader = scope.spawn(|| read_chunks(reader, chunks, recycled, "test"));
            let mut all = Vec::new();
            for chunk in received {
                // Hand a buffer back as the parsers do (a copy: the test keeps the chunk), so
                // later chunks are read into buffers that still hold old text.
                let _ = recycle.send(chunk.text.clone());
                all.push(chunk);
            }
            reader.join().unwrap().unwrap();
            all
        })
    }

    #[test]
    fn chunks_are_whole_lines_in_order_with_their_line_numbers() {
        let mut data = Vec::new();
        let mut starts = Vec::new();
        for i in 0..40_000 {
            starts.push(data.len());
            // Lines of varied length, one longer than a whole chunk.
            let width = if i == 20_000 {
                CHUNK_BYTES + 777
            } else {
                i % 600
            };
            data.extend(format!("{i}:").bytes());
            data.extend(std::iter::repeat_n(b'x', width));
            data.push(b'\n');
        }
        data.extend(b"last line without a newline");
        for step in [CHUNK_BYTES, 4096, 777] {
            let chunks = chunks_of(&data, step);
            assert!(chunks.len() > 8, "{} chunks", chunks.len());
            let joined: Vec<u8> = chunks.iter().flat_map(|c| c.text.clone()).collect();
            assert!(
                joined == data,
                "step {step}: the chunks do not add up to the input"
            );
            for (i, chunk) in chunks.iter().enumerate() {
                assert_eq!(chunk.seq, i as u64);
                let first = String::from_utf8_lossy(&chunk.text[..12]).to_string();
                let number: u64 = first.split(':').next().unwrap().parse().unwrap();
                assert_eq!(chunk.first_line, number + 1, "chunk {i} starts at {first}");
                if i + 1 < chunks.len() {
                    assert_eq!(chunk.text.last(), Some(&b'\n'), "chunk {i} cuts a line");
                }
            }
        }
    }
}
