//! Read-only SQL over the registered tables. DDL (including `CREATE EXTERNAL TABLE`, which could
//! read any file the server can), DML, `COPY` and session statements are refused before anything
//! runs.

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::{DataFrame, SessionContext};

use crate::error::{Error, Result};

fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// Plans `sql`, refusing anything but queries.
pub async fn plan(ctx: &SessionContext, sql: &str) -> Result<DataFrame> {
    ctx.sql_with_options(sql, read_only())
        .await
        .map_err(|e| match refused(&e) {
            Some(what) => Error::ReadOnly(format!(
                "{what} is not allowed; only queries (SELECT, WITH, EXPLAIN, SHOW, DESCRIBE) run here"
            )),
            None => Error::Query(e),
        })
}

/// Runs `sql` and collects its result.
pub async fn query(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>> {
    collect(plan(ctx, sql).await?).await
}

/// Collects a result; an empty one is one empty batch, so that its columns still show.
pub async fn collect(frame: DataFrame) -> Result<Vec<RecordBatch>> {
    let schema = frame.schema().inner().clone();
    let batches = frame.collect().await?;
    if batches.iter().all(|b| b.num_rows() == 0) {
        return Ok(vec![RecordBatch::new_empty(schema)]);
    }
    Ok(batches)
}

/// The statement kind DataFusion refused under the read-only options, if that is the error.
fn refused(error: &DataFusionError) -> Option<String> {
    let message = error.to_string();
    [
        "DDL not supported: ",
        "DML not supported: ",
        "Statement not supported: ",
    ]
    .iter()
    .find_map(|prefix| {
        message
            .find(prefix)
            .map(|at| message[at + prefix.len()..].trim().to_string())
    })
}
