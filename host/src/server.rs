//! `promolens serve`: the HTTP API ([`crate::api`]) on one port, from start to a graceful stop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use promolens_ingest::{Ingestor, Storage};

use crate::access::Access;
use crate::api::{Limits, QueryState, router};
use crate::error::Error;

/// Installs the process's metrics recorder (once; later calls get the same handle) and keeps
/// its histograms drained.
pub fn metrics_recorder() -> crate::Result<PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    // Seconds, from a WAL sync (sub-millisecond) to a slow query (the 120 s limit).
    const BUCKETS: [f64; 16] = [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        120.0,
    ];
    let handle = PrometheusBuilder::new()
        .set_buckets(&BUCKETS)
        .and_then(|b| b.install_recorder())
        .map_err(|e| Error::Setup(format!("installing the metrics recorder: {e}")))?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    Ok(HANDLE.get_or_init(|| handle).clone())
}

/// What `serve` runs: the stores and services, the HTTP limits, and the PostgreSQL door.
pub struct Serving {
    pub storage: Storage,
    pub ingestor: Arc<Ingestor>,
    pub listen: SocketAddr,
    pub limits: Limits,
    pub codes: crate::codes::CodesState,
    pub access: Access,
    pub settings: Arc<crate::attribution_settings::SettingsStore>,
    pub sql_limits: crate::sql::SqlLimits,
    /// The PostgreSQL door's address and TLS files (certificate, key), when it is open.
    pub postgres: Option<(SocketAddr, Option<(std::path::PathBuf, std::path::PathBuf)>)>,
}

/// Runs the server until SIGTERM or Ctrl-C, then stops accepting, finishes the requests under way
/// and flushes the buffer to Parquet.
pub async fn serve(serving: Serving) -> crate::Result<()> {
    let Serving {
        storage,
        ingestor,
        listen,
        limits,
        mut codes,
        access,
        settings,
        sql_limits,
        postgres,
    } = serving;
    let ctx = crate::tables::session(&storage).await?;
    let zones = access.registry.zones().clone();
    if let Some((address, tls)) = postgres {
        let tls = tls
            .as_ref()
            .map(|(cert, key)| (cert.as_path(), key.as_path()));
        let door = crate::postgres::PgDoor::new(
            access.registry.clone(),
            ctx.clone(),
            sql_limits.clone(),
            tls,
        )?;
        let local = door.listen(address).await?;
        tracing::info!(address = %local, "the PostgreSQL door is open");
        println!(
            "promolens PostgreSQL door on {local} (user: the project, password: an analyst's key)"
        );
    }
    let query = QueryState {
        ctx,
        zones,
        saved: crate::saved_analyses::SavedAnalyses::new(storage.clone()),
        settings,
        sql_limits,
    };
    codes.analytics = Some(query.clone());
    let app = router(
        ingestor.clone(),
        limits,
        query,
        codes,
        access,
        metrics_recorder()?,
    );
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Error::io(format!("listening on {listen}"), e))?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::io("reading the listening address", e))?;
    tracing::info!(address = %local, "promolens is serving");
    println!("promolens listening on http://{local}");
    println!("the web console: open http://{local}/ in a browser and sign in with a key");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| Error::io("serving", e))?;
    tracing::info!("shutting down: flushing buffered events");
    ingestor.shutdown().await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => futures::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = futures::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
