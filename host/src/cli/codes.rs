//! `promolens codes …`: code management from the command line, on a data directory (the
//! operator's door: trusted, no API key). Each action is one sandboxed plugin call.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use promolens::access::Outcome;
use promolens::access::registry::OPERATOR;
use promolens::codes::{BatchOutcome, Code, CodesError, NewCode};
use promolens::codes::{CodesState, authorize_project};
use promolens_ingest::Storage;

#[derive(Subcommand)]
pub enum CodesAction {
    /// Register the mini-program's AppID and AppSecret (checked with WeChat, stored encrypted).
    Authorize {
        #[arg(long)]
        app_id: String,
        /// The AppSecret; `PROMOLENS_WECHAT_SECRET` keeps it out of the shell history.
        #[arg(long, env = "PROMOLENS_WECHAT_SECRET", hide_env_values = true)]
        secret: String,
    },
    /// Create a code.
    Create(CodeFlags),
    /// Validate and encode a code without creating it: bytes used and left, the quota.
    Preview(CodeFlags),
    /// The project's codes, newest first.
    List {
        /// Deleted codes too.
        #[arg(long)]
        all: bool,
    },
    /// One code, as JSON.
    Show {
        id: String,
    },
    Rename {
        id: String,
        name: String,
    },
    /// Delete a code softly (no more downloads; its scans still count).
    Delete {
        id: String,
    },
    /// Write a code's image to a file.
    Download {
        id: String,
        /// Output file (default `<id>.png`).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Create one code per CSV row (`name,kind,page,utm_source,…,params,width`).
    Batch {
        csv: PathBuf,
    },
}

#[derive(clap::Args)]
pub struct CodeFlags {
    #[arg(long)]
    name: String,
    /// A, B or C.
    #[arg(long)]
    kind: String,
    /// Page path, e.g. pages/index/index.
    #[arg(long)]
    page: String,
    #[arg(long)]
    utm_source: Option<String>,
    #[arg(long)]
    utm_medium: Option<String>,
    #[arg(long)]
    utm_campaign: Option<String>,
    #[arg(long)]
    utm_content: Option<String>,
    #[arg(long)]
    utm_term: Option<String>,
    /// Other query parameters, `key=value`, repeatable.
    #[arg(long = "param")]
    params: Vec<String>,
    /// Image width in pixels (280–1280).
    #[arg(long)]
    width: Option<u32>,
    /// release, trial or develop.
    #[arg(long)]
    env_version: Option<String>,
    /// B codes: allow pages that are not published yet.
    #[arg(long)]
    no_check_path: bool,
}

impl CodeFlags {
    fn into_new_code(self) -> NewCode {
        NewCode {
            name: self.name,
            kind: self.kind,
            page: self.page,
            utm_source: self.utm_source,
            utm_medium: self.utm_medium,
            utm_campaign: self.utm_campaign,
            utm_content: self.utm_content,
            utm_term: self.utm_term,
            params: self
                .params
                .iter()
                .map(|p| match p.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (p.clone(), String::new()),
                })
                .collect(),
            width: self.width,
            env_version: self.env_version,
            check_path: self.no_check_path.then_some(false),
            ..NewCode::default()
        }
    }
}

