//! "Acquisition in the past 7 days by UTM dimension" (DESIGN.md §4).
//!
//! - `new_users`: users whose first launch ever (over the whole history, not only the window)
//!   falls in the window, counted on the dimensions of that first launch (first touch);
//! - `users`: distinct users with a launch in the window, per dimension values;
//! - `launches`: launches in the window.
//!
//! A launch is attributed when it has a `utm_source` or a code. Unattributed launches form one
//! row, `(unattributed)`; an attributed launch without a value for a dimension shows `(not set)`.
//!
//! A launch that carries a code reference (`c=<id>`), or the exact query of a code made before
//! every code carried its id ([`crate::code_links`]), takes the UTM fields it lacks from the
//! code's record (`promo_codes`), here at query time: a code made after its first scans were
//! stored, or records restored later, still attribute every scan. The dimension `code` is the
//! code's name and id (`Poster (ab12cd34)`), or the bare id of a code promolens has no record of;
//! `code_id` is the id of the code a launch belongs to.

use chrono::{DateTime, Datelike, Days, NaiveDate, Utc};
use chrono_tz::Tz;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, AsArray, BooleanArray, Int64Array, StringArray, TimestampMillisecondArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Field, Schema, SchemaRef, TimeUnit, TimestampMillisecondType,
};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::HashMap;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use promolens_ingest::partition::start_of_day;
use serde::{Deserialize, Serialize};

use crate::attribution_settings::{ChannelRule, SettingsVersion};
use crate::code_links::{CodeLinks, SCAN_KEY_FUNCTION, code_links};
use crate::error::{Error, Result};
use promolens_schemas::IDENTIFY;
use promolens_schemas::tables::{EVENTS, LAUNCH_EVENTS, USER_FIRST_SEEN};

/// Dimensions an acquisition can be split by: columns of `launch_events`.
pub const DIMENSIONS: [&str; 12] = [
    "channel",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_content",
    "utm_term",
    "code",
    "code_id",
    "code_kind",
    "scene",
    "launch_type",
    "path",
];

/// Dimensions every launch has a value of, attributed or not: they split the `(unattributed)`
/// row too (a launch from search has no source, and is still from search).
const EVERY_LAUNCH: [&str; 1] = ["channel"];

/// The channel of a launch as SQL over `resolved`'s inputs (`l` the launch, `c` its code's
/// record): the project's rules in order, then the default channels
/// ([`promolens_schemas::channel`]).
fn channel_sql(rules: &[ChannelRule]) -> String {
    use promolens_schemas::channel::{CHANNELS, DIRECT, OTHER, PAID_MEDIA};
    let medium = "lower(coalesce(l.utm_medium, c.utm_medium))";
    let source = "lower(coalesce(l.utm_source, c.utm_source))";
    let texts = |values: &[String]| {
        values
            .iter()
            .map(|v| sql_text(&v.to_lowercase()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let scenes = |values: &[i32]| {
        values
            .iter()
            .map(i32::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let project_arms: String = rules
        .iter()
        .map(|rule| {
            let mut conditions = Vec::new();
            if !rule.scene.is_empty() {
                conditions.push(format!("l.scene IN ({})", scenes(&rule.scene)));
            }
            if !rule.utm_medium.is_empty() {
                conditions.push(format!("{medium} IN ({})", texts(&rule.utm_medium)));
            }
            if !rule.utm_source.is_empty() {
                conditions.push(format!("{source} IN ({})", texts(&rule.utm_source)));
            }
            format!(
                " WHEN {} THEN {}",
                conditions.join(" AND "),
                sql_text(&rule.channel)
            )
        })
        .collect();
    let paid = PAID_MEDIA.map(|m| format!("'{m}'")).join(", ");
    let default_arms: String = CHANNELS
        .iter()
        .map(|(name, list)| format!(" WHEN l.scene IN ({}) THEN '{name}'", scenes(list)))
        .collect();
    format!(
        "CASE{project_arms} WHEN {medium} IN ({paid}) THEN 'ads'{default_arms} \
         WHEN l.scene IS NULL THEN '{DIRECT}' ELSE '{OTHER}' END"
    )
}

/// `text` as an SQL string literal.
fn sql_text(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Dimensions computed from a launch's time in the window's time zone: `day` (`2026-11-23`),
/// `week` (the date of its Monday), `month` (`2026-11`). Unlike the others they also split the
/// `(unattributed)` row.
pub const TIME_DIMENSIONS: [&str; 3] = ["day", "week", "month"];

/// Whether `name` is a dimension a query can be split or filtered by.
pub fn is_dimension(name: &str) -> bool {
    DIMENSIONS.contains(&name) || TIME_DIMENSIONS.contains(&name) || prop_key(name).is_some()
}

/// `props.<key>`: a top-level value of the launch's `props` (see [`crate::props`]).
pub const PROPS_DIMENSION: &str = "props.<key>";

/// The key of a `props.<key>` dimension: 1 to 64 of `A-Z`, `a-z`, `0-9`, `_`, `-`.
fn prop_key(name: &str) -> Option<&str> {
    let key = name.strip_prefix("props.")?;
    let valid = !key.is_empty()
        && key.len() <= 64
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    valid.then_some(key)
}

/// A dimension's value as SQL over `resolved`: its column, or the prop's value.
fn dimension_sql(dimension: &str) -> String {
    match prop_key(dimension) {
        Some(key) => format!("{}(props, '{key}')", crate::props::PROP_FUNCTION),
        None => dimension.to_string(),
    }
}

/// Whether unattributed launches are split by `dimension` too (a channel, a prop), rather
/// than gathered in the `(unattributed)` row.
fn every_launch(dimension: &str) -> bool {
    EVERY_LAUNCH.contains(&dimension) || prop_key(dimension).is_some()
}

/// A condition on a dimension's value: its value before labels (no value is NULL, not
/// `(not set)`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Condition {
    Equals {
        value: String,
    },
    In {
        values: Vec<String>,
    },
    /// Launches with none of the values, those without a value included.
    NotIn {
        values: Vec<String>,
    },
    /// The value contains this text (case-sensitive).
    Contains {
        value: String,
    },
    IsNull,
}

/// Keeps the launches whose `dimension` meets the condition (for new users: whose first launch
/// does).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, utoipa::ToSchema)]
pub struct Filter {
    pub dimension: String,
    #[serde(flatten)]
    pub condition: Condition,
}

/// Most values one filter may list.
const MAX_FILTER_VALUES: usize = 1000;

impl Filter {
    fn check(&self) -> Result<()> {
        if !is_dimension(&self.dimension) {
            return Err(Error::invalid(
                "filters",
                format!(
                    "unknown dimension `{}`; choose from {}, {}, {PROPS_DIMENSION}",
                    self.dimension,
                    DIMENSIONS.join(", "),
                    TIME_DIMENSIONS.join(", ")
                ),
            ));
        }
        if let Condition::In { values } | Condition::NotIn { values } = &self.condition
            && (values.is_empty() || values.len() > MAX_FILTER_VALUES)
        {
            return Err(Error::invalid(
                "filters",
                format!(
                    "a filter on `{}` lists 1 to {MAX_FILTER_VALUES} values, got {}",
                    self.dimension,
                    values.len()
                ),
            ));
        }
        Ok(())
    }

    /// The SQL condition on column `column`; its values become parameters `$3`… (after the
    /// project and the window's start), pushed onto `params`.
    fn sql(&self, column: &str, params: &mut Vec<ScalarValue>) -> String {
        let mut param = |value: &str| bind(params, ScalarValue::Utf8(Some(value.to_string())));
        match &self.condition {
            Condition::Equals { value } => format!("{column} = {}", param(value)),
            Condition::In { values } => {
                let list: Vec<String> = values.iter().map(|v| param(v)).collect();
                format!("{column} IN ({})", list.join(", "))
            }
            Condition::NotIn { values } => {
                let list: Vec<String> = values.iter().map(|v| param(v)).collect();
                format!(
                    "({column} IS NULL OR {column} NOT IN ({}))",
                    list.join(", ")
                )
            }
            Condition::Contains { value } => {
                format!("coalesce(strpos({column}, {}) > 0, false)", param(value))
            }
            Condition::IsNull => format!("{column} IS NULL"),
        }
    }
}

/// A core event counted for a row's new users: who did it (`<event>_users`, `<event>_rate`),
/// how often (`<event>_count`) and for how much (`<event>_value`, the sum of a numeric prop),
/// within `within_days` of their first launch.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CoreEvent {
    /// The event's name, as sent in `event` (`signup`, `purchase`).
    pub event: String,
    /// Days after the first launch in which it counts (1 to 365, default 7).
    #[serde(default = "default_within_days")]
    pub within_days: u32,
    /// The numeric prop `<event>_value` sums (default `amount`).
    #[serde(default = "default_value_prop")]
    pub value: String,
}

fn default_within_days() -> u32 {
    7
}

fn default_value_prop() -> String {
    "amount".to_string()
}

impl CoreEvent {
    /// `event` with the defaults.
    pub fn named(event: &str) -> CoreEvent {
        CoreEvent {
            event: event.to_string(),
            within_days: default_within_days(),
            value: default_value_prop(),
        }
    }

    fn check(&self) -> Result<()> {
        promolens_schemas::event::validate_event_name(&self.event)
            .map_err(|m| Error::invalid("core_events", m))?;
        if matches!(self.event.as_str(), "launch" | "new" | "returning")
            || self.event.starts_with('$')
        {
            return Err(Error::invalid(
                "core_events",
                format!(
                    "`{}` is not a core event (launches are counted by new_users, users and launches)",
                    self.event
                ),
            ));
        }
        if !(1..=365).contains(&self.within_days) {
            return Err(Error::invalid(
                "core_events",
                format!(
                    "within_days of `{}` must be 1 to 365, got {}",
                    self.event, self.within_days
                ),
            ));
        }
        if self.value.is_empty() || self.value.len() > 128 {
            return Err(Error::invalid(
                "core_events",
                format!(
                    "value of `{}` must name a prop of 1 to 128 bytes",
                    self.event
                ),
            ));
        }
        Ok(())
    }
}

/// Days after acquisition `retained_d<N>` may ask about.
pub const RETENTION_DAYS: [u32; 3] = [1, 7, 30];

/// How a conversion (a core event) is credited to the launches before it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Model {
    /// To the launch that acquired the user: a row's new users and what they did within
    /// `within_days` (DESIGN.md §4).
    #[default]
    FirstTouch,
    /// All to the last launch before the conversion.
    LastTouch,
    /// All to the last attributed launch before it (the last one when none is attributed).
    LastNonDirect,
    /// Equally to every launch before it.
    Linear,
    /// 40% to the first launch, 40% to the last, 20% shared by those between (half and half
    /// for two; all for one).
    PositionBased,
}

/// The attribution model of conversions, and how far back a launch may be to be credited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Attribution {
    #[serde(default)]
    pub model: Model,
    /// Days before a conversion in which a launch is credited (1 to 365); the project's setting
    /// (30 unless changed) when not given. Not used by the first-touch model. An answer states
    /// the window it used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookback_days: Option<u32>,
}

/// The lookback window of a project that has not changed it.
pub const DEFAULT_LOOKBACK_DAYS: u32 = 30;

impl Attribution {
    /// The lookback window: the one given, or the default.
    pub fn lookback(&self) -> u32 {
        self.lookback_days.unwrap_or(DEFAULT_LOOKBACK_DAYS)
    }

    fn check(&self, by: &[String]) -> Result<()> {
        if let Some(days) = self.lookback_days
            && !(1..=365).contains(&days)
        {
            return Err(Error::invalid(
                "attribution",
                format!("lookback_days must be 1 to 365, got {days}"),
            ));
        }
        if self.model != Model::FirstTouch && by.iter().any(|d| is_time(d)) {
            return Err(Error::invalid(
                "attribution",
                "a model other than first touch credits launches, not days: split by day, week \
                 or month with the first-touch model",
            ));
        }
        Ok(())
    }

    /// The credit of the touch at `pos` (1-based) of `n` touches, as SQL; `last_credited` is
    /// the position the last-non-direct model credits.
    fn credit_sql(&self) -> &'static str {
        match self.model {
            Model::FirstTouch | Model::LastTouch => "CASE WHEN pos = n THEN 1.0 ELSE 0.0 END",
            Model::LastNonDirect => "CASE WHEN pos = last_credited THEN 1.0 ELSE 0.0 END",
            Model::Linear => "1.0 / n",
            Model::PositionBased => {
                "CASE WHEN n = 1 THEN 1.0 WHEN n = 2 THEN 0.5 \
                 WHEN pos = 1 OR pos = n THEN 0.4 ELSE 0.2 / (n - 2) END"
            }
        }
    }
}

/// The users an analysis counts (every user when it names none): their launches, and them as
/// new users.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum UserGroup {
    /// Users first seen in the range.
    New,
    /// Users first seen before the range.
    Returning,
    /// Users whose first launch ever had this value of `dimension` (a dimension of launches,
    /// not a time).
    FirstTouch { dimension: String, value: String },
    /// Users who did the core event in the range.
    Did { event: String },
    /// Users who did not do the core event in the range.
    DidNot { event: String },
    /// Users with a core event in the range for which this SQL expression over `events` holds
    /// (`event = 'purchase' AND props_number['amount'] >= 100`). It is parsed as one expression
    /// and runs over the project's own tables only; it needs a key that may run SQL.
    Sql { predicate: String },
}

