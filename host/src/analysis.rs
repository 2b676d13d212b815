//! One analysis as a typed spec (serde, JSON, in the OpenAPI document), shared by the CLI
//! (`promolens analyze --spec`) and the HTTP API (`POST /v1/projects/{p}/analyses:run`):
//! metrics, ordered dimensions, filters and a time range (past N days, from/to, or a preset).
//! [`AnalysisSpec::query`] plans it onto [`crate::acquisition`]; every row of the answer carries
//! the spec of its drill-down, so a UI or a script clicks through without knowing the planner.

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, Utc};
use chrono_tz::Tz;
use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::acquisition::{
    AcquisitionQuery, Attribution, Condition, CoreEvent, Filter, NOT_SET, Outcomes, RETENTION_DAYS,
    TIME_DIMENSIONS, UNATTRIBUTED, UserGroup, Window, check_dimensions, is_dimension, parse_tz,
};
use crate::attribution_settings::SettingsVersion;
use crate::error::{Error, Result};
use crate::output::json_rows;

/// What running analyses needs, shared by the HTTP routes and the code list: the tables, each
/// project's time zone (the default of its windows), the saved analyses.
#[derive(Clone)]
pub struct Analytics {
    pub ctx: SessionContext,
    pub zones: promolens_ingest::ProjectZones,
    pub saved: crate::saved_analyses::SavedAnalyses,
    pub settings: Arc<crate::attribution_settings::SettingsStore>,
    /// What one statement may cost at the SQL doors.
    pub sql_limits: crate::sql::SqlLimits,
}

/// What an analysis counts; in a spec, by its name (`new_users`, `purchase_rate`,
/// `retained_d7`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub enum Metric {
    /// Users whose first launch ever is in the range (first touch).
    NewUsers,
    /// Distinct users who launched in the range.
    Users,
    Launches,
    /// Users who launched in the range and were first seen before it.
    ReturningUsers,
    /// `<event>_users`, `_count`, `_value` or `_rate` of a core event ([`CoreEvent`]).
    Event {
        event: String,
        measure: EventMeasure,
    },
    /// `retained_d<N>`: the share of the new users who launched again on day N.
    Retained(u32),
}

/// What an event metric measures of the row's new users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventMeasure {
    /// Who did the event within its days.
    Users,
    /// How many times.
    Count,
    /// The sum of its value prop.
    Value,
    /// `users` over `new_users`.
    Rate,
}

const EVENT_MEASURES: [(&str, EventMeasure); 4] = [
    ("users", EventMeasure::Users),
    ("count", EventMeasure::Count),
    ("value", EventMeasure::Value),
    ("rate", EventMeasure::Rate),
];

impl Metric {
    /// Its column in an answer.
    pub fn name(&self) -> String {
        match self {
            Metric::NewUsers => "new_users".into(),
            Metric::Users => "users".into(),
            Metric::Launches => "launches".into(),
            Metric::ReturningUsers => "returning_users".into(),
            Metric::Event { event, measure } => {
                let suffix = EVENT_MEASURES
                    .iter()
                    .find(|(_, m)| m == measure)
                    .map_or("users", |(s, _)| *s);
                format!("{event}_{suffix}")
            }
            Metric::Retained(n) => format!("retained_d{n}"),
        }
    }
}

impl TryFrom<String> for Metric {
    type Error = String;

    fn try_from(name: String) -> std::result::Result<Metric, String> {
        let metric = match name.as_str() {
            "new_users" => Metric::NewUsers,
            "users" => Metric::Users,
            "launches" => Metric::Launches,
            "returning_users" => Metric::ReturningUsers,
            _ => {
                if let Some(n) = name.strip_prefix("retained_d") {
                    return match n.parse() {
                        Ok(n) if RETENTION_DAYS.contains(&n) => Ok(Metric::Retained(n)),
                        _ => Err(format!(
                            "unknown metric `{name}`: retention is retained_d1, retained_d7 or retained_d30"
                        )),
                    };
                }
                let measure = name.rsplit_once('_').and_then(|(event, suffix)| {
                    let (_, measure) = EVENT_MEASURES.iter().find(|(s, _)| *s == suffix)?;
                    Some((event, *measure))
                });
                match measure {
                    Some((event, measure)) if !event.is_empty() => Metric::Event {
                        event: event.to_string(),
                        measure,
                    },
                    _ => {
                        return Err(format!(
                            "unknown metric `{name}`; choose from new_users, users, launches, \
                             returning_users, retained_d1/7/30, or a core event's \
                             <event>_users, _count, _value, _rate (e.g. purchase_rate)"
                        ));
                    }
                }
            }
        };
        Ok(metric)
    }
}

