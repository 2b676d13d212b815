//! The committer's buffer: accepted rows waiting for the next flush, by partition.
//!
//! Batches are kept as the parsers built them, never copied on the way in; each partition
//! remembers which rows of which batch it holds. At flush a partition's rows come out in time
//! order with at most one copy: none when they already are (time-ordered input gives each
//! partition runs of consecutive rows, in order: slices of the batches), else one interleave
//! straight from the batches into place (a shuffled file, senders whose clocks disagree). An
//! earlier buffer copied the rows of a shuffled file three times (each parsed chunk sorted by
//! time, then each partition's rows taken out of it, then the partition's pieces interleaved),
//! which made a shuffled backfill cost half again the CPU of a time-ordered one.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::RecordBatch;

use crate::error::Result;
use crate::partition::PartitionKey;
use crate::record::event_times;

/// Rows waiting to be flushed.
#[derive(Default)]
pub struct Buffer {
    batches: Vec<RecordBatch>,
    partitions: BTreeMap<Arc<PartitionKey>, Vec<Piece>>,
    rows: usize,
}

/// Some rows of one buffered batch, all in one partition.
struct Piece {
    /// Index in [`Buffer::batches`].
    batch: usize,
    rows: Rows,
}

enum Rows {
    /// `len` consecutive rows from `start`.
    Run { start: usize, len: usize },
    /// Row numbers, ascending.
    Picked(Vec<u32>),
}

impl Rows {
    fn len(&self) -> usize {
        match self {
            Rows::Run { len, .. } => *len,
            Rows::Picked(rows) => rows.len(),
        }
    }
}

impl Buffer {
    /// Rows held.
    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Adds rows of `batch`: for each partition, its row numbers in ascending order. The batch
    /// is kept (not copied) when any row of it is.
    pub fn add(&mut self, batch: &RecordBatch, partitions: Vec<(Arc<PartitionKey>, Vec<u32>)>) {
        let index = self.batches.len();
        let mut kept = false;
        for (key, rows) in partitions {
            let (Some(&first), Some(&last)) = (rows.first(), rows.last()) else {
                continue;
            };
            let rows = if (last - first) as usize + 1 == rows.len() {
                Rows::Run {
                    start: first as usize,
                    len: rows.len(),
                }
            } else {
                Rows::Picked(rows)
            };
            self.rows += rows.len();
            self.partitions
                .entry(key)
                .or_default()
                .push(Piece { batch: index, rows });
            kept = true;
        }
        if kept {
            self.batches.push(batch.clone());
        }
    }

    /// Each partition with its rows in time order (ties in the order they were added), in
    /// partition order. Each partition's rows are put in order when the iterator reaches it, so
    /// that only one partition's copy is alive at a time.
    pub fn into_partitions(
        self,
    ) -> impl Iterator<Item = (Arc<PartitionKey>, Result<Vec<RecordBatch>>)> {
        let batches = self.batches;
        self.partitions
            .into_iter()
            .map(move |(key, pieces)| (key, in_time_order(&batches, &pieces)))
    }
}

/// Whole batches in time order, ties in the order given: slices when they already are, else
/// one interleave (the spill reads a day's flushes back this way).
pub(super) fn batches_in_time_order(batches: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
    let pieces: Vec<Piece> = batches
        .iter()
        .enumerate()
        .map(|(batch, b)| Piece {
            batch,
            rows: Rows::Run {
                start: 0,
                len: b.num_rows(),
            },
        })
        .collect();
    in_time_order(batches, &pieces)
}

/// One partition's pieces as batches in time order.
fn in_time_order(batches: &[RecordBatch], pieces: &[Piece]) -> Result<Vec<RecordBatch>> {
    if let Some(slices) = slices_in_order(batches, pieces)? {
        return Ok(slices);
    }
    // Each row's place found from the time column alone, then every row copied once, straight
    // from its batch into place. Ties keep the order rows were added in (batch, then row).
    let mut places: Vec<(i64, u32, u32)> =
        Vec::with_capacity(pieces.iter().map(|p| p.rows.len()).sum());
    for piece in pieces {
        let times = event_times(&batches[piece.batch])?;
        let at = |row: usize| (times[row], piece.batch as u32, row as u32);
        match &piece.rows {
            Rows::Run { start, len } => places.extend((*start..start + len).map(at)),
            Rows::Picked(rows) => places.extend(rows.iter().map(|&row| at(row as usize))),
        }
    }
    places.sort_unstable();
    // The sources are this partition's batches only: the buffer also holds batches of the
    // other table, whose columns differ (interleave checks every source's types).
    let mut used: Vec<usize> = pieces.iter().map(|p| p.batch).collect();
    used.sort_unstable();
    used.dedup();
    let source_of = |batch: u32| used.partition_point(|&b| b < batch as usize);
    let indices: Vec<(usize, usize)> = places
        .into_iter()
        .map(|(_, batch, row)| (source_of(batch), row as usize))
        .collect();
    let sources: Vec<&RecordBatch> = used.iter().map(|&b| &batches[b]).collect();
    Ok(vec![arrow_select::interleave::interleave_record_batch(
        &sources, &indices,
    )?])
}

