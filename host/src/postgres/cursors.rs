//! Cursors (`DECLARE name CURSOR FOR query`, as psycopg's server-side cursors send): the query
//! planned by the connection's session, its rows encoded by [`super::rows`] a little ahead of the
//! client's `FETCH` ([`encoded_ahead`]), at most `pg_max_rows` over the cursor's life. `FETCH` and `CLOSE` are
//! datafusion-postgres' (its cursor hook runs after this one); each `FETCH` is held to the
//! statement timeout like any statement.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{Declare, DeclareType, Statement};
use datafusion_postgres::hooks::{HookClient, QueryHook};
use datafusion_postgres::pgwire;
use futures::StreamExt;
use pgwire::api::ClientInfo;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::results::{Response, SendableRowStream, Tag};
use pgwire::api::stmt::StoredStatement;
use pgwire::api::store::PortalStore;
use pgwire::error::PgWireResult;

use super::queries::rows_within;
use super::{PreparedStatement, statement_error};
use crate::sql::SqlLimits;

/// Declares cursors over the connection's session.
pub(super) struct Cursors {
    pub(super) limits: SqlLimits,
}

impl Cursors {
    /// The answer to `statement` when it declares cursors; `None` for the hooks after this one.
    async fn declared(
        &self,
        statement: &Statement,
        session: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        let Statement::Declare { stmts } = statement else {
            return None;
        };
        Some(self.declare(stmts, session, client).await)
    }

    async fn declare(
        &self,
        declarations: &[Declare],
        session: &SessionContext,
        client: &mut dyn HookClient,
    ) -> PgWireResult<Response> {
        for declaration in declarations {
            if declaration.declare_type != Some(DeclareType::Cursor) {
                return Err(statement_error(
                    "42601",
                    "only cursors can be declared here",
                ));
            }
            let (Some(name), Some(query)) = (declaration.names.first(), &declaration.for_query)
            else {
                return Err(statement_error(
                    "42601",
                    "DECLARE needs a cursor name and a FOR query",
                ));
            };
            let query = query.to_string();
            let dataframe = session
                .sql(&query)
                .await
                .map_err(|e| pgwire::error::PgWireError::ApiError(Box::new(e)))?;
            let mut rows =
                super::rows::encode_dataframe(dataframe, &Format::UnifiedText, None).await?;
            let data_rows =
                std::mem::replace(&mut rows.data_rows, Box::pin(futures::stream::empty()));
            rows.data_rows = encoded_ahead(rows_within(data_rows, &self.limits, None));
            let statement: PreparedStatement = (query, None);
            let portal = Portal::new_cursor(
                name.value.clone(),
                Arc::new(StoredStatement::new(name.value.clone(), statement, vec![])),
            );
            portal.start(rows).await;
            client.portal_store().put_portal(Arc::new(portal));
        }
        Ok(Response::Execution(Tag::new("DECLARE CURSOR")))
    }
}

/// The rows a cursor holds, encoded ahead of the client's `FETCH` by a task of their own, so that
/// the server encodes the next rows while the client reads the last ones (a cursor's `FETCH`es
/// otherwise take turns with the client's parsing). At most [`AHEAD`] chunks of up to [`CHUNK`]
/// rows wait; the task ends when the cursor is closed or its connection ends.
fn encoded_ahead(rows: SendableRowStream) -> SendableRowStream {
    let (ready, mut waiting) = tokio::sync::mpsc::channel(AHEAD);
    tokio::spawn(async move {
        let mut chunks = rows.ready_chunks(CHUNK);
        while let Some(chunk) = chunks.next().await {
            if ready.send(chunk).await.is_err() {
                break;
            }
        }
    });
    let chunks = futures::stream::poll_fn(move |cx| waiting.poll_recv(cx));
    Box::pin(chunks.flat_map(futures::stream::iter))
}

/// Rows in one chunk a cursor encodes ahead, and the chunks that may wait.
const CHUNK: usize = 8192;
const AHEAD: usize = 2;

#[async_trait]
impl QueryHook for Cursors {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        session: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        self.declared(statement, session, client).await
    }

    /// Parsing is datafusion-postgres' cursor hook's (a cursor statement has no plan).
    async fn handle_extended_parse_query(
        &self,
        _statement: &Statement,
        _session: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        None
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        session: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        self.declared(statement, session, client).await
    }
}
