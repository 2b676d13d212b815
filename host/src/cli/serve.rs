//! `promolens serve`: the configuration resolved, the data directory's projects and keys
//! opened (and the demo's made), the pipeline started (replaying its log), background
//! compaction, then the HTTP API until SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use promolens::access::{Registry, Role};
use promolens::attribution_settings::SettingsStore;
use promolens_ingest::{Attributors, IngestConfig, Ingestor, ProjectZones, Storage};

use super::codes::CodesArgs;
use super::{DEFAULT_TZ, registry};

/// How often a server reads the attribution settings again.
const SETTINGS_RELOAD_EVERY: Duration = Duration::from_secs(5);

pub async fn run(
    config: Option<&Path>,
    demo: bool,
    settings: promolens::config::Settings,
) -> anyhow::Result<()> {
    let config = settings.resolve(config)?;
    let listen = config.listen;
    let codes = CodesArgs {
        wechat_url: config.wechat_url.clone(),
        secret_key: config.secret_key.clone(),
        component_cache: config.component_cache.clone(),
    };
    let storage = Storage::open(&config.data)?;
    let zones = ProjectZones::new(DEFAULT_TZ);
    let registry = registry(&storage, &zones).await?;
    if demo {
        demo_keys(&registry, &storage, listen).await?;
    }
    registry.keep_fresh();
    let access = promolens::access::Access {
        registry,
        audit: promolens::access::AuditLog::new(storage.clone()),
        ingest_rate: Arc::new(promolens::access::rate::RateLimiter::new(
            config.ingest_rate_per_key,
            2.0 * config.ingest_rate_per_key,
        )),
    };
    let codes = codes.open(&storage, demo).await?;
    let wal_dir = config
        .wal
        .clone()
        .unwrap_or_else(|| match &storage.local_dir {
            Some(dir) => dir.join("_wal"),
            None => PathBuf::from("promolens-wal"),
        });
    // Each project's attribution settings: read now, again every few seconds (the CLI may
    // change them while the server runs), and at once when changed over HTTP.
    let attributors = Arc::new(Attributors::default());
    let settings = Arc::new(SettingsStore::new(storage.clone(), attributors.clone()));
    settings.reload().await?;
    settings.keep_fresh(SETTINGS_RELOAD_EVERY);
    let mut ingest = IngestConfig::new(DEFAULT_TZ);
    ingest.zones = zones;
    ingest.attributors = attributors;
    ingest.wal_dir = Some(wal_dir);
    ingest.ts_days_back = config.max_event_age_days;
    ingest.ts_days_ahead = config.max_event_lead_days;
    ingest.flush_age = Duration::from_secs_f64(config.flush_seconds.max(0.05));
    ingest.flush_rows = config.flush_rows;
    let ingestor = Arc::new(Ingestor::start(storage.clone(), ingest).await?);
    if demo {
        // Without the stand-in (a real WeChat URL), the demo may not be authorized: no codes.
        let demo_codes = promolens::demo::seed_codes(&codes.codes)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "the demo's codes were not made");
                Vec::new()
            });
        match promolens::demo::load(&ingestor, &demo_codes, Utc::now()).await? {
            Some(n) => {
                tracing::info!(events = n, project = "demo", "loaded the demo events")
            }
            None => tracing::info!(project = "demo", "demo events already loaded"),
        }
    }
    if config.compact_seconds > 0 {
        let options = promolens_ingest::compact::CompactOptions {
            min_files: config.compact_min_files,
            ..Default::default()
        };
        tokio::spawn(background_compaction(
            storage.clone(),
            options,
            Duration::from_secs(config.compact_seconds),
        ));
    }
    let limits = promolens::api::Limits {
        body_bytes: config.body_limit,
        concurrent_requests: config.max_concurrent_requests,
    };
    let postgres = config.pg_listen.map(|address| {
        let tls = config.pg_tls_cert.clone().zip(config.pg_tls_key.clone());
        (address, tls)
    });
    promolens::server::serve(promolens::server::Serving {
        sql_limits: config.sql_limits()?,
        storage,
        ingestor,
        listen,
        limits,
        codes,
        access,
        settings,
        postgres,
    })
    .await?;
    Ok(())
}

async fn background_compaction(
    storage: Storage,
    options: promolens_ingest::compact::CompactOptions,
    every: Duration,
) {
    let mut interval = tokio::time::interval(every);
    interval.tick().await;
    loop {
        interval.tick().await;
        match promolens_ingest::compact::compact(&storage, &options).await {
            Ok(s) if s.partitions > 0 || s.finished > 0 => {
                tracing::info!(
                    partitions = s.partitions,
                    files = s.files_merged,
                    events = s.events,
                    finished = s.finished,
                    "compacted"
                )
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "compaction failed; retrying at the next interval")
            }
        }
    }
}

/// `serve --demo`: project `demo` (created the first time) and a fresh admin and ingest key,
/// printed with what to try. The previous run's demo keys are revoked: each start shows keys
/// that work, and no old demo key stays valid.
async fn demo_keys(
    registry: &Registry,
    storage: &Storage,
    listen: SocketAddr,
) -> anyhow::Result<()> {
    use promolens::demo::DEMO_PROJECT;
    if registry.project(DEMO_PROJECT).is_err() {
        registry.create_project(DEMO_PROJECT, DEFAULT_TZ).await?;
        promolens::saved_analyses::SavedAnalyses::new(storage.clone())
            .create_defaults(DEMO_PROJECT)
            .await?;
    }
    const LABEL: &str = "serve --demo";
    for key in registry.keys(DEMO_PROJECT) {
        if key.label.as_deref() == Some(LABEL) && key.revoked_at.is_none() {
            registry.revoke_key(DEMO_PROJECT, &key.id).await?;
        }
    }
    let mut tokens = Vec::new();
    for role in [Role::Admin, Role::Ingest] {
        let (_, token) = registry
            .create_key(DEMO_PROJECT, role, Some(LABEL.to_string()), None)
            .await?;
        tokens.push(token);
    }
    let (admin, ingest) = (&tokens[0], &tokens[1]);
    println!(
        "demo project `demo`; keys for this run:\n  admin key:  {admin}\n  ingest key: {ingest}\n\
         sign in to the web console with the admin key; or try:\n  \
         curl -H 'authorization: Bearer {admin}' 'http://{listen}/v1/projects/demo/acquisition?by=utm_source,utm_campaign&days=7'\n  \
         curl -H 'authorization: Bearer {admin}' -X POST http://{listen}/v1/sql -H 'content-type: application/json' -d '{{\"sql\":\"SELECT utm_source, count(*) FROM launch_events GROUP BY 1 ORDER BY 2 DESC\"}}'\n  \
         curl -H 'authorization: Bearer {admin}' -X POST http://{listen}/v1/projects/demo/codes -H 'content-type: application/json' -d '{{\"name\":\"Poster\",\"kind\":\"A\",\"page\":\"pages/index/index\",\"utm_source\":\"poster\"}}'"
    );
    Ok(())
}
