//! Promotion codes: the code-management plugin (a WebAssembly component, `plugin/`) run under
//! wasmtime ([`runtime`]), the powers it is granted ([`imports`]) and its records ([`records`]).
//! [`Codes`] is the API the CLI and the HTTP server use: one sandboxed call per operation.

pub mod credentials;
pub mod imports;
pub mod records;
pub mod runtime;
pub mod standin;
pub mod wechat;

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
        additional_derives: [serde::Serialize, serde::Deserialize],
    });
}

pub use bindings::Plugin;
pub use bindings::promolens::codes::host::{CodeImage, WechatEndpoint};
pub use bindings::promolens::codes::types::{
    Authorization, BatchRow, Code, CodeKind, CodePreview, CodeRequest, Error as PluginError,
    QuotaState,
};

/// A code operation that did not succeed: the plugin's own answer, or the sandbox stopping it.
#[derive(Debug, thiserror::Error)]
pub enum CodesError {
    #[error("{}", describe(.0))]
    Plugin(PluginError),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
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
            "the A and C quota is used up ({} of {}): make B codes, which are unlimited",
            q.used, q.limit
        ),
        PluginError::Wechat(w) => format!(
            "WeChat answered errcode {} ({}): {}",
            w.errcode, w.errmsg, w.meaning
        ),
    }
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
        let project = project.to_string();
        let handle = tokio::runtime::Handle::current();
        let outcome =
            tokio::task::spawn_blocking(move || runtime.call(&project, records, wechat, handle, f))
                .await
                .map_err(|e| SandboxError::Trapped(format!("the call's thread failed: {e}")))?;
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
