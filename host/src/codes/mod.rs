//! Promotion codes: the code-management plugin (a WebAssembly component, `plugin/`) run under
//! wasmtime ([`runtime`]), the powers it is granted ([`imports`]) and its records ([`records`]).
//! [`Codes`] is the API the CLI and the HTTP server use: one sandboxed call per operation.

pub mod credentials;

pub mod imports;
pub mod records;
pub mod runtime;
pub mod standin;
pub mod wechat;

use crate::internal_events::InternalEvent;
use std::sync::Arc;

use wasmtime::Store;

use imports::{CallState, WechatGateway};
use records::RecordStore;
use runtime::{PluginRuntime, SandboxError};

/// The WIT world `plugin` (`schemas/wit/codes.wit`) from the host's side (generated).
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../schemas/wit",
        world: "plugin",
        additional_derives: [serde::Serialize, serde::Deserialize, utoipa::ToSchema],
    });
}

pub use bindings::Plugin;
pub use bindings::promolens::codes::host::{CodeImage, WechatEndpoint};
pub use bindings::promolens::codes::types::{
    Authorization, BatchOutcome, BatchRow, Code, CodeKind, CodePreview, CodeRequest,
    Error as PluginError, QuotaState,
};

/// The plugin component, built from `plugin/` and embedded at build time (see `build.rs`).
pub const PLUGIN_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/promolens_plugin.wasm"));

/// Code management as the HTTP routes and the CLI use it: the plugin, the credentials, WeChat,
/// the tables (for each code's numbers) and the audit log.
#[derive(Clone)]
pub struct CodesState {
    pub codes: Codes,
    pub credentials: Arc<credentials::CredentialStore>,
    pub wechat: Arc<wechat::WechatClient>,
    /// For each code's figures in the list (the saved analysis
    /// [`crate::saved_analyses::CODES_LIST`]).
    pub analytics: Option<crate::analysis::Analytics>,
    /// Every change (authorization, codes created, renamed, deleted, batches) is recorded.
    pub audit: crate::access::AuditLog,
}

/// Checks the credentials with WeChat, stores them encrypted, records the authorization.
pub async fn authorize_project(
    s: &CodesState,
    project: &str,
    app_id: String,
    secret: String,
) -> Result<Authorization, CodesError> {
    let credentials = credentials::Credentials { app_id, secret };
    s.wechat
        .verify(&credentials)
        .await
        .map_err(CodesError::Plugin)?;
    s.credentials.put(project, &credentials).await?;
    s.codes
        .register_authorization(project, &credentials.app_id)
        .await
}

/// How `serve` and the CLI set up code management.
#[derive(Debug, Clone)]
pub struct CodesConfig {
    /// WeChat's API (or the stand-in's) base URL.
    pub wechat_url: String,
    /// Key encrypting stored credentials; `None`: credentials cannot be stored.
    pub secret_key: Option<[u8; 32]>,
    /// Where compiled components are cached; `None`: compile at every start.
    pub cache_dir: Option<std::path::PathBuf>,
    /// The key of the cache's HMAC tags: the configured `PROMOLENS_SECRET_KEY` (not a demo's
    /// key of one run); `None`: the cache folder's own key.
    pub cache_key: Option<[u8; 32]>,
    pub limits: runtime::Limits,
}

/// Loads the embedded plugin and wires it to the data directory's records and credentials.
pub fn open(
    storage: &promolens_ingest::Storage,
    config: &CodesConfig,
) -> Result<CodesState, CodesError> {
    let cache = match &config.cache_dir {
        Some(dir) => match runtime::ComponentCache::open(dir.clone(), config.cache_key) {
            Ok(cache) => Some(cache),
            Err(e) => {
                tracing::warn!(error = %e, dir = %dir.display(), "no plugin cache; compiling");
                None
            }
        },
        None => None,
    };
    let runtime = PluginRuntime::new(PLUGIN_WASM, cache.as_ref(), config.limits)?;
    let credentials = Arc::new(credentials::CredentialStore::new(
        storage.clone(),
        config.secret_key,
    ));
    let wechat = Arc::new(
        wechat::WechatClient::new(&config.wechat_url, credentials.clone())
            .map_err(CodesError::Plugin)?,
    );
    let codes = Codes::new(
        Arc::new(runtime),
        Arc::new(RecordStore::new(storage.clone())),
        wechat.clone(),
    );
    Ok(CodesState {
        codes,
        credentials,
        wechat,
        analytics: None,
        audit: crate::access::AuditLog::new(storage.clone()),
    })
}

