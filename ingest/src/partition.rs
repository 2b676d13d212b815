//! Where an event is stored: its partition, `launch_events/project=P/dt=D` (or `events/…` for a
//! core event), where `D` is the calendar day of the event in the project's time zone (DESIGN.md
//! "Storage layout").

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

use crate::parquet_io::Table;

/// First instant (epoch ms) of calendar day `day` in `tz`. A day that starts in a DST gap starts
/// when the gap ends.
pub fn start_of_day(day: NaiveDate, tz: Tz) -> i64 {
    let midnight = day.and_hms_opt(0, 0, 0).unwrap_or_default();
    (0..=2)
        .find_map(|hours| {
            tz.from_local_datetime(&(midnight + chrono::Duration::hours(hours)))
                .earliest()
        })
        .map(|t| t.timestamp_millis())
        .unwrap_or_else(|| midnight.and_utc().timestamp_millis())
}

/// The time zone of each project's calendar days, shared between the pipeline and whoever
/// creates projects (a project created while the server runs gets its own days at once).
/// Changing a zone changes only the partitions of events partitioned afterwards.
#[derive(Debug, Clone)]
pub struct ProjectZones {
    default: Tz,
    zones: Arc<RwLock<HashMap<String, Tz>>>,
}

impl ProjectZones {
    /// Every project in `default` until [`ProjectZones::set`] says otherwise.
    pub fn new(default: Tz) -> ProjectZones {
        ProjectZones {
            default,
            zones: Arc::default(),
        }
    }

    pub fn set(&self, project: &str, tz: Tz) {
        let mut zones = self.zones.write().unwrap_or_else(|e| e.into_inner());
        zones.insert(project.to_string(), tz);
    }

    pub fn get(&self, project: &str) -> Tz {
        let zones = self.zones.read().unwrap_or_else(|e| e.into_inner());
        zones.get(project).copied().unwrap_or(self.default)
    }
}

/// Maps (table, project, event time) to its partition: the calendar day of the event in the
/// project's time zone. Each day met is remembered with its bounds, so that a row's day is found without
/// converting or formatting a date, and rows of one day share one key (rows arrive in time order
/// from most senders, in any order from some files: both are a lookup).
pub struct PartitionResolver {
    zones: ProjectZones,
    /// The zone of `project`.
    tz: Tz,
    project: String,
    table: Table,
    /// Days met for `table` and `project`, by start: [start, end) in epoch ms, and the key.
    days: Vec<(i64, i64, Arc<PartitionKey>)>,
    /// Index in `days` of the last day found.
    last: usize,
}

/// Days remembered at most: a body spread over more days than this (a hostile or broken sender)
/// starts the cache again rather than growing it.
const DAYS_REMEMBERED: usize = 4096;

impl PartitionResolver {
    pub fn new(zones: ProjectZones) -> PartitionResolver {
        PartitionResolver {
            tz: zones.default,
            zones,
            project: String::new(),
            table: Table::LaunchEvents,
            days: Vec::new(),
            last: 0,
        }
    }

    pub fn key(&mut self, table: Table, project: &str, epoch_ms: i64) -> Arc<PartitionKey> {
        if project != self.project || table != self.table {
            self.project = project.to_string();
            self.table = table;
            self.tz = self.zones.get(project);
            self.days.clear();
        }
        if let Some((start, end, key)) = self.days.get(self.last)
            && (*start..*end).contains(&epoch_ms)
        {
            return key.clone();
        }
        // The last day whose start is at or before the time.
        let found = self
            .days
            .partition_point(|(start, _, _)| *start <= epoch_ms);
        if let Some(i) = found.checked_sub(1)
            && epoch_ms < self.days[i].1
        {
            self.last = i;
            return self.days[i].2.clone();
        }
        let day = DateTime::<Utc>::from_timestamp_millis(epoch_ms)
            .unwrap_or_default()
            .with_timezone(&self.tz)
            .date_naive();
        let key = Arc::new(PartitionKey {
            project: project.to_string(),
            table,
            dt: day.format("%Y-%m-%d").to_string(),
        });
        let start = start_of_day(day, self.tz);
        let end = start_of_day(day + chrono::Days::new(1), self.tz);
        // Times outside any representable day (never valid events) are not remembered.
        if (start..end).contains(&epoch_ms) {
            if self.days.len() >= DAYS_REMEMBERED {
                self.days.clear();
            }
            let at = self.days.partition_point(|(s, _, _)| *s <= start);
            self.days.insert(at, (start, end, key.clone()));
            self.last = at;
        }
        key
    }
}

/// A `launch_events/project=P/dt=D` (or `events/…`) folder. Ordered by project first: a
/// flush meets each project's partitions together.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionKey {
    pub project: String,
    pub table: Table,
    pub dt: String,
}

impl PartitionKey {
    /// The folder of this partition relative to the data directory.
    pub fn relative_dir(&self) -> String {
        promolens_schemas::layout::day_dir(self.table.name(), &self.project, &self.dt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resolver_gives_each_day_one_key_in_any_order() {
        let mut days = PartitionResolver::new(ProjectZones::new(chrono_tz::Asia::Shanghai));
        // 2025-11-23 16:00 UTC is 2025-11-24 00:00 in Shanghai.
        let midnight = 1_763_913_600_000;
        let hour = 3_600_000;
        let times = [
            midnight + hour,
            midnight - hour,
            midnight + 30 * hour,
            midnight,
            midnight - 1,
        ];
        let keys: Vec<Arc<PartitionKey>> = times
            .iter()
            .map(|&t| days.key(Table::LaunchEvents, "p", t))
            .collect();
        let dts: Vec<&str> = keys.iter().map(|k| k.dt.as_str()).collect();
        assert_eq!(
            dts,
            [
                "2025-11-24",
                "2025-11-23",
                "2025-11-25",
                "2025-11-24",
                "2025-11-23"
            ]
        );
        assert!(Arc::ptr_eq(&keys[0], &keys[3]), "one key per day");
        assert!(Arc::ptr_eq(&keys[1], &keys[4]));
        let other = days.key(Table::LaunchEvents, "q", midnight);
        assert_eq!(
            (other.project.as_str(), other.dt.as_str()),
            ("q", "2025-11-24")
        );
    }

    #[test]
    fn partition_day_changes_at_midnight_in_the_zone() {
        let mut resolver = PartitionResolver::new(ProjectZones::new(chrono_tz::Asia::Shanghai));
        // 2025-11-17 00:00 +08:00 is 1763308800000.
        let before = resolver.key(Table::LaunchEvents, "p", 1_763_308_799_999);
        let at = resolver.key(Table::LaunchEvents, "p", 1_763_308_800_000);
        let again = resolver.key(Table::LaunchEvents, "p", 1_763_308_800_001);
        assert_eq!(before.dt, "2025-11-16");
        assert_eq!(at.dt, "2025-11-17");
        assert!(Arc::ptr_eq(&at, &again), "same day answers from the cache");
        assert_eq!(
            resolver
                .key(Table::LaunchEvents, "q", 1_763_308_800_001)
                .project,
            "q"
        );
        assert_eq!(
            resolver.key(Table::LaunchEvents, "p", 1_763_308_799_999).dt,
            "2025-11-16"
        );
    }
}
