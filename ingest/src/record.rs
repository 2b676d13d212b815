//! Events in columns: what the parsers hand the pipeline, and the Arrow record batches it
//! buffers and writes (launches to `launch_events`, core events to `events`).
//!
//! Parsing, decoding and building the columns happen where the events are parsed (request
//! handlers, backfill's parser threads), in parallel; the pipeline's single committer then only
//! dedupes by the precomputed id hashes and slices the batch into partitions.

use std::sync::Arc;

use arrow_array::builder::{
    Float64Builder, Int32Builder, MapBuilder, MapFieldNames, StringBuilder,
    TimestampMillisecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch, TimestampMillisecondArray};
use promolens_schemas::tables::{events_file_schema, launch_events_file_schema};
use promolens_schemas::{Attribution, Attributor, Event, EventError, Limits};

use crate::dedupe::{IdSet, id_hash};
use crate::error::Result;
use crate::parquet_io::Table;

/// Validated, decoded events of one project, in columns: its launches and its core events,
/// each table's rows with what dedupe and the write-ahead log need per row. One append.
#[derive(Debug, Clone)]
pub struct Rows {
    pub project: String,
    /// One entry per table with rows (launches first).
    pub tables: Vec<TableRows>,
}

impl Rows {
    pub fn len(&self) -> usize {
        self.tables.iter().map(TableRows::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.tables.iter().all(TableRows::is_empty)
    }

    pub fn has_wal_lines(&self) -> bool {
        self.tables.iter().all(|t| t.wal_lines.is_some())
    }
}

/// Rows of one table.
#[derive(Debug, Clone)]
pub struct TableRows {
    pub table: Table,
    /// Columns of `table`, in the order the events came.
    pub batch: RecordBatch,
    /// Hash of each row's `event_id` ([`id_hash`]).
    pub ids: Vec<u128>,
    /// Each row's write-ahead log line, when built for a pipeline that has a log.
    wal_lines: Option<WalLines>,
}

#[derive(Debug, Clone, Default)]
struct WalLines {
    text: Vec<u8>,
    /// End of each row's line in `text`.
    ends: Vec<usize>,
}

impl TableRows {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Event times (epoch ms), one per row.
    pub fn event_times(&self) -> &[i64] {
        event_times(&self.batch).unwrap_or(&[])
    }

    /// Row `i`'s write-ahead log line; `None` when the rows were built without them.
    pub fn wal_line(&self, i: usize) -> Option<&[u8]> {
        let lines = self.wal_lines.as_ref()?;
        let start = if i == 0 { 0 } else { lines.ends[i - 1] };
        lines.text.get(start..*lines.ends.get(i)?)
    }
}

/// Index of `event_time`, in `launch_events` and in `events`.
const EVENT_TIME_COLUMN: usize = 2;

/// The event times (epoch ms, never null) of a batch of `launch_events` or `events`.
pub(crate) fn event_times(batch: &RecordBatch) -> Result<&[i64]> {
    let column = batch.column(EVENT_TIME_COLUMN);
    let times = column
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .ok_or_else(|| {
            arrow_schema::ArrowError::SchemaError(format!(
                "event_time is {}, not a millisecond timestamp",
                column.data_type()
            ))
        })?;
    Ok(times.values())
}

/// Builds [`Rows`] event by event; make one with [`crate::Ingestor::rows`].
pub struct RowsBuilder {
    project: String,
    received_at_ms: i64,
    /// Decodes the launches' attribution: the project's current settings.
    attributor: Arc<Attributor>,
    launches: TableRowsBuilder<LaunchBatchBuilder>,
    events: TableRowsBuilder<EventBatchBuilder>,
    /// The ids kept by [`RowsBuilder::parse_once`].
    seen: IdSet,
}

/// One table's rows being built: its columns, and per row the id hash and log line.
struct TableRowsBuilder<C> {
    columns: C,
    ids: Vec<u128>,
    wal_lines: Option<WalLines>,
}

impl<C: Columns> TableRowsBuilder<C> {
    fn with_capacity(rows: usize, with_wal_lines: bool) -> Self {
        TableRowsBuilder {
            columns: C::with_capacity(rows),
            ids: Vec::with_capacity(rows),
            wal_lines: with_wal_lines.then(WalLines::default),
        }
    }

