//! Who may do what: projects (created by the operator), API keys carrying one role in one
//! project, invitations that become keys, the door every HTTP route is checked at, and the audit
//! log of every change.

pub mod audit;
pub mod guard;

pub mod rate;
pub mod registry;
pub mod roles;
pub mod tokens;

use std::sync::Arc;

pub use audit::{AuditLog, Outcome};
pub use guard::Caller;
pub use registry::{Project, Registry};
pub use roles::{Permission, Role};

/// What the routes share: the registry of projects and keys, and the audit log.
#[derive(Clone)]
pub struct Access {
    pub registry: Arc<Registry>,
    pub audit: AuditLog,
    /// Requests per key on the ingest route.
    pub ingest_rate: Arc<rate::RateLimiter>,
}

impl Access {
    /// Records a change that `caller` made in its project.
    pub async fn record(&self, caller: &Caller, action: &str, target: &str) -> crate::Result<()> {
        self.record_outcome(caller, action, target, Outcome::Ok)
            .await
    }

    pub async fn record_outcome(
        &self,
        caller: &Caller,
        action: &str,
        target: &str,
        outcome: Outcome,
    ) -> crate::Result<()> {
        self.audit
            .record(&caller.project, &caller.key_id, action, target, outcome)
            .await
    }
}