/// A code request as people write it (HTTP JSON, CLI flags): flat UTM fields and defaults for
/// everything optional; [`NewCode::into_request`] makes the plugin's `code-request` of it.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCode {
    pub name: String,
    /// `A` (a mini-program code; page and query in at most 128 bytes), `B` (a mini-program
    /// code; page and a 32-character `scene`; unlimited) or `C` (a QR code; as A).
    #[schema(value_type = CodeKind)]
    pub kind: String,
    pub page: String,
    pub utm_source: Option<String>,
    pub utm_medium: Option<String>,
    pub utm_campaign: Option<String>,
    pub utm_content: Option<String>,
    pub utm_term: Option<String>,
    /// Other query parameters, in order.
    #[serde(default)]
    pub params: Vec<(String, String)>,
    pub width: Option<u32>,
    #[serde(default)]
    pub auto_color: bool,
    /// `[r, g, b]`.
    pub line_color: Option<[u8; 3]>,
    #[serde(default)]
    pub is_hyaline: bool,
    /// `release`, `trial` or `develop`.
    pub env_version: Option<String>,
    pub check_path: Option<bool>,
}

impl BatchOutcome {
    pub fn is_created(&self) -> bool {
        matches!(self, BatchOutcome::Created(_))
    }
}

impl NewCode {
    pub fn into_request(self) -> Result<CodeRequest, crate::api::ApiError> {
        use bindings::promolens::codes::types::{EnvVersion, ImageOptions, Rgb, Utm};
        let invalid = |field: &str, message: String| crate::api::ApiError {
            field: Some(field.to_string()),
            ..crate::api::ApiError::bad_request(message)
        };
        let kind = match self.kind.to_ascii_uppercase().as_str() {
            "A" => CodeKind::A,
            "B" => CodeKind::B,
            "C" => CodeKind::C,
            other => {
                return Err(invalid(
                    "kind",
                    format!("`{other}` is not a code kind: A, B or C"),
                ));
            }
        };
        let env_version = match self.env_version.as_deref() {
            None => None,
            Some("release") => Some(EnvVersion::Release),
            Some("trial") => Some(EnvVersion::Trial),
            Some("develop") => Some(EnvVersion::Develop),
            Some(other) => {
                return Err(invalid(
                    "env_version",
                    format!("`{other}`: use release, trial or develop"),
                ));
            }
        };
        Ok(CodeRequest {
            name: self.name,
            kind,
            page: self.page,
            utm: Utm {
                source: self.utm_source,
                medium: self.utm_medium,
                campaign: self.utm_campaign,
                content: self.utm_content,
                term: self.utm_term,
            },
            params: self.params,
            image: ImageOptions {
                width: self.width,
                auto_color: self.auto_color,
                line_color: self.line_color.map(|[r, g, b]| Rgb { r, g, b }),
                is_hyaline: self.is_hyaline,
                env_version,
                check_path: self.check_path,
            },
        })
    }
}

/// A code operation that did not succeed: the plugin's own answer, or the sandbox stopping it.
#[derive(Debug, thiserror::Error)]
pub enum CodesError {
    #[error("{}", describe(.0))]
    Plugin(PluginError),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// Storing or reading the project's WeChat credentials.
    #[error(transparent)]
    Credentials(#[from] credentials::CredentialError),
}

/// The plugin's error as one sentence for a person.
pub fn describe(e: &PluginError) -> String {
    match e {
        PluginError::NotAuthorized(m)
        | PluginError::NotFound(m)
        | PluginError::Deleted(m)
        | PluginError::Conflict(m)
        | PluginError::Host(m) => m.clone(),
        PluginError::InvalidField(f) => format!("{}: {}", f.field, f.reason),
        PluginError::TooLong(t) => format!(
            "{} is {} {}, {} over the limit of {}",
            t.field, t.actual, t.unit, t.over, t.limit
        ),
        PluginError::QuotaExhausted(q) => format!(
            "the A and C quota is used up ({} of {}, by promolens' count or by WeChat's own \
             (errcode 45029), which also counts codes made elsewhere): make B codes, which are unlimited",
            q.used, q.limit
        ),
        PluginError::Wechat(w) => format!(
            "WeChat answered errcode {} ({}): {}",
            w.errcode, w.errmsg, w.meaning
        ),
    }
}

/// The A+C quota in one line for people: used, left, and whether it warns or is exhausted.
pub fn quota_line(q: &QuotaState) -> String {
    let state = if q.exhausted {
        ": exhausted, no more A or C codes can be made (B codes are unlimited)"
    } else if q.warning {
        ": over 90% used"
    } else {
        ""
    };
    format!(
        "A and C codes: {} of {} used, {} left{state}",
        q.used,
        q.limit,
        q.limit.saturating_sub(q.used)
    )
}

/// Code management for every project of a data directory.
#[derive(Clone)]
pub struct Codes {
    runtime: Arc<PluginRuntime>,
    records: Arc<RecordStore>,
    wechat: Arc<dyn WechatGateway>,
}

type CallResult<R> = wasmtime::Result<Result<R, PluginError>>;

impl Codes {
    pub fn new(
        runtime: Arc<PluginRuntime>,
        records: Arc<RecordStore>,
        wechat: Arc<dyn WechatGateway>,
    ) -> Codes {
        Codes {
            runtime,
            records,
            wechat,
        }
    }

