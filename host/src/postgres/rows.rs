//! A result's rows in the wire format. arrow-pg encodes every value through one generic path,
//! and a timestamp's there costs most of a cursor's time: per value it looks its time zone up by
//! name and formats through a strftime pattern parsed again (`perf` while streaming a million
//! rows to psycopg, BENCHMARKS.md session 15). Timestamps in UTC or without a zone are written
//! here instead, byte for byte as arrow-pg writes them (a test compares the two); every other
//! value, and a timestamp out of the four-digit years, goes through arrow-pg.

use std::error::Error as StdError;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use chrono::{Datelike, NaiveDateTime, Timelike};
use datafusion::arrow::array::temporal_conversions::as_datetime;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{
    ArrowTimestampType, DataType, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use datafusion::dataframe::DataFrame;
use datafusion_postgres::arrow_pg::datatypes::arrow_schema_to_pg_fields;
use datafusion_postgres::arrow_pg::encoder::{Encoder, encode_value};
use datafusion_postgres::pgwire;
use futures::StreamExt;
use pgwire::api::Type;
use pgwire::api::portal::Format;
use pgwire::api::results::{DataRowEncoder, FieldInfo, QueryResponse};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;
use pgwire::types::ToSqlText;
use pgwire::types::format::FormatOptions;
use postgres_types::{IsNull, ToSql, to_sql_checked};

/// `dataframe`'s rows as a query response, its columns in `format` (as arrow-pg's
/// `encode_dataframe`).
pub(super) async fn encode_dataframe(
    dataframe: DataFrame,
    format: &Format,
    options: Option<Arc<FormatOptions>>,
) -> PgWireResult<QueryResponse> {
    let fields = Arc::new(arrow_schema_to_pg_fields(
        dataframe.schema().as_arrow(),
        format,
        options,
    )?);
    let batches = dataframe
        .execute_stream()
        .await
        .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
    let row_fields = fields.clone();
    let rows = batches
        .map(move |batch| {
            let rows: Box<dyn Iterator<Item = PgWireResult<DataRow>> + Send + Sync> = match batch {
                Ok(batch) => Box::new(BatchRows::new(batch, row_fields.clone())),
                Err(e) => Box::new(std::iter::once(Err(PgWireError::ApiError(Box::new(e))))),
            };
            futures::stream::iter(rows)
        })
        .flatten();
    Ok(QueryResponse::new(fields, rows))
}

/// The rows of one record batch, encoded one at a time.
pub(super) struct BatchRows {
    batch: RecordBatch,
    fields: Arc<Vec<FieldInfo>>,
    /// Per column, its timestamps when they are written here (else arrow-pg writes the column).
    timestamps: Vec<Option<Vec<Option<NaiveDateTime>>>>,
    encoder: DataRowEncoder,
    next: usize,
}

impl BatchRows {
    pub(super) fn new(batch: RecordBatch, fields: Arc<Vec<FieldInfo>>) -> Self {
        let timestamps = batch.columns().iter().map(utc_timestamps).collect();
        Self {
            encoder: DataRowEncoder::new(fields.clone()),
            batch,
            fields,
            timestamps,
            next: 0,
        }
    }

    fn encode_row(&mut self, row: usize) -> PgWireResult<DataRow> {
        let schema = self.batch.schema();
        for (column, array) in self.batch.columns().iter().enumerate() {
            let field = &self.fields[column];
            let at = self.timestamps[column]
                .as_ref()
                .and_then(|values| values[row]);
            match at {
                Some(at) if !array.is_null(row) => self.encoder.encode_field_with_type_and_format(
                    &UtcTimestamp(at),
                    field.datatype(),
                    field.format(),
                    field.format_options(),
                )?,
                _ => encode_value(&mut self.encoder, array, row, schema.field(column), field)?,
            }
        }
        Ok(Encoder::take_row(&mut self.encoder))
    }
}

impl Iterator for BatchRows {
    type Item = PgWireResult<DataRow>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next == self.batch.num_rows() {
            return None;
        }
        let row = self.next;
        self.next += 1;
        Some(self.encode_row(row))
    }
}

