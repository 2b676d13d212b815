//! Which code a scan belongs to, for the acquisition query.
//!
//! A scan carries its code's id, `c=<id>` (in an A or C code's path, in a B code's scene), and is
//! tied to the code's record by that id. Codes made before every code carried its id (A and C
//! codes whose UTM parameters fitted inline) are tied by the exact query their scans carry: the
//! same page and the same parameters ([`scan_key`]). Both ties are rows of one in-memory table
//! keyed by `link`: a code's id, and for a code without an id in its path also its scan key, so
//! that a launch finds its code with one equality join on
//! `coalesce(code_id, promolens_scan_key(path, query))`.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringBuilder, UInt32Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::compute::{concat_batches, take};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::{Result as DfResult, exec_err};
use datafusion::datasource::MemTable;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use promolens_schemas::attribution::{CODE_REF_KEY, path_scan_key, scan_key};

use crate::error::Result;

/// Name of the scalar function that gives a launch's scan key: `promolens_scan_key(path, query)`.
pub const SCAN_KEY_FUNCTION: &str = "promolens_scan_key";

/// The codes of one project as the acquisition query joins them: `link`, `code_id`, `name` and
/// the five UTM fields of the record.
pub struct CodeLinks {
    pub table: Arc<MemTable>,
    /// Whether some code is tied by its scan key (a code made before codes carried their id);
    /// when none is, the query joins on the id alone and never computes a scan key.
    pub has_scan_keys: bool,
}

/// Reads the project's code records (deleted ones too: their scans still count).
pub async fn code_links(ctx: &SessionContext, project: &str) -> Result<CodeLinks> {
    let frame = ctx
        .sql(
            "SELECT code_id, name, kind, payload, utm_source, utm_medium, utm_campaign,
                    utm_content, utm_term
             FROM promo_codes WHERE project = $1
             ORDER BY created_at, code_id",
        )
        .await?
        .with_param_values(vec![ScalarValue::Utf8(Some(project.to_string()))])?;
    let schema = frame.schema().inner().clone();
    let codes = cast_strings(&concat_batches(&schema, &frame.collect().await?)?)?;
    let mut link = StringBuilder::new();
    // Output row `i` is code row `rows[i]`: once per link.
    let mut rows: Vec<u32> = Vec::new();
    let mut taken_keys = HashSet::new();
    let mut has_scan_keys = false;
    let column = |i: usize| codes.column(i).as_string::<i32>();
    let (ids, kinds, payloads) = (column(0), column(2), column(3));
    for row in 0..codes.num_rows() {
        if ids.is_null(row) {
            continue;
        }
        link.append_value(ids.value(row));
        rows.push(row as u32);
        let legacy_path = matches!(kinds.value(row), "A" | "C")
            && !payloads.is_null(row)
            && !carries_reference(payloads.value(row));
        // Two such codes with the same path cannot be told apart by their scans: the
        // earlier one (rows come by creation time) keeps them.
        if legacy_path {
            let key = path_scan_key(payloads.value(row));
            if taken_keys.insert(key.clone()) {
                link.append_value(key);
                rows.push(row as u32);
                has_scan_keys = true;
            }
        }
    }
    let schema = Arc::new(Schema::new(
        ["link", "code_id", "name"]
            .into_iter()
            .chain(promolens_schemas::attribution::UTM_KEYS)
            .map(|name| Field::new(name, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let rows = UInt32Array::from(rows);
    let mut columns: Vec<ArrayRef> = vec![Arc::new(link.finish())];
    // code_id, name and the five UTM fields of the query above.
    for source_column in [0, 1, 4, 5, 6, 7, 8] {
        columns.push(take(codes.column(source_column), &rows, None)?);
    }
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok(CodeLinks {
        table: Arc::new(MemTable::try_new(schema, vec![vec![batch]])?),
        has_scan_keys,
    })
}

/// Whether an A or C path holds a `c=<id>` pair.
fn carries_reference(path: &str) -> bool {
    let query = path.split_once('?').map_or("", |(_, q)| q);
    query
        .split('&')
        .any(|pair| pair.split_once('=').is_some_and(|(k, _)| k == CODE_REF_KEY))
}

/// Every column as `Utf8` (the JSON reader may give other string types).
fn cast_strings(batch: &RecordBatch) -> DfResult<RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .map(|c| cast(c, &DataType::Utf8))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let schema = Schema::new(
        batch
            .schema()
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), DataType::Utf8, true))
            .collect::<Vec<_>>(),
    );
    Ok(RecordBatch::try_new(Arc::new(schema), columns)?)
}

/// `promolens_scan_key(path, query)`: the [`scan_key`] of a launch.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ScanKeyFunction {
    signature: Signature,
}

impl ScanKeyFunction {
    pub fn udf() -> ScalarUDF {
        ScalarUDF::from(ScanKeyFunction {
            signature: Signature::any(2, Volatility::Immutable),
        })
    }
}

impl ScalarUDFImpl for ScanKeyFunction {
    fn name(&self) -> &str {
        SCAN_KEY_FUNCTION
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let [path, query] = args.args.as_slice() else {
            return exec_err!("{SCAN_KEY_FUNCTION} takes a path and a query");
        };
        let path = cast(&path.to_array(rows)?, &DataType::Utf8)?;
        let path = path.as_string::<i32>();
        let query = query.to_array(rows)?;
        let Some(query) = query.as_map_opt() else {
            return exec_err!("{SCAN_KEY_FUNCTION}: the query must be a map");
        };
        let keys = cast(query.keys(), &DataType::Utf8)?;
        let values = cast(query.values(), &DataType::Utf8)?;
        let (keys, values) = (keys.as_string::<i32>(), values.as_string::<i32>());
        let offsets = query.value_offsets();
        let mut out = StringBuilder::with_capacity(rows, rows * 48);
        for row in 0..rows {
            if path.is_null(row) {
                out.append_null();
                continue;
            }
            let entries = offsets[row] as usize..offsets[row + 1] as usize;
            let pairs = entries.map(|i| {
                let value = if values.is_null(i) {
                    ""
                } else {
                    values.value(i)
                };
                (keys.value(i), value)
            });
            out.append_value(scan_key(path.value(row), pairs));
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}