impl From<Metric> for String {
    fn from(metric: Metric) -> String {
        metric.name()
    }
}

/// Named ranges of whole days in the project's time zone; weeks start on Monday.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// Today so far.
    Today,
    Yesterday,
    /// Monday to today.
    ThisWeek,
    LastWeek,
    /// The 1st to today.
    ThisMonth,
    LastMonth,
    #[serde(rename = "past_7_days")]
    Past7Days,
    #[serde(rename = "past_30_days")]
    Past30Days,
    #[serde(rename = "past_90_days")]
    Past90Days,
}

/// The days an analysis covers: one of `past_days`, `from` and `to`, or `preset` (past 7 complete
/// days when none is given).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Range {
    /// The past N complete days (1 to 1,096).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub past_days: Option<u32>,
    /// First day, inclusive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<NaiveDate>,
    /// Last day, inclusive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<NaiveDate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preset: Option<Preset>,
}

impl Range {
    /// The window this range names at `now`, in `tz`.
    pub fn window(&self, now: DateTime<Utc>, tz: Tz) -> Result<Window> {
        let named = [
            self.past_days.is_some(),
            self.from.is_some() || self.to.is_some(),
            self.preset.is_some(),
        ];
        if named.iter().filter(|n| **n).count() > 1 {
            return Err(Error::invalid(
                "range",
                "give one of past_days, from and to, or preset",
            ));
        }
        let today = now.with_timezone(&tz).date_naive();
        let days_back = |n: u64| today.checked_sub_days(Days::new(n)).unwrap_or(today);
        let monday = days_back(u64::from(today.weekday().num_days_from_monday()));
        let first = today.with_day(1).unwrap_or(today);
        let between = |from: NaiveDate, to: NaiveDate| Window::dates(from, to, tz);
        match (self.preset, self.from, self.to) {
            (Some(Preset::Today), ..) => between(today, today),
            (Some(Preset::Yesterday), ..) => between(days_back(1), days_back(1)),
            (Some(Preset::ThisWeek), ..) => between(monday, today),
            (Some(Preset::LastWeek), ..) => between(monday - Days::new(7), monday - Days::new(1)),
            (Some(Preset::ThisMonth), ..) => between(first, today),
            (Some(Preset::LastMonth), ..) => between(
                first.checked_sub_months(Months::new(1)).unwrap_or(first),
                first - Days::new(1),
            ),
            (Some(Preset::Past7Days), ..) => Window::past_days(now, 7, tz),
            (Some(Preset::Past30Days), ..) => Window::past_days(now, 30, tz),
            (Some(Preset::Past90Days), ..) => Window::past_days(now, 90, tz),
            (None, Some(from), Some(to)) => between(from, to),
            (None, Some(_), None) => Err(Error::invalid("range", "from needs to")),
            (None, None, Some(_)) => Err(Error::invalid("range", "to needs from")),
            (None, None, None) => Window::past_days(now, self.past_days.unwrap_or(7), tz),
        }
    }
}

/// One analysis.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnalysisSpec {
    /// In order (default: new_users, users, launches): `new_users`, `users`, `launches`,
    /// `returning_users`; per core event E, `E_users` (new users who did E within its days of
    /// their first launch), `E_count`, `E_value` (the sum of its value prop), `E_rate`
    /// (`E_users / new_users`); `retained_d1`, `retained_d7`, `retained_d30` (the share of new
    /// users who launched again on that day after the day of their first launch, among those
    /// whose day has ended).
    #[serde(default = "all_metrics")]
    #[schema(value_type = Vec<String>, example = json!(["new_users", "purchase_rate", "retained_d7"]))]
    pub metrics: Vec<Metric>,
    /// How each core event of the metrics is counted (default: within 7 days, value `amount`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub core_events: Vec<CoreEvent>,
    /// Only these users (default: everyone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<UserGroup>,
    /// How core events are credited (default: first touch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribution: Option<Attribution>,
    /// In order (default: utm_source): `channel`, `utm_source` … `utm_term`, `code`, `code_id`,
    /// `code_kind`, `scene`, `launch_type`, `path`, and `day`, `week`, `month`. None: one row of
    /// totals.
    #[serde(default = "default_dimensions")]
    pub dimensions: Vec<String>,
    #[serde(default)]
    pub filters: Vec<Filter>,
    #[serde(default)]
    pub range: Range,
    /// IANA time zone of the days (default: the project's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tz: Option<String>,
    /// Also each metric in the period of as many days just before (`<metric>_previous`) and its
    /// relative change (`<metric>_change`, null when the previous value is 0). Not with `day`,
    /// `week` or `month` (their values differ between the periods).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub compare: bool,
}