    fn push(
        &mut self,
        project: &str,
        event: &Event<'_>,
        received_at_ms: i64,
        id: u128,
        attributor: &Attributor,
    ) {
        self.columns.push(event, received_at_ms, attributor);
        self.ids.push(id);
        if let Some(lines) = &mut self.wal_lines {
            encode_line(project, received_at_ms, event, &mut lines.text);
            lines.ends.push(lines.text.len());
        }
    }

    fn finish(self) -> Result<Option<TableRows>> {
        if self.ids.is_empty() {
            return Ok(None);
        }
        Ok(Some(TableRows {
            table: C::TABLE,
            batch: self.columns.finish()?,
            ids: self.ids,
            wal_lines: self.wal_lines,
        }))
    }
}

/// The columns of one table, built row by row.
trait Columns {
    const TABLE: Table;
    /// Room for `rows` rows of typical events, so that the columns of a parse chunk are written
    /// without growing (each growth copies the column).
    fn with_capacity(rows: usize) -> Self;
    fn push(&mut self, event: &Event<'_>, received_at_ms: i64, attributor: &Attributor);
    /// The rows so far as one batch, in arrival order.
    fn finish(self) -> Result<RecordBatch>;
}

impl RowsBuilder {
    /// Rows for `project` received at `received_at_ms`; `with_wal_lines` when they go to a
    /// pipeline with a write-ahead log.
    pub fn new(project: &str, received_at_ms: i64, with_wal_lines: bool) -> RowsBuilder {
        Self::with_capacity(project, received_at_ms, with_wal_lines, 0)
    }

    /// [`RowsBuilder::new`] with room for `rows` rows.
    pub fn with_capacity(
        project: &str,
        received_at_ms: i64,
        with_wal_lines: bool,
        rows: usize,
    ) -> RowsBuilder {
        RowsBuilder {
            project: project.to_string(),
            received_at_ms,
            attributor: Arc::default(),
            // Launches are most of the events; core events grow as they come.
            launches: TableRowsBuilder::with_capacity(rows, with_wal_lines),
            events: TableRowsBuilder::with_capacity(0, with_wal_lines),
            seen: IdSet::default(),
        }
    }

    /// The same builder, decoding launches with `attributor` (the default settings otherwise).
    pub fn with_attributor(mut self, attributor: Arc<Attributor>) -> RowsBuilder {
        self.attributor = attributor;
        self
    }

    /// Parses, validates and decodes one event from its JSON text and adds it (HTTP ingest;
    /// backfill reads the same way through [`RowsBuilder::parse_once`]). An event
    /// naming another project is rejected.
    pub fn push_json(&mut self, json: &str, limits: &Limits) -> Result<(), EventError> {
        let event = self.parse_for_project(json, limits)?;
        self.push(&event, self.received_at_ms);
        Ok(())
    }

    /// For a stream (backfill): parses and validates one event, keeping only the first of the
    /// events with one `event_id` (`Ok(None)` for a later one). A retry usually follows its
    /// original closely, so most duplicates end here, before their columns are built. The
    /// events kept are added by [`RowsBuilder::push_in_time_order`].
    pub fn parse_once<'j>(
        &mut self,
        json: &'j str,
        limits: &Limits,
    ) -> Result<Option<(Event<'j>, u128)>, EventError> {
        let event = self.parse_for_project(json, limits)?;
        if self.seen.capacity() == 0 {
            self.seen.reserve(self.launches.ids.capacity());
        }
        let id = id_hash(&event.event_id);
        Ok(self.seen.insert(id).then_some((event, id)))
    }

