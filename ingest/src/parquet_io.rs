//! Parquet in and out: the writer settings of each table's files (zstd, page statistics, rows
//! sorted by time) and the narrow reads ingest itself needs (the `event_id` column for dedupe).

use arrow_array::{Array, RecordBatch, StringArray};
use arrow_schema::SchemaRef;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use promolens_schemas::tables;

use crate::error::Result;

/// Rows per row group: large enough for good compression, small enough that a reader can skip
/// by statistics within a day's file.
const ROW_GROUP_ROWS: usize = 128 * 1024;

/// The tables promolens writes, each with its own file layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// `launch_events`: sorted by `event_time`.
    LaunchEvents,
    /// `events` (core events): sorted by `event_time`.
    Events,
    /// `user_first_seen`: sorted by `first_time`.
    UserFirstSeen,
}

impl Table {
    /// The table's name, and its folder under the data directory.
    pub fn name(self) -> &'static str {
        match self {
            Table::LaunchEvents => tables::LAUNCH_EVENTS,
            Table::Events => tables::EVENTS,
            Table::UserFirstSeen => tables::USER_FIRST_SEEN,
        }
    }

    pub fn schema(self) -> SchemaRef {
        match self {
            Table::LaunchEvents => tables::launch_events_file_schema(),
            Table::Events => tables::events_file_schema(),
            Table::UserFirstSeen => tables::user_first_seen_file_schema(),
        }
    }

    /// Index of the column rows are sorted by within a file (`event_time` is at the same place
    /// in both event tables).
    pub fn sort_column(self) -> usize {
        match self {
            Table::LaunchEvents | Table::Events => 2,
            Table::UserFirstSeen => 1,
        }
    }

    /// Columns unique (or nearly) per row, or with too many values per file for a dictionary to
    /// pay: it only costs hashing, then falls back. (Without one, `user_id` and the query values
    /// are also smaller after zstd: 74 → 69 MB for the benchmark's backfill.)
    fn unique_columns(self) -> &'static [&'static str] {
        match self {
            Table::LaunchEvents => &[
                "event_id",
                "user_id",
                "event_time",
                "received_at",
                "sent_at",
                "query.entries.value",
            ],
            Table::Events => &[
                "event_id",
                "user_id",
                "event_time",
                "received_at",
                "sent_at",
                "props",
            ],
            Table::UserFirstSeen => &["user_id", "first_time"],
        }
    }

    /// Time columns: stored as deltas from the previous row (`DELTA_BINARY_PACKED`), a few bits
    /// each instead of eight bytes. Rows are sorted by `event_time`, `sent_at` follows it closely
    /// and `received_at` repeats per request, so the files are 8% smaller and zstd has a quarter
    /// less input; DuckDB, Spark and DataFusion all read the encoding.
    fn delta_columns(self) -> &'static [&'static str] {
        match self {
            Table::LaunchEvents | Table::Events => &["event_time", "received_at", "sent_at"],
            Table::UserFirstSeen => &["first_time"],
        }
    }

    /// Columns no query prunes by (random ids, free text, arrival times): min/max statistics
    /// would cost two string comparisons per value and prune nothing.
    fn unfiltered_columns(self) -> &'static [&'static str] {
        match self {
            Table::LaunchEvents => &[
                "event_id",
                "user_id",
                "received_at",
                "sent_at",
                "query.entries.key",
                "query.entries.value",
                "props",
            ],
            Table::Events => &[
                "event_id",
                "user_id",
                "received_at",
                "sent_at",
                "props",
                "props_number.entries.value",
                "props_text.entries.value",
            ],
            Table::UserFirstSeen => &[],
        }
    }

    fn writer_properties(self) -> WriterProperties {
        let mut builder = WriterProperties::builder();
        for column in self.unique_columns() {
            builder = builder.set_column_dictionary_enabled(column_path(column), false);
        }
        for column in self.delta_columns() {
            builder =
                builder.set_column_encoding(column_path(column), Encoding::DELTA_BINARY_PACKED);
        }
        for column in self.unfiltered_columns() {
            builder =
                builder.set_column_statistics_enabled(column_path(column), EnabledStatistics::None);
        }
        // Page statistics (and the page index) only for the sort column: queries prune pages by
        // time; for the other columns a file's min/max is all that ever prunes.
        builder = builder.set_statistics_enabled(EnabledStatistics::Chunk);
        builder = builder.set_column_statistics_enabled(
            column_path(self.schema().field(self.sort_column()).name()),
            EnabledStatistics::Page,
        );
        builder
            // Level 1: a sixth less CPU for the whole backfill than level 3, and files as small
            // on launch data (73 vs 74 MB in the benchmark).
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(1).expect("valid level"),
            ))
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_sorting_columns(Some(vec![SortingColumn {
                column_idx: self.sort_column() as i32,
                descending: false,
                nulls_first: false,
            }]))
            .set_created_by(format!("promolens {}", env!("CARGO_PKG_VERSION")))
            .build()
    }
}

