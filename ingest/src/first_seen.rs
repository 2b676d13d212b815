//! The `user_first_seen` table: each user's earliest launch, kept up to date at ingest so that
//! first-touch questions ("was this user ever seen before the window?") read one small row per
//! user instead of the whole launch history.
//!
//! Every flush writes, per project, the earliest `event_time` of each user among the launches it
//! flushes, and stores that file *before* the launch files: a reader never sees a launch whose
//! user lacks a row at or before it. Rows from different flushes are merged by compaction (the
//! earliest wins), so between compactions a user can have several rows: `min(first_time)` is the
//! answer either way. Launches that arrive late (a backfill of last year) only add rows.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use arrow_array::builder::{StringBuilder, TimestampMillisecondBuilder};
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray, TimestampMillisecondArray};
use futures::TryStreamExt;
use object_store::{ObjectMeta, ObjectStoreExt, PutPayload};

use crate::error::{Error, Result};
use crate::markers::{is_data_file, visible_files};
use crate::parquet_io::{Table, read_columns, write_parquet};
use crate::storage::Storage;

/// Folder of a project's `user_first_seen` files, relative to the data directory.
pub fn relative_dir(project: &str) -> String {
    promolens_schemas::layout::project_dir(promolens_schemas::tables::USER_FIRST_SEEN, project)
}

/// The `user_first_seen` rows of batches whose first two columns are a user id and a time (the
/// projection of `launch_events` at flush, `user_first_seen` files at compaction): one row per
/// user, with the earliest time, sorted by it.
pub fn earliest_per_user(batches: &[RecordBatch]) -> Result<RecordBatch> {
    let rows = batches.iter().map(RecordBatch::num_rows).sum::<usize>();
    // Users in order of first appearance, each with its earliest time. A flush's rows come in
    // time order, so this is already (nearly) the order of the file and the stable sort below
    // only walks it.
    let mut position: foldhash::HashMap<&str, usize> =
        HashMap::with_capacity_and_hasher(rows / 2, Default::default());
    let mut earliest: Vec<(&str, i64)> = Vec::with_capacity(rows / 2);
    for batch in batches {
        let users = column::<StringArray>(batch, 0, "user_id")?;
        let times = column::<TimestampMillisecondArray>(batch, 1, "time")?;
        for (user, time) in users.iter().zip(times.iter()) {
            let (Some(user), Some(time)) = (user, time) else {
                continue;
            };
            match position.entry(user) {
                Entry::Occupied(at) => {
                    let first = &mut earliest[*at.get()].1;
                    *first = (*first).min(time);
                }
                Entry::Vacant(slot) => {
                    slot.insert(earliest.len());
                    earliest.push((user, time));
                }
            }
        }
    }
    earliest.sort_by_key(|&(user, time)| (time, user));
    batch_of(earliest.iter().copied(), earliest.len())
}