fn all_metrics() -> Vec<Metric> {
    vec![Metric::NewUsers, Metric::Users, Metric::Launches]
}

fn default_dimensions() -> Vec<String> {
    vec!["utm_source".to_string()]
}

/// The order a drill-down takes its next dimension in.
const DRILL_ORDER: [&str; 10] = [
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_content",
    "utm_term",
    "code",
    "channel",
    "scene",
    "path",
    "day",
];

/// The answer to one analysis.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AnalysisAnswer {
    pub project: String,
    /// The spec as run.
    pub spec: AnalysisSpec,
    /// The days it covered.
    pub window: Window,
    /// The days it was compared with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_window: Option<Window>,
    /// How its core events were credited: the model and the lookback window it used.
    pub attribution: Attribution,
    /// The saved analysis run, and its version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saved_analysis: Option<crate::saved_analyses::SavedRef>,
    /// The project's attribution settings the numbers came from.
    pub settings: SettingsUsed,
    /// One object per combination of the dimensions' values: each dimension, each metric, and
    /// `drill_down`, the spec of this row's drill-down (its values as filters, the next
    /// dimension), or null where there is none.
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<Map<String, Value>>,
}

/// Which attribution settings an answer's numbers came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SettingsUsed {
    /// The project's settings version the answer was planned with: its channel rules, and the
    /// lookback window when the spec gives none.
    pub version: u32,
    /// The versions the window's stored launches were decoded with (aliases, normalisation).
    /// Launches stored before a change keep theirs until `promolens reattribute` decodes them
    /// again; one version equal to `version` means all are current.
    pub decoded_with: Vec<u32>,
}

impl AnalysisSpec {
    /// The query of this spec for `project` at `now`; `project_tz` unless the spec names a zone.
    /// `settings` are the project's attribution settings (channel rules, the lookback window
    /// when the spec gives none).
    pub fn query(
        &self,
        project: &str,
        now: DateTime<Utc>,
        project_tz: Tz,
        settings: &SettingsVersion,
    ) -> Result<AcquisitionQuery> {
        if self.metrics.is_empty() {
            return Err(Error::invalid("metrics", "name at least one metric"));
        }
        let by = check_dimensions("dimensions", self.dimensions.clone())?;
        if self.compare && by.iter().any(|d| TIME_DIMENSIONS.contains(&d.as_str())) {
            return Err(Error::invalid(
                "compare",
                "a comparison with the previous period needs dimensions other than day, week and month",
            ));
        }
        let tz = match &self.tz {
            Some(name) => parse_tz(name)?,
            None => project_tz,
        };
        Ok(AcquisitionQuery {
            project: project.to_string(),
            by,
            window: self.range.window(now, tz)?,
            filters: self.filters.clone(),
            returning: self.metrics.contains(&Metric::ReturningUsers),
            outcomes: self.outcomes(now, settings.settings.lookback_days)?,
            group: self.group.clone(),
            channel_rules: settings.settings.channel_rules.clone(),
            settings_version: settings.version,
        })
    }

    /// Whether the spec can run for `project`, as it would today (its range's days aside, which
    /// depend on the day it runs).
    pub fn check(&self, project: &str) -> Result<()> {
        let defaults = SettingsVersion::default();
        self.query(project, Utc::now(), chrono_tz::UTC, &defaults)?
            .check()
    }

    /// This spec with the range, zone and filters of `other`.
    pub fn with_range_of(self, other: AnalysisSpec) -> AnalysisSpec {
        AnalysisSpec {
            range: other.range,
            tz: other.tz,
            filters: other.filters,
            ..self
        }
    }

