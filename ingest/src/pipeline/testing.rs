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
