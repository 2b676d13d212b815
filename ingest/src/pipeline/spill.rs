//! Backfill's spill: the rows of a day that come in small pieces wait on local disk, as Arrow IPC,
//! until the day has enough for a file (or no longer gets rows, or the backfill ends); then they
//! are read back, sorted and written as one Parquet file.
//!
//! A backfill holds a bounded number of rows in memory. A file in time order gives each flush
//! one or two days, written straight to Parquet. A file in no order spreads each flush over
//! every day it covers: written as they came, 930k events over 55 days made 770 files of about
//! 1,200 rows, and the many small column chunks cost a third more CPU than the same events in
//! time order (a zstd context, its tables and a page per column chunk; an interleave per day
//! and flush). Spilled, each day is written once, sorted, in row groups as large as a
//! time-ordered day's. The spill costs a copy of the rows to the page cache and back, and no
//! process memory.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fs::File;
use std::io::BufWriter;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_ipc::reader::FileReader;
use arrow_ipc::writer::FileWriter;
use bytes::Bytes;

use crate::error::{Error, Result};
use crate::parquet_io::write_parquet;
use crate::partition::PartitionKey;

use super::buffer::batches_in_time_order;

/// A flush's rows of one day go to the spill when they are fewer than this (and the day has no
/// spill yet): larger pieces make good files as they are.
pub(super) const SPILL_BELOW_ROWS: usize = 32 * 1024;
/// A day's spill becomes a file once it holds this many rows.
const FILE_ROWS: usize = 128 * 1024;

/// Spilled rows by partition, in a temporary folder removed when the spill is dropped.
pub(super) struct Spill {
    dir: tempfile::TempDir,
    files: BTreeMap<Arc<PartitionKey>, SpillFile>,
    created: u64,
}

pub(super) struct SpillFile {
    writer: FileWriter<BufWriter<File>>,
    path: std::path::PathBuf,
    rows: usize,
    /// The first and the last flush job whose rows the file holds.
    first_job: u64,
    last_job: u64,
}

/// Spill files taken out of the spill, to be written as Parquet by [`write_files`].
pub(super) type Taken = Vec<(Arc<PartitionKey>, SpillFile)>;

impl Spill {
    pub(super) fn new() -> Result<Spill> {
        let dir = tempfile::Builder::new()
            .prefix("promolens-spill-")
            .tempdir()
            .map_err(|e| Error::io("creating the backfill spill folder", e))?;
        Ok(Spill {
            dir,
            files: BTreeMap::new(),
            created: 0,
        })
    }

    /// Whether `key` has rows waiting in the spill.
    pub(super) fn holds(&self, key: &PartitionKey) -> bool {
        self.files.contains_key(key)
    }

    /// Adds one flush job's rows of a partition.
    pub(super) fn write(
        &mut self,
        key: &Arc<PartitionKey>,
        batches: &[RecordBatch],
        job: u64,
    ) -> Result<()> {
        let (dir, created) = (&self.dir, &mut self.created);
        let file = match self.files.entry(key.clone()) {
            Entry::Occupied(open) => open.into_mut(),
            Entry::Vacant(new) => {
                *created += 1;
                let path = dir.path().join(format!("{created}.arrow"));
                let file = File::create(&path)
                    .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
                let writer = FileWriter::try_new(
                    BufWriter::with_capacity(1 << 16, file),
                    &key.table.schema(),
                )?;
                new.insert(SpillFile {
                    writer,
                    path,
                    rows: 0,
                    first_job: job,
                    last_job: job,
                })
            }
        };
        for batch in batches {
            file.writer.write(batch)?;
            file.rows += batch.num_rows();
        }
        file.last_job = job;
        Ok(())
    }

    /// The oldest flush job that still has rows in the spill.
    pub(super) fn oldest_job(&self) -> Option<u64> {
        self.files.values().map(|f| f.first_job).min()
    }