    /// The core events and retention days the metrics need, each once.
    /// `lookback_days` is the project's, for a spec that gives none.
    fn outcomes(&self, now: DateTime<Utc>, lookback_days: u32) -> Result<Outcomes> {
        let attribution = self.attribution.unwrap_or_default();
        let mut outcomes = Outcomes {
            now_ms: now.timestamp_millis(),
            attribution: Attribution {
                lookback_days: Some(attribution.lookback_days.unwrap_or(lookback_days)),
                ..attribution
            },
            ..Outcomes::default()
        };
        for listed in &self.core_events {
            if self
                .core_events
                .iter()
                .filter(|e| e.event == listed.event)
                .count()
                > 1
            {
                return Err(Error::invalid(
                    "core_events",
                    format!("core event `{}` listed twice", listed.event),
                ));
            }
        }
        for metric in &self.metrics {
            match metric {
                Metric::Event { event, .. }
                    if !outcomes.events.iter().any(|e| &e.event == event) =>
                {
                    let counted = self.core_events.iter().find(|e| &e.event == event);
                    outcomes
                        .events
                        .push(counted.cloned().unwrap_or_else(|| CoreEvent::named(event)));
                }
                Metric::Retained(n) if !outcomes.retained_days.contains(n) => {
                    outcomes.retained_days.push(*n);
                }
                _ => {}
            }
        }
        Ok(outcomes)
    }

    /// Runs `query` (this spec's), and the previous period's beside it when comparing.
    pub async fn run(
        &self,
        query: &AcquisitionQuery,
        ctx: &SessionContext,
    ) -> Result<Vec<RecordBatch>> {
        let current = query.run(ctx).await?;
        if !self.compare {
            return Ok(current);
        }
        let previous = AcquisitionQuery {
            window: query.window.previous()?,
            ..query.clone()
        }
        .run(ctx)
        .await?;
        let metrics: Vec<(String, bool)> = ["new_users", "users", "launches"]
            .into_iter()
            .chain(query.returning.then_some("returning_users"))
            .map(|m| (m.to_string(), false))
            .chain(query.outcomes.columns())
            .collect();
        beside_previous(ctx, &query.by, &metrics, current, previous).await
    }

    /// The answer's columns in order: the dimensions, then each asked metric (with its previous
    /// value and change when comparing).
    pub fn columns(&self) -> Vec<String> {
        let metrics = self.metrics.iter().flat_map(|m| {
            let name = m.name();
            if self.compare {
                let (previous, change) = (format!("{name}_previous"), format!("{name}_change"));
                vec![name, previous, change]
            } else {
                vec![name]
            }
        });
        self.dimensions.iter().cloned().chain(metrics).collect()
    }

    /// `batches` (the result of [`Self::run`]) with [`Self::columns`] only, in that order.
    pub fn project(&self, batches: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let columns = self.columns();
        batches
            .iter()
            .map(|batch| {
                let indices = columns
                    .iter()
                    .map(|c| batch.schema().index_of(c))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                Ok(batch.project(&indices)?)
            })
            .collect()
    }

    /// The answer of `batches` (the result of [`Self::run`]): the asked metrics only, each
    /// row's drill-down, and the settings versions behind the numbers.
    pub async fn answer(
        &self,
        query: AcquisitionQuery,
        batches: &[RecordBatch],
        ctx: &SessionContext,
    ) -> Result<AnalysisAnswer> {
        let settings = SettingsUsed {
            version: query.settings_version,
            decoded_with: query.decoded_with(ctx).await?,
        };
        let rows = json_rows(&self.project(batches)?)?
            .into_iter()
            .map(|mut row| {
                let drill = self.drill_down(&row);
                row.insert(
                    "drill_down".to_string(),
                    drill.map_or(Value::Null, |spec| {
                        serde_json::to_value(spec).unwrap_or(Value::Null)
                    }),
                );
                row
            })
            .collect();
        let previous_window = if self.compare {
            Some(query.window.previous()?)
        } else {
            None
        };
        Ok(AnalysisAnswer {
            project: query.project,
            spec: self.clone(),
            window: query.window,
            previous_window,
            saved_analysis: None,
            attribution: query.outcomes.attribution,
            settings,
            rows,
        })
    }

