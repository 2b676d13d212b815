//! The queries of an admitted connection: run by its project's session (datafusion-postgres'
//! handlers), refused unless they read ([`ReadOnly`]), and held to the SQL doors' limits (a
//! result's rows cut at the deadline and at `pg_max_rows`).

use std::fmt::Debug;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::hooks::{HookClient, QueryHook};
use datafusion_postgres::pgwire;
use datafusion_postgres::{DfSessionService, Parser};
use futures::{Future, Sink};
use pgwire::api::portal::{Format, Portal, PortalExecutionState};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{DescribePortalResponse, FieldInfo, Response, SendableRowStream, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, Type};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::data::DataRow;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::cancel::{Running, cancelled};
use super::{PreparedStatement, refused, statement_error};
use crate::error::Error;
use crate::sql::SqlLimits;

/// The connection's session's queries, within the limits.
pub(super) struct ProjectQueries {
    pub(super) session: Arc<OnceLock<Arc<DfSessionService>>>,
    pub(super) limits: SqlLimits,
    /// The connection's statement, as a cancel request finds it.
    pub(super) running: Arc<Running>,
}

fn not_admitted() -> PgWireError {
    refused(
        "08P01",
        "no project session: the connection was not admitted",
    )
}

impl ProjectQueries {
    fn service(&self) -> PgWireResult<&Arc<DfSessionService>> {
        self.session.get().ok_or_else(not_admitted)
    }
}

#[async_trait]
impl SimpleQueryHandler for ProjectQueries {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let started = Instant::now();
        let service = self.service()?;
        let cancel = self.running.start();
        let responses = self
            .bounded(
                SimpleQueryHandler::do_query(service.as_ref(), client, query),
                &cancel,
            )
            .await?;
        Ok(responses
            .into_iter()
            .map(|r| within_limits(r, &self.limits, started, &cancel))
            .collect())
    }
}

#[async_trait]
impl ExtendedQueryHandler for ProjectQueries {
    type Statement = PreparedStatement;
    type QueryParser = ProjectParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        Arc::new(ProjectParser {
            session: self.session.clone(),
        })
    }

    /// A cursor's portal (`DECLARE`) has no plan of its own: its columns are those of the
    /// result it holds. psycopg describes a server-side cursor before fetching from it.
    async fn do_describe_portal<C>(
        &self,
        _client: &mut C,
        portal: &Portal<Self::Statement>,
    ) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let state = portal.state();
        if let PortalExecutionState::Suspended(held) = &*state.lock().await {
            return Ok(DescribePortalResponse::new(held.row_schema().to_vec()));
        }
        let fields = self.query_parser().get_result_schema(
            &portal.statement.statement,
            Some(&portal.result_column_format),
        )?;
        Ok(DescribePortalResponse::new(fields))
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let started = Instant::now();
        let service = self.service()?;
        let cancel = self.running.start();
        let response = self
            .bounded(
                ExtendedQueryHandler::do_query(service.as_ref(), client, portal, max_rows),
                &cancel,
            )
            .await?;
        Ok(within_limits(response, &self.limits, started, &cancel))
    }
}

impl ProjectQueries {
    /// `planning` within the statement timeout, unless its client cancels it; a memory pool
    /// refusal as the memory limit's error.
    async fn bounded<T>(
        &self,
        planning: impl Future<Output = PgWireResult<T>>,
        cancel: &CancellationToken,
    ) -> PgWireResult<T> {
        tokio::select! {
            planned = tokio::time::timeout(self.limits.timeout, planning) => planned
                .map_err(|_| limit_error(&self.limits.timed_out()))?
                .map_err(|e| mapped_error(e, &self.limits)),
            () = cancel.cancelled() => Err(cancelled()),
        }
    }
}

/// `error` as the memory limit's when DataFusion's pool refused an allocation.
fn mapped_error(error: PgWireError, limits: &SqlLimits) -> PgWireError {
    let text = error.to_string();
    if text.contains("Resources exhausted") {
        return limit_error(&limits.out_of_memory(&text));
    }
    error
}

/// A limit's error with its SQLSTATE.
fn limit_error(error: &Error) -> PgWireError {
    let code = match error {
        Error::Limit {
            code: "statement_timeout",
            ..
        } => "57014",
        Error::Limit {
            code: "memory_limit",
            ..
        } => "53200",
        Error::Limit {
            code: "too_many_rows",
            ..
        } => "54000",
        Error::ReadOnly(_) => "25006",
        _ => "XX000",
    };
    statement_error(code, error.to_string())
}

/// A result's rows, cut at the deadline (from the statement's start), at `pg_max_rows`, and
/// when the client cancels the statement.
fn within_limits(
    response: Response,
    limits: &SqlLimits,
    started: Instant,
    cancel: &CancellationToken,
) -> Response {
    let Response::Query(mut query) = response else {
        return response;
    };
    let rows = std::mem::replace(&mut query.data_rows, Box::pin(futures::stream::empty()));
    let end = StatementEnd {
        deadline: started + limits.timeout,
        cancel: cancel.clone(),
    };
    query.data_rows = rows_within(rows, limits, Some(end));
    Response::Query(query)
}

/// What ends one statement's rows early, besides `pg_max_rows`.
pub(super) struct StatementEnd {
    deadline: Instant,
    cancel: CancellationToken,
}