fn failed(e: CodesError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

fn json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn payload(code: &Code) -> String {
    match (&code.encoding.path, &code.encoding.scene) {
        (Some(path), _) => path.clone(),
        (None, Some(scene)) => format!("{} scene={scene}", code.page),
        _ => String::new(),
    }
}

pub async fn run(state: CodesState, project: &str, action: CodesAction) -> anyhow::Result<()> {
    let codes = &state.codes;
    // The operator's changes are in the audit log too, as `operator`.
    let record = |action: &'static str, target: String| {
        let audit = state.audit.clone();
        let project = project.to_string();
        async move {
            audit
                .record(&project, OPERATOR, action, &target, Outcome::Ok)
                .await
        }
    };
    match action {
        CodesAction::Authorize { app_id, secret } => {
            let authorization = authorize_project(&state, project, app_id, secret)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            record("authorization.set", authorization.app_id.clone()).await?;
            println!(
                "project {project} is authorized for mini-program {}",
                authorization.app_id
            );
        }
        CodesAction::Create(flags) => {
            let request = flags
                .into_new_code()
                .into_request()
                .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            let code = codes.create(project, request).await.map_err(failed)?;
            record("code.create", code.id.clone()).await?;
            println!(
                "created {} ({}): {}",
                code.id,
                code.encoding.note,
                payload(&code)
            );
        }
        CodesAction::Preview(flags) => {
            let request = flags
                .into_new_code()
                .into_request()
                .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            json(&codes.preview(project, request).await.map_err(failed)?)?;
        }
        CodesAction::List { all } => {
            let list = codes.list(project, all).await.map_err(failed)?;
            println!(
                "{:<8}  {:<4}  {:<10}  {:<30}  payload",
                "id", "kind", "state", "name"
            );
            for code in list {
                let state = if code.deleted_at_ms.is_some() {
                    "deleted"
                } else {
                    "active"
                };
                println!(
                    "{:<8}  {:<4}  {:<10}  {:<30}  {}",
                    code.id,
                    format!("{:?}", code.kind),
                    state,
                    code.name,
                    payload(&code)
                );
            }
            let quota = codes.quota(project).await.map_err(failed)?;
            println!("{}", promolens::codes::quota_line(&quota));
        }
        CodesAction::Show { id } => json(&codes.get(project, &id).await.map_err(failed)?)?,
        CodesAction::Rename { id, name } => {
            let code = codes.rename(project, &id, &name).await.map_err(failed)?;
            record("code.rename", code.id.clone()).await?;
            println!("{} is now named {}", code.id, code.name);
        }
        CodesAction::Delete { id } => {
            codes.delete(project, &id).await.map_err(failed)?;
            record("code.delete", id.clone()).await?;
            println!("deleted {id}: no more downloads; its scans still count");
        }
        CodesAction::Download { id, out } => {
            let image = codes.image(project, &id).await.map_err(failed)?;
            let out = out.unwrap_or_else(|| PathBuf::from(format!("{id}.png")));
            std::fs::write(&out, &image.bytes)
                .with_context(|| format!("writing {}", out.display()))?;
            println!(
                "wrote {} ({} bytes, {})",
                out.display(),
                image.bytes.len(),
                image.content_type
            );
        }
        CodesAction::Batch { csv } => {
            let text = std::fs::read_to_string(&csv)
                .with_context(|| format!("reading {}", csv.display()))?;
            let rows = codes.batch_create(project, text).await.map_err(failed)?;
            let made = rows.iter().filter(|r| r.outcome.is_created()).count();
            record(
                "codes.batch",
                format!("{made} of {} rows created", rows.len()),
            )
            .await?;
            let mut created = 0;
            for row in &rows {
                match &row.outcome {
                    BatchOutcome::Created(code) => {
                        created += 1;
                        println!("line {:>4}  {}  {}", row.line, code.id, row.name);
                    }
                    BatchOutcome::Failed(e) => println!(
                        "line {:>4}  error  {}: {}",
                        row.line,
                        row.name,
                        promolens::codes::describe(e)
                    ),
                }
            }
            println!("{created} created, {} failed", rows.len() - created);
        }
    }
    Ok(())
}

/// Code management settings (WeChat, credentials, the plugin).
#[derive(clap::Args)]
pub struct CodesArgs {
    /// WeChat API base URL. With --demo and no URL, a local WeChat stand-in is started and
    /// project `demo` is authorized against it.
    #[arg(long, env = "PROMOLENS_WECHAT_URL")]
    pub wechat_url: Option<String>,
    /// 64 hexadecimal digits: the key that encrypts stored WeChat credentials.
    #[arg(long, env = "PROMOLENS_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,
    /// Folder of compiled plugin components (default ~/.cache/promolens/components).
    #[arg(long, env = "PROMOLENS_COMPONENT_CACHE")]
    pub component_cache: Option<PathBuf>,
}

impl CodesArgs {
    pub async fn open(
        self,
        storage: &Storage,
        demo: bool,
    ) -> anyhow::Result<promolens::codes::CodesState> {
        use promolens::codes::{self, credentials, standin};
        let configured_key = match &self.secret_key {
            Some(hex) => Some(credentials::parse_key(hex)?),
            None => None,
        };
        let mut secret_key = configured_key;
        let mut standin_url = None;
        let wechat_url = match self.wechat_url {
            Some(url) => url,
            None if demo => {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                let url = format!("http://{}", listener.local_addr()?);
                tokio::spawn(standin::serve(listener, standin::StandinConfig::default()));
                tracing::info!(%url, "demo: WeChat stand-in started");
                standin_url = Some(url.clone());
                url
            }
            None => codes::wechat::DEFAULT_BASE_URL.to_string(),
        };
        if secret_key.is_none() && demo {
            // A key for this run only: demo credentials are registered again at each start.
            let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
            let mut key = [0u8; 32];
            key[..16].copy_from_slice(a.as_bytes());
            key[16..].copy_from_slice(b.as_bytes());
            secret_key = Some(key);
        }
        let cache_dir = self.component_cache.or_else(|| {
            std::env::var_os("HOME")
                .map(|home| PathBuf::from(home).join(".cache/promolens/components"))
        });
        let config = codes::CodesConfig {
            wechat_url,
            secret_key,
            cache_dir,
            cache_key: configured_key,
            limits: Default::default(),
        };
        let state = codes::open(storage, &config)?;
        if standin_url.is_some() {
            let (app_id, secret) = standin::StandinConfig::default().apps[0].clone();
            codes::authorize_project(&state, "demo", app_id, secret)
                .await
                .map_err(|e| anyhow::anyhow!("authorizing the demo project: {e}"))?;
        }
        Ok(state)
    }
}
