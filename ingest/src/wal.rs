//! The write-ahead log that makes a 2xx durable.
//!
//! Accepted events are appended and `fdatasync`ed before the HTTP answer is sent; many requests
//! share one append and one sync (group commit, see `pipeline`). The log is a folder of numbered
//! segments. A flush to Parquet seals the current segment and starts the next; once the Parquet
//! files of a flush are stored, the segments it covers are deleted. At start the remaining
//! segments are replayed one at a time (dedupe makes the replay idempotent even when the crash
//! came between storing Parquet and deleting the segment).
//!
//! Record framing: `[u32 LE payload length][u64 LE xxh3 of payload][payload]`. The payload is one
//! line per event, `project \t received_at_ms \t wire JSON \n`. A torn record at the end of the
//! last segment (a crash mid-write) fails its length or checksum and is dropped: it was never
//! acknowledged. A record that fails its checksum with more records after it is damage, not a
//! torn write: the segment is copied to `corrupt/` (never silently deleted), logged and counted,
//! and what precedes the damage is replayed.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use promolens_schemas::{Event, Limits};

use crate::attributors::Attributors;
use crate::error::{Error, Result};
use crate::internal_events::{InternalEvent, WalSegmentQuarantined, WalSynced};
#[cfg(test)]
use crate::record::encode_line;
use crate::record::{Rows, RowsBuilder};

const HEADER_BYTES: usize = 12;

pub struct Wal {
    dir: PathBuf,
    file: File,
    segment: u64,
}

/// What earlier processes left in the log: segments to replay, read one at a time so that a
/// long log never has to fit in memory at once.
pub struct Replay {
    dir: PathBuf,
    /// Segment numbers, oldest first.
    pub segments: Vec<u64>,
}

impl Replay {
    /// Highest segment number to replay (they are deleted once their rows are in Parquet).
    pub fn last_segment(&self) -> Option<u64> {
        self.segments.last().copied()
    }

    /// The events of one segment, one set of rows per project, decoded with each project's
    /// current attribution settings.
    pub fn read(&self, segment: u64, attributors: &Attributors) -> Result<Vec<Rows>> {
        let mut builders = BTreeMap::new();
        read_segment(&self.dir, segment, attributors, &mut builders)?;
        builders.into_values().map(RowsBuilder::finish).collect()
    }
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
        let next = existing.last().map_or(1, |last| last + 1);
        let wal = Wal {
            dir: dir.to_path_buf(),
            file: create_segment(dir, next)?,
            segment: next,
        };
        Ok((
            wal,
            Replay {
                dir: dir.to_path_buf(),
                segments: existing,
            },
        ))
    }

    /// Appends one encoded payload (lines made by [`crate::record::encode_line`]) and syncs it to disk.
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

/// Reads one segment's events into `rows`, one builder per project.
fn read_segment(
    dir: &Path,
    segment: u64,
    attributors: &Attributors,
    rows: &mut BTreeMap<String, RowsBuilder>,
) -> Result<()> {
    let path = &segment_path(dir, segment);
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
            if at + HEADER_BYTES + len < data.len() {
                quarantine(dir, segment, at)?;
            } else {
                tracing::warn!(path = %path.display(), offset = at, "torn record at the end of the write-ahead log, ignored (never acknowledged)");
            }
            break;
        }
        for line in payload.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let Some((project, received_at_ms, event)) = decode_line(line, &limits) else {
                tracing::error!(path = %path.display(), "unreadable write-ahead log line skipped");
                continue;
            };
            rows.entry(project.to_string())
                // Replayed rows are not logged again.
                .or_insert_with(|| {
                    RowsBuilder::new(project, received_at_ms, false)
                        .with_attributor(attributors.current(project))
                })
                .push(&event, received_at_ms);
        }
        at += HEADER_BYTES + len;
    }
    Ok(())
}

/// Keeps a damaged segment in `corrupt/` (a durable copy: the original is replayed up to the
/// damage and deleted as usual once that is in Parquet).
fn quarantine(dir: &Path, segment: u64, offset: usize) -> Result<()> {
    let from = segment_path(dir, segment);
    let corrupt = dir.join("corrupt");
    let to = corrupt.join(format!("wal-{segment:012}.log"));
    fs::create_dir_all(&corrupt)
        .and_then(|()| fs::copy(&from, &to))
        .and_then(|_| File::open(&to)?.sync_all())
        .and_then(|()| File::open(&corrupt)?.sync_all())
        .map_err(|e| Error::io(format!("copying {} to {}", from.display(), to.display()), e))?;
    WalSegmentQuarantined {
        segment: &from,
        kept_at: &to,
        offset,
    }
    .emit();
    Ok(())
}

fn decode_line<'a>(line: &'a [u8], limits: &Limits) -> Option<(&'a str, i64, Event<'a>)> {
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.splitn(3, '\t');
    let project = parts.next()?;
    let received_at_ms = parts.next()?.parse().ok()?;
    let event = Event::parse(parts.next()?, limits).ok()?;
    Some((project, received_at_ms, event))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(ids: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for id in ids {
            let json = format!(r#"{{"event_id":"{id}","user_id":"u","ts":1763942400000}}"#);
            let event = Event::parse(&json, &Limits::default()).unwrap();
            encode_line("p", 1_763_942_400_000, &event, &mut out);
        }
        out
    }

    fn replayed(replay: &Replay, segment: u64) -> usize {
        replay
            .read(segment, &Attributors::default())
            .unwrap()
            .iter()
            .map(Rows::len)
            .sum()
    }

    #[test]
    fn damage_in_the_middle_is_kept_aside_a_torn_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, replay) = Wal::open(dir.path()).unwrap();
        assert!(replay.segments.is_empty());
        // Segment 1: three records; segment 2: two records.
        for ids in [&["a1", "a2"][..], &["b1"], &["c1", "c2"]] {
            wal.append(&payload(ids)).unwrap();
        }
        wal.rotate().unwrap();
        wal.append(&payload(&["d1"])).unwrap();
        wal.append(&payload(&["e1", "e2", "e3"])).unwrap();
        drop(wal);

        // A bit flips in the second record of segment 1; segment 2 loses its last bytes (a
        // write torn by a crash).
        let first = segment_path(dir.path(), 1);
        let mut bytes = fs::read(&first).unwrap();
        let second_record = HEADER_BYTES + payload(&["a1", "a2"]).len();
        bytes[second_record + HEADER_BYTES + 5] ^= 0x20;
        fs::write(&first, &bytes).unwrap();
        let last = segment_path(dir.path(), 2);
        let bytes = fs::read(&last).unwrap();
        fs::write(&last, &bytes[..bytes.len() - 3]).unwrap();

        let (_wal, replay) = Wal::open(dir.path()).unwrap();
        assert_eq!(replay.segments, [1, 2]);
        assert_eq!(replayed(&replay, 1), 2, "the records before the damage");
        let kept = dir.path().join("corrupt/wal-000000000001.log");
        assert_eq!(fs::read(&kept).unwrap(), fs::read(&first).unwrap());
        assert_eq!(
            replayed(&replay, 2),
            1,
            "the torn record was never acknowledged"
        );
        assert!(!dir.path().join("corrupt/wal-000000000002.log").exists());
        // Deleting replayed segments leaves the kept copy.
        delete_segments(dir.path(), 2).unwrap();
        assert!(kept.exists());
    }
}