    /// This row's values as filters, split by the next dimension not yet used.
    fn drill_down(&self, row: &Map<String, Value>) -> Option<AnalysisSpec> {
        let used = |d: &str| {
            self.dimensions.iter().any(|x| x == d) || self.filters.iter().any(|f| f.dimension == d)
        };
        let next = DRILL_ORDER.iter().find(|d| !used(d))?;
        let mut filters = self.filters.clone();
        for dimension in &self.dimensions {
            let condition = match row.get(dimension)? {
                Value::String(label) if label == UNATTRIBUTED => return None,
                Value::String(label) if label == NOT_SET => Condition::IsNull,
                Value::String(value) => Condition::Equals {
                    value: value.clone(),
                },
                Value::Null => Condition::IsNull,
                other => Condition::Equals {
                    value: other.to_string(),
                },
            };
            filters.push(Filter {
                dimension: dimension.clone(),
                condition,
            });
        }
        debug_assert!(is_dimension(next));
        Some(AnalysisSpec {
            dimensions: vec![next.to_string()],
            filters,
            ..self.clone()
        })
    }
}

/// The current period's rows beside the previous period's, matched on the dimensions' values:
/// each metric, its previous value (0 where the row is new, for counts; ratios stay null) and
/// its relative change; rows of the previous period only are kept with 0 now (a source that
/// stopped bringing users is news). `computed` names each metric column, and whether it is a
/// ratio.
async fn beside_previous(
    ctx: &SessionContext,
    dims: &[String],
    computed: &[(String, bool)],
    current: Vec<RecordBatch>,
    previous: Vec<RecordBatch>,
) -> Result<Vec<RecordBatch>> {
    let unique = uuid::Uuid::new_v4().simple();
    let (now, then) = (
        format!("analysis_now_{unique}"),
        format!("analysis_then_{unique}"),
    );
    let table = |batches: Vec<RecordBatch>| -> Result<Arc<MemTable>> {
        let schema = match batches.first() {
            Some(b) => b.schema(),
            None => return Err(Error::invalid("compare", "no schema for an empty answer")),
        };
        Ok(Arc::new(MemTable::try_new(schema, vec![batches])?))
    };
    // An empty result has no batch to take its schema from: answer it by itself.
    if current.is_empty() && previous.is_empty() {
        return Ok(current);
    }
    let empty_like = |other: &[RecordBatch]| vec![RecordBatch::new_empty(other[0].schema())];
    let current = if current.is_empty() {
        empty_like(&previous)
    } else {
        current
    };
    let previous = if previous.is_empty() {
        empty_like(&current)
    } else {
        previous
    };
    ctx.register_table(&now, table(current)?)?;
    ctx.register_table(&then, table(previous)?)?;
    let quoted = |d: &str| format!("\"{d}\"");
    let dims_out = dims
        .iter()
        .map(|d| format!("coalesce(n.{0}, t.{0}) AS {0}", quoted(d)));
    let metrics = computed.iter().map(|(m, ratio)| {
        let (now, then) = if *ratio {
            (format!("n.\"{m}\""), format!("t.\"{m}\""))
        } else {
            (
                format!("coalesce(n.\"{m}\", 0)"),
                format!("coalesce(t.\"{m}\", 0)"),
            )
        };
        format!(
            "{now} AS \"{m}\", {then} AS \"{m}_previous\", \
             CASE WHEN {then} = 0 THEN NULL \
             ELSE CAST({now} - {then} AS DOUBLE) / {then} END AS \"{m}_change\""
        )
    });
    let columns = dims_out.chain(metrics).collect::<Vec<_>>().join(", ");
    // Without dimensions, each side is one row of totals: they meet whatever their values.
    let on = dims
        .iter()
        .map(|d| format!("n.{0} = t.{0}", quoted(d)))
        .chain(dims.is_empty().then(|| "true".to_string()))
        .collect::<Vec<_>>()
        .join(" AND ");
    let order = ["new_users DESC", "new_users_previous DESC", "users DESC"]
        .map(String::from)
        .into_iter()
        .chain(dims.iter().map(|d| quoted(d)))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!("SELECT {columns} FROM {now} n FULL JOIN {then} t ON {on} ORDER BY {order}");
    let answer = async { crate::sql::collect(ctx.sql(&sql).await?).await }.await;
    ctx.deregister_table(&now)?;
    ctx.deregister_table(&then)?;
    answer
}
