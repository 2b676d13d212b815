//! Read-only SQL over the registered tables. DDL (including `CREATE EXTERNAL TABLE`, which could
//! read any file the server can), DML, `COPY` and session statements are refused before anything
//! runs.

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SQLOptions;
use datafusion::execution::memory_pool::{FairSpillPool, MemoryPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::{DataFrame, SessionContext};
use futures::StreamExt;

use crate::error::{Error, Result};

/// What one statement may cost at the SQL doors (`POST /v1/sql`, the PostgreSQL port), each
/// with a clear error: its time (delivery included), the memory all of them hold together (a
/// DataFusion pool; sorts, joins and aggregations spill to the temp folder beyond their share),
/// and the rows of one result.
#[derive(Clone)]
pub struct SqlLimits {
    pub timeout: Duration,
    pub memory_bytes: usize,
    pool: Arc<dyn MemoryPool>,
    /// Rows of one HTTP answer (one JSON document, built in memory).
    pub http_max_rows: usize,
    /// Rows of one PostgreSQL result (streamed).
    pub pg_max_rows: usize,
}

impl std::fmt::Debug for SqlLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlLimits")
            .field("timeout", &self.timeout)
            .field("memory_bytes", &self.memory_bytes)
            .field("http_max_rows", &self.http_max_rows)
            .field("pg_max_rows", &self.pg_max_rows)
            .finish()
    }
}

impl SqlLimits {
    pub fn new(
        timeout: Duration,
        memory_bytes: usize,
        http_max_rows: usize,
        pg_max_rows: usize,
    ) -> Result<SqlLimits> {
        Ok(SqlLimits {
            timeout,
            memory_bytes,
            pool: Arc::new(FairSpillPool::new(memory_bytes)),
            http_max_rows,
            pg_max_rows,
        })
    }

    /// The runtime of a door's session: `shared`'s stores and caches, the doors' memory pool.
    pub fn runtime(&self, shared: &SessionContext) -> Result<Arc<RuntimeEnv>> {
        Ok(RuntimeEnvBuilder::from_runtime_env(&shared.runtime_env())
            .with_memory_pool(self.pool.clone())
            .build_arc()?)
    }

    /// The error of a statement that ran out of time.
    pub fn timed_out(&self) -> Error {
        Error::Limit {
            code: "statement_timeout",
            message: format!(
                "the statement ran longer than the {} s limit (sql_timeout_seconds); narrow it \
                 (a shorter range, fewer columns) or aggregate",
                self.timeout.as_secs()
            ),
        }
    }

    /// The error of a result over `max_rows` rows.
    pub fn too_many_rows(max_rows: usize, setting: &str) -> Error {
        Error::Limit {
            code: "too_many_rows",
            message: format!(
                "the result has more than {max_rows} rows, the limit of one answer ({setting}); \
                 add a LIMIT, aggregate, or page with a WHERE on time"
            ),
        }
    }

    /// `error` as the memory limit's, when it is DataFusion's pool refusing an allocation.
    pub fn memory_error(&self, error: Error) -> Error {
        match &error {
            Error::Query(e) if is_resources_exhausted(e) => self.out_of_memory(&e.to_string()),
            _ => error,
        }
    }

    /// The error of a statement the memory pool refused (`detail`: the pool's words).
    pub fn out_of_memory(&self, detail: &str) -> Error {
        Error::Limit {
            code: "memory_limit",
            message: format!(
                "the statement needs more memory than the SQL doors may use ({} MiB in all, \
                 sql_memory_mb): aggregate, filter, or select fewer columns ({detail})",
                self.memory_bytes / (1024 * 1024)
            ),
        }
    }
}

fn is_resources_exhausted(error: &DataFusionError) -> bool {
    match error {
        DataFusionError::ResourcesExhausted(_) => true,
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
            is_resources_exhausted(inner)
        }
        DataFusionError::Shared(inner) => is_resources_exhausted(inner),
        other => other.to_string().contains("Resources exhausted"),
    }
}

/// Runs `sql` within `limits` and at most `max_rows` rows (`POST /v1/sql`): its schema and
/// batches, or the error of the limit it went over.
pub async fn query_within(
    ctx: &SessionContext,
    sql: &str,
    limits: &SqlLimits,
) -> Result<(datafusion::arrow::datatypes::SchemaRef, Vec<RecordBatch>)> {
    let max_rows = limits.http_max_rows;
    let run = again_if_files_vanished(|| async {
        let frame = plan(ctx, sql).await?;
        let schema = frame.schema().inner().clone();
        let mut stream = frame.execute_stream().await?;
        let (mut batches, mut rows) = (Vec::new(), 0usize);
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            rows += batch.num_rows();
            if rows > max_rows {
                return Err(SqlLimits::too_many_rows(max_rows, "http_sql_max_rows"));
            }
            batches.push(batch);
        }
        if batches.is_empty() {
            batches.push(RecordBatch::new_empty(schema.clone()));
        }
        Ok((schema, batches))
    });
    match tokio::time::timeout(limits.timeout, run).await {
        Ok(result) => result.map_err(|e| limits.memory_error(e)),
        Err(_) => Err(limits.timed_out()),
    }
}

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
