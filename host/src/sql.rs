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
    Ok(query_with_schema(ctx, sql).await?.1)
}

/// Runs `sql`: its result's schema (the columns, also of an empty result) and batches.
pub async fn query_with_schema(
    ctx: &SessionContext,
    sql: &str,
) -> Result<(datafusion::arrow::datatypes::SchemaRef, Vec<RecordBatch>)> {
    again_if_files_vanished(|| async {
        let frame = plan(ctx, sql).await?;
        let schema = frame.schema().inner().clone();
        Ok((schema, collect(frame).await?))
    })
    .await
}

/// Runs `attempt` once more when a file it was reading was removed under it: compaction removes
/// the files it replaced after a grace period (60 s by default), and a query slower than that
/// still held the old listing. The second attempt plans afresh, so it lists the new files.
pub async fn again_if_files_vanished<T, F, A>(mut attempt: F) -> Result<T>
where
    F: FnMut() -> A,
    A: std::future::Future<Output = Result<T>>,
{
    match attempt().await {
        Err(Error::Query(e)) if files_vanished(&e) => {
            tracing::info!(error = %e, "a file was replaced during the query; running it again");
            attempt().await
        }
        other => other,
    }
}

/// Whether the error is object_store's "not found" for a file being read.
fn files_vanished(error: &DataFusionError) -> bool {
    let message = error.to_string();
    message.contains("Object at location") && message.contains("not found")
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
