//! `promolens serve`'s settings as one typed set: read from a TOML file (`--config FILE` or
//! `PROMOLENS_CONFIG`), then overridden by `PROMOLENS_*` variables and flags (clap reads those two,
//! flags first). `promolens config show` prints the result with the secret masked.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What `serve` can be told; every field optional here, so that a file, the environment and
/// flags can each give some. The same names in all three: `flush_seconds = 5` in the file,
/// `PROMOLENS_FLUSH_SECONDS=5`, `--flush-seconds 5`.
#[derive(Debug, Clone, Default, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Data directory: a local path, or a file://, memory:// or s3://bucket/prefix URL (s3 uses
    /// the AWS_* variables; AWS_ENDPOINT_URL for an S3-compatible server). [default:
    /// ./promolens-data]
    #[arg(long, env = "PROMOLENS_DATA")]
    pub data: Option<String>,
    /// Address to listen on. [default: 127.0.0.1:8080]
    #[arg(long, env = "PROMOLENS_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Largest accepted request body, in bytes, also after gzip decompression. [default: 10 MiB]
    #[arg(long, env = "PROMOLENS_BODY_LIMIT")]
    pub body_limit: Option<usize>,
    /// Write-ahead log folder. [default: <data>/_wal for a local data directory,
    /// ./promolens-wal otherwise]
    #[arg(long, env = "PROMOLENS_WAL")]
    pub wal: Option<PathBuf>,
    /// Seconds events may wait in memory (durable in the log) before they are written to
    /// Parquet and visible to queries. [default: 10]
    #[arg(long, env = "PROMOLENS_FLUSH_SECONDS")]
    pub flush_seconds: Option<f64>,
    /// Events buffered before a flush to Parquet. [default: 200000]
    #[arg(long, env = "PROMOLENS_FLUSH_ROWS")]
    pub flush_rows: Option<usize>,
    /// Seconds between background compactions, 0 for none. [default: 600]
    #[arg(long, env = "PROMOLENS_COMPACT_SECONDS")]
    pub compact_seconds: Option<u64>,
    /// A partition is compacted once it has this many files. [default: 8]
    #[arg(long, env = "PROMOLENS_COMPACT_MIN_FILES")]
    pub compact_min_files: Option<usize>,
    /// Live ingest refuses events whose `ts` is more than this many days before the request is
    /// received (load older ones with `backfill`). [default: 400]
    #[arg(long, env = "PROMOLENS_MAX_EVENT_AGE_DAYS")]
    pub max_event_age_days: Option<u32>,
    /// …or more than this many days after it. [default: 1]
    #[arg(long, env = "PROMOLENS_MAX_EVENT_LEAD_DAYS")]
    pub max_event_lead_days: Option<u32>,
    /// Ingest requests per second one key may keep up (bursts of twice that); over it, 429
    /// with Retry-After; 0 for no limit. [default: 1000]
    #[arg(long, env = "PROMOLENS_INGEST_RATE_PER_KEY")]
    pub ingest_rate_per_key: Option<f64>,
    /// Requests handled at once; more wait their turn (within the 120 s request limit).
    /// [default: 512]
    #[arg(long, env = "PROMOLENS_MAX_CONCURRENT_REQUESTS")]
    pub max_concurrent_requests: Option<usize>,
    /// WeChat API base URL. With --demo and none, a local WeChat stand-in is started and project
    /// `demo` is authorized against it. [default: https://api.weixin.qq.com]
    #[arg(long, env = "PROMOLENS_WECHAT_URL")]
    pub wechat_url: Option<String>,
    /// 64 hexadecimal digits: the key that encrypts stored WeChat credentials and signs the
    /// compiled-plugin cache. Better in the environment than in a file.
    #[arg(long, env = "PROMOLENS_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,
    /// Folder of compiled plugin components. [default: ~/.cache/promolens/components]
    #[arg(long, env = "PROMOLENS_COMPONENT_CACHE")]
    pub component_cache: Option<PathBuf>,
    /// Also speak the PostgreSQL wire protocol (read-only SQL for BI tools) on this address: user
    /// name the project, password an analyst's or admin's key. [default: off]
    #[arg(long, env = "PROMOLENS_PG_LISTEN")]
    pub pg_listen: Option<SocketAddr>,
    /// PEM certificate (chain) of the PostgreSQL door; with --pg-tls-key, only TLS connections
    /// are accepted, and a certificate that cannot be loaded stops the start.
    #[arg(long, env = "PROMOLENS_PG_TLS_CERT", requires = "pg_tls_key")]
    pub pg_tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS #8) of the PostgreSQL door's certificate.
    #[arg(long, env = "PROMOLENS_PG_TLS_KEY", requires = "pg_tls_cert")]
    pub pg_tls_key: Option<PathBuf>,
    /// Seconds one SQL statement (HTTP or PostgreSQL) may run, its result's delivery included.
    /// [default: 120]
    #[arg(long, env = "PROMOLENS_SQL_TIMEOUT_SECONDS")]
    pub sql_timeout_seconds: Option<u64>,
    /// Memory the SQL doors' queries may hold together, in MiB; sorts and joins spill to disk
    /// beyond their share. [default: 1024]
    #[arg(long, env = "PROMOLENS_SQL_MEMORY_MB")]
    pub sql_memory_mb: Option<usize>,
    /// Most rows one `POST /v1/sql` answer holds (it is sent as one JSON document).
    /// [default: 100000]
    #[arg(long, env = "PROMOLENS_HTTP_SQL_MAX_ROWS")]
    pub http_sql_max_rows: Option<usize>,
    /// Most rows one PostgreSQL statement returns (streamed). [default: 10000000]
    #[arg(long, env = "PROMOLENS_PG_MAX_ROWS")]
    pub pg_max_rows: Option<usize>,
}

