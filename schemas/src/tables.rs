//! Arrow schemas of the tables promolens writes. The single place they are defined: ingest builds
//! record batches against them, the host registers them with DataFusion.

use std::sync::{Arc, LazyLock};

use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

/// Name of the launch table, and of its folder under the data directory.
pub const LAUNCH_EVENTS: &str = "launch_events";

/// Hive partition columns of `launch_events`, in path order:
/// `launch_events/project=P/dt=YYYY-MM-DD/part-….parquet`. They live in the path only, as Spark and
/// DuckDB expect, not inside the files.
pub const LAUNCH_EVENTS_PARTITIONS: [&str; 2] = ["project", "dt"];

fn utc_millis() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// The `query` column: the launch query as received, a map of string to string.
pub fn query_map_type() -> DataType {
    DataType::Map(
        Arc::new(Field::new(
            "entries",
            DataType::Struct(Fields::from(vec![
                Field::new("key", DataType::Utf8, false),
                Field::new("value", DataType::Utf8, true),
            ])),
            false,
        )),
        false,
    )
}

static LAUNCH_EVENTS_FILE_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("user_id", DataType::Utf8, false),
        Field::new("event_time", utc_millis(), false),
        Field::new("received_at", utc_millis(), false),
        Field::new("sent_at", utc_millis(), true),
        Field::new("launch_type", DataType::Utf8, true),
        Field::new("scene", DataType::Int32, true),
        Field::new("path", DataType::Utf8, true),
        Field::new("query", query_map_type(), true),
        Field::new("code_id", DataType::Utf8, true),
        Field::new("code_kind", DataType::Utf8, true),
        Field::new("utm_source", DataType::Utf8, true),
        Field::new("utm_medium", DataType::Utf8, true),
        Field::new("utm_campaign", DataType::Utf8, true),
        Field::new("utm_content", DataType::Utf8, true),
        Field::new("utm_term", DataType::Utf8, true),
        Field::new("attribution", DataType::Utf8, false),
        Field::new("props", DataType::Utf8, true),
    ]))
});

/// Columns stored in each `launch_events` Parquet file (the partition columns excluded).
pub fn launch_events_file_schema() -> SchemaRef {
    LAUNCH_EVENTS_FILE_SCHEMA.clone()
}

/// The types of the partition columns as query engines should see them.
pub fn launch_events_partition_fields() -> Vec<Field> {
    vec![
        Field::new("project", DataType::Utf8, false),
        Field::new("dt", DataType::Utf8, false),
    ]
}
