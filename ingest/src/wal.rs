//! The write-ahead log that makes a 2xx durable.
//!
//! Accepted events are appended and `fdatasync`ed before the HTTP answer is sent; many requests
//! share one append and one sync (group commit, see `pipeline`). The log is a folder of numbered
//! segments. A flush to Parquet seals the current segment and starts the next; once the Parquet
//! files of a flush are stored, the segments it covers are deleted. At start the remaining
//! segments are replayed (dedupe makes the replay idempotent even when the crash came between
//! storing Parquet and deleting the segment).
//!
//! Record framing: `[u32 LE payload length][u64 LE xxh3 of payload][payload]`. The payload is one
//! line per event, `project \t received_at_ms \t wire JSON \n`. A torn record at the end of the
//! last segment (a crash mid-write) fails its length or checksum and is dropped: it was never
//! acknowledged.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use promolens_schemas::{LaunchEvent, Limits};

use crate::error::{Error, Result};
use crate::internal_events::{InternalEvent, WalSynced};
use crate::record::{LaunchRows, LaunchRowsBuilder};

const HEADER_BYTES: usize = 12;

pub struct Wal {
    dir: PathBuf,
    file: File,
    segment: u64,
}

/// What a replay found in the log.
pub struct Replay {
    /// The logged events, one set of rows per project.
    pub rows: Vec<LaunchRows>,
    /// Highest segment number replayed (they are deleted once their rows are in Parquet).
    pub last_segment: Option<u64>,
}

fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("wal-{segment:012}.log"))
}

fn segments(dir: &Path) -> Result<Vec<u64>> {
    let mut found = Vec::new();
    let entries =
        fs::read_dir(dir).map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name
            .strip_prefix("wal-")
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse().ok())
        {
            found.push(n);
        }
    }
    found.sort_unstable();
    Ok(found)
}

impl Wal {
    /// Opens the log in `dir`, returning what earlier processes left in it.
    pub fn open(dir: &Path) -> Result<(Wal, Replay)> {
        fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let existing = segments(dir)?;
        let mut builders = BTreeMap::new();
        for &segment in &existing {
            read_segment(&segment_path(dir, segment), &mut builders)?;
        }
        let rows = builders
            .into_values()
            .map(LaunchRowsBuilder::finish)
            .collect::<Result<Vec<_>>>()?;
        let next = existing.last().map_or(1, |last| last + 1);
        let wal = Wal {
            dir: dir.to_path_buf(),
            file: create_segment(dir, next)?,
            segment: next,
        };
        Ok((
            wal,
            Replay {
                rows,
                last_segment: existing.last().copied(),
            },
        ))
    }

    /// Appends one encoded payload (lines made by [`encode_line`]) and syncs it to disk.
    pub fn append(&mut self, payload: &[u8]) -> Result<()> {
        let mut record = Vec::with_capacity(HEADER_BYTES + payload.len());
        record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        record.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(payload).to_le_bytes());
        record.extend_from_slice(payload);
        let started = std::time::Instant::now();
        self.file
            .write_all(&record)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| Error::io("appending to the write-ahead log", e))?;
        WalSynced {
            bytes: record.len(),
            elapsed: started.elapsed(),
        }
        .emit();
        Ok(())
    }

    /// Seals the current segment and starts a new one; returns the sealed segment's number.
    pub fn rotate(&mut self) -> Result<u64> {
        let sealed = self.segment;
        self.segment += 1;
        self.file = create_segment(&self.dir, self.segment)?;
        Ok(sealed)
    }
}

/// Deletes every segment up to and including `upto`.
pub fn delete_segments(dir: &Path, upto: u64) -> Result<()> {
    for segment in segments(dir)? {
        if segment <= upto {
            let path = segment_path(dir, segment);
            fs::remove_file(&path)
                .map_err(|e| Error::io(format!("deleting {}", path.display()), e))?;
        }
    }
    Ok(())
}

fn create_segment(dir: &Path, segment: u64) -> Result<File> {
    let path = segment_path(dir, segment);
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    // Make the new file's directory entry durable too.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(file)
}

/// Appends one event's line to a payload.
pub fn encode_line(project: &str, received_at_ms: i64, event: &LaunchEvent<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(project.as_bytes());
    out.push(b'\t');
    out.extend_from_slice(received_at_ms.to_string().as_bytes());
    out.push(b'\t');
    out.extend_from_slice(event.to_wire_json().as_bytes());
    out.push(b'\n');
}

/// Reads one segment's events into `rows`, one builder per project.
fn read_segment(path: &Path, rows: &mut BTreeMap<String, LaunchRowsBuilder>) -> Result<()> {
    let mut data = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut data))
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let limits = Limits::default();
    let mut at = 0;
    while at + HEADER_BYTES <= data.len() {
        let len = u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes")) as usize;
        let sum = u64::from_le_bytes(data[at + 4..at + 12].try_into().expect("8 bytes"));
        let Some(payload) = data.get(at + HEADER_BYTES..at + HEADER_BYTES + len) else {
            tracing::warn!(path = %path.display(), offset = at, "torn record at the end of the write-ahead log, ignored (never acknowledged)");
            break;
        };
        if xxhash_rust::xxh3::xxh3_64(payload) != sum {
            tracing::warn!(path = %path.display(), offset = at, "write-ahead log record fails its checksum, ignored with the rest of the segment");
            break;
        }
        for line in payload.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let Some((project, received_at_ms, event)) = decode_line(line, &limits) else {
                tracing::error!(path = %path.display(), "unreadable write-ahead log line skipped");
                continue;
            };
            rows.entry(project.to_string())
                // Replayed rows are not logged again.
                .or_insert_with(|| LaunchRowsBuilder::new(project, received_at_ms, false))
                .push(&event, received_at_ms);
        }
        at += HEADER_BYTES + len;
    }
    Ok(())
}

fn decode_line<'a>(line: &'a [u8], limits: &Limits) -> Option<(&'a str, i64, LaunchEvent<'a>)> {
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.splitn(3, '\t');
    let project = parts.next()?;
    let received_at_ms = parts.next()?.parse().ok()?;
    let event = LaunchEvent::parse(parts.next()?, limits).ok()?;
    Some((project, received_at_ms, event))
}
