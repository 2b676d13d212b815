//! The PostgreSQL door: `serve --pg-listen ADDR` speaks the PostgreSQL wire protocol (pgwire,
//! through datafusion-postgres), so that psql, psycopg, DBeaver, Metabase and Grafana query a
//! project's tables the way they query a database. Read-only.
//!
//! - **Who:** the user name is the project, the password an API key of that project whose role
//!   may run SQL (analyst, admin): the HTTP door's keys and roles hold here too. Our own startup
//!   handler checks them; datafusion-postgres' plain `serve()` would authenticate nobody.
//! - **What:** each connection gets a session of its own over its project's rows only (the
//!   views of [`crate::tables::project_session`], `first_touch` and `acquisition_daily`
//!   included) and the `pg_catalog` tables clients query on connect; nothing of another
//!   project is registered, whatever a statement names.
//! - **Read-only:** queries, `EXPLAIN`, `SHOW`, `SET`, cursors (`DECLARE`/`FETCH`/`CLOSE`) and
//!   transaction statements; anything else is refused (SQLSTATE 25006) before it is planned.
//! - **Limits** ([`SqlLimits`]): the statement timeout covers planning and delivery (57014),
//!   the memory pool is the HTTP SQL door's (53200), a result stops after `pg_max_rows` rows
//!   (54000). Each error says which limit and which setting.
//! - **TLS:** with a certificate, only TLS connections are accepted (the password is a key);
//!   a certificate that cannot be loaded stops the start, never falls back to plain text.

use std::fmt::Debug;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::setup_pg_catalog;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::hooks::{HookClient, QueryHook};
use datafusion_postgres::pgwire;
use datafusion_postgres::{DfSessionService, Parser};
use futures::{Sink, SinkExt, StreamExt};
use pgwire::api::auth::{
    DefaultServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::portal::{Format, Portal, PortalExecutionState};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{DescribePortalResponse, FieldInfo, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, ErrorHandler, METADATA_USER, PgWireConnectionState,
    PgWireServerHandlers, PidSecretKeyGenerator, RandomPidSecretKeyGenerator, Type,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::Authentication;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::tokio_rustls::TlsAcceptor;
use pgwire::tokio::tokio_rustls::rustls;

mod catalog;

use crate::access::{Permission, Registry, Role};
use crate::error::{Error, Result};
use crate::sql::SqlLimits;

/// The statement a connection prepares: its text, and the parsed statement with its plan.
type PreparedStatement = (String, Option<(Statement, LogicalPlan)>);

/// What every connection of the door shares.
pub struct PgDoor {
    registry: Arc<Registry>,
    shared: SessionContext,
    limits: SqlLimits,
    tls: Option<TlsAcceptor>,
    pids: RandomPidSecretKeyGenerator,
}

impl PgDoor {
    /// The door over `shared`'s tables; `tls` (certificate, key), when given, must load.
    pub fn new(
        registry: Arc<Registry>,
        shared: SessionContext,
        limits: SqlLimits,
        tls: Option<(&Path, &Path)>,
    ) -> Result<PgDoor> {
        let tls = tls.map(|(cert, key)| tls_acceptor(cert, key)).transpose()?;
        Ok(PgDoor {
            registry,
            shared,
            limits,
            tls,
            pids: RandomPidSecretKeyGenerator::default(),
        })
    }

    /// Listens on `address`; the bound address (for port 0) and the task serving it.
    pub async fn listen(self, address: SocketAddr) -> Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|e| Error::io(format!("listening for PostgreSQL on {address}"), e))?;
        let local = listener
            .local_addr()
            .map_err(|e| Error::io("reading the PostgreSQL address", e))?;
        if self.tls.is_none() && !local.ip().is_loopback() {
            tracing::warn!(address = %local, "the PostgreSQL door takes keys as passwords without TLS on a non-loopback address: configure pg_tls_cert and pg_tls_key");
        }
        let door = Arc::new(self);
        tokio::spawn(async move {
            loop {
                let (socket, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "accepting a PostgreSQL connection failed");
                        continue;
                    }
                };
                let connection = Connection {
                    door: door.clone(),
                    session: Arc::default(),
                };
                let tls = door.tls.clone();
                tokio::spawn(async move {
                    if let Err(error) = pgwire::tokio::process_socket(socket, tls, connection).await
                    {
                        tracing::info!(%error, %peer, "PostgreSQL connection ended with an error");
                    }
                });
            }
        });
        Ok(local)
    }

    /// A session over `project`'s tables for one connection, with `pg_catalog`.
    async fn session(&self, project: &str, role: Role) -> Result<Arc<DfSessionService>> {
        let tables = crate::tables::tables_of(role);
        let runtime = self.limits.runtime(&self.shared)?;
        let ctx = crate::tables::project_session(&self.shared, project, &tables, runtime).await?;
        setup_pg_catalog(&ctx, crate::tables::CATALOG, EmptyContextProvider)
            .map_err(|e| Error::Query(*e))?;
        for function in catalog::functions() {
            ctx.register_udf(function);
        }
        let hooks: Vec<Arc<dyn QueryHook>> = vec![
            Arc::new(CursorStatementHook),
            Arc::new(SetShowHook),
            Arc::new(TransactionStatementHook),
            Arc::new(ReadOnly),
            Arc::new(catalog::CatalogSubqueries),
        ];
        Ok(Arc::new(DfSessionService::new_with_hooks(
            Arc::new(ctx),
            hooks,
        )))
    }
}