impl UserGroup {
    fn check(&self) -> Result<()> {
        match self {
            UserGroup::FirstTouch { dimension, .. }
                if !DIMENSIONS.contains(&dimension.as_str()) =>
            {
                Err(Error::invalid(
                    "group",
                    format!(
                        "a first-touch group names a dimension of launches ({}), got `{dimension}`",
                        DIMENSIONS.join(", ")
                    ),
                ))
            }
            UserGroup::Did { event } | UserGroup::DidNot { event } => {
                promolens_schemas::event::validate_event_name(event)
                    .map_err(|m| Error::invalid("group", m))
            }
            UserGroup::Sql { predicate } if predicate.len() > 4096 => Err(Error::invalid(
                "group",
                format!("a predicate is at most 4096 bytes, got {}", predicate.len()),
            )),
            _ => Ok(()),
        }
    }

    /// Whether the group runs the caller's SQL.
    pub fn is_sql(&self) -> bool {
        matches!(self, UserGroup::Sql { .. })
    }
}

/// What a row's new users did after their first launch.
#[derive(Debug, Clone, Default)]
pub struct Outcomes {
    /// Core events counted (each adds `<event>_users`, `_count`, `_value` and `_rate`).
    pub events: Vec<CoreEvent>,
    /// `retained_d<N>` for each N of [`RETENTION_DAYS`]: the share of the row's new users whose
    /// day N after the day of their first launch has ended by `now_ms` who launched that day
    /// (null when none has).
    pub retained_days: Vec<u32>,
    /// The moment the query runs at, epoch ms.
    pub now_ms: i64,
    /// How core events are credited.
    pub attribution: Attribution,
}

impl Outcomes {
    /// The metric columns these outcomes add, with whether each is a ratio.
    pub fn columns(&self) -> Vec<(String, bool)> {
        let events = self.events.iter().flat_map(|e| {
            ["users", "count", "value", "rate"]
                .map(|measure| (format!("{}_{measure}", e.event), matches!(measure, "rate")))
        });
        let retained = self
            .retained_days
            .iter()
            .map(|n| (format!("retained_d{n}"), true));
        events.chain(retained).collect()
    }
}

/// Appends `value` to `params` and names it (`$3`…: after the project and the window's start).
fn bind(params: &mut Vec<ScalarValue>, value: ScalarValue) -> String {
    params.push(value);
    format!("${}", params.len() + 2)
}

/// Label of the row of launches without a `utm_source` or code.
pub const UNATTRIBUTED: &str = "(unattributed)";
/// Label of an attributed launch with no value for a dimension.
pub const NOT_SET: &str = "(not set)";

/// A time window: whole calendar days `[from, to]` in `tz`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Window {
    pub from: NaiveDate,
    /// Inclusive.
    pub to: NaiveDate,
    /// IANA name of the days' time zone.
    #[serde(serialize_with = "serialize_tz")]
    #[schema(value_type = String, example = "Asia/Shanghai")]
    pub tz: Tz,
}

fn serialize_tz<S: serde::Serializer>(tz: &Tz, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(tz.name())
}

/// Years a window may touch: before 2000 or after 2099 a date is a typo or a probe, and the
/// arithmetic of dates far out would overflow.
const YEARS: std::ops::RangeInclusive<i32> = 2000..=2099;
/// The longest window, in days (three years).
const MAX_DAYS: u32 = 1096;

impl Window {
    /// The `days` complete calendar days before today (in `tz`, "today" being the day of `now`).
    pub fn past_days(now: DateTime<Utc>, days: u32, tz: Tz) -> Result<Window> {
        if days == 0 || days > MAX_DAYS {
            return Err(Error::invalid(
                "days",
                format!("days must be 1 to {MAX_DAYS} (three years), got {days}"),
            ));
        }
        let today = now.with_timezone(&tz).date_naive();
        let to = today.checked_sub_days(Days::new(1));
        let from = today.checked_sub_days(Days::new(u64::from(days)));
        match (from, to) {
            (Some(from), Some(to))
                if YEARS.contains(&from.year()) && YEARS.contains(&to.year()) =>
            {
                Ok(Window { from, to, tz })
            }
            _ => Err(Error::invalid(
                "now",
                format!(
                    "a window of {days} days before {today} leaves the years {}–{}",
                    YEARS.start(),
                    YEARS.end()
                ),
            )),
        }
    }