fn column_path(dotted: &str) -> ColumnPath {
    ColumnPath::from(dotted.split('.').map(str::to_string).collect::<Vec<_>>())
}

/// Encodes batches of `table` (already sorted by its sort column) as one Parquet file.
pub fn write_parquet(table: Table, batches: &[RecordBatch]) -> Result<Bytes> {
    let mut out = Vec::new();
    let mut writer =
        ArrowWriter::try_new(&mut out, table.schema(), Some(table.writer_properties()))?;
    for batch in batches {
        writer.write(batch)?;
    }
    writer.close()?;
    Ok(Bytes::from(out))
}

/// Sorts a batch of `table` by its sort column.
pub fn sort_for(table: Table, batch: &RecordBatch) -> Result<RecordBatch> {
    let options = arrow_schema::SortOptions {
        descending: false,
        nulls_first: false,
    };
    let column = batch.column(table.sort_column());
    // Backfills and live traffic mostly come in time order: then there is nothing to copy.
    if is_sorted(column) {
        return Ok(batch.clone());
    }
    let indices = arrow_ord::sort::sort_to_indices(column, Some(options), None)?;
    Ok(arrow_select::take::take_record_batch(batch, &indices)?)
}

/// Calls `each` with every `event_id` of one Parquet file, reading only that column.
pub fn for_each_event_id(file: Bytes, mut each: impl FnMut(&str)) -> Result<()> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
    let mask = ProjectionMask::columns(builder.parquet_schema(), ["event_id"]);
    let reader = builder.with_projection(mask).build()?;
    for batch in reader {
        let batch = batch?;
        let Some(ids) = batch.column(0).as_any().downcast_ref::<StringArray>() else {
            continue;
        };
        for i in 0..ids.len() {
            if ids.is_valid(i) {
                each(ids.value(i));
            }
        }
    }
    Ok(())
}

fn is_sorted(column: &dyn Array) -> bool {
    match column
        .as_any()
        .downcast_ref::<arrow_array::TimestampMillisecondArray>()
    {
        Some(times) => times.null_count() == 0 && times.values().is_sorted(),
        None => false,
    }
}

/// Reads the named columns of a Parquet file.
pub fn read_columns(file: Bytes, columns: &[&str]) -> Result<Vec<RecordBatch>> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
    let mask = ProjectionMask::columns(builder.parquet_schema(), columns.iter().copied());
    let reader = builder.with_projection(mask).build()?;
    Ok(reader.collect::<std::result::Result<Vec<_>, _>>()?)
}

/// Reads a whole file of `table`, in the table's schema of today: a column added since the file
/// was written (`settings_version`) is null in its rows.
pub fn read_parquet(table: Table, file: Bytes) -> Result<Vec<RecordBatch>> {
    let schema = table.schema();
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)?.build()?;
    reader
        .map(|batch| conform(&schema, batch?))
        .collect::<Result<Vec<_>>>()
}

fn conform(schema: &SchemaRef, batch: RecordBatch) -> Result<RecordBatch> {
    if batch.schema().fields() == schema.fields() {
        return Ok(batch);
    }
    let columns = schema
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            Some(column) => Ok(column.clone()),
            None if field.is_nullable() => Ok(arrow_array::new_null_array(
                field.data_type(),
                batch.num_rows(),
            )),
            None => Err(arrow_schema::ArrowError::SchemaError(format!(
                "a stored file has no column `{}`",
                field.name()
            ))),
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}
