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
    map_of(DataType::Utf8)
}

/// A map of text keys to values of one type (`entries` of `key` and `value`, as the ingest
/// builders name them).
fn map_of(value: DataType) -> DataType {
    DataType::Map(
        Arc::new(Field::new(
            "entries",
            DataType::Struct(Fields::from(vec![
                Field::new("key", DataType::Utf8, false),
                Field::new("value", value, true),
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
        Field::new(SETTINGS_VERSION, DataType::Int32, true),
    ]))
});

/// The column of `launch_events` naming the version of the project's attribution settings its
/// attribution columns were decoded with; null in files written before settings existed, whose
/// launches were decoded as version 0 (the default) decodes them.
pub const SETTINGS_VERSION: &str = "settings_version";

/// Columns stored in each `launch_events` Parquet file (the partition columns excluded).
pub fn launch_events_file_schema() -> SchemaRef {
    LAUNCH_EVENTS_FILE_SCHEMA.clone()
}

/// Name of the core-event table (signups, purchases, `$identify`: every event but launches),
/// and of its folder under the data directory. Partitioned as `launch_events`.
pub const EVENTS: &str = "events";

/// Hive partition columns of `events`: as those of `launch_events`.
pub const EVENTS_PARTITIONS: [&str; 2] = LAUNCH_EVENTS_PARTITIONS;

static EVENTS_FILE_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("user_id", DataType::Utf8, false),
        Field::new("event_time", utc_millis(), false),
        Field::new("received_at", utc_millis(), false),
        Field::new("sent_at", utc_millis(), true),
        Field::new("event", DataType::Utf8, false),
        Field::new("path", DataType::Utf8, true),
        Field::new("props", DataType::Utf8, true),
        Field::new("props_number", map_of(DataType::Float64), true),
        Field::new("props_text", map_of(DataType::Utf8), true),
    ]))
});

/// Columns stored in each `events` Parquet file (the partition columns excluded). The first
/// five are those of `launch_events`, at the same places. `props` is the object as sent; its
/// top-level numbers are also in `props_number` (kept as numbers, for sums such as
/// `props_number['amount']`), its strings and booleans in `props_text` (for grouping).
pub fn events_file_schema() -> SchemaRef {
    EVENTS_FILE_SCHEMA.clone()
}

/// Name of the first-seen table, and of its folder under the data directory.
pub const USER_FIRST_SEEN: &str = "user_first_seen";

/// Hive partition column of `user_first_seen`: `user_first_seen/project=P/part-….parquet`.
pub const USER_FIRST_SEEN_PARTITIONS: [&str; 1] = ["project"];

static USER_FIRST_SEEN_FILE_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("first_time", utc_millis(), false),
    ]))
});

/// Columns of each `user_first_seen` file: for every user of the launches flushed together, the
/// earliest `event_time` among them. A user has one row per flush until compaction merges them,
/// so a user's first launch ever is `min(first_time)` over their rows; each stored launch has a
/// row of its user at or before its time, written before the launch itself becomes visible.
pub fn user_first_seen_file_schema() -> SchemaRef {
    USER_FIRST_SEEN_FILE_SCHEMA.clone()
}

/// Name of the code table (a view over the plugin's code records).
pub const PROMO_CODES: &str = "promo_codes";

/// Folder of the code records under the data directory: `codes/codes/project=P/<id>`, one JSON
/// object each (the WIT `code` record, written by the plugin through the host's store).
pub const PROMO_CODE_RECORDS_DIR: &str = "codes/codes";

static PROMO_CODE_RECORD_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let text = |name: &str| Field::new(name, DataType::Utf8, true);
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        text("name"),
        text("kind"),
        text("page"),
        Field::new(
            "utm",
            DataType::Struct(Fields::from(vec![
                text("source"),
                text("medium"),
                text("campaign"),
                text("content"),
                text("term"),
            ])),
            true,
        ),
        Field::new(
            "encoding",
            DataType::Struct(Fields::from(vec![
                text("path"),
                text("scene"),
                Field::new("by_reference", DataType::Boolean, true),
            ])),
            true,
        ),
        Field::new("created_at_ms", DataType::Int64, true),
        Field::new("updated_at_ms", DataType::Int64, true),
        Field::new("deleted_at_ms", DataType::Int64, true),
    ]))
});

/// The fields of a code record that queries read (the JSON has more; they are ignored).
pub fn promo_code_record_schema() -> SchemaRef {
    PROMO_CODE_RECORD_SCHEMA.clone()
}