/// The pieces as slices of their batches, when every piece is a run of consecutive rows in time
/// order and each run starts at or after the end of the one before: time-ordered input, no copy.
fn slices_in_order(batches: &[RecordBatch], pieces: &[Piece]) -> Result<Option<Vec<RecordBatch>>> {
    let mut last = i64::MIN;
    let mut slices = Vec::with_capacity(pieces.len());
    for piece in pieces {
        let Rows::Run { start, len } = piece.rows else {
            return Ok(None);
        };
        let batch = &batches[piece.batch];
        let values = &event_times(batch)?[start..start + len];
        let (Some(&first), Some(&end)) = (values.first(), values.last()) else {
            continue;
        };
        if first < last || !values.is_sorted() {
            return Ok(None);
        }
        last = end;
        slices.push(batch.slice(start, len));
    }
    Ok(Some(slices))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::testing::{core_events, day, events_day, launches};

    const T: i64 = 1_763_942_400_000;

    /// A partition drained: its day, its (event id, time) pairs, and how many batches they
    /// came out as.
    type Drained = (String, Vec<(String, i64)>, usize);

    fn drain(buffer: Buffer) -> Vec<Drained> {
        buffer
            .into_partitions()
            .map(|(key, batches)| {
                let batches = batches.unwrap();
                let mut rows = Vec::new();
                for batch in &batches {
                    let ids = batch
                        .column(0)
                        .as_any()
                        .downcast_ref::<arrow_array::StringArray>()
                        .unwrap();
                    let times = event_times(batch).unwrap();
                    for (i, &time) in times.iter().enumerate() {
                        rows.push((ids.value(i).to_string(), time));
                    }
                }
                (key.dt.clone(), rows, batches.len())
            })
            .collect()
    }

    #[test]
    fn time_ordered_runs_come_out_as_slices_without_a_copy() {
        let (a, b) = (day("2025-01-01"), day("2025-01-02"));
        let mut buffer = Buffer::default();
        buffer.add(
            &launches(0, &[T, T + 1, T + 2, T + 3]),
            vec![(a.clone(), vec![0, 1]), (b.clone(), vec![2, 3])],
        );
        buffer.add(&launches(4, &[T + 4]), vec![(b.clone(), vec![0])]);
        assert_eq!(buffer.rows(), 5);
        let partitions = drain(buffer);
        assert_eq!(partitions[0].1, [("e0".into(), T), ("e1".into(), T + 1)]);
        assert_eq!(
            partitions[1].1,
            [
                ("e2".into(), T + 2),
                ("e3".into(), T + 3),
                ("e4".into(), T + 4)
            ]
        );
        assert_eq!(partitions[1].2, 2, "two slices, no interleave");
    }

    #[test]
    fn shuffled_rows_come_out_in_time_order_with_ties_in_arrival_order() {
        let a = day("2025-01-01");
        let mut buffer = Buffer::default();
        // Rows 1 and 3 are in another partition (or duplicates): the rest are picked.
        buffer.add(
            &launches(0, &[T + 5, T + 9, T + 1, T + 9, T + 3]),
            vec![(a.clone(), vec![0, 2, 4])],
        );
        // A second batch overlapping the first in time, with a tie at T + 3.
        buffer.add(&launches(5, &[T + 3, T + 4]), vec![(a.clone(), vec![0, 1])]);
        // A batch none of whose rows are kept is not held.
        buffer.add(&launches(7, &[T]), vec![(a.clone(), vec![])]);
        assert_eq!(buffer.batches.len(), 2);
        let partitions = drain(buffer);
        assert_eq!(
            partitions[0].1,
            [
                ("e2".into(), T + 1),
                ("e4".into(), T + 3),
                ("e5".into(), T + 3),
                ("e6".into(), T + 4),
                ("e0".into(), T + 5),
            ]
        );
        assert_eq!(partitions[0].2, 1);
    }

    #[test]
    fn an_unsorted_run_is_sorted() {
        let a = day("2025-01-01");
        let mut buffer = Buffer::default();
        buffer.add(&launches(0, &[T + 2, T, T + 1]), vec![(a, vec![0, 1, 2])]);
        let times: Vec<i64> = drain(buffer)[0].1.iter().map(|(_, t)| *t).collect();
        assert_eq!(times, [T, T + 1, T + 2]);
    }

    #[test]
    fn each_table_is_put_in_order_from_its_own_batches() {
        let mut buffer = Buffer::default();
        // Launches and core events of one day, each table's rows out of order (they must be
        // interleaved), their batches side by side in the buffer.
        buffer.add(
            &launches(0, &[T + 2, T]),
            vec![(day("2025-01-01"), vec![0, 1])],
        );
        buffer.add(
            &core_events(0, &[T + 5, T + 1]),
            vec![(events_day("2025-01-01"), vec![0, 1])],
        );
        buffer.add(&launches(2, &[T + 1]), vec![(day("2025-01-01"), vec![0])]);
        let partitions = drain(buffer);
        assert_eq!(
            partitions[0].1,
            [("e1".into(), T), ("e2".into(), T + 1), ("e0".into(), T + 2)]
        );
        assert_eq!(
            partitions[1].1,
            [("c1".into(), T + 1), ("c0".into(), T + 5)]
        );
    }
}