    /// Takes out the days to write: all at the `end`, else those with a file's worth of rows
    /// and those no flush after `idle_after` added to (a time-ordered input has moved on).
    pub(super) fn take(&mut self, end: bool, idle_after: u64) -> Taken {
        let keys: Vec<Arc<PartitionKey>> = self
            .files
            .iter()
            .filter(|(_, f)| end || f.rows >= FILE_ROWS || f.last_job <= idle_after)
            .map(|(k, _)| k.clone())
            .collect();
        keys.into_iter()
            .filter_map(|k| self.files.remove(&k).map(|f| (k, f)))
            .collect()
    }
}

impl SpillFile {
    /// The spilled rows in time order (ties in the order they came), and the spill file
    /// removed.
    fn read_sorted(mut self) -> Result<Vec<RecordBatch>> {
        self.writer.finish()?;
        drop(self.writer);
        let file = File::open(&self.path)
            .map_err(|e| Error::io(format!("opening {}", self.path.display()), e))?;
        let reader = FileReader::try_new(std::io::BufReader::new(file), None)?;
        let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
        let _ = std::fs::remove_file(&self.path);
        batches_in_time_order(&batches)
    }
}

/// Writes taken days as Parquet files named `name` in their partitions' folders, on two
/// threads (at the end of a backfill this is all that is left to do).
pub(super) fn write_files(taken: Taken, name: &str) -> Result<Vec<(String, Bytes)>> {
    let write = |taken: Taken| {
        taken
            .into_iter()
            .map(|(key, file)| {
                let bytes = write_parquet(key.table, &file.read_sorted()?)?;
                Ok((format!("{}/{name}", key.relative_dir()), bytes))
            })
            .collect::<Result<Vec<_>>>()
    };
    if taken.len() < 2 {
        return write(taken);
    }
    let mut first = taken;
    let second = first.split_off(first.len() / 2);
    std::thread::scope(|scope| {
        let other = scope.spawn(|| write(second));
        let mut done = write(first)?;
        let rest = other
            .join()
            .map_err(|_| Error::Stopped("a Parquet writer thread panicked".into()))??;
        done.extend(rest);
        Ok(done)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::testing::{day, launches, text_and_time};

    const T: i64 = 1_763_942_400_000;

    #[test]
    fn a_days_pieces_come_back_as_one_file_sorted_with_ties_in_the_order_they_came() {
        let (a, b) = (day("2025-11-24"), day("2025-11-25"));
        let mut spill = Spill::new().unwrap();
        spill.write(&a, &[launches(0, &[T + 7, T + 2])], 1).unwrap();
        spill.write(&b, &[launches(2, &[T + 1])], 1).unwrap();
        spill.write(&a, &[launches(3, &[T + 2, T + 1])], 2).unwrap();
        assert!(spill.holds(&a) && spill.holds(&b));
        assert_eq!(spill.oldest_job(), Some(1));
        // After job 2, `b` got nothing from job 2: its day has moved on.
        let idle = spill.take(false, 1);
        assert_eq!(idle.len(), 1);
        assert_eq!(idle[0].0, b);
        assert!(spill.take(false, 1).is_empty(), "`a` got rows in job 2");
        let rest = spill.take(true, 0);
        assert_eq!(spill.oldest_job(), None);
        let files = write_files(rest.into_iter().chain(idle).collect(), "part-x.parquet").unwrap();
        assert_eq!(files.len(), 2);
        let (path, file) = files
            .iter()
            .find(|(path, _)| path.contains("2025-11-24"))
            .unwrap();
        assert!(path.ends_with("dt=2025-11-24/part-x.parquet"), "{path}");
        assert_eq!(
            text_and_time(file.clone(), ["event_id", "event_time"]),
            [
                ("e4".into(), T + 1),
                ("e1".into(), T + 2),
                ("e3".into(), T + 2),
                ("e0".into(), T + 7)
            ]
        );
    }

    #[test]
    fn the_spill_folder_is_removed_with_the_spill() {
        let mut spill = Spill::new().unwrap();
        spill
            .write(&day("2025-11-24"), &[launches(0, &[T])], 1)
            .unwrap();
        let folder = spill.dir.path().to_path_buf();
        assert!(folder.exists());
        drop(spill);
        assert!(!folder.exists());
    }
}