    /// The days `from` to `to`, both included.
    pub fn dates(from: NaiveDate, to: NaiveDate, tz: Tz) -> Result<Window> {
        for (field, date) in [("from", from), ("to", to)] {
            if !YEARS.contains(&date.year()) {
                return Err(Error::invalid(
                    field,
                    format!(
                        "{field} {date} is outside the years {}–{}",
                        YEARS.start(),
                        YEARS.end()
                    ),
                ));
            }
        }
        if to < from {
            return Err(Error::invalid(
                "to",
                format!("--to {to} is before --from {from}"),
            ));
        }
        let days = (to - from).num_days() + 1;
        if days > i64::from(MAX_DAYS) {
            return Err(Error::invalid(
                "to",
                format!(
                    "{from} to {to} is {days} days, over the {MAX_DAYS}-day (three-year) limit by {}",
                    days - i64::from(MAX_DAYS)
                ),
            ));
        }
        Ok(Window { from, to, tz })
    }

    /// The window of as many days just before this one (a comparison's previous period).
    pub fn previous(&self) -> Result<Window> {
        let days = Days::new((self.to - self.from).num_days() as u64 + 1);
        match (
            self.from.checked_sub_days(days),
            self.to.checked_sub_days(days),
        ) {
            (Some(from), Some(to)) => Window::dates(from, to, self.tz),
            _ => Err(Error::invalid(
                "range",
                "the previous period leaves the calendar",
            )),
        }
    }

    /// First instant of the window, epoch milliseconds.
    pub fn start_ms(&self) -> i64 {
        start_of_day(self.from, self.tz)
    }

    /// First instant after the window, epoch milliseconds.
    pub fn end_ms(&self) -> i64 {
        start_of_day(self.to + Days::new(1), self.tz)
    }
}

/// Parses `--by utm_source,utm_campaign`.
pub fn parse_dimensions(by: &str) -> Result<Vec<String>> {
    let dims: Vec<String> = by
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(str::to_string)
        .collect();
    if dims.is_empty() {
        return Err(Error::invalid(
            "by",
            "name at least one dimension, e.g. utm_source",
        ));
    }
    check_dimensions("by", dims)
}

/// `dims` if each is a dimension and named once; else an error on `field`. No dimension at all
/// is one row of totals.
pub fn check_dimensions(field: &'static str, dims: Vec<String>) -> Result<Vec<String>> {
    if let Some(d) = dims.iter().find(|d| !is_dimension(d)) {
        return Err(Error::invalid(
            field,
            format!(
                "unknown dimension `{d}`; choose from {}, {}, {PROPS_DIMENSION}",
                DIMENSIONS.join(", "),
                TIME_DIMENSIONS.join(", ")
            ),
        ));
    }
    if let Some(dup) = dims
        .iter()
        .enumerate()
        .find(|(i, d)| dims[..*i].contains(d))
    {
        return Err(Error::invalid(
            field,
            format!("dimension `{}` named twice", dup.1),
        ));
    }
    Ok(dims)
}

/// One acquisition question.
#[derive(Debug, Clone)]
pub struct AcquisitionQuery {
    pub project: String,
    /// Dimensions from [`DIMENSIONS`] and [`TIME_DIMENSIONS`], in output order.
    pub by: Vec<String>,
    pub window: Window,
    /// Conditions every counted launch meets.
    pub filters: Vec<Filter>,
    /// Also `returning_users`: the row's users who were seen before the window.
    pub returning: bool,
    /// Core events and retention of the row's new users.
    pub outcomes: Outcomes,
    /// Only these users.
    pub group: Option<UserGroup>,
    /// The project's channel rules, tried before the default channels.
    pub channel_rules: Vec<ChannelRule>,
    /// The version of the project's attribution settings the rules and the lookback came from.
    pub settings_version: u32,
}

impl AcquisitionQuery {
    /// New users, users and launches of `project` by `by` over `window`, with the project's
    /// `settings` (its channel rules).
    pub fn acquisition(
        project: &str,
        by: Vec<String>,
        window: Window,
        settings: &SettingsVersion,
    ) -> AcquisitionQuery {
        AcquisitionQuery {
            project: project.to_string(),
            by,
            window,
            filters: Vec::new(),
            returning: false,
            outcomes: Outcomes::default(),
            group: None,
            channel_rules: settings.settings.channel_rules.clone(),
            settings_version: settings.version,
        }
    }

    /// The SQL of the window's launches, with `$1` project, `$2`/`$3` window instants, `$4`/`$5`
    /// partition days: one row per launch with its attribution flag and dimension values `d0…`.
    /// Dimension names come from [`DIMENSIONS`] only, never from the caller's text. `codes` is
    /// the table of [`CodeLinks`].
    fn window_sql(&self, tables: &QueryTables<'_>) -> String {
        let projected = self.projected_columns();
        let resolved = resolved_launches(
            tables,
            "l.dt >= $4 AND l.dt <= $5 AND l.event_time >= $2 AND l.event_time < $3",
        );
        // Only the group's users, when it is a set of them.
        let members = match (&self.group, tables.group) {
            (Some(UserGroup::DidNot { .. }), Some(g)) => {
                format!("\n            WHERE user_id NOT IN (SELECT user_id FROM {g})")
            }
            (_, Some(g)) => format!("\n            WHERE user_id IN (SELECT user_id FROM {g})"),
            (_, None) => String::new(),
        };
        format!(
            "WITH {resolved}
            SELECT user_id, event_id, event_time, {ATTRIBUTED} AS attributed,
                   true AS everyone{projected}
            FROM resolved{members}"
        )
    }

    /// The dimensions' and filters' columns of a launch of `resolved`: `d<i>` (a dimension's
    /// value when the launch is attributed) and `f<j>` (a filter's value), each after a comma.
    /// Time dimensions are added to the snapshot in Rust (`add_time_columns`).
    fn projected_columns(&self) -> String {
        self.projected_names()
            .into_iter()
            .map(|(name, expression)| format!(", {expression} AS {name}"))
            .collect()
    }

    /// (name, SQL) of each of [`Self::projected_columns`].
    fn projected_names(&self) -> Vec<(String, String)> {
        let dims = self
            .by
            .iter()
            .enumerate()
            .filter(|(_, dimension)| !is_time(dimension))
            .map(|(i, dimension)| {
                let value = format!("CAST({} AS VARCHAR)", dimension_sql(dimension));
                let shown = if every_launch(dimension) {
                    value
                } else {
                    format!("CASE WHEN {ATTRIBUTED} THEN {value} END")
                };
                (format!("d{i}"), shown)
            });
        let filters = (self.filters.iter().enumerate())
            .filter(|(_, f)| !is_time(&f.dimension))
            .map(|(j, f)| {
                let value = dimension_sql(&f.dimension);
                (format!("f{j}"), format!("CAST({value} AS VARCHAR)"))
            });
        dims.chain(filters).collect()
    }

    /// The users of a group given as a set ([`QueryTables::group`]): SQL over `resolved`
    /// (first touch) or `events`, with `$1` project, `$2`/`$3` the window, `$4`/`$5` its
    /// partitions and `$6` the group's value; `None` for a group of conditions on the window.
    fn group_sql(&self, tables: &QueryTables<'_>) -> Option<String> {
        let events = |condition: &str| {
            format!(
                "SELECT DISTINCT user_id FROM {} WHERE project = $1 AND dt >= $4 AND dt <= $5
                   AND event_time >= $2 AND event_time < $3 AND {condition}",
                by_person(tables.identities, EVENTS, "project, dt, event, event_time")
            )
        };
        match self.group.as_ref()? {
            UserGroup::New | UserGroup::Returning | UserGroup::Sql { .. } => None,
            UserGroup::Did { .. } | UserGroup::DidNot { .. } => Some(events("event = $6")),
            UserGroup::FirstTouch { dimension, .. } => Some(format!(
                // Every launch up to the window's end, each user's first one's value.
                "WITH {resolved}
                SELECT user_id FROM (
                    SELECT user_id,
                           first_value(CAST({dimension} AS VARCHAR) ORDER BY event_time, event_id) AS value
                    FROM resolved GROUP BY user_id
                ) WHERE value = $6",
                resolved = resolved_launches(tables, "l.event_time < $3")
            )),
        }
    }
}

