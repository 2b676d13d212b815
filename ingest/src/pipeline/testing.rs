//! Rows and partitions for the pipeline's unit tests.

use std::sync::Arc;

use arrow_array::{RecordBatch, StringArray, TimestampMillisecondArray};
use bytes::Bytes;

use crate::parquet_io::read_columns;
use crate::partition::PartitionKey;
use crate::record::LaunchRowsBuilder;

/// One batch of launches of project `p` at the given times (ms), event ids `e<i>` in order
/// from `first_id`.
pub fn launches(first_id: usize, times: &[i64]) -> RecordBatch {
    let mut rows = LaunchRowsBuilder::new("p", 0, false);
    for (i, t) in times.iter().enumerate() {
        let id = first_id + i;
        let line = format!(r#"{{"event_id":"e{id}","user_id":"u","ts":{t}}}"#);
        rows.push_json(&line, &Default::default()).unwrap();
    }
    rows.finish().unwrap().batch
}

/// Partition `dt` of project `p`.
pub fn day(dt: &str) -> Arc<PartitionKey> {
    Arc::new(PartitionKey {
        project: "p".into(),
        dt: dt.into(),
    })
}

/// The (text, time) pairs of two columns of a Parquet file, a string and a timestamp, in file
/// order.
pub fn text_and_time(file: Bytes, columns: [&str; 2]) -> Vec<(String, i64)> {
    let mut rows = Vec::new();
    for batch in read_columns(file, &columns).unwrap() {
        let texts = batch
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        let times = batch
            .column(1)
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .unwrap();
        for i in 0..batch.num_rows() {
            rows.push((texts.value(i).to_string(), times.value(i)));
        }
    }
    rows
}

/// (text, time) of every row of the Parquet files under `folder`, file by file in name order.
pub async fn stored_rows(
    storage: &crate::storage::Storage,
    folder: &str,
    columns: [&str; 2],
) -> Vec<(String, i64)> {
    use futures::TryStreamExt;
    use object_store::ObjectStoreExt;
    let mut files: Vec<_> = storage
        .store
        .list(Some(&storage.path(folder)))
        .try_collect()
        .await
        .unwrap();
    files.sort_by(|a, b| a.location.cmp(&b.location));
    let mut rows = Vec::new();
    for file in files {
        let bytes = storage
            .store
            .get(&file.location)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        rows.extend(text_and_time(bytes, columns));
    }
    rows
}

/// Every `event_id` stored in `launch_events`, sorted.
pub async fn stored_event_ids(storage: &crate::storage::Storage) -> Vec<String> {
    let rows = stored_rows(storage, "launch_events", ["event_id", "event_time"]).await;
    let mut ids: Vec<String> = rows.into_iter().map(|(id, _)| id).collect();
    ids.sort();
    ids
}