/// Rebuilds a project's `user_first_seen` from its `launch_events` (for data written before this
/// table existed, or to repair it): writes one file of every user's earliest launch, then deletes
/// the files that were there before. Readers may meanwhile see both, which changes no minimum;
/// files flushed while it runs are kept. Memory grows with the project's number of users.
/// Returns the number of users.
pub async fn rebuild(storage: &Storage, project: &str) -> Result<usize> {
    let store = storage.store.as_ref();
    let folder = storage.path(&relative_dir(project));
    let before: Vec<ObjectMeta> = store.list(Some(&folder)).try_collect().await?;
    let launches = storage.path(&promolens_schemas::layout::project_dir(
        promolens_schemas::tables::LAUNCH_EVENTS,
        project,
    ));
    let mut earliest: HashMap<String, i64> = HashMap::new();
    for meta in visible_files(store, Some(&launches)).await? {
        if !is_data_file(&meta.location) {
            continue;
        }
        let bytes = store.get(&meta.location).await?.bytes().await?;
        let file = tokio::task::spawn_blocking(move || {
            let batches = read_columns(bytes, &["user_id", "event_time"])?;
            earliest_per_user(&batches)
        })
        .await
        .map_err(|e| Error::Stopped(format!("rebuild task failed: {e}")))??;
        let users = column::<StringArray>(&file, 0, "user_id")?;
        let times = column::<TimestampMillisecondArray>(&file, 1, "first_time")?;
        for i in 0..file.num_rows() {
            let (user, time) = (users.value(i), times.value(i));
            match earliest.get_mut(user) {
                Some(t) => *t = (*t).min(time),
                None => {
                    earliest.insert(user.to_string(), time);
                }
            }
        }
    }
    let users = earliest.len();
    let bytes = tokio::task::spawn_blocking(move || {
        let mut rows: Vec<(String, i64)> = earliest.into_iter().collect();
        rows.sort_unstable_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
        let batch = batch_of(rows.iter().map(|(u, t)| (u.as_str(), *t)), rows.len())?;
        write_parquet(Table::UserFirstSeen, &[batch])
    })
    .await
    .map_err(|e| Error::Stopped(format!("rebuild task failed: {e}")))??;
    let name = format!(
        "part-{}-rebuild.parquet",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%3f")
    );
    store
        .put(
            &folder.clone().join(name.as_str()),
            PutPayload::from_bytes(bytes),
        )
        .await?;
    for meta in before {
        match store.delete(&meta.location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(users)
}

/// The projects that have launches stored.
pub async fn projects(storage: &Storage) -> Result<Vec<String>> {
    let root = storage.path(promolens_schemas::tables::LAUNCH_EVENTS);
    let listing = storage.store.list_with_delimiter(Some(&root)).await?;
    Ok(listing
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename()?.strip_prefix("project=").map(str::to_string))
        .collect())
}

/// What this process has stored in `user_first_seen`: per project, users with the earliest time
/// of theirs in a stored file. A flush leaves out the rows that could not lower a user's minimum
/// (a returning user's launch), so that `user_first_seen` grows with new users, not with every
/// flush's active users: queries probe it whole (between compactions).
///
/// Only stored files are recorded (after their flush is stored), and stored rows are never
/// removed except by a compaction that keeps each user's minimum, so a left-out row was never
/// needed. Users are remembered by a 128-bit digest of (project, user) from two hashers seeded at
/// random per process (24 bytes a user, no allocation; a collision, which would leave out a
/// needed row, takes about 2^64 tries without the seeds). Bounded, in two generations: when the
/// recent one holds half the bound, the older is forgotten and the recent one becomes it, so the
/// users of recent flushes (those a live sender or a time-ordered file brings back) stay known.
/// A forgotten user just gets a row again, which changes no minimum.
#[derive(Debug)]
pub struct StoredFirstSeen {
    max_users: usize,
    digest: (
        foldhash::quality::RandomState,
        foldhash::quality::RandomState,
    ),
    recent: foldhash::HashMap<u128, i64>,
    older: foldhash::HashMap<u128, i64>,
}

impl StoredFirstSeen {
    pub fn new(max_users: usize) -> StoredFirstSeen {
        StoredFirstSeen {
            max_users,
            digest: Default::default(),
            recent: Default::default(),
            older: Default::default(),
        }
    }

    fn stored(&self, key: &u128) -> Option<i64> {
        match (self.recent.get(key), self.older.get(key)) {
            (Some(&a), Some(&b)) => Some(a.min(b)),
            (a, b) => a.or(b).copied(),
        }
    }

    fn key(&self, project: &str, user: &str) -> u128 {
        use std::hash::BuildHasher;
        let (high, low) = (
            self.digest.0.hash_one((project, user)),
            self.digest.1.hash_one((project, user)),
        );
        (u128::from(high) << 64) | u128::from(low)
    }

    /// The rows of `earliest` (a flush's [`earliest_per_user`] of `project`) that a stored file
    /// does not already cover: a user unknown here, or seen earlier than stored.
    pub fn not_covered(&self, project: &str, earliest: RecordBatch) -> Result<RecordBatch> {
        if self.recent.is_empty() && self.older.is_empty() {
            return Ok(earliest);
        }
        let users = column::<StringArray>(&earliest, 0, "user_id")?;
        let times = column::<TimestampMillisecondArray>(&earliest, 1, "first_time")?;
        let keep: arrow_array::BooleanArray = (0..earliest.num_rows())
            .map(|i| {
                let covered = self
                    .stored(&self.key(project, users.value(i)))
                    .is_some_and(|time| time <= times.value(i));
                Some(!covered)
            })
            .collect();
        Ok(arrow_select::filter::filter_record_batch(&earliest, &keep)?)
    }

    /// Records `user_first_seen` rows of `project` now stored.
    pub fn record(&mut self, project: &str, stored: &RecordBatch) -> Result<()> {
        let generation = self.max_users / 2;
        if stored.num_rows() > generation {
            return Ok(());
        }
        if self.recent.len() + stored.num_rows() > generation {
            self.older = std::mem::take(&mut self.recent);
        }
        let users = column::<StringArray>(stored, 0, "user_id")?;
        let times = column::<TimestampMillisecondArray>(stored, 1, "first_time")?;
        for i in 0..stored.num_rows() {
            let time = times.value(i);
            self.recent
                .entry(self.key(project, users.value(i)))
                .and_modify(|earliest| *earliest = (*earliest).min(time))
                .or_insert(time);
        }
        Ok(())
    }
}

/// A `user_first_seen` batch of rows already in order.
fn batch_of<'a>(rows: impl Iterator<Item = (&'a str, i64)>, len: usize) -> Result<RecordBatch> {
    let mut users = StringBuilder::with_capacity(len, len * 16);
    let mut times = TimestampMillisecondBuilder::with_capacity(len).with_timezone("UTC");
    for (user, time) in rows {
        users.append_value(user);
        times.append_value(time);
    }
    let columns: Vec<ArrayRef> = vec![Arc::new(users.finish()), Arc::new(times.finish())];
    Ok(RecordBatch::try_new(
        Table::UserFirstSeen.schema(),
        columns,
    )?)
}