/// The `resolved` CTE: the project's launches meeting `bounds` (SQL over `l`), each with its
/// person as `user_id` and the UTM fields a linked code's record gives it.
fn resolved_launches(tables: &QueryTables<'_>, bounds: &str) -> String {
    let link = if tables.links.has_scan_keys {
        format!(
            "coalesce(l.code_id, CASE WHEN l.code_kind IN ('A', 'C') \
             THEN {SCAN_KEY_FUNCTION}(l.path, l.query) END)"
        )
    } else {
        "l.code_id".to_string()
    };
    // A launch's user is the person it belongs to (DESIGN.md "Identities").
    let (user, people) = match tables.identities {
        Some(ids) => (
            "coalesce(i.person, l.user_id)",
            format!("\n                LEFT JOIN {ids} i ON i.user_id = l.user_id"),
        ),
        None => ("l.user_id", String::new()),
    };
    let codes = tables.codes;
    let channel = tables.channel;
    format!(
        "resolved AS (
                SELECT {user} AS user_id, l.event_id, l.event_time,
                       coalesce(c.code_id, l.code_id) AS code_id, l.code_kind,
                       l.scene, l.launch_type, l.path, l.props,
                       coalesce(l.utm_source, c.utm_source) AS utm_source,
                       coalesce(l.utm_medium, c.utm_medium) AS utm_medium,
                       coalesce(l.utm_campaign, c.utm_campaign) AS utm_campaign,
                       coalesce(l.utm_content, c.utm_content) AS utm_content,
                       coalesce(l.utm_term, c.utm_term) AS utm_term,
                       CASE WHEN c.code_id IS NULL THEN l.code_id
                            ELSE concat(c.name, ' (', c.code_id, ')') END AS code,
                       {channel} AS channel
                FROM launch_events l
                LEFT JOIN {codes} c ON c.link = {link}{people}
                WHERE l.project = $1 AND {bounds}
            )"
    )
}

