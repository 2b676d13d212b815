//! One decoded launch as it will be stored, and the Arrow record batch of many.

use std::sync::Arc;

use arrow_array::builder::{
    Int32Builder, MapBuilder, MapFieldNames, StringBuilder, TimestampMillisecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use promolens_schemas::tables::launch_events_file_schema;
use promolens_schemas::{Attribution, LaunchEvent, decode_attribution};

use crate::error::Result;

/// A validated launch with its attribution columns, ready for the write-ahead log and Parquet.
#[derive(Debug, Clone)]
pub struct LaunchRow {
    pub project: String,
    pub received_at_ms: i64,
    pub event: LaunchEvent,
    pub attribution: Attribution,
}

impl LaunchRow {
    /// Decodes the attribution of `event` (the one decoder, shared by HTTP ingest and backfill).
    pub fn decode(project: String, received_at_ms: i64, event: LaunchEvent) -> LaunchRow {
        let attribution = decode_attribution(event.scene, &event.query);
        LaunchRow {
            project,
            received_at_ms,
            event,
            attribution,
        }
    }

    /// The hive partition this row belongs to: the calendar day of the launch in the project's
    /// time zone.
    pub fn partition(&self, tz: Tz) -> PartitionKey {
        PartitionKey {
            project: self.project.clone(),
            dt: day_of(self.event.event_time_ms, tz),
        }
    }
}

/// `YYYY-MM-DD` of an instant in `tz`.
pub fn day_of(epoch_ms: i64, tz: Tz) -> String {
    DateTime::<Utc>::from_timestamp_millis(epoch_ms)
        .unwrap_or_default()
        .with_timezone(&tz)
        .format("%Y-%m-%d")
        .to_string()
}

/// A `launch_events/project=P/dt=D` folder.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionKey {
    pub project: String,
    pub dt: String,
}

impl PartitionKey {
    /// The folder of this partition relative to the data directory.
    pub fn relative_dir(&self) -> String {
        format!(
            "{}/project={}/dt={}",
            promolens_schemas::tables::LAUNCH_EVENTS,
            self.project,
            self.dt
        )
    }
}

/// Builds the Parquet-bound batch of `rows`, in the order given.
pub fn rows_to_batch(rows: &[&LaunchRow]) -> Result<RecordBatch> {
    let n = rows.len();
    let mut event_id = StringBuilder::with_capacity(n, n * 24);
    let mut user_id = StringBuilder::with_capacity(n, n * 16);
    let mut event_time = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut received_at = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut sent_at = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut launch_type = StringBuilder::with_capacity(n, n * 4);
    let mut scene = Int32Builder::with_capacity(n);
    let mut path = StringBuilder::with_capacity(n, n * 16);
    let mut query = MapBuilder::new(
        Some(MapFieldNames {
            entry: "entries".into(),
            key: "key".into(),
            value: "value".into(),
        }),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    let mut code_id = StringBuilder::new();
    let mut code_kind = StringBuilder::new();
    let mut utm: [StringBuilder; 5] = std::array::from_fn(|_| StringBuilder::new());
    let mut attribution = StringBuilder::with_capacity(n, n * 2);
    let mut props = StringBuilder::new();

    for row in rows {
        let e = &row.event;
        event_id.append_value(&e.event_id);
        user_id.append_value(&e.user_id);
        event_time.append_value(e.event_time_ms);
        received_at.append_value(row.received_at_ms);
        sent_at.append_option(e.sent_at_ms);
        launch_type.append_option(e.launch_type.map(|t| t.as_str()));
        scene.append_option(e.scene);
        path.append_option(e.path.as_deref());
        if e.query.is_empty() {
            query.append(false)?;
        } else {
            for (k, v) in &e.query {
                query.keys().append_value(k);
                query.values().append_value(v);
            }
            query.append(true)?;
        }
        let a = &row.attribution;
        code_id.append_option(a.code_id.as_deref());
        code_kind.append_option(a.code_kind.map(|k| k.as_str()));
        for (builder, value) in utm.iter_mut().zip(a.utm.fields()) {
            builder.append_option(value.as_deref());
        }
        attribution.append_value(a.status.as_str());
        props.append_option(e.props.as_deref());
    }

    let [utm_source, utm_medium, utm_campaign, utm_content, utm_term] = utm;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(event_id.finish()),
        Arc::new(user_id.finish()),
        Arc::new(event_time.finish()),
        Arc::new(received_at.finish()),
        Arc::new(sent_at.finish()),
        Arc::new(launch_type.finish()),
        Arc::new(scene.finish()),
        Arc::new(path.finish()),
        Arc::new(query.finish()),
        Arc::new(code_id.finish()),
        Arc::new(code_kind.finish()),
        Arc::new({ utm_source }.finish()),
        Arc::new({ utm_medium }.finish()),
        Arc::new({ utm_campaign }.finish()),
        Arc::new({ utm_content }.finish()),
        Arc::new({ utm_term }.finish()),
        Arc::new(attribution.finish()),
        Arc::new(props.finish()),
    ];
    Ok(RecordBatch::try_new(launch_events_file_schema(), columns)?)
}