/// Loads a PEM certificate chain and its PKCS #8 key.
fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &str, path: &Path, e: &dyn std::fmt::Display| {
        Error::Setup(format!(
            "the PostgreSQL door's TLS {what} {}: {e}",
            path.display()
        ))
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad("certificate", cert, &e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad("certificate", cert, &e))?;
    if chain.is_empty() {
        return Err(bad("certificate", cert, &"no certificate in the file"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad("key", key, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("certificate", cert, &e))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| bad("certificate", cert, &e))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// One connection's handlers: the door, and the session its startup opened.
struct Connection {
    door: Arc<PgDoor>,
    session: Arc<OnceLock<Arc<DfSessionService>>>,
}

impl PgWireServerHandlers for Connection {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::new(self.queries())
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::new(self.queries())
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::new(KeyStartup {
            door: self.door.clone(),
            session: self.session.clone(),
        })
    }

    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        Arc::new(LogErrors)
    }
}

impl Connection {
    fn queries(&self) -> ProjectQueries {
        ProjectQueries {
            session: self.session.clone(),
            limits: self.door.limits.clone(),
        }
    }
}

/// Takes the user name as the project and the password as one of its keys.
struct KeyStartup {
    door: Arc<PgDoor>,
    session: Arc<OnceLock<Arc<DfSessionService>>>,
}

fn refused(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".to_string(),
        code.to_string(),
        message.into(),
    )))
}

#[async_trait]
impl StartupHandler for KeyStartup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(startup) => {
                protocol_negotiation(client, &startup).await?;
                save_startup_parameters_to_metadata(client, &startup);
                if self.door.tls.is_some() && !client.is_secure() {
                    return Err(refused(
                        "28000",
                        "this server accepts TLS connections only (the password is an API \
                         key): connect with sslmode=require",
                    ));
                }
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                client
                    .send(PgWireBackendMessage::Authentication(
                        Authentication::CleartextPassword,
                    ))
                    .await?;
            }
            PgWireFrontendMessage::PasswordMessageFamily(password) => {
                let password = password.into_password()?.password;
                let project = client
                    .metadata()
                    .get(METADATA_USER)
                    .cloned()
                    .unwrap_or_default();
                let session = self.admit(&project, &password).await?;
                let _ = self.session.set(session);
                let (pid, secret) = self.door.pids.generate(client);
                client.set_pid_and_secret_key(pid, secret);
                let mut parameters = DefaultServerParameterProvider::default();
                parameters.is_superuser = false;
                parameters.default_transaction_read_only = true;
                finish_authentication(client, &parameters).await?;
            }
            _ => {}
        }
        Ok(())
    }
}