impl AcquisitionQuery {
    /// The SQL of the answer over `window` (the rows of [`Self::window_sql`], held in memory),
    /// with `$1` project, `$2` window start and the filters' and outcomes' values after them
    /// (pushed onto `params`).
    ///
    /// Each measure comes from one branch of a `UNION ALL` (the others give it 0), summed per
    /// row at the end: rows whose dimension values are NULL meet without any join on them.
    fn counts_sql(&self, tables: &QueryTables<'_>, params: &mut Vec<ScalarValue>) -> String {
        let (window, identities) = (tables.window, tables.identities);
        let first_seen = by_person(identities, USER_FIRST_SEEN, "project, first_time");
        let n = self.by.len();
        let d = |i: usize| format!("d{i}");
        let list = |f: &dyn Fn(usize) -> String| (0..n).map(f).collect::<Vec<_>>().join(", ");
        let dims = list(&d);
        let labelled = list(&|i| {
            if is_time(&self.by[i]) {
                format!("{} AS \"{}\"", d(i), self.by[i])
            } else if every_launch(&self.by[i]) {
                format!("coalesce({}, '{NOT_SET}') AS \"{}\"", d(i), self.by[i])
            } else {
                format!(
                    "CASE WHEN NOT attributed THEN '{UNATTRIBUTED}' ELSE coalesce({}, '{NOT_SET}') END AS \"{}\"",
                    d(i),
                    self.by[i]
                )
            }
        });
        // Launches without attribution are a row of their own where a dimension is not a time
        // (`(unattributed)`); split by time only, every launch of a day is in that day's row.
        let keys = if self.by.iter().any(|d| !is_time(d)) {
            format!("attributed, {dims}")
        } else if self.by.is_empty() {
            // One row of totals: every launch has the same (constant) key.
            "everyone".to_string()
        } else {
            dims.clone()
        };
        // Seen before the window: a column of the window's snapshot (`mark_users`); the
        // credits of a multi-touch model (users of conversions, with or without a launch in the
        // window) ask `user_first_seen` itself.
        let seen_in_first_seen = format!(
            "EXISTS (SELECT 1 FROM {first_seen} f
                    WHERE f.project = $1 AND f.first_time < $2 AND f.user_id = w.user_id)"
        );
        let filters = self
            .filters
            .iter()
            .enumerate()
            .map(|(j, f)| format!(" AND {}", f.sql(&format!("f{j}"), params)))
            .collect::<String>();
        let group_condition = |seen_before: &str| match self.group {
            Some(UserGroup::New) => format!(" AND NOT {seen_before}"),
            Some(UserGroup::Returning) => format!(" AND {seen_before}"),
            _ => String::new(),
        };
        let kept = format!("{filters}{}", group_condition("w.seen_before"));
        let kept_credits = format!("{filters}{}", group_condition(&seen_in_first_seen));
        let outcomes = &self.outcomes;
        // Every measure, with the value the branches that do not count it give.
        let mut measures: Vec<(String, &str)> = ["new_users", "users", "launches"]
            .map(|m| (m.to_string(), "0"))
            .to_vec();
        if self.returning {
            measures.push(("returning_users".into(), "0"));
        }
        // Credits of a multi-touch model are fractions.
        let credited = outcomes.attribution.model != Model::FirstTouch;
        let count_zero = if credited { "CAST(0 AS DOUBLE)" } else { "0" };
        for k in 0..outcomes.events.len() {
            measures.push((format!("e{k}_users"), count_zero));
            measures.push((format!("e{k}_count"), count_zero));
            measures.push((format!("e{k}_value"), "CAST(0 AS DOUBLE)"));
        }
        for n in &outcomes.retained_days {
            measures.push((format!("r{n}_eligible"), "0"));
            measures.push((format!("r{n}_kept"), "0"));
        }
        let branch = |own: &[(String, String)], rest: &str| {
            let columns = measures
                .iter()
                .map(|(name, zero)| {
                    let expr = own
                        .iter()
                        .find(|(m, _)| m == name)
                        .map_or(*zero, |(_, e)| e);
                    format!("{expr} AS {name}")
                })
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "SELECT {keys}, {columns}\n                {rest}\n                GROUP BY {keys}"
            )
        };
        let own = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(m, e)| (m.to_string(), e.to_string()))
                .collect()
        };
        let mut branches = vec![
            branch(
                &own(&[
                    ("users", "count(DISTINCT user_id)"),
                    ("launches", "count(*)"),
                ]),
                &format!("FROM {window} w WHERE true{kept}"),
            ),
            branch(&own(&[("new_users", "count(*)")]), "FROM first_touch"),
        ];
        if self.returning {
            // Returning users: those of the row seen before the window (`user_first_seen`).
            branches.push(branch(
                &own(&[("returning_users", "count(DISTINCT user_id)")]),
                &format!("FROM {window} w WHERE true{kept} AND w.seen_before"),
            ));
        }
        for (k, credits) in tables.credits.iter().enumerate().filter(|_| credited) {
            branches.push(branch(
                &[
                    (
                        format!("e{k}_users"),
                        "sum(CASE WHEN first_of_user THEN credit ELSE 0.0 END)".into(),
                    ),
                    (format!("e{k}_count"), "sum(credit)".into()),
                    (format!("e{k}_value"), "sum(credit * value)".into()),
                ],
                &format!("FROM {credits} w WHERE true{kept_credits}"),
            ));
        }
        for (k, event) in outcomes.events.iter().enumerate().filter(|_| !credited) {
            // The event's partitions: from the window's first day to `within_days` after its
            // last, a day of margin each side (partition days are in the project's zone).
            let name = bind(params, ScalarValue::Utf8(Some(event.event.clone())));
            let value = bind(params, ScalarValue::Utf8(Some(event.value.clone())));
            let dt_from = bind(params, dt(self.window.from - Days::new(1)));
            let dt_to = bind(
                params,
                dt(self.window.to + Days::new(u64::from(event.within_days) + 1)),
            );
            branches.push(branch(
                &[
                    (format!("e{k}_users"), "count(DISTINCT ft.user_id)".into()),
                    (format!("e{k}_count"), "count(*)".into()),
                    (
                        format!("e{k}_value"),
                        format!("coalesce(sum(e.props_number[{value}]), 0)"),
                    ),
                ],
                &format!(
                    "FROM first_touch ft JOIN {events} e ON e.user_id = ft.user_id
                WHERE e.project = $1 AND e.event = {name} AND e.dt >= {dt_from} AND e.dt <= {dt_to}
                  AND e.event_time >= ft.event_time
                  AND e.event_time < ft.event_time + INTERVAL '{} days'",
                    event.within_days,
                    events = by_person(
                        identities,
                        EVENTS,
                        "project, dt, event, event_time, props_number"
                    ),
                ),
            ));
        }
        if let Some(&longest) = outcomes.retained_days.iter().max() {
            let now = bind(params, utc(outcomes.now_ms));
            let dt_from = bind(params, dt(self.window.from));
            let dt_to = bind(
                params,
                dt(self.window.to + Days::new(u64::from(longest) + 1)),
            );
            for n in &outcomes.retained_days {
                branches.push(branch(
                    &[
                        (
                            format!("r{n}_eligible"),
                            "count(DISTINCT ft.user_id)".into(),
                        ),
                        (format!("r{n}_kept"), "count(DISTINCT l.user_id)".into()),
                    ],
                    &format!(
                        "FROM first_touch ft LEFT JOIN (
                    SELECT user_id, event_time FROM {launches}
                    WHERE project = $1 AND dt >= {dt_from} AND dt <= {dt_to}
                ) l ON l.user_id = ft.user_id
                    AND l.event_time >= ft.r{n}_from AND l.event_time < ft.r{n}_to
                WHERE ft.r{n}_to <= {now}",
                        launches = by_person(identities, LAUNCH_EVENTS, "project, dt, event_time"),
                    ),
                ));
            }
        }
        let mut totals = vec![
            "CAST(sum(new_users) AS BIGINT) AS new_users".to_string(),
            "CAST(sum(users) AS BIGINT) AS users".to_string(),
            "CAST(sum(launches) AS BIGINT) AS launches".to_string(),
        ];
        if self.returning {
            totals.push("CAST(sum(returning_users) AS BIGINT) AS returning_users".into());
        }
        let share = |part: &str, whole: &str, name: &str| {
            format!(
                "CASE WHEN sum({whole}) = 0 THEN NULL \
                 ELSE CAST(sum({part}) AS DOUBLE) / sum({whole}) END AS \"{name}\""
            )
        };
        for (k, event) in outcomes.events.iter().enumerate() {
            let e = &event.event;
            // Rounded to a millionth: sums of decimal amounts (and credits) in binary floating
            // point would otherwise end in noise (2364.1000000000004).
            let count = |m: &str| {
                if credited {
                    format!("round(sum(e{k}_{m}), 6) AS \"{e}_{m}\"")
                } else {
                    format!("CAST(sum(e{k}_{m}) AS BIGINT) AS \"{e}_{m}\"")
                }
            };
            totals.push(count("users"));
            totals.push(count("count"));
            totals.push(format!("round(sum(e{k}_value), 6) AS \"{e}_value\""));
            // Credited conversions are of the row's users; first-touch ones of its new users.
            let base = if credited { "users" } else { "new_users" };
            totals.push(share(&format!("e{k}_users"), base, &format!("{e}_rate")));
        }
        for n in &outcomes.retained_days {
            totals.push(share(
                &format!("r{n}_kept"),
                &format!("r{n}_eligible"),
                &format!("retained_d{n}"),
            ));
        }
        // Split first by time, the rows follow the calendar; then the largest first.
        let order: Vec<String> = (self.by.first().filter(|d| is_time(d)))
            .map(|d| format!("\"{d}\""))
            .into_iter()
            .chain(["new_users DESC", "users DESC", "launches DESC"].map(String::from))
            .chain(self.by.iter().map(|d| format!("\"{d}\"")))
            .collect();
        // A new user's first launch, and (for retention) their day N's bounds.
        let first_touch_columns = std::iter::once(", user_id, event_time".to_string())
            .chain(
                outcomes
                    .retained_days
                    .iter()
                    .map(|n| format!(", r{n}_from, r{n}_to")),
            )
            .collect::<String>();
        format!(
            "WITH
            -- A user's first launch ever is in the window exactly when it is their first launch
            -- in the window (marked in the snapshot, see `mark_users`) and they were
            -- never seen before the window (`user_first_seen`, one row per user and flush kept
            -- at ingest, instead of the whole launch history).
            first_touch AS (
                SELECT {keys}{first_touch_columns}
                FROM {window} w
                WHERE first_launch{kept} AND NOT w.seen_before
            ),
            counts AS (
                {branches}
            )
            SELECT {columns}
            FROM counts GROUP BY {keys}
            ORDER BY {order}",
            branches = branches.join("\n                UNION ALL\n                "),
            columns = (!labelled.is_empty())
                .then_some(labelled)
                .into_iter()
                .chain(totals)
                .collect::<Vec<_>>()
                .join(",\n                   "),
            order = order.join(", "),
        )
    }

    /// The credits of a core event under a multi-touch model, with `$1` project, `$2` window
    /// start and the values pushed onto `params` after them: each conversion in the window
    /// (each `event` of a user of the query) is credited to the user's launches in the
    /// `lookback_days` before it, by the model; a conversion without any is credited to the
    /// unattributed row. One row per credited launch: its user, dimensions and filters'
    /// values, the credit, the conversion's value and whether it is the user's first. Read
    /// into memory before the counts (as the window is), which sum them: `e<k>_count` the
    /// credits, `e<k>_value` the credits times the value, `e<k>_users` the credits of each
    /// user's first conversion (so a converting user is one in all).
    fn credits_sql(
        &self,
        event: &CoreEvent,
        tables: &QueryTables<'_>,
        params: &mut Vec<ScalarValue>,
    ) -> String {
        let lookback = self.outcomes.attribution.lookback();
        let name = bind(params, ScalarValue::Utf8(Some(event.event.clone())));
        let value = bind(params, ScalarValue::Utf8(Some(event.value.clone())));
        let start = utc(self.window.start_ms());
        let end = utc(self.window.end_ms());
        let (start, end) = (bind(params, start), bind(params, end));
        let events_from = bind(params, dt(self.window.from - Days::new(1)));
        let events_to = bind(params, dt(self.window.to + Days::new(1)));
        let launches_from = bind(
            params,
            dt(self.window.from - Days::new(u64::from(lookback) + 1)),
        );
        let resolved = resolved_launches(
            tables,
            &format!("l.dt >= {launches_from} AND l.dt <= {events_to} AND l.event_time < {end}"),
        );
        let projected = self.projected_columns();
        let touch_columns: String = self
            .projected_names()
            .into_iter()
            .map(|(name, _)| format!(", t.{name}"))
            .collect();
        let ranked_columns: String = self
            .projected_names()
            .into_iter()
            .map(|(name, _)| format!(", {name}"))
            .collect();
        let members = match (&self.group, tables.group) {
            (Some(UserGroup::DidNot { .. }), Some(g)) => {
                format!(" AND c.user_id NOT IN (SELECT user_id FROM {g})")
            }
            (_, Some(g)) => format!(" AND c.user_id IN (SELECT user_id FROM {g})"),
            (_, None) => String::new(),
        };
        let events = by_person(
            tables.identities,
            EVENTS,
            "project, dt, event, event_id, event_time, props_number",
        );
        let credit = self.outcomes.attribution.credit_sql();
        format!(
            "WITH {resolved},
                touches AS (
                    SELECT user_id, event_id, event_time, {ATTRIBUTED} AS attributed{projected}
                    FROM resolved
                ),
                conversions AS (
                    SELECT c.user_id, c.event_id AS conversion, c.event_time AS at,
                           coalesce(c.props_number[{value}], 0) AS value,
                           row_number() OVER (PARTITION BY c.user_id ORDER BY c.event_time, c.event_id) = 1 AS first_of_user
                    FROM {events} c
                    WHERE c.project = $1 AND c.event = {name} AND c.dt >= {events_from}
                      AND c.dt <= {events_to} AND c.event_time >= {start} AND c.event_time < {end}{members}
                ),
                paired AS (
                    SELECT c.user_id, c.conversion, c.value, c.first_of_user,
                           t.event_id, t.attributed{touch_columns},
                           row_number() OVER (PARTITION BY c.conversion ORDER BY t.event_time, t.event_id) AS pos,
                           count(t.event_id) OVER (PARTITION BY c.conversion) AS touched
                    FROM conversions c LEFT JOIN touches t
                      ON t.user_id = c.user_id AND t.event_time <= c.at
                     AND t.event_time >= c.at - INTERVAL '{lookback} days'
                ),
                ranked AS (
                    SELECT *, greatest(touched, 1) AS n,
                           coalesce(max(CASE WHEN attributed THEN pos END) OVER (PARTITION BY conversion),
                                    greatest(touched, 1)) AS last_credited
                    FROM paired
                )
                SELECT user_id, value, first_of_user,
                       coalesce(attributed, false) AS attributed, true AS everyone{ranked_columns},
                       {credit} AS credit
                FROM ranked"
        )
    }

    /// The snapshot's columns computed from `event_time`: `d{i}` of time dimensions, `f{j}` of
    /// filters on them.
    fn time_columns(&self) -> Vec<(String, &str)> {
        let dims = self
            .by
            .iter()
            .enumerate()
            .map(|(i, d)| (format!("d{i}"), d.as_str()));
        let filters =
            (self.filters.iter().enumerate()).map(|(j, f)| (format!("f{j}"), f.dimension.as_str()));
        dims.chain(filters).filter(|(_, d)| is_time(d)).collect()
    }

    /// Runs the query. The window's launches are read once, into memory, and both the counts and
    /// the first touches come from that one snapshot: a flush landing meanwhile cannot make users
    /// appear without their new users. (A window is at most a few hundred thousand rows of five
    /// narrow columns for a week of a busy mini-program.)
    /// Runs the query (again once if compaction removed a file under it).
    pub async fn run(&self, ctx: &SessionContext) -> Result<Vec<RecordBatch>> {
        crate::sql::again_if_files_vanished(|| self.run_once(ctx)).await
    }

    /// Whether the query can run: its project's name, filters, core events and retention days.
    pub fn check(&self) -> Result<()> {
        promolens_schemas::event::validate_project_name(&self.project)
            .map_err(|m| Error::invalid("project", m))?;
        for filter in &self.filters {
            filter.check()?;
        }
        for event in &self.outcomes.events {
            event.check()?;
        }
        if let Some(group) = &self.group {
            group.check()?;
        }
        self.outcomes.attribution.check(&self.by)?;
        if self.outcomes.attribution.model != Model::FirstTouch
            && self.filters.iter().any(|f| is_time(&f.dimension))
        {
            return Err(Error::invalid(
                "attribution",
                "a model other than first touch credits launches: filter by day, week or month \
                 with the first-touch model",
            ));
        }
        if let Some(n) = (self.outcomes.retained_days.iter()).find(|n| !RETENTION_DAYS.contains(n))
        {
            return Err(Error::invalid(
                "metrics",
                format!("retained_d{n}: retention is measured on day 1, 7 or 30"),
            ));
        }
        Ok(())
    }

    async fn run_once(&self, ctx: &SessionContext) -> Result<Vec<RecordBatch>> {
        self.check()?;
        let project = ScalarValue::Utf8(Some(self.project.clone()));
        let start = utc(self.window.start_ms());
        // Names of their own per query: concurrent queries share the context's catalog.
        let unique = uuid::Uuid::new_v4().simple();
        let (codes, name) = (
            format!("acquisition_codes_{unique}"),
            format!("acquisition_window_{unique}"),
        );
        let links = code_links(ctx, &self.project).await?;
        ctx.register_table(&codes, links.table.clone())?;
        let identities = format!("acquisition_people_{unique}");
        let group = format!("acquisition_group_{unique}");
        let channel = channel_sql(&self.channel_rules);
        let answer = async {
            let people = identities_of(ctx, &project).await?;
            let has_people = people.num_rows() > 0;
            if has_people {
                ctx.register_table(
                    &identities,
                    Arc::new(MemTable::try_new(people.schema(), vec![vec![people]])?),
                )?;
            }
            let mut tables = QueryTables {
                codes: &codes,
                links: &links,
                identities: has_people.then_some(identities.as_str()),
                group: None,
                credits: Vec::new(),
                window: &name,
                channel: &channel,
            };
            if let Some(members) = self.group_members(ctx, &tables).await? {
                ctx.register_table(
                    &group,
                    Arc::new(MemTable::try_new(members.schema(), vec![vec![members]])?),
                )?;
                tables.group = Some(group.as_str());
            }
            self.run_over(ctx, &tables, project, start).await
        }
        .await;
        ctx.deregister_table(&codes)?;
        ctx.deregister_table(&identities)?;
        ctx.deregister_table(&group)?;
        answer
    }

    /// The users of the group, as persons, when it is a set of them.
    async fn group_members(
        &self,
        ctx: &SessionContext,
        tables: &QueryTables<'_>,
    ) -> Result<Option<RecordBatch>> {
        let (dt_from, dt_to) = self.partition_days();
        let window = |value: &str| {
            vec![
                ScalarValue::Utf8(Some(self.project.clone())),
                utc(self.window.start_ms()),
                utc(self.window.end_ms()),
                ScalarValue::Utf8(Some(dt_from.clone())),
                ScalarValue::Utf8(Some(dt_to.clone())),
                ScalarValue::Utf8(Some(value.to_string())),
            ]
        };
        let frame = match &self.group {
            Some(UserGroup::Sql { predicate }) => sql_group(ctx, tables, self, predicate).await?,
            Some(UserGroup::Did { event } | UserGroup::DidNot { event }) => {
                let Some(sql) = self.group_sql(tables) else {
                    return Ok(None);
                };
                ctx.sql(&sql).await?.with_param_values(window(event))?
            }
            Some(UserGroup::FirstTouch { value, .. }) => {
                let Some(sql) = self.group_sql(tables) else {
                    return Ok(None);
                };
                ctx.sql(&sql).await?.with_param_values(window(value))?
            }
            _ => return Ok(None),
        };
        let schema = frame.schema().inner().clone();
        let batches = frame.collect().await?;
        Ok(Some(datafusion::arrow::compute::concat_batches(
            &schema, &batches,
        )?))
    }

    /// The settings versions the window's stored launches were decoded with, lowest first
    /// (0 for launches stored before the project had settings).
    pub async fn decoded_with(&self, ctx: &SessionContext) -> Result<Vec<u32>> {
        let (dt_from, dt_to) = self.partition_days();
        let frame = ctx
            .sql(
                "SELECT DISTINCT CAST(coalesce(settings_version, 0) AS BIGINT) AS v
                 FROM launch_events
                 WHERE project = $1 AND dt >= $4 AND dt <= $5
                   AND event_time >= $2 AND event_time < $3
                 ORDER BY v",
            )
            .await?
            .with_param_values(vec![
                ScalarValue::Utf8(Some(self.project.clone())),
                utc(self.window.start_ms()),
                utc(self.window.end_ms()),
                ScalarValue::Utf8(Some(dt_from)),
                ScalarValue::Utf8(Some(dt_to)),
            ])?;
        let mut versions = Vec::new();
        for batch in frame.collect().await? {
            let column = batch
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .ok_or_else(|| Error::Storage("settings_version is not a number".into()))?;
            versions.extend(column.iter().flatten().map(|v| v as u32));
        }
        Ok(versions)
    }

    /// Partition days of the window: a day of margin on both sides (partition days are in
    /// the project's zone, which may differ from the query's; exact bounds come from
    /// `event_time`).
    fn partition_days(&self) -> (String, String) {
        (
            (self.window.from - Days::new(1)).to_string(),
            (self.window.to + Days::new(1)).to_string(),
        )
    }

    async fn run_over(
        &self,
        ctx: &SessionContext,
        tables: &QueryTables<'_>,
        project: ScalarValue,
        start: ScalarValue,
    ) -> Result<Vec<RecordBatch>> {
        let name = tables.window;
        let (dt_from, dt_to) = self.partition_days();
        let window = ctx
            .sql(&self.window_sql(tables))
            .await?
            .with_param_values(vec![
                project.clone(),
                start.clone(),
                utc(self.window.end_ms()),
                ScalarValue::Utf8(Some(dt_from)),
                ScalarValue::Utf8(Some(dt_to)),
            ])?;
        let schema = window.schema().inner().clone();
        let (schema, rows) =
            mark_users(ctx, tables, self, &schema, window.collect().await?).await?;
        let days = WindowDays::of(&self.window);
        let (schema, rows) = add_time_columns(&schema, rows, &self.time_columns(), &days)?;
        let (schema, rows) =
            add_retention_columns(&schema, rows, &self.outcomes.retained_days, &days)?;
        ctx.register_table(name, Arc::new(MemTable::try_new(schema, vec![rows])?))?;
        // Every credits table made is dropped again, whatever happens in between.
        let credit_names: Vec<String> = (0..self.outcomes.events.len())
            .map(|k| format!("{name}_credits_{k}"))
            .collect();
        let answer = async {
            let mut tables = QueryTables {
                credits: Vec::new(),
                ..*tables
            };
            let credited = self.outcomes.attribution.model != Model::FirstTouch;
            for (event, credits) in self.outcomes.events.iter().zip(&credit_names) {
                if !credited {
                    break;
                }
                let mut values = Vec::new();
                let sql = self.credits_sql(event, &tables, &mut values);
                let mut params = vec![project.clone(), start.clone()];
                params.extend(values);
                let frame = ctx.sql(&sql).await?.with_param_values(params)?;
                let planned = frame.schema().inner().clone();
                let rows = frame.collect().await?;
                // The batches' own schema: DataFusion's plan may disagree with them on whether
                // a column can be null.
                let schema = rows.first().map_or(planned, |b| b.schema());
                ctx.register_table(credits, Arc::new(MemTable::try_new(schema, vec![rows])?))?;
                tables.credits.push(credits.clone());
            }
            let mut filter_values = Vec::new();
            let sql = self.counts_sql(&tables, &mut filter_values);
            let mut params = vec![project, start];
            params.extend(filter_values);
            let frame = ctx.sql(&sql).await?.with_param_values(params)?;
            crate::sql::collect(frame).await
        }
        .await;
        ctx.deregister_table(name)?;
        for credits in &credit_names {
            ctx.deregister_table(credits)?;
        }
        answer
    }
}

