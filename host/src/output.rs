//! Query results as a person or a program wants them: an aligned table, CSV or JSON.

use std::io::Write;

use datafusion::arrow::record_batch::RecordBatch;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Format {
    /// An aligned text table.
    #[default]
    Table,
    Csv,
    /// A JSON array of row objects.
    Json,
}

/// Writes `batches` to `out` in `format`.
pub fn write(batches: &[RecordBatch], format: Format, out: &mut dyn Write) -> Result<()> {
    let io = |e| Error::io("writing the result", e);
    match format {
        Format::Table => {
            let table = datafusion::arrow::util::pretty::pretty_format_batches(batches)?;
            writeln!(out, "{table}").map_err(io)?;
        }
        Format::Csv => {
            let mut writer = arrow_csv::WriterBuilder::new().with_header(true).build(out);
            for batch in batches {
                writer.write(batch)?;
            }
        }
        Format::Json => {
            let rows = json_rows(batches)?;
            serde_json::to_writer_pretty(&mut *out, &rows).map_err(|e| io(e.into()))?;
            writeln!(out).map_err(io)?;
        }
    }
    Ok(())
}

/// The rows of `batches` as JSON objects (nulls kept as `null`).
pub fn json_rows(
    batches: &[RecordBatch],
) -> Result<Vec<serde_json::Map<String, serde_json::Value>>> {
    let mut buffer = Vec::new();
    {
        let mut writer = arrow_json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, arrow_json::writer::JsonArray>(&mut buffer);
        for batch in batches {
            writer.write(batch)?;
        }
        writer.finish()?;
    }
    if buffer.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&buffer).map_err(|e| Error::io("encoding JSON", e.into()))
}