impl KeyStartup {
    /// The session of `project` when `key` is one of its keys that may run SQL.
    async fn admit(&self, project: &str, key: &str) -> PgWireResult<Arc<DfSessionService>> {
        let registry = &self.door.registry;
        let record = registry.authenticate(key).await.map_err(|refusal| {
            refused(
                "28P01",
                format!(
                    "{} (the password is an API key of project {project})",
                    refusal.message()
                ),
            )
        })?;
        if record.project != project {
            return Err(refused(
                "28000",
                format!(
                    "this key belongs to project {}, not {project}: the user name is the project",
                    record.project
                ),
            ));
        }
        if !record.role.allows(Permission::Sql) {
            return Err(refused(
                "28000",
                format!(
                    "a {} key may not run SQL (analysts and administrators may)",
                    record.role
                ),
            ));
        }
        if registry.project(project).is_err() {
            return Err(refused(
                "3D000",
                format!("project {project} does not exist"),
            ));
        }
        tracing::info!(key_id = %record.id, project, "PostgreSQL connection admitted");
        self.door
            .session(project, record.role)
            .await
            .map_err(|e| refused("XX000", format!("opening the project's tables: {e}")))
    }
}

/// The connection's session's queries, within the limits.
struct ProjectQueries {
    session: Arc<OnceLock<Arc<DfSessionService>>>,
    limits: SqlLimits,
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
        let planned = tokio::time::timeout(
            self.limits.timeout,
            SimpleQueryHandler::do_query(service.as_ref(), client, query),
        )
        .await
        .map_err(|_| limit_error(&self.limits.timed_out()))?;
        let responses = planned.map_err(|e| self.mapped(e))?;
        Ok(responses
            .into_iter()
            .map(|r| within_limits(r, &self.limits, started))
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
        let planned = tokio::time::timeout(
            self.limits.timeout,
            ExtendedQueryHandler::do_query(service.as_ref(), client, portal, max_rows),
        )
        .await
        .map_err(|_| limit_error(&self.limits.timed_out()))?;
        let response = planned.map_err(|e| self.mapped(e))?;
        Ok(within_limits(response, &self.limits, started))
    }
}

impl ProjectQueries {
    /// A memory pool refusal as the memory limit's error; others as they are.
    fn mapped(&self, error: PgWireError) -> PgWireError {
        mapped_error(error, &self.limits)
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
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_string(),
        code.to_string(),
        error.to_string(),
    )))
}

/// A result's rows, cut at the deadline (from the statement's start) and at `pg_max_rows`.
fn within_limits(response: Response, limits: &SqlLimits, started: Instant) -> Response {
    let Response::Query(mut query) = response else {
        return response;
    };
    let deadline = tokio::time::Instant::from_std(started + limits.timeout);
    let limits = limits.clone();
    let rows = std::mem::replace(&mut query.data_rows, Box::pin(futures::stream::empty()));
    // The state: the rows still to send (none once an error has ended them), and how many went.
    let limited = futures::stream::unfold((Some(rows), 0usize), move |(rows, sent)| {
        let limits = limits.clone();
        async move {
            let mut rows = rows?;
            let ended = |error: PgWireError| Some((Err(error), (None, sent)));
            match tokio::time::timeout_at(deadline, rows.next()).await {
                Err(_) => ended(limit_error(&limits.timed_out())),
                Ok(None) => None,
                Ok(Some(Err(error))) => ended(mapped_error(error, &limits)),
                Ok(Some(Ok(_))) if sent >= limits.pg_max_rows => ended(limit_error(
                    &SqlLimits::too_many_rows(limits.pg_max_rows, "pg_max_rows"),
                )),
                Ok(Some(Ok(row))) => Some((Ok(row), (Some(rows), sent + 1))),
            }
        }
    });
    query.data_rows = Box::pin(limited);
    Response::Query(query)
}

/// Parses and plans statements with the connection's session (the project's tables).
struct ProjectParser {
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
struct ReadOnly;

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

/// Logs what the door answers with an error.
struct LogErrors;

impl ErrorHandler for LogErrors {
    fn on_error<C>(&self, _client: &C, error: &mut PgWireError)
    where
        C: ClientInfo,
    {
        tracing::debug!(%error, "PostgreSQL error answered");
    }
}