/// The tables one query registers for itself (names unique per query).
struct QueryTables<'a> {
    /// The project's code links ([`CodeLinks`]).
    codes: &'a str,
    links: &'a CodeLinks,
    /// Each anonymous id linked to a login and its person ([`identities_of`]); `None` when
    /// nobody of the project has logged in.
    identities: Option<&'a str>,
    /// The users of the query's group, when it is a set of them ([`AcquisitionQuery::group_sql`]).
    group: Option<&'a str>,
    /// Per core event, its credits under a multi-touch model ([`AcquisitionQuery::credits_sql`]).
    credits: Vec<String>,
    /// The window's launches, held in memory.
    window: &'a str,
    /// The SQL of a launch's channel ([`channel_sql`]).
    channel: &'a str,
}

/// The project's identities: each anonymous `user_id` an `$identify` linked to a login id, and
/// its person, `login:<login id>` (the first login of the id, should a device be shared). Every
/// user-level count treats the ids of one person as one user (DESIGN.md "Identities").
async fn identities_of(ctx: &SessionContext, project: &ScalarValue) -> Result<RecordBatch> {
    let frame = ctx
        .sql(&format!(
            "SELECT user_id,
                    concat('login:', first_value(props_text['login_id'] ORDER BY event_time, event_id)) AS person
             FROM {EVENTS} WHERE project = $1 AND event = '{IDENTIFY}'
             GROUP BY user_id"
        ))
        .await?
        .with_param_values(vec![project.clone()])?;
    let schema = frame.schema().inner().clone();
    let batches = frame.collect().await?;
    Ok(datafusion::arrow::compute::concat_batches(
        &schema, &batches,
    )?)
}