fn column<'a, T: Array + 'static>(
    batch: &'a RecordBatch,
    index: usize,
    what: &str,
) -> Result<&'a T> {
    batch
        .columns()
        .get(index)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| {
            Error::Stopped(format!(
                "column {index} ({what}) of a stored file has an unexpected type"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RowsBuilder;

    fn launch(user: &str, ts: &str) -> String {
        format!(r#"{{"event_id":"e-{user}-{ts}","user_id":"{user}","ts":"{ts}","scene":1047}}"#)
    }

    fn batch(lines: &[String]) -> RecordBatch {
        let mut rows = RowsBuilder::new("p", 0, false);
        for line in lines {
            rows.push_json(line, &Default::default()).unwrap();
        }
        rows.finish().unwrap().tables.remove(0).batch
    }

    fn pairs(batch: &RecordBatch) -> Vec<(String, i64)> {
        let users = column::<StringArray>(batch, 0, "").unwrap();
        let times = column::<TimestampMillisecondArray>(batch, 1, "").unwrap();
        (0..batch.num_rows())
            .map(|i| (users.value(i).to_string(), times.value(i)))
            .collect()
    }

    #[test]
    fn each_user_keeps_the_earliest_time_and_rows_are_in_time_order() {
        let flush = batch(&[
            launch("b", "2025-11-20T10:00:00Z"),
            launch("a", "2025-11-21T10:00:00Z"),
            launch("b", "2025-11-19T10:00:00Z"),
            launch("a", "2025-11-22T10:00:00Z"),
        ]);
        let seen = earliest_per_user(&[flush.project(&[1, 2]).unwrap()]).unwrap();
        assert_eq!(
            pairs(&seen),
            [
                ("b".to_string(), 1_763_546_400_000),
                ("a".to_string(), 1_763_719_200_000)
            ]
        );
    }

    #[test]
    fn a_flush_leaves_out_only_rows_a_stored_file_already_covers() {
        let seen = |rows: &[String]| earliest_per_user(&[batch(rows).project(&[1, 2]).unwrap()]);
        let mut stored = StoredFirstSeen::new(10);
        stored
            .record("p", &seen(&[launch("a", "2025-01-02T00:00:00Z")]).unwrap())
            .unwrap();
        let flush = seen(&[
            // Returning later: covered.
            launch("a", "2025-01-03T00:00:00Z"),
            // New.
            launch("b", "2025-01-03T00:00:00Z"),
        ])
        .unwrap();
        assert_eq!(
            pairs(&stored.not_covered("p", flush.clone()).unwrap()),
            [("b".to_string(), 1_735_862_400_000)]
        );
        // Another project's user of the same id is not covered.
        assert_eq!(stored.not_covered("q", flush).unwrap().num_rows(), 2);
        // Seen earlier than stored (a late backfill): kept, it lowers the minimum.
        let earlier = seen(&[launch("a", "2025-01-01T00:00:00Z")]).unwrap();
        assert_eq!(stored.not_covered("p", earlier).unwrap().num_rows(), 1);
        // Two generations of at most 5 users: `a` is still known after the next 4 users…
        let users = |range: std::ops::Range<i32>| {
            let lines: Vec<String> = range
                .map(|i| launch(&format!("u{i}"), "2025-01-05T00:00:00Z"))
                .collect();
            seen(&lines).unwrap()
        };
        let again = || seen(&[launch("a", "2025-01-03T00:00:00Z")]).unwrap();
        stored.record("p", &users(0..4)).unwrap();
        assert_eq!(stored.not_covered("p", again()).unwrap().num_rows(), 0);
        // …and after 5 more (its generation became the older one)…
        stored.record("p", &users(4..9)).unwrap();
        assert_eq!(stored.not_covered("p", again()).unwrap().num_rows(), 0);
        // …but forgotten once that one is dropped: then it gets its row again.
        stored.record("p", &users(9..14)).unwrap();
        assert_eq!(stored.not_covered("p", again()).unwrap().num_rows(), 1);
    }

    #[test]
    fn merging_first_seen_files_keeps_the_earliest_of_each() {
        let seen = |rows: &[String]| earliest_per_user(&[batch(rows).project(&[1, 2]).unwrap()]);
        let older = seen(&[launch("a", "2025-01-01T00:00:00Z")]).unwrap();
        let newer = seen(&[
            launch("a", "2025-06-01T00:00:00Z"),
            launch("c", "2025-03-01T00:00:00Z"),
        ])
        .unwrap();
        let merged = earliest_per_user(&[newer, older]).unwrap();
        assert_eq!(
            pairs(&merged),
            [
                ("a".to_string(), 1_735_689_600_000),
                ("c".to_string(), 1_740_787_200_000)
            ]
        );
    }
}
