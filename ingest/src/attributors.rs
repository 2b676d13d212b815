//! The attributor each project's launches are decoded with now: its current attribution settings
//! (aliases, normalisation), which the host reads from the data directory and keeps here. A
//! project with none uses the default (settings version 0).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use promolens_schemas::Attributor;

/// Each project's current attributor, shared by the request handlers, backfill and the replay of
/// the write-ahead log.
#[derive(Debug, Default)]
pub struct Attributors {
    default: Arc<Attributor>,
    current: RwLock<HashMap<String, Arc<Attributor>>>,
}

impl Attributors {
    /// The attributor `project`'s launches are decoded with now.
    pub fn current(&self, project: &str) -> Arc<Attributor> {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        current
            .get(project)
            .cloned()
            .unwrap_or_else(|| self.default.clone())
    }

    /// From now on, `project`'s launches are decoded with `attributor` (an older version than
    /// the one held is ignored: a slow reader must not undo a newer change).
    pub fn set(&self, project: &str, attributor: Arc<Attributor>) {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        match current.get(project) {
            Some(held) if held.version() > attributor.version() => {}
            _ => {
                current.insert(project.to_string(), attributor);
            }
        }
    }
}