    /// Adds events (with their id hashes) in time order, ties in the order given. A file
    /// gathered from many senders is in no order: its rows are put in order here, before any
    /// column is built, so that each partition's rows of a chunk are consecutive and in order
    /// (the pipeline then keeps them as slices) without copying built columns. Reordering is
    /// safe for dedupe: [`RowsBuilder::parse_once`] kept one event per id.
    pub fn push_in_time_order(&mut self, events: &[(Event<'_>, u128)]) {
        let received_at = self.received_at_ms;
        if events.is_sorted_by_key(|(event, _)| event.event_time_ms) {
            for (event, id) in events {
                self.push_with_id(event, received_at, *id);
            }
            return;
        }
        // (time, position): sorting the pairs keeps ties in file order, without reaching into
        // the events for each comparison.
        let mut order: Vec<(i64, u32)> = events
            .iter()
            .enumerate()
            .map(|(i, (event, _))| (event.event_time_ms, i as u32))
            .collect();
        order.sort_unstable();
        for (_, i) in order {
            let (event, id) = &events[i as usize];
            self.push_with_id(event, received_at, *id);
        }
    }

    fn parse_for_project<'j>(
        &self,
        json: &'j str,
        limits: &Limits,
    ) -> Result<Event<'j>, EventError> {
        let event = Event::parse(json, limits)?;
        if let Some(named) = &event.project
            && named != &self.project
        {
            return Err(EventError::Invalid {
                field: "project".into(),
                reason: format!(
                    "event is for project `{named}` but was sent to project `{}`",
                    self.project
                ),
            });
        }
        Ok(event)
    }

    /// Adds one validated event, decoding its attribution.
    pub fn push(&mut self, event: &Event<'_>, received_at_ms: i64) {
        self.push_with_id(event, received_at_ms, id_hash(&event.event_id));
    }

    /// [`RowsBuilder::push`] of an event whose id hash is already known.
    fn push_with_id(&mut self, event: &Event<'_>, received_at_ms: i64, id: u128) {
        let attributor = &self.attributor;
        if event.is_launch() {
            self.launches
                .push(&self.project, event, received_at_ms, id, attributor);
        } else {
            self.events
                .push(&self.project, event, received_at_ms, id, attributor);
        }
    }

    /// Events added so far.
    pub fn len(&self) -> usize {
        self.launches.ids.len() + self.events.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn finish(self) -> Result<Rows> {
        let tables = [self.launches.finish()?, self.events.finish()?];
        Ok(Rows {
            project: self.project,
            tables: tables.into_iter().flatten().collect(),
        })
    }
}

/// Columnar accumulation of rows of `launch_events`: the buffer between the write-ahead log and
/// Parquet. About a third of the memory of the rows themselves, and the batch is ready at flush.
struct LaunchBatchBuilder {
    event_id: StringBuilder,
    user_id: StringBuilder,
    event_time: TimestampMillisecondBuilder,
    received_at: TimestampMillisecondBuilder,
    sent_at: TimestampMillisecondBuilder,
    launch_type: StringBuilder,
    scene: Int32Builder,
    path: StringBuilder,
    query: MapBuilder<StringBuilder, StringBuilder>,
    attribution: AttributionColumns,
    props: StringBuilder,
}

/// The columns of `launch_events` decoded from a launch's scene value and `query`: `code_id`,
/// `code_kind`, the five `utm_*`, `attribution`, then `settings_version`. Built at ingest and
/// again by [`crate::reattribute`].
pub(crate) struct AttributionColumns {
    code_id: StringBuilder,
    code_kind: StringBuilder,
    utm: [StringBuilder; 5],
    status: StringBuilder,
    settings_version: Int32Builder,
}

impl AttributionColumns {
    pub(crate) fn with_capacity(rows: usize) -> AttributionColumns {
        let text = |bytes_per_row: usize| StringBuilder::with_capacity(rows, rows * bytes_per_row);
        AttributionColumns {
            code_id: text(4),
            code_kind: text(4),
            utm: std::array::from_fn(|_| text(8)),
            status: text(8),
            settings_version: Int32Builder::with_capacity(rows),
        }
    }

    pub(crate) fn push(&mut self, a: &Attribution<'_>, settings_version: u32) {
        self.code_id.append_option(a.code_id.as_deref());
        self.code_kind
            .append_option(a.code_kind.map(|k| k.as_str()));
        for (builder, value) in self.utm.iter_mut().zip(a.utm.fields()) {
            builder.append_option(value.as_deref());
        }
        self.status.append_value(a.status.as_str());
        self.settings_version
            .append_value(i32::try_from(settings_version).unwrap_or(i32::MAX));
    }

