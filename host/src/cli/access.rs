//! `promolens projects …` and `promolens keys …`: the operator's door, on the data directory
//! (trusted, no API key). A server on the same data sees the changes within a few seconds.

use chrono::Utc;
use chrono_tz::Tz;
use clap::Subcommand;
use promolens::access::rate::RateLimiter;
use promolens::access::registry::{OPERATOR, parse_lifetime};
use promolens::access::{Access, AuditLog, Caller, Registry, Role};
use promolens::acquisition::parse_tz;
use promolens_ingest::{ProjectZones, Storage};

#[derive(Subcommand)]
pub enum ProjectsAction {
    /// Create a project (its keys are made with `promolens keys create`).
    Create {
        name: String,
        /// Time zone of the project's calendar days (partitions and "past N days").
        #[arg(long, default_value = "Asia/Shanghai")]
        tz: String,
    },
    List,
    Show {
        name: String,
    },
    /// Change a project's time zone: days of events partitioned from now on (stored data keeps
    /// its partitions).
    Set {
        name: String,
        #[arg(long)]
        tz: String,
    },
}

#[derive(Subcommand)]
pub enum KeysAction {
    /// Make a key and print it (only once: it is stored as a digest).
    Create {
        #[arg(long)]
        project: String,
        #[arg(long, value_enum)]
        role: Role,
        #[arg(long)]
        label: Option<String>,
        /// Lifetime: 30d, 12h, 90m (default: none).
        #[arg(long)]
        expires: Option<String>,
    },
    /// The project's keys (never the keys themselves).
    List {
        #[arg(long)]
        project: String,
    },
    /// Refuse a key from now on.
    Revoke {
        #[arg(long)]
        project: String,
        id: String,
    },
    /// A one-time invitation token, exchanged for a key of the role at
    /// `POST /v1/invitations:accept`.
    Invite {
        #[arg(long)]
        project: String,
        #[arg(long, value_enum)]
        role: Role,
        #[arg(long, default_value = "7d")]
        expires: String,
    },
}

async fn open(storage: &Storage) -> anyhow::Result<Access> {
    let registry = Registry::open(storage.clone(), ProjectZones::new(chrono_tz::UTC)).await?;
    Ok(Access {
        registry: std::sync::Arc::new(registry),
        audit: AuditLog::new(storage.clone()),
        ingest_rate: std::sync::Arc::new(RateLimiter::new(0.0, 0.0)),
    })
}

fn operator(project: &str) -> Caller {
    Caller {
        key_id: OPERATOR.to_string(),
        project: project.to_string(),
        role: Role::Admin,
    }
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub async fn projects(storage: &Storage, action: ProjectsAction) -> anyhow::Result<()> {
    let access = open(storage).await?;
    let registry = &access.registry;
    match action {
        ProjectsAction::Create { name, tz } => {
            let tz: Tz = parse_tz(&tz)?;
            let project = registry.create_project(&name, tz).await?;
            access
                .record(&operator(&name), "project.create", &project.tz)
                .await?;
            promolens::saved_analyses::SavedAnalyses::new(storage.clone())
                .create_defaults(&name)
                .await?;
            print_json(&project)
        }
        ProjectsAction::List => print_json(&registry.projects()),
        ProjectsAction::Show { name } => print_json(&registry.project(&name)?),
        ProjectsAction::Set { name, tz } => {
            let project = registry.set_project_tz(&name, parse_tz(&tz)?).await?;
            access
                .record(&operator(&name), "project.set_tz", &project.tz)
                .await?;
            print_json(&project)
        }
    }
}

pub async fn keys(storage: &Storage, action: KeysAction) -> anyhow::Result<()> {
    let access = open(storage).await?;
    let registry = &access.registry;
    match action {
        KeysAction::Create {
            project,
            role,
            label,
            expires,
        } => {
            let expires_at = match expires {
                Some(text) => Some(Utc::now() + parse_lifetime(&text).map_err(anyhow::Error::msg)?),
                None => None,
            };
            let (key, token) = registry
                .create_key(&project, role, label, expires_at)
                .await?;
            access
                .record(
                    &operator(&project),
                    "key.create",
                    &format!("{} ({role})", key.id),
                )
                .await?;
            eprintln!(
                "key {} ({role}) of project {project}: shown once, keep it now",
                key.id
            );
            println!("{token}");
            Ok(())
        }
        KeysAction::List { project } => {
            registry.project(&project)?;
            print_json(&registry.keys(&project))
        }
        KeysAction::Revoke { project, id } => {
            let key = registry.revoke_key(&project, &id).await?;
            access
                .record(&operator(&project), "key.revoke", &key.id)
                .await?;
            print_json(&key)
        }
        KeysAction::Invite {
            project,
            role,
            expires,
        } => {
            let lifetime = parse_lifetime(&expires).map_err(anyhow::Error::msg)?;
            let (invitation, token) = registry
                .invite(&project, role, Utc::now() + lifetime, OPERATOR)
                .await?;
            access
                .record(
                    &operator(&project),
                    "invitation.create",
                    &format!("{} ({role})", invitation.id),
                )
                .await?;
            eprintln!(
                "invitation {} ({role}) to project {project}, until {}: shown once",
                invitation.id, invitation.expires_at
            );
            println!("{token}");
            Ok(())
        }
    }
}
