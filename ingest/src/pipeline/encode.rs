//! A flush's buffered rows made into files: each partition's Parquet, and each project's
//! `user_first_seen` rows that no stored file covers.

use super::flusher::EncodedFlush;
use std::sync::{Arc, Mutex};

use arrow_array::RecordBatch;

use super::buffer::Buffer;
use crate::error::Result;
use crate::first_seen::{self, StoredFirstSeen, earliest_per_user};
use crate::parquet_io::{Table, write_parquet};
use crate::partition::PartitionKey;

/// Encodes one flush, its files named `name` in their folders. A project's `user_first_seen`
/// file holds only the rows no stored file covers, and is left out when there are none.
pub(super) fn encode_flush(
    partitions: Buffer,
    name: &str,
    stored_first_seen: &Mutex<StoredFirstSeen>,
) -> Result<EncodedFlush> {
    let mut launches = Vec::new();
    let mut flush = encode_first_seen(partitions, name, stored_first_seen, |key, batches| {
        launches.push((
            format!("{}/{name}", key.relative_dir()),
            write_parquet(key.table, batches)?,
        ));
        Ok(())
    })?;
    flush.files.extend(launches);
    Ok(flush)
}

/// Hands each partition's rows, in time order, to `launches` (each event table's partitions),
/// and encodes each project's `user_first_seen` file of the flush (named `name`) from its
/// launches.
pub(super) fn encode_first_seen(
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
        if key.table == Table::LaunchEvents {
            // Only `user_id` and `event_time` are needed further: the other columns are freed now.
            for batch in batches {
                project_batches.push(batch.project(&[1, 2])?);
            }
        }
        if partitions
            .peek()
            .is_none_or(|(next, _)| next.project != key.project)
        {
            if project_batches.is_empty() {
                continue;
            }
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