/// The settings in effect, every default filled in.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub data: String,
    pub listen: SocketAddr,
    pub body_limit: usize,
    pub wal: Option<PathBuf>,
    pub flush_seconds: f64,
    pub flush_rows: usize,
    pub compact_seconds: u64,
    pub compact_min_files: usize,
    pub max_event_age_days: u32,
    pub max_event_lead_days: u32,
    pub ingest_rate_per_key: f64,
    pub max_concurrent_requests: usize,
    pub wechat_url: Option<String>,
    pub secret_key: Option<String>,
    pub component_cache: Option<PathBuf>,
    pub pg_listen: Option<SocketAddr>,
    pub pg_tls_cert: Option<PathBuf>,
    pub pg_tls_key: Option<PathBuf>,
    pub sql_timeout_seconds: u64,
    pub sql_memory_mb: usize,
    pub http_sql_max_rows: usize,
    pub pg_max_rows: usize,
}

impl Settings {
    /// A TOML file of settings; an unknown name or a wrong type is an error naming it.
    pub fn load(path: &Path) -> Result<Settings> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("reading the configuration {}", path.display()), e))?;
        toml::from_str(&text).map_err(|e| {
            Error::invalid(
                "config",
                format!("configuration {}: {}", path.display(), e.to_string().trim()),
            )
        })
    }

    /// These settings, with `base`'s where these give none.
    pub fn over(self, base: Settings) -> Settings {
        Settings {
            data: self.data.or(base.data),
            listen: self.listen.or(base.listen),
            body_limit: self.body_limit.or(base.body_limit),
            wal: self.wal.or(base.wal),
            flush_seconds: self.flush_seconds.or(base.flush_seconds),
            flush_rows: self.flush_rows.or(base.flush_rows),
            compact_seconds: self.compact_seconds.or(base.compact_seconds),
            compact_min_files: self.compact_min_files.or(base.compact_min_files),
            max_event_age_days: self.max_event_age_days.or(base.max_event_age_days),
            max_event_lead_days: self.max_event_lead_days.or(base.max_event_lead_days),
            ingest_rate_per_key: self.ingest_rate_per_key.or(base.ingest_rate_per_key),
            max_concurrent_requests: self
                .max_concurrent_requests
                .or(base.max_concurrent_requests),
            wechat_url: self.wechat_url.or(base.wechat_url),
            secret_key: self.secret_key.or(base.secret_key),
            component_cache: self.component_cache.or(base.component_cache),
            pg_listen: self.pg_listen.or(base.pg_listen),
            pg_tls_cert: self.pg_tls_cert.or(base.pg_tls_cert),
            pg_tls_key: self.pg_tls_key.or(base.pg_tls_key),
            sql_timeout_seconds: self.sql_timeout_seconds.or(base.sql_timeout_seconds),
            sql_memory_mb: self.sql_memory_mb.or(base.sql_memory_mb),
            http_sql_max_rows: self.http_sql_max_rows.or(base.http_sql_max_rows),
            pg_max_rows: self.pg_max_rows.or(base.pg_max_rows),
        }
    }

    /// Flags and variables (`self`) over the file at `file`, if any, over the defaults.
    pub fn resolve(self, file: Option<&Path>) -> Result<Config> {
        let settings = match file {
            Some(path) => self.over(Settings::load(path)?),
            None => self,
        };
        let config = Config {
            data: settings.data.unwrap_or_else(|| "./promolens-data".into()),
            listen: settings
                .listen
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            body_limit: settings
                .body_limit
                .unwrap_or(promolens_ingest::receive::DEFAULT_BODY_LIMIT),
            wal: settings.wal,
            flush_seconds: settings.flush_seconds.unwrap_or(10.0),
            flush_rows: settings.flush_rows.unwrap_or(200_000),
            compact_seconds: settings.compact_seconds.unwrap_or(600),
            compact_min_files: settings.compact_min_files.unwrap_or(8),
            max_event_age_days: settings.max_event_age_days.unwrap_or(400),
            max_event_lead_days: settings.max_event_lead_days.unwrap_or(1),
            ingest_rate_per_key: settings.ingest_rate_per_key.unwrap_or(1000.0),
            max_concurrent_requests: settings.max_concurrent_requests.unwrap_or(512),
            wechat_url: settings.wechat_url,
            secret_key: settings.secret_key,
            component_cache: settings.component_cache,
            pg_listen: settings.pg_listen,
            pg_tls_cert: settings.pg_tls_cert,
            pg_tls_key: settings.pg_tls_key,
            sql_timeout_seconds: settings.sql_timeout_seconds.unwrap_or(120),
            sql_memory_mb: settings.sql_memory_mb.unwrap_or(1024),
            http_sql_max_rows: settings.http_sql_max_rows.unwrap_or(100_000),
            pg_max_rows: settings.pg_max_rows.unwrap_or(10_000_000),
        };
        config.check()?;
        Ok(config)
    }
}

