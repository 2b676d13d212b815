//! Parquet in and out: the writer settings every `launch_events` file shares (zstd, statistics,
//! sorted by time) and the narrow reads ingest itself needs (the `event_id` column for dedupe).

use arrow_array::{Array, RecordBatch, StringArray};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::error::Result;

/// Rows per row group: large enough for good compression, small enough that a reader can skip
/// by statistics within a day's file.
const ROW_GROUP_ROWS: usize = 128 * 1024;

fn writer_properties() -> WriterProperties {
    let mut builder = WriterProperties::builder();
    // Columns unique (or nearly) per row: a dictionary only costs hashing, then falls back.
    for column in ["event_id", "event_time", "received_at", "sent_at"] {
        builder = builder.set_column_dictionary_enabled(ColumnPath::from(column), false);
    }
    builder
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("valid level"),
        ))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        // Column 2 is `event_time`: rows are sorted by it within a file.
        .set_sorting_columns(Some(vec![SortingColumn {
            column_idx: 2,
            descending: false,
            nulls_first: false,
        }]))
        .set_created_by(format!("promolens {}", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Encodes batches (already sorted by `event_time`) as one Parquet file.
pub fn write_parquet(batches: &[RecordBatch]) -> Result<Bytes> {
    let schema = promolens_schemas::tables::launch_events_file_schema();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, schema, Some(writer_properties()))?;
    for batch in batches {
        writer.write(batch)?;
    }
    writer.close()?;
    Ok(Bytes::from(out))
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

/// Reads a whole Parquet file.
pub fn read_parquet(file: Bytes) -> Result<Vec<RecordBatch>> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)?.build()?;
    Ok(reader.collect::<std::result::Result<Vec<_>, _>>()?)
}