/// `table` with each row's `user_id` its person's, as a subquery with `columns` beside it (or
/// the table itself when there are no identities).
fn by_person(identities: Option<&str>, table: &str, columns: &str) -> String {
    let Some(ids) = identities else {
        return table.to_string();
    };
    let columns = columns
        .split(", ")
        .map(|c| format!("t.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "(SELECT coalesce(i.person, t.user_id) AS user_id, {columns}
          FROM {table} t LEFT JOIN {ids} i ON i.user_id = t.user_id)"
    )
}

/// The users (persons) with a core event in the window for which the caller's `predicate`
/// holds. The predicate is parsed as one expression (never spliced into a statement) and
/// planned over a session holding the project's `events` only, so that no subquery in it can
/// reach another project.
async fn sql_group(
    ctx: &SessionContext,
    tables: &QueryTables<'_>,
    query: &AcquisitionQuery,
    predicate: &str,
) -> Result<datafusion::dataframe::DataFrame> {
    use datafusion::functions::expr_fn::coalesce;
    use datafusion::logical_expr::{JoinType, cast as cast_expr};
    use datafusion::prelude::{col, lit};
    let own =
        crate::tables::project_session(ctx, &query.project, &[EVENTS], ctx.runtime_env()).await?;
    let events = own.table(EVENTS).await?;
    let condition = own
        .parse_sql_expr(predicate, events.schema())
        .map_err(|e| Error::invalid("group", format!("the predicate: {e}")))?;
    let (dt_from, dt_to) = query.partition_days();
    let users = events
        .filter(
            col("dt")
                .gt_eq(lit(dt_from))
                .and(col("dt").lt_eq(lit(dt_to)))
                .and(col("event_time").gt_eq(lit(utc(query.window.start_ms()))))
                .and(col("event_time").lt(lit(utc(query.window.end_ms())))),
        )?
        .filter(condition)
        .map_err(|e| Error::invalid("group", format!("the predicate: {e}")))?
        .select(vec![
            cast_expr(col("user_id"), DataType::Utf8).alias("user_id"),
        ])?
        .distinct()?;
    let schema = users.schema().inner().clone();
    let users = datafusion::arrow::compute::concat_batches(&schema, &users.collect().await?)?;
    // The anonymous ids found, as persons (in the shared session, where the identities are).
    let found = ctx.read_batch(users)?;
    let Some(ids) = tables.identities else {
        return Ok(found);
    };
    let people = ctx
        .table(ids)
        .await?
        .select(vec![col("user_id").alias("anonymous"), col("person")])?;
    let person = coalesce(vec![col("person"), col("user_id")]);
    Ok(found
        .join(people, JoinType::Left, &["user_id"], &["anonymous"], None)?
        .select(vec![cast_expr(person, DataType::Utf8).alias("user_id")])?
        .distinct()?)
}

/// Adds two columns to the window's rows, from one pass over its users:
/// - `first_launch`: true on each user's first launch in the window by `(event_time,
///   event_id)` (DESIGN.md §4's order), whatever order the rows come in. Done here rather than
///   by `first_value(… ORDER BY …)` per user in SQL: DataFusion keeps a row of `ScalarValue`s
///   per group for an ordered aggregate, which took more than a third of the whole query.
/// - `seen_before`: whether the row's user (a person) has a `user_first_seen` row before the
///   window. One streaming pass over the project's rows before the window (sorted by time: the
///   pages after it are skipped by their statistics), probing the window's users. It replaced
///   an anti-join in SQL, whose hash join repartitioned and copied a year's user ids on every
///   query (a sixth of a 30-day analysis).
async fn mark_users(
    ctx: &SessionContext,
    tables: &QueryTables<'_>,
    query: &AcquisitionQuery,
    schema: &SchemaRef,
    batches: Vec<RecordBatch>,
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    use futures::StreamExt;
    let column = |name: &str| -> Result<Vec<ArrayRef>> {
        let index = schema.index_of(name)?;
        Ok(batches
            .iter()
            .map(|b| cast(b.column(index), &DataType::Utf8View))
            .collect::<std::result::Result<_, _>>()?)
    };
    let (users, ids) = (column("user_id")?, column("event_id")?);
    let time_index = schema.index_of("event_time")?;
    // Each user once: their number, and per number their earliest launch (time, id, batch,
    // row) and whether they were seen before; per row, its user's number.
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let mut number: HashMap<&str, u32> = HashMap::with_capacity(rows / 2);
    let mut first: Vec<(i64, &str, usize, usize)> = Vec::with_capacity(rows / 2);
    let mut user_of_row: Vec<Vec<u32>> = Vec::with_capacity(batches.len());
    for (b, batch) in batches.iter().enumerate() {
        let (users, ids) = (users[b].as_string_view(), ids[b].as_string_view());
        let times = batch
            .column(time_index)
            .as_primitive::<TimestampMillisecondType>();
        let mut of_row = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            let launch = (times.value(row), ids.value(row), b, row);
            let next = first.len() as u32;
            let user = *number.entry(users.value(row)).or_insert(next);
            if user == next {
                first.push(launch);
            } else if (launch.0, launch.1) < (first[user as usize].0, first[user as usize].1) {
                first[user as usize] = launch;
            }
            of_row.push(user);
        }
        user_of_row.push(of_row);
    }
    let mut seen = vec![false; first.len()];
    if !first.is_empty() {
        // Each anonymous id's person, where the project has identities.
        let mut person_of: HashMap<String, String> = HashMap::new();
        if let Some(people) = tables.identities {
            let frame = ctx
                .sql(&format!("SELECT user_id, person FROM {people}"))
                .await?;
            for batch in frame.collect().await? {
                let ids = cast(batch.column(0), &DataType::Utf8)?;
                let persons = cast(batch.column(1), &DataType::Utf8)?;
                let pairs = ids
                    .as_string::<i32>()
                    .iter()
                    .zip(persons.as_string::<i32>().iter());
                for (id, person) in pairs {
                    if let (Some(id), Some(person)) = (id, person) {
                        person_of.insert(id.to_string(), person.to_string());
                    }
                }
            }
        }
        let mut stream = ctx
            .sql(&format!(
                "SELECT user_id FROM {USER_FIRST_SEEN} WHERE project = $1 AND first_time < $2"
            ))
            .await?
            .with_param_values(vec![
                ScalarValue::Utf8(Some(query.project.clone())),
                utc(query.window.start_ms()),
            ])?
            .execute_stream()
            .await?;
        while let Some(batch) = stream.next().await {
            let ids = cast(batch?.column(0), &DataType::Utf8View)?;
            for id in ids.as_string_view().iter().flatten() {
                let user = person_of.get(id).map_or(id, String::as_str);
                if let Some(&n) = number.get(user) {
                    seen[n as usize] = true;
                }
            }
        }
    }
    let mut first_marks: Vec<Vec<bool>> =
        batches.iter().map(|b| vec![false; b.num_rows()]).collect();
    for (_, _, b, row) in &first {
        first_marks[*b][*row] = true;
    }
    let mut fields = schema.fields().to_vec();
    fields.push(Arc::new(Field::new(
        "first_launch",
        DataType::Boolean,
        false,
    )));
    fields.push(Arc::new(Field::new(
        "seen_before",
        DataType::Boolean,
        false,
    )));
    let marked = Arc::new(Schema::new(fields));
    let batches = batches
        .iter()
        .zip(first_marks)
        .zip(&user_of_row)
        .map(|((batch, first_marks), of_row)| {
            let seen_before: BooleanArray =
                of_row.iter().map(|&u| Some(seen[u as usize])).collect();
            let mut columns = batch.columns().to_vec();
            columns.push(Arc::new(BooleanArray::from(first_marks)));
            columns.push(Arc::new(seen_before));
            RecordBatch::try_new(marked.clone(), columns)
        })
        .collect::<std::result::Result<_, _>>()?;
    Ok((marked, batches))
}

fn is_time(dimension: &str) -> bool {
    TIME_DIMENSIONS.contains(&dimension)
}