    /// `code_id`, `code_kind`, the five `utm_*` and `attribution` (in the schema's order), and
    /// `settings_version`.
    pub(crate) fn finish(mut self) -> ([ArrayRef; 8], ArrayRef) {
        let [source, medium, campaign, content, term] = &mut self.utm;
        (
            [
                Arc::new(self.code_id.finish()),
                Arc::new(self.code_kind.finish()),
                Arc::new(source.finish()),
                Arc::new(medium.finish()),
                Arc::new(campaign.finish()),
                Arc::new(content.finish()),
                Arc::new(term.finish()),
                Arc::new(self.status.finish()),
            ],
            Arc::new(self.settings_version.finish()),
        )
    }
}

impl Columns for LaunchBatchBuilder {
    const TABLE: Table = Table::LaunchEvents;

    fn with_capacity(rows: usize) -> LaunchBatchBuilder {
        let text = |bytes_per_row: usize| StringBuilder::with_capacity(rows, rows * bytes_per_row);
        let time = || TimestampMillisecondBuilder::with_capacity(rows).with_timezone("UTC");
        LaunchBatchBuilder {
            event_id: text(24),
            user_id: text(16),
            event_time: time(),
            received_at: time(),
            sent_at: time(),
            launch_type: text(4),
            scene: Int32Builder::with_capacity(rows),
            path: text(24),
            query: MapBuilder::with_capacity(Some(map_field_names()), text(16), text(32), rows),
            attribution: AttributionColumns::with_capacity(rows),
            props: text(40),
        }
    }

    /// Appends one launch and the attribution decoded from it.
    fn push(&mut self, e: &Event<'_>, received_at_ms: i64, attributor: &Attributor) {
        self.event_id.append_value(&e.event_id);
        self.user_id.append_value(&e.user_id);
        self.event_time.append_value(e.event_time_ms);
        self.received_at.append_value(received_at_ms);
        self.sent_at.append_option(e.sent_at_ms);
        self.launch_type
            .append_option(e.launch_type.map(|t| t.as_str()));
        self.scene.append_option(e.scene);
        self.path.append_option(e.path.as_deref());
        for (k, v) in &e.query {
            self.query.keys().append_value(k);
            self.query.values().append_value(v);
        }
        // Cannot fail: every key was given its value just above.
        let _ = self.query.append(!e.query.is_empty());
        self.attribution
            .push(&attributor.decode(e.scene, &e.query), attributor.version());
        self.props.append_option(e.props.as_deref());
    }

    fn finish(mut self) -> Result<RecordBatch> {
        let (decoded, settings_version) = self.attribution.finish();
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.event_id.finish()),
            Arc::new(self.user_id.finish()),
            Arc::new(self.event_time.finish()),
            Arc::new(self.received_at.finish()),
            Arc::new(self.sent_at.finish()),
            Arc::new(self.launch_type.finish()),
            Arc::new(self.scene.finish()),
            Arc::new(self.path.finish()),
            Arc::new(self.query.finish()),
        ];
        columns.extend(decoded);
        columns.push(Arc::new(self.props.finish()));
        columns.push(settings_version);
        Ok(RecordBatch::try_new(launch_events_file_schema(), columns)?)
    }
}

/// Columnar accumulation of rows of `events` (core events).
struct EventBatchBuilder {
    event_id: StringBuilder,
    user_id: StringBuilder,
    event_time: TimestampMillisecondBuilder,
    received_at: TimestampMillisecondBuilder,
    sent_at: TimestampMillisecondBuilder,
    event: StringBuilder,
    path: StringBuilder,
    props: StringBuilder,
    props_number: MapBuilder<StringBuilder, Float64Builder>,
    props_text: MapBuilder<StringBuilder, StringBuilder>,
}

impl Columns for EventBatchBuilder {
    const TABLE: Table = Table::Events;