/// `rows` cut at `pg_max_rows`, and at `end` when they are one statement's (a cursor's rows are
/// many `FETCH`es').
pub(super) fn rows_within(
    rows: SendableRowStream,
    limits: &SqlLimits,
    end: Option<StatementEnd>,
) -> SendableRowStream {
    let (deadline, cancelled) = match end {
        Some(end) => (
            Some(Box::pin(tokio::time::sleep_until(end.deadline.into()))),
            Some(Box::pin(end.cancel.cancelled_owned())),
        ),
        None => (None, None),
    };
    Box::pin(Limited {
        rows: Some(rows),
        sent: 0,
        deadline,
        cancelled,
        limits: limits.clone(),
    })
}

/// The rows of one result within the limits: one timer for the whole result (not one per row:
/// a timer per row was most of the door's own cost when streaming a million rows).
struct Limited {
    /// The rows still to send; none once an error has ended them.
    rows: Option<SendableRowStream>,
    sent: usize,
    deadline: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    cancelled: Option<std::pin::Pin<Box<WaitForCancellationFutureOwned>>>,
    limits: SqlLimits,
}

impl futures::Stream for Limited {
    type Item = PgWireResult<DataRow>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = &mut *self;
        let Some(rows) = this.rows.as_mut() else {
            return Poll::Ready(None);
        };
        let error = match rows.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(row))) if this.sent < this.limits.pg_max_rows => {
                this.sent += 1;
                return Poll::Ready(Some(Ok(row)));
            }
            Poll::Ready(Some(Ok(_))) => limit_error(&SqlLimits::too_many_rows(
                this.limits.pg_max_rows,
                "pg_max_rows",
            )),
            Poll::Ready(Some(Err(error))) => mapped_error(error, &this.limits),
            Poll::Ready(None) => {
                this.rows = None;
                return Poll::Ready(None);
            }
            Poll::Pending => {
                if this
                    .cancelled
                    .as_mut()
                    .is_some_and(|c| c.as_mut().poll(cx).is_ready())
                {
                    cancelled()
                } else if this
                    .deadline
                    .as_mut()
                    .is_some_and(|d| d.as_mut().poll(cx).is_ready())
                {
                    limit_error(&this.limits.timed_out())
                } else {
                    return Poll::Pending;
                }
            }
        };
        this.rows = None;
        Poll::Ready(Some(Err(error)))
    }
}

/// Parses and plans statements with the connection's session (the project's tables).
pub(super) struct ProjectParser {
    session: Arc<OnceLock<Arc<DfSessionService>>>,
}

impl ProjectParser {
    fn parser(&self) -> PgWireResult<Arc<Parser>> {
        let service = self.session.get().ok_or_else(not_admitted)?;
        Ok(ExtendedQueryHandler::query_parser(service.as_ref()))
    }
}

#[async_trait]
impl QueryParser for ProjectParser {
    type Statement = PreparedStatement;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        self.parser()?.parse_sql(client, sql, types).await
    }

    fn get_parameter_types(&self, statement: &Self::Statement) -> PgWireResult<Vec<Type>> {
        self.parser()?.get_parameter_types(statement)
    }

    fn get_result_schema(
        &self,
        statement: &Self::Statement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        self.parser()?.get_result_schema(statement, column_format)
    }
}

/// Refuses every statement but reads, before it is planned, and answers savepoints (nothing to
/// undo in a read-only session; psycopg and SQLAlchemy set them). Runs after the hooks that
/// answer `SET`/`SHOW`, cursors and transaction statements.
pub(super) struct ReadOnly;

/// What [`ReadOnly`] does with a statement.
enum Verdict {
    /// A read: planned and run as usual.
    Read,
    /// Answered here, with this command tag.
    Done(&'static str),
    Refused(PgWireError),
}

impl ReadOnly {
    fn verdict(statement: &Statement) -> Verdict {
        match statement {
            Statement::Query(_)
            | Statement::Explain { .. }
            | Statement::ExplainTable { .. }
            | Statement::ShowTables { .. }
            | Statement::ShowColumns { .. }
            | Statement::ShowVariable { .. }
            | Statement::ShowFunctions { .. } => Verdict::Read,
            Statement::Savepoint { .. } => Verdict::Done("SAVEPOINT"),
            Statement::ReleaseSavepoint { .. } => Verdict::Done("RELEASE"),
            other => {
                let first_words: Vec<String> = other
                    .to_string()
                    .split_whitespace()
                    .take(2)
                    .map(str::to_string)
                    .collect();
                Verdict::Refused(limit_error(&Error::ReadOnly(format!(
                    "`{} …` is not allowed; only queries (SELECT, WITH, EXPLAIN, SHOW) and \
                     cursors run here",
                    first_words.join(" ")
                ))))
            }
        }
    }

    fn answer(statement: &Statement) -> Option<PgWireResult<Response>> {
        match Self::verdict(statement) {
            Verdict::Read => None,
            Verdict::Done(tag) => Some(Ok(Response::Execution(Tag::new(tag)))),
            Verdict::Refused(error) => Some(Err(error)),
        }
    }
}

#[async_trait]
impl QueryHook for ReadOnly {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _session_context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        Self::answer(statement)
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _session_context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        match Self::verdict(statement) {
            Verdict::Read => None,
            Verdict::Done(_) => Some(Ok(LogicalPlan::EmptyRelation(
                datafusion::logical_expr::EmptyRelation {
                    produce_one_row: false,
                    schema: Arc::new(datafusion::common::DFSchema::empty()),
                },
            ))),
            Verdict::Refused(error) => Some(Err(error)),
        }
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _logical_plan: &LogicalPlan,
        _params: &ParamValues,
        _session_context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        Self::answer(statement)
    }
}