impl Config {
    fn check(&self) -> Result<()> {
        if !(self.flush_seconds.is_finite() && self.flush_seconds > 0.0) {
            return Err(Error::invalid(
                "flush_seconds",
                format!("flush_seconds must be above 0, not {}", self.flush_seconds),
            ));
        }
        if !(self.ingest_rate_per_key.is_finite() && self.ingest_rate_per_key >= 0.0) {
            return Err(Error::invalid(
                "ingest_rate_per_key",
                format!(
                    "ingest_rate_per_key must be 0 (no limit) or more, not {}",
                    self.ingest_rate_per_key
                ),
            ));
        }
        for (field, value) in [
            ("flush_rows", self.flush_rows),
            ("max_concurrent_requests", self.max_concurrent_requests),
            ("body_limit", self.body_limit),
            ("sql_timeout_seconds", self.sql_timeout_seconds as usize),
            ("sql_memory_mb", self.sql_memory_mb),
            ("http_sql_max_rows", self.http_sql_max_rows),
            ("pg_max_rows", self.pg_max_rows),
        ] {
            if value == 0 {
                return Err(Error::invalid(field, format!("{field} must be at least 1")));
            }
        }
        if self.pg_tls_cert.is_some() != self.pg_tls_key.is_some() {
            return Err(Error::invalid(
                "pg_tls_cert",
                "pg_tls_cert and pg_tls_key go together: give both, or neither",
            ));
        }
        Ok(())
    }

    /// The SQL doors' limits.
    pub fn sql_limits(&self) -> Result<crate::sql::SqlLimits> {
        crate::sql::SqlLimits::new(
            std::time::Duration::from_secs(self.sql_timeout_seconds),
            self.sql_memory_mb * 1024 * 1024,
            self.http_sql_max_rows,
            self.pg_max_rows,
        )
    }

    /// The configuration as a TOML file would give it, the secret masked.
    pub fn show(&self) -> String {
        let mut shown = self.clone();
        if shown.secret_key.is_some() {
            shown.secret_key = Some("(set, not shown)".into());
        }
        toml::to_string(&shown).unwrap_or_else(|e| format!("# cannot show: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_over_the_file_over_the_defaults_and_the_secret_masked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("promolens.toml");
        std::fs::write(
            &file,
            "flush_seconds = 2.5\nlisten = \"0.0.0.0:9000\"\nsecret_key = \"00ff\"\n",
        )
        .unwrap();
        let flags = Settings {
            listen: Some("127.0.0.1:7000".parse().unwrap()),
            ..Settings::default()
        };
        let config = flags.resolve(Some(&file)).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:7000", "a flag wins");
        assert_eq!(config.flush_seconds, 2.5, "the file's");
        assert_eq!(config.flush_rows, 200_000, "the default");
        let shown = config.show();
        assert!(shown.contains("flush_seconds = 2.5"), "{shown}");
        assert!(
            !shown.contains("00ff") && shown.contains("(set, not shown)"),
            "{shown}"
        );

        std::fs::write(&file, "flush_second = 2\n").unwrap();
        let error = Settings::default().resolve(Some(&file)).unwrap_err();
        assert!(
            error.to_string().contains("unknown field `flush_second`"),
            "{error}"
        );
        std::fs::write(&file, "flush_seconds = \"soon\"\n").unwrap();
        assert!(Settings::default().resolve(Some(&file)).is_err());
        std::fs::write(&file, "flush_rows = 0\n").unwrap();
        let error = Settings::default().resolve(Some(&file)).unwrap_err();
        assert!(
            error.to_string().contains("flush_rows must be at least 1"),
            "{error}"
        );
    }
}