    fn with_capacity(rows: usize) -> EventBatchBuilder {
        let text = || StringBuilder::with_capacity(rows, rows * 16);
        let time = || TimestampMillisecondBuilder::with_capacity(rows).with_timezone("UTC");
        EventBatchBuilder {
            event_id: text(),
            user_id: text(),
            event_time: time(),
            received_at: time(),
            sent_at: time(),
            event: text(),
            path: text(),
            props: text(),
            props_number: MapBuilder::new(
                Some(map_field_names()),
                StringBuilder::new(),
                Float64Builder::new(),
            ),
            props_text: MapBuilder::new(
                Some(map_field_names()),
                StringBuilder::new(),
                StringBuilder::new(),
            ),
        }
    }

    /// Appends one core event, its `props`' top-level numbers and texts also in their maps.
    fn push(&mut self, e: &Event<'_>, received_at_ms: i64, _attributor: &Attributor) {
        self.event_id.append_value(&e.event_id);
        self.user_id.append_value(&e.user_id);
        self.event_time.append_value(e.event_time_ms);
        self.received_at.append_value(received_at_ms);
        self.sent_at.append_option(e.sent_at_ms);
        self.event.append_value(&e.event);
        self.path.append_option(e.path.as_deref());
        self.props.append_option(e.props.as_deref());
        let (mut numbers, mut texts) = (false, false);
        if let Some(props) = e.props.as_deref() {
            // Validation checked that props is an object.
            let entries: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(props).unwrap_or_default();
            for (key, value) in &entries {
                match value {
                    serde_json::Value::Number(n) => {
                        if let Some(n) = n.as_f64() {
                            self.props_number.keys().append_value(key);
                            self.props_number.values().append_value(n);
                            numbers = true;
                        }
                    }
                    serde_json::Value::String(text) => {
                        self.props_text.keys().append_value(key);
                        self.props_text.values().append_value(text);
                        texts = true;
                    }
                    serde_json::Value::Bool(b) => {
                        self.props_text.keys().append_value(key);
                        self.props_text
                            .values()
                            .append_value(if *b { "true" } else { "false" });
                        texts = true;
                    }
                    _ => {}
                }
            }
        }
        // Cannot fail: every key was given its value just above.
        let _ = self.props_number.append(numbers);
        let _ = self.props_text.append(texts);
    }

    fn finish(mut self) -> Result<RecordBatch> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.event_id.finish()),
            Arc::new(self.user_id.finish()),
            Arc::new(self.event_time.finish()),
            Arc::new(self.received_at.finish()),
            Arc::new(self.sent_at.finish()),
            Arc::new(self.event.finish()),
            Arc::new(self.path.finish()),
            Arc::new(self.props.finish()),
            Arc::new(self.props_number.finish()),
            Arc::new(self.props_text.finish()),
        ];
        Ok(RecordBatch::try_new(events_file_schema(), columns)?)
    }
}

/// The names of a map's parts in our schemas (`entries`, `key`, `value`).
fn map_field_names() -> MapFieldNames {
    MapFieldNames {
        entry: "entries".into(),
        key: "key".into(),
        value: "value".into(),
    }
}