/// The calendar days of a window in its zone, to find an instant's day without converting
/// it: a window's rows fall on few days, and converting and formatting a time per row took a
/// fifth of a 30-day analysis (chrono-tz's offset search, then `strftime`).
struct WindowDays {
    tz: Tz,
    /// The first instant of each day from the day before the window to the day after it, in
    /// order, with the day.
    starts: Vec<(i64, NaiveDate)>,
}

impl WindowDays {
    fn of(window: &Window) -> WindowDays {
        let first = window.from - Days::new(1);
        let count = (window.to - window.from).num_days() + 3;
        let starts = (0..count)
            .filter_map(|i| first.checked_add_days(Days::new(i as u64)))
            .map(|day| (start_of_day(day, window.tz), day))
            .collect();
        WindowDays {
            tz: window.tz,
            starts,
        }
    }

    /// The day of instant `ms` in the zone.
    fn day_of(&self, ms: i64) -> NaiveDate {
        let at = self.starts.partition_point(|(start, _)| *start <= ms);
        match (at.checked_sub(1), self.starts.len()) {
            // Inside the known days (the last known day's end is unknown: converted below).
            (Some(i), len) if i + 1 < len => self.starts[i].1,
            _ => DateTime::from_timestamp_millis(ms)
                .unwrap_or_default()
                .with_timezone(&self.tz)
                .date_naive(),
        }
    }
}

/// Appends to the window's rows each of `columns` (name, time dimension): the launch's day,
/// week (its Monday) or month in the window's zone, as text.
fn add_time_columns(
    schema: &SchemaRef,
    batches: Vec<RecordBatch>,
    columns: &[(String, &str)],
    days: &WindowDays,
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    if columns.is_empty() {
        return Ok((schema.clone(), batches));
    }
    let time_index = schema.index_of("event_time")?;
    let mut fields = schema.fields().to_vec();
    for (name, _) in columns {
        fields.push(Arc::new(Field::new(name, DataType::Utf8, false)));
    }
    let extended = Arc::new(Schema::new(fields));
    let row_days: Vec<Vec<NaiveDate>> = batches
        .iter()
        .map(|batch| {
            let times = batch
                .column(time_index)
                .as_primitive::<TimestampMillisecondType>();
            times.values().iter().map(|&t| days.day_of(t)).collect()
        })
        .collect();
    // Each day's label of each dimension, made once (not a string per row).
    let mut labels: HashMap<(NaiveDate, &str), String> = HashMap::new();
    for day in row_days.iter().flatten() {
        for (_, dimension) in columns {
            labels
                .entry((*day, *dimension))
                .or_insert_with(|| bucket(*day, dimension));
        }
    }
    let batches = batches
        .iter()
        .zip(&row_days)
        .map(|(batch, row_days)| {
            let mut out = batch.columns().to_vec();
            for (_, dimension) in columns {
                let text: StringArray = row_days
                    .iter()
                    .map(|day| labels.get(&(*day, *dimension)).map(String::as_str))
                    .collect();
                out.push(Arc::new(text));
            }
            RecordBatch::try_new(extended.clone(), out)
        })
        .collect::<std::result::Result<_, _>>()?;
    Ok((extended, batches))
}

/// Appends to the window's rows, for each N of `days`, the bounds of day N after the launch's
/// day in `tz` (`r<N>_from`, `r<N>_to`, UTC timestamps): where a retained user launches again.
fn add_retention_columns(
    schema: &SchemaRef,
    batches: Vec<RecordBatch>,
    days: &[u32],
    window_days: &WindowDays,
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let tz = window_days.tz;
    if days.is_empty() {
        return Ok((schema.clone(), batches));
    }
    let time_index = schema.index_of("event_time")?;
    let mut fields = schema.fields().to_vec();
    let timestamp = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    for n in days {
        fields.push(Arc::new(Field::new(
            format!("r{n}_from"),
            timestamp.clone(),
            false,
        )));
        fields.push(Arc::new(Field::new(
            format!("r{n}_to"),
            timestamp.clone(),
            false,
        )));
    }
    let extended = Arc::new(Schema::new(fields));
    // Rows of a window fall on few days: each day's start is found once.
    let mut starts: HashMap<NaiveDate, i64> = HashMap::new();
    let mut start = |day: NaiveDate| *starts.entry(day).or_insert_with(|| start_of_day(day, tz));
    let batches = batches
        .iter()
        .map(|batch| {
            let times = batch
                .column(time_index)
                .as_primitive::<TimestampMillisecondType>();
            let days_of_rows: Vec<NaiveDate> = times
                .values()
                .iter()
                .map(|&t| window_days.day_of(t))
                .collect();
            let mut out = batch.columns().to_vec();
            for &n in days {
                for offset in [n, n + 1] {
                    let bounds: TimestampMillisecondArray = days_of_rows
                        .iter()
                        .map(|day| Some(start(*day + Days::new(u64::from(offset)))))
                        .collect();
                    out.push(Arc::new(bounds.with_timezone("UTC")));
                }
            }
            RecordBatch::try_new(extended.clone(), out)
        })
        .collect::<std::result::Result<_, _>>()?;
    Ok((extended, batches))
}

/// The label of `day`'s bucket for a time dimension.
fn bucket(day: NaiveDate, dimension: &str) -> String {
    match dimension {
        "week" => (day - Days::new(u64::from(day.weekday().num_days_from_monday())))
            .format("%Y-%m-%d")
            .to_string(),
        "month" => day.format("%Y-%m").to_string(),
        _ => day.format("%Y-%m-%d").to_string(),
    }
}

/// A partition day, as in `dt=2026-11-24`.
fn dt(day: NaiveDate) -> ScalarValue {
    ScalarValue::Utf8(Some(day.to_string()))
}

fn utc(ms: i64) -> ScalarValue {
    ScalarValue::TimestampMillisecond(Some(ms), Some("UTC".into()))
}

/// The attribution rule of DESIGN.md §4, as SQL.
const ATTRIBUTED: &str = "(utm_source IS NOT NULL OR code_id IS NOT NULL)";

/// The window named by `--days` or `--from/--to` (7 days when neither is given).
pub fn window(
    days: Option<u32>,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    now: DateTime<Utc>,
    tz: Tz,
) -> Result<Window> {
    match (days, from, to) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => Err(Error::invalid(
            "days",
            "give either days or from/to, not both",
        )),
        (_, Some(from), Some(to)) => Window::dates(from, to, tz),
        (_, Some(_), None) => Err(Error::invalid("to", "from needs to")),
        (_, None, Some(_)) => Err(Error::invalid("from", "to needs from")),
        (days, None, None) => Window::past_days(now, days.unwrap_or(7), tz),
    }
}

/// A time zone by IANA name.
pub fn parse_tz(name: &str) -> Result<Tz> {
    name.parse::<Tz>().map_err(|_| {
        Error::invalid(
            "tz",
            format!("unknown time zone `{name}`; use an IANA name such as Asia/Shanghai"),
        )
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_window_finds_each_instant_s_day_as_the_zone_says_across_daylight_saving() {
        // Berlin's clocks change on 2025-03-30 and 2025-10-26; Shanghai's never.
        for (tz, from, to) in [
            (chrono_tz::Europe::Berlin, "2025-03-20", "2025-04-05"),
            (chrono_tz::Europe::Berlin, "2025-10-20", "2025-11-02"),
            (chrono_tz::Asia::Shanghai, "2025-11-01", "2025-11-30"),
        ] {
            let window = Window::dates(from.parse().unwrap(), to.parse().unwrap(), tz).unwrap();
            let days = WindowDays::of(&window);
            // Every 7 minutes and 13 seconds from two days before to two days after.
            let (start, end) = (
                window.start_ms() - 2 * 86_400_000,
                window.end_ms() + 2 * 86_400_000,
            );
            for ms in (start..end).step_by(433_000) {
                let want = DateTime::from_timestamp_millis(ms)
                    .unwrap()
                    .with_timezone(&tz)
                    .date_naive();
                assert_eq!(days.day_of(ms), want, "{tz} {ms}");
            }
        }
    }

    use super::*;

    #[test]
    fn past_seven_days_are_the_complete_days_before_today_in_shanghai() {
        // 2025-11-24 01:00 in Shanghai is 2025-11-23 17:00 UTC: today is the 24th there.
        let now = "2025-11-23T17:00:00Z".parse().unwrap();
        let w = Window::past_days(now, 7, chrono_tz::Asia::Shanghai).unwrap();
        assert_eq!(w.from.to_string(), "2025-11-17");
        assert_eq!(w.to.to_string(), "2025-11-23");
        // 2025-11-17 00:00 +08:00
        assert_eq!(w.start_ms(), 1_763_308_800_000);
        assert_eq!(w.end_ms(), 1_763_913_600_000);
    }

    #[test]
    fn unknown_dimension_names_the_choices() {
        let err = parse_dimensions("utm_source,utm_foo")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown dimension `utm_foo`; choose from channel, utm_source"),
            "{err}"
        );
    }
}