    /// Runs one plugin call for `project` on a blocking thread.
    async fn run<R: Send + 'static>(
        &self,
        project: &str,
        f: impl FnOnce(&Plugin, &mut Store<CallState>) -> CallResult<R> + Send + 'static,
    ) -> Result<R, CodesError> {
        let (runtime, records, wechat) = (
            self.runtime.clone(),
            self.records.clone(),
            self.wechat.clone(),
        );
        let started = std::time::Instant::now();
        let for_project = project.to_string();
        let handle = tokio::runtime::Handle::current();
        let outcome = tokio::task::spawn_blocking(move || {
            runtime.call(&for_project, records, wechat, handle, f)
        })
        .await
        .map_err(|e| SandboxError::Trapped(format!("the call's thread failed: {e}")))
        .and_then(|outcome| outcome);
        let event_outcome = match &outcome {
            Ok(Ok(_)) => "ok",
            Ok(Err(_)) => "error",
            Err(_) => "stopped",
        };
        crate::internal_events::PluginCall {
            outcome: event_outcome,
            project,
            elapsed: started.elapsed(),
        }
        .emit();
        outcome?.map_err(CodesError::Plugin)
    }

    pub async fn authorization_status(
        &self,
        project: &str,
    ) -> Result<Option<Authorization>, CodesError> {
        self.run(project, |p, s| {
            p.promolens_codes_codes().call_authorization_status(s)
        })
        .await
    }

    pub async fn register_authorization(
        &self,
        project: &str,
        app_id: &str,
    ) -> Result<Authorization, CodesError> {
        let app_id = app_id.to_string();
        self.run(project, move |p, s| {
            p.promolens_codes_codes()
                .call_register_authorization(s, &app_id)
        })
        .await
    }

    pub async fn revoke_authorization(&self, project: &str) -> Result<(), CodesError> {
        self.run(project, |p, s| {
            p.promolens_codes_codes().call_revoke_authorization(s)
        })
        .await
    }

    pub async fn preview(
        &self,
        project: &str,
        request: CodeRequest,
    ) -> Result<CodePreview, CodesError> {
        self.run(project, move |p, s| {
            p.promolens_codes_codes().call_preview(s, &request)
        })
        .await
    }

    pub async fn create(&self, project: &str, request: CodeRequest) -> Result<Code, CodesError> {
        self.run(project, move |p, s| {
            p.promolens_codes_codes().call_create(s, &request)
        })
        .await
    }

    pub async fn batch_create(
        &self,
        project: &str,
        csv: String,
    ) -> Result<Vec<BatchRow>, CodesError> {
        self.run(project, move |p, s| {
            p.promolens_codes_codes().call_batch_create(s, &csv)
        })
        .await
    }

    pub async fn list(
        &self,
        project: &str,
        include_deleted: bool,
    ) -> Result<Vec<Code>, CodesError> {
        self.run(project, move |p, s| {
            p.promolens_codes_codes().call_list(s, include_deleted)
        })
        .await
    }

    pub async fn get(&self, project: &str, id: &str) -> Result<Code, CodesError> {
        let id = id.to_string();
        self.run(project, move |p, s| {
            p.promolens_codes_codes().call_get(s, &id)
        })
        .await
    }

    pub async fn rename(&self, project: &str, id: &str, name: &str) -> Result<Code, CodesError> {
        let (id, name) = (id.to_string(), name.to_string());
        self.run(project, move |p, s| {
            p.promolens_codes_codes().call_rename(s, &id, &name)
        })
        .await
    }

    pub async fn delete(&self, project: &str, id: &str) -> Result<Code, CodesError> {
        let id = id.to_string();
        self.run(project, move |p, s| {
            p.promolens_codes_codes().call_delete(s, &id)
        })
        .await
    }

    pub async fn image(&self, project: &str, id: &str) -> Result<CodeImage, CodesError> {
        let id = id.to_string();
        self.run(project, move |p, s| {
            p.promolens_codes_codes().call_image(s, &id)
        })
        .await
    }

    pub async fn quota(&self, project: &str) -> Result<QuotaState, CodesError> {
        self.run(project, |p, s| p.promolens_codes_codes().call_quota(s))
            .await
    }
}