/// Appends one event's write-ahead log line (`project \t received_at_ms \t wire JSON \n`,
/// see [`crate::wal`]) to a payload.
pub fn encode_line(project: &str, received_at_ms: i64, event: &Event<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(project.as_bytes());
    out.push(b'\t');
    out.extend_from_slice(received_at_ms.to_string().as_bytes());
    out.push(b'\t');
    out.extend_from_slice(event.to_wire_json().as_bytes());
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use arrow_array::{Array, StringArray};

    use super::*;

    #[test]
    fn a_stream_keeps_the_first_event_of_an_id_and_adds_them_in_time_order() {
        let limits = Limits::default();
        let mut rows = RowsBuilder::new("p", 0, true);
        let event = |id: &str, source: &str, ms: i64| {
            format!(
                r#"{{"event_id":"{id}","user_id":"u-{id}","ts":{},"query":{{"utm_source":"{source}"}}}}"#,
                1_763_942_400_000i64 + ms
            )
        };
        let lines = [
            event("a", "first", 30),
            event("b", "other", 10),
            event("a", "retry", 5),
            event("c", "tie", 30),
            event("d", "early", 5),
        ];
        let mut kept = Vec::new();
        for line in &lines {
            if let Some(parsed) = rows.parse_once(line, &limits).unwrap() {
                kept.push(parsed);
            }
        }
        assert!(rows.parse_once("{}", &limits).is_err());
        assert_eq!(kept.len(), 4, "the retry of `a` is left out");
        rows.push_in_time_order(&kept);
        let rows = rows.finish().unwrap();
        assert_eq!(rows.tables.len(), 1, "launches only");
        let rows = &rows.tables[0];
        let order = ["d", "b", "a", "c"];
        assert_eq!(rows.ids, order.map(id_hash).to_vec());
        assert!(rows.event_times().is_sorted());
        let column = |i: usize| {
            rows.batch
                .column(i)
                .as_any()
                .downcast_ref::<arrow_array::StringArray>()
                .unwrap()
                .clone()
        };
        let (users, sources) = (column(1), column(11));
        for (row, id) in order.iter().enumerate() {
            // Each row whole: its own user, its own source, its own log line.
            assert_eq!(users.value(row), format!("u-{id}"));
            let line = String::from_utf8_lossy(rows.wal_line(row).unwrap()).into_owned();
            assert!(line.contains(&format!("\"u-{id}\"")), "{line}");
        }
        assert_eq!(sources.value(2), "first");
    }

    #[test]
    fn core_events_go_to_their_own_table_with_their_props_typed() {
        let limits = Limits::default();
        let mut rows = RowsBuilder::new("p", 7, true);
        let ts = 1_763_942_400_000i64;
        rows.push_json(
            &format!(r#"{{"event_id":"l","user_id":"u","ts":{ts},"scene":1047}}"#),
            &limits,
        )
        .unwrap();
        rows.push_json(&format!(r#"{{"event":"purchase","event_id":"p","user_id":"u","ts":{},"props":{{"amount":12.5,"sku":"A-1","vip":true,"items":[1],"n":3}}}}"#, ts + 1), &limits).unwrap();
        rows.push_json(
            &format!(
                r#"{{"event":"signup","event_id":"s","user_id":"u","ts":{}}}"#,
                ts + 2
            ),
            &limits,
        )
        .unwrap();
        assert_eq!(rows.len(), 3);
        let rows = rows.finish().unwrap();
        let tables: Vec<Table> = rows.tables.iter().map(|t| t.table).collect();
        assert_eq!(tables, [Table::LaunchEvents, Table::Events]);
        let events = &rows.tables[1];
        assert_eq!(events.ids, [id_hash("p"), id_hash("s")]);
        assert_eq!(events.event_times(), [ts + 1, ts + 2]);
        let line = String::from_utf8_lossy(events.wal_line(0).unwrap()).into_owned();
        assert!(
            line.contains(r#""event":"purchase""#),
            "the log keeps the name: {line}"
        );
        let batch = &events.batch;
        assert_eq!(batch.schema(), events_file_schema());
        let entries = |column: usize, row: usize| -> Vec<(String, String)> {
            let map = batch
                .column(column)
                .as_any()
                .downcast_ref::<arrow_array::MapArray>()
                .unwrap();
            let entries = map.value(row);
            let keys = entries
                .column(0)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            let values = entries.column(1);
            (0..entries.len())
                .map(|i| {
                    let value = match values.as_any().downcast_ref::<arrow_array::Float64Array>() {
                        Some(numbers) => numbers.value(i).to_string(),
                        None => values
                            .as_any()
                            .downcast_ref::<StringArray>()
                            .unwrap()
                            .value(i)
                            .to_string(),
                    };
                    (keys.value(i).to_string(), value)
                })
                .collect()
        };
        let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
            list.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(entries(8, 0), pairs(&[("amount", "12.5"), ("n", "3")]));
        assert_eq!(entries(8, 1), pairs(&[]));
        assert_eq!(entries(9, 0), pairs(&[("sku", "A-1"), ("vip", "true")]));
    }
}