/// A timestamp column's values as UTC date-times, when it is in UTC or has no zone; `None` for
/// a value outside four-digit years (arrow-pg writes those, as it writes other columns).
fn utc_timestamps(array: &ArrayRef) -> Option<Vec<Option<NaiveDateTime>>> {
    let DataType::Timestamp(unit, zone) = array.data_type() else {
        return None;
    };
    if zone.as_deref().is_some_and(|zone| zone != "UTC") {
        return None;
    }
    Some(match unit {
        TimeUnit::Second => datetimes::<TimestampSecondType>(array),
        TimeUnit::Millisecond => datetimes::<TimestampMillisecondType>(array),
        TimeUnit::Microsecond => datetimes::<TimestampMicrosecondType>(array),
        TimeUnit::Nanosecond => datetimes::<TimestampNanosecondType>(array),
    })
}

/// Each value as arrow's own conversion (arrow-pg's too) reads it.
fn datetimes<T: ArrowTimestampType>(array: &ArrayRef) -> Vec<Option<NaiveDateTime>> {
    let four_digit_years = 0..=9999;
    array
        .as_primitive::<T>()
        .values()
        .iter()
        .map(|&value| as_datetime::<T>(value).filter(|at| four_digit_years.contains(&at.year())))
        .collect()
}

/// A UTC date-time written as arrow-pg writes a `timestamp` (`%Y-%m-%d %H:%M:%S%.6f`) or a
/// `timestamptz` in UTC (the same, then `+00`) in the ISO date style; in other styles, and in
/// binary, chrono's own encoding (what arrow-pg uses).
#[derive(Debug)]
struct UtcTimestamp(NaiveDateTime);

impl UtcTimestamp {
    fn write_iso(&self, out: &mut BytesMut) {
        let (date, time) = (self.0.date(), self.0.time());
        let mut text = *b"0000-00-00 00:00:00.000000";
        let mut put = |at: usize, digits: usize, mut value: u32| {
            for i in (at..at + digits).rev() {
                text[i] = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        put(0, 4, date.year() as u32);
        put(5, 2, date.month());
        put(8, 2, date.day());
        put(11, 2, time.hour());
        put(14, 2, time.minute());
        put(17, 2, time.second());
        put(20, 6, time.nanosecond() / 1_000);
        out.put_slice(&text);
    }
}

impl ToSqlText for UtcTimestamp {
    fn to_sql_text(
        &self,
        ty: &Type,
        out: &mut BytesMut,
        options: &FormatOptions,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        // A leap second's nanoseconds run past a second: chrono's own formatting shows those.
        let plain = options.date_style.starts_with("ISO") && self.0.nanosecond() < 1_000_000_000;
        match *ty {
            Type::TIMESTAMP if plain => self.write_iso(out),
            Type::TIMESTAMPTZ if plain => {
                self.write_iso(out);
                out.put_slice(b"+00");
            }
            Type::TIMESTAMPTZ => {
                return self
                    .0
                    .and_utc()
                    .fixed_offset()
                    .to_sql_text(ty, out, options);
            }
            _ => return self.0.to_sql_text(ty, out, options),
        }
        Ok(IsNull::No)
    }
}

impl ToSql for UtcTimestamp {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match *ty {
            Type::TIMESTAMPTZ => self.0.and_utc().to_sql(ty, out),
            _ => self.0.to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::TIMESTAMP | Type::TIMESTAMPTZ)
    }

    to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray, TimestampMillisecondArray};
    use datafusion::arrow::array::{TimestampNanosecondArray, TimestampSecondArray};
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion_postgres::arrow_pg::datatypes::encode_recordbatch;
    use proptest::prelude::*;

    /// Each row as arrow-pg encodes it and as [`BatchRows`] does.
    fn both(batch: RecordBatch, format: &Format, date_style: &str) -> (Vec<DataRow>, Vec<DataRow>) {
        let mut options = FormatOptions::default();
        options.date_style = date_style.to_string();
        let options = Arc::new(options);
        let fields = Arc::new(
            arrow_schema_to_pg_fields(&batch.schema(), format, Some(options)).expect("fields"),
        );
        let theirs = encode_recordbatch(fields.clone(), batch.clone())
            .collect::<PgWireResult<Vec<_>>>()
            .expect("arrow-pg encodes");
        let ours = BatchRows::new(batch, fields)
            .collect::<PgWireResult<Vec<_>>>()
            .expect("ours encodes");
        (theirs, ours)
    }

