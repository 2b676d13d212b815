//! The roles a key carries and what each may do: the one table every route is checked against.

use serde::{Deserialize, Serialize};

/// The role of an API key in its project.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Authorizes the mini-program, manages keys and invitations, reads the audit log; and
    /// everything the other roles do.
    Admin,
    /// Creates, renames, deletes and downloads codes; runs analyses.
    Marketer,
    /// Reads codes, runs analyses and SQL.
    Analyst,
    /// Sends events to its project and nothing else: this key ships inside the mini-program,
    /// so it is public.
    Ingest,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Marketer, Role::Analyst, Role::Ingest];

    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Marketer => "marketer",
            Role::Analyst => "analyst",
            Role::Ingest => "ingest",
        }
    }

    pub fn allows(self, permission: Permission) -> bool {
        use Permission as P;
        match self {
            Role::Admin => true,
            Role::Marketer => matches!(
                permission,
                P::ReadProject | P::ReadCodes | P::WriteCodes | P::Analyze
            ),
            Role::Analyst => matches!(
                permission,
                P::ReadProject | P::ReadCodes | P::Analyze | P::Sql
            ),
            Role::Ingest => matches!(permission, P::SendEvents | P::ReadProject),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| format!("unknown role `{s}`; one of admin, marketer, analyst, ingest"))
    }
}

/// What a request does, as the role table sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Its own key and project (name, time zone, role): every role.
    ReadProject,
    SendEvents,
    /// Codes, their images, and whether the project is authorized.
    ReadCodes,
    /// Create (one or a batch), preview, rename, delete codes.
    WriteCodes,
    /// The acquisition analysis.
    Analyze,
    /// SQL over the project's tables.
    Sql,
    /// Register or revoke the mini-program's WeChat credentials.
    Authorize,
    /// Change the attribution settings (every figure depends on them).
    ChangeSettings,
    /// Keys and invitations.
    ManageKeys,
    ReadAudit,
}
