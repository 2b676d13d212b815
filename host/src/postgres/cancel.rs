//! Cancel requests (psql's Ctrl-C, psycopg's `cancel()`): the client opens a new connection that
//! carries the process id and secret key the door gave the connection at startup, and the
//! statement that connection is running ends with SQLSTATE 57014, while it is planned or while
//! its rows are sent. A request with an unknown id or key does nothing, as in PostgreSQL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use async_trait::async_trait;
use bytes::Bytes;
use datafusion_postgres::pgwire;
use pgwire::api::cancel::CancelHandler;
use pgwire::error::PgWireError;
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::startup::SecretKey;
use tokio_util::sync::CancellationToken;

use super::statement_error;

/// The statement one connection is running, as a cancel request finds it.
#[derive(Default)]
pub(super) struct Running(Mutex<CancellationToken>);

impl Running {
    /// The token of a statement starting now: a request that came before does not end it.
    pub(super) fn start(&self) -> CancellationToken {
        let token = CancellationToken::new();
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = token.clone();
        token
    }

    fn cancel(&self) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .cancel();
    }
}

/// The door's admitted connections, by process id and secret key (its bytes: a cancel request
/// comes on a connection of its own, whose protocol version is not known, so its key is read as
/// bytes whatever form it was given in).
#[derive(Default)]
pub(super) struct Connections(Mutex<HashMap<(i32, Bytes), Weak<Running>>>);

impl Connections {
    pub(super) fn register(&self, pid: i32, secret: SecretKey, running: &Arc<Running>) {
        let mut connections = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        // Connections that ended have dropped their `Running`.
        connections.retain(|_, running| running.strong_count() > 0);
        connections.insert((pid, secret.to_bytes()), Arc::downgrade(running));
    }
}

#[async_trait]
impl CancelHandler for Connections {
    async fn on_cancel_request(&self, request: CancelRequest) {
        let running = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(request.pid, request.secret_key.to_bytes()))
            .and_then(Weak::upgrade);
        if let Some(running) = running {
            tracing::info!(
                pid = request.pid,
                "PostgreSQL statement cancelled by its client"
            );
            running.cancel();
        }
    }
}

/// The error of a cancelled statement, in PostgreSQL's words.
pub(super) fn cancelled() -> PgWireError {
    statement_error("57014", "canceling statement due to user request")
}
