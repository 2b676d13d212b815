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
//! - **Cancel requests** (psql's Ctrl-C) end the statement their connection runs (57014).
//! - **TLS:** with a certificate, only TLS connections are accepted (the password is a key);
//!   a certificate that cannot be loaded stops the start, never falls back to plain text.

use std::fmt::Debug;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::DfSessionService;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::setup_pg_catalog;
use datafusion_postgres::hooks::QueryHook;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::pgwire;
use futures::{Sink, SinkExt};
use pgwire::api::auth::{
    DefaultServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::cancel::CancelHandler;
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::{
    ClientInfo, ErrorHandler, METADATA_USER, PgWireConnectionState, PgWireServerHandlers,
    PidSecretKeyGenerator, RandomPidSecretKeyGenerator,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::Authentication;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::tokio_rustls::TlsAcceptor;
use pgwire::tokio::tokio_rustls::rustls;

mod cancel;
mod catalog;
mod cursors;
mod queries;
mod rows;

use cancel::{Connections, Running};
use queries::{ProjectQueries, ReadOnly};

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
    connections: Arc<Connections>,
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
            connections: Arc::default(),
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
                    running: Arc::default(),
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
            Arc::new(cursors::Cursors {
                limits: self.limits.clone(),
            }),
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

/// One connection's handlers: the door, the session its startup opened, and the statement it
/// runs (for cancel requests).
struct Connection {
    door: Arc<PgDoor>,
    session: Arc<OnceLock<Arc<DfSessionService>>>,
    running: Arc<Running>,
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
            running: self.running.clone(),
        })
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.door.connections.clone()
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
            running: self.running.clone(),
        }
    }
}

/// Takes the user name as the project and the password as one of its keys.
struct KeyStartup {
    door: Arc<PgDoor>,
    session: Arc<OnceLock<Arc<DfSessionService>>>,
    running: Arc<Running>,
}

/// A refusal that ends the connection (SQLSTATE `code`).
pub(super) fn refused(code: &str, message: impl Into<String>) -> PgWireError {
    error_with("FATAL", code, message)
}

/// A statement's error (SQLSTATE `code`); the connection goes on.
pub(super) fn statement_error(code: &str, message: impl Into<String>) -> PgWireError {
    error_with("ERROR", code, message)
}

fn error_with(severity: &str, code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        severity.to_string(),
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
                self.door
                    .connections
                    .register(pid, secret.clone(), &self.running);
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