    fn batch(times: Vec<Option<i64>>, unit: TimeUnit, zone: Option<&str>) -> RecordBatch {
        let zone = zone.map(Arc::<str>::from);
        let times: ArrayRef = match unit {
            TimeUnit::Second => Arc::new(TimestampSecondArray::from(times).with_timezone_opt(zone)),
            TimeUnit::Millisecond => {
                Arc::new(TimestampMillisecondArray::from(times).with_timezone_opt(zone))
            }
            TimeUnit::Microsecond => Arc::new(
                datafusion::arrow::array::TimestampMicrosecondArray::from(times)
                    .with_timezone_opt(zone),
            ),
            TimeUnit::Nanosecond => {
                Arc::new(TimestampNanosecondArray::from(times).with_timezone_opt(zone))
            }
        };
        let rows = times.len();
        let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(0..rows as i64));
        let names: ArrayRef = Arc::new(StringArray::from_iter(
            (0..rows).map(|i| (i % 3 != 0).then(|| format!("名{i}"))),
        ));
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("at", times.data_type().clone(), true),
            Field::new("name", DataType::Utf8, true),
        ]);
        RecordBatch::try_new(Arc::new(schema), vec![ids, times, names]).expect("batch")
    }

    fn units() -> impl Strategy<Value = TimeUnit> {
        prop_oneof![
            Just(TimeUnit::Second),
            Just(TimeUnit::Millisecond),
            Just(TimeUnit::Microsecond),
            Just(TimeUnit::Nanosecond),
        ]
    }

    proptest! {
        /// Any timestamps, in any unit, zoned or not, in text and binary, in the ISO and the
        /// other date styles: the bytes arrow-pg writes.
        #[test]
        fn rows_are_arrow_pgs_bytes(
            times in prop::collection::vec(
                prop_oneof![
                    Just(None),
                    any::<i64>().prop_map(Some),
                    (-5_000_000_000_000_000i64..5_000_000_000_000_000).prop_map(Some),
                    (-100_000_000_000i64..300_000_000_000).prop_map(Some),
                ],
                1..40,
            ),
            unit in units(),
            zone in prop_oneof![Just(None), Just(Some("UTC"))],
            binary in any::<bool>(),
            date_style in prop_oneof![Just("ISO, MDY"), Just("ISO, YMD"), Just("SQL, DMY"),
                                      Just("German, DMY"), Just("Postgres, MDY")],
        ) {
            let format = if binary { Format::UnifiedBinary } else { Format::UnifiedText };
            let (theirs, ours) = both(batch(times, unit, zone), &format, date_style);
            prop_assert_eq!(theirs.len(), ours.len());
            for (theirs, ours) in theirs.iter().zip(&ours) {
                prop_assert_eq!(&theirs.data, &ours.data);
                prop_assert_eq!(theirs.field_count, ours.field_count);
            }
        }
    }

    #[test]
    fn a_utc_millisecond_is_written_as_postgresql_text() {
        let (_, ours) = both(
            batch(
                vec![Some(1_764_000_000_123)],
                TimeUnit::Millisecond,
                Some("UTC"),
            ),
            &Format::UnifiedText,
            "ISO, MDY",
        );
        let text = String::from_utf8_lossy(&ours[0].data);
        assert!(text.contains("2025-11-24 16:00:00.123000+00"), "{text}");
    }

    #[test]
    fn other_zones_are_left_to_arrow_pg() {
        let times = batch(vec![Some(0)], TimeUnit::Millisecond, Some("Asia/Shanghai"));
        assert!(utc_timestamps(times.column(1)).is_none());
        let (theirs, ours) = both(times, &Format::UnifiedText, "ISO, MDY");
        assert_eq!(theirs[0].data, ours[0].data);
    }
}
