//! The launch-event wire format (DESIGN.md §4) and its validation.
//!
//! One event is one JSON object. Parsing borrows from the input where it can (the hot path of
//! ingest and backfill) and every rejection names the field, the rule and the actual value or size,
//! so that a developer can fix the sender from the message alone.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// Why one event was rejected. `field` is the JSON path of the offending field (`query.utm_source`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("invalid JSON at column {column}: {message}")]
    Json { column: usize, message: String },
    #[error("expected a JSON object, got {got}")]
    NotAnObject { got: &'static str },
    #[error("missing required field `{field}`")]
    Missing { field: &'static str },
    #[error("field `{field}`: expected {expected}, got {got}")]
    WrongType {
        field: String,
        expected: &'static str,
        got: &'static str,
    },
    #[error("field `{field}` is {actual} bytes, over the {limit}-byte limit by {over} bytes", over = actual - limit)]
    TooLong {
        field: String,
        limit: usize,
        actual: usize,
    },
    #[error("field `{field}` has {actual} entries, over the limit of {limit}")]
    TooMany {
        field: String,
        limit: usize,
        actual: usize,
    },
    #[error("field `{field}`: {reason}")]
    Invalid { field: String, reason: String },
}

impl EventError {
    /// The JSON path of the field at fault, when one is.
    pub fn field(&self) -> Option<&str> {
        match self {
            EventError::Json { .. } | EventError::NotAnObject { .. } => None,
            EventError::Missing { field } => Some(field),
            EventError::WrongType { field, .. }
            | EventError::TooLong { field, .. }
            | EventError::TooMany { field, .. }
            | EventError::Invalid { field, .. } => Some(field),
        }
    }
}

/// Size limits of one event. The defaults are generous for real mini-program launches and small
/// enough that one malicious line cannot blow up a batch.
#[derive(Debug, Clone)]
pub struct Limits {
    /// `event_id` and `user_id`, bytes.
    pub max_id_bytes: usize,
    /// `path`, bytes.
    pub max_path_bytes: usize,
    /// Number of keys in `query`.
    pub max_query_keys: usize,
    /// One `query` key, bytes.
    pub max_query_key_bytes: usize,
    /// One `query` value, bytes (a `q` link can be long).
    pub max_query_value_bytes: usize,
    /// `props` as JSON text, bytes.
    pub max_props_bytes: usize,
    /// Live ingest: how far `ts` may lie from the time a request is received (a sender that
    /// lies about time cannot scatter one request over thousands of day partitions). `None` (a
    /// backfill): any time 2000–2099.
    pub ts_window: Option<TsWindow>,
}

/// The times live ingest accepts, around the receipt of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TsWindow {
    /// When the request was received, epoch ms.
    pub received_ms: i64,
    pub days_back: u32,
    pub days_ahead: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_id_bytes: 128,
            max_path_bytes: 1024,
            max_query_keys: 64,
            max_query_key_bytes: 128,
            max_query_value_bytes: 2048,
            max_props_bytes: 16 * 1024,
            ts_window: None,
        }
    }
}

/// Which app hook reported the launch (DESIGN.md §2): a scan while the mini-program sits in the
/// background re-enters through `App.onShow` only, so both are reported and both attributed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaunchType {
    /// `App.onLaunch`: a cold start.
    Cold,
    /// `App.onShow`: a return from the background.
    Hot,
}

impl LaunchType {
    pub fn as_str(self) -> &'static str {
        match self {
            LaunchType::Cold => "cold",
            LaunchType::Hot => "hot",
        }
    }
}

/// A launch `query`: (key, value) pairs in the order sent.
pub type QueryPairs<'a> = Vec<(Cow<'a, str>, Cow<'a, str>)>;

/// A validated launch event. Its text borrows from the JSON it was parsed from where it can (no
/// allocation on the hot path of ingest); [`LaunchEvent::into_owned`] detaches it.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchEvent<'a> {
    pub event_id: Cow<'a, str>,
    pub user_id: Cow<'a, str>,
    /// When the launch happened, epoch milliseconds (from `ts`).
    pub event_time_ms: i64,
    /// When the client sent it, epoch milliseconds.
    pub sent_at_ms: Option<i64>,
    /// The project named in the event; ingest checks it against the URL's.
    pub project: Option<Cow<'a, str>>,
    /// The launch scene value (1047 = scan of a mini-program code, …).
    pub scene: Option<i32>,
    pub path: Option<Cow<'a, str>>,
    /// `query` exactly as the mini-program received it, in the order sent.
    pub query: QueryPairs<'a>,
    pub launch_type: Option<LaunchType>,
    /// `props` as compact JSON text (an object).
    pub props: Option<Cow<'a, str>>,
}

/// Earliest and latest accepted event times: 2000-01-01 and 2100-01-01 UTC. Outside them a
/// timestamp is a unit mistake (seconds for milliseconds) or garbage, never a real launch.
const MIN_TS_MS: i64 = 946_684_800_000;
const MAX_TS_MS: i64 = 4_102_444_800_000;

impl<'a> LaunchEvent<'a> {
    /// Parses and validates one event from its JSON text.
    pub fn parse(json: &'a str, limits: &Limits) -> Result<LaunchEvent<'a>, EventError> {
        // serde would read a JSON array positionally into the struct: refuse anything but an object.
        match json.trim_start().as_bytes().first() {
            Some(b'{') => {}
            None => {
                return Err(EventError::Json {
                    column: 0,
                    message: "empty input".into(),
                });
            }
            Some(_) if serde_json::from_str::<serde::de::IgnoredAny>(json).is_ok() => {
                return Err(EventError::NotAnObject {
                    got: json_kind_of_text(json.trim_start()),
                });
            }
            Some(_) => {}
        }
        let wire: Wire<'a> = serde_json::from_str(json).map_err(json_error)?;
        wire.validate(limits)
    }

    /// The same event, owning its text.
    pub fn into_owned(self) -> LaunchEvent<'static> {
        let own = |s: Cow<'a, str>| Cow::Owned(s.into_owned());
        LaunchEvent {
            event_id: own(self.event_id),
            user_id: own(self.user_id),
            event_time_ms: self.event_time_ms,
            sent_at_ms: self.sent_at_ms,
            project: self.project.map(own),
            scene: self.scene,
            path: self.path.map(own),
            query: self
                .query
                .into_iter()
                .map(|(k, v)| (own(k), own(v)))
                .collect(),
            launch_type: self.launch_type,
            props: self.props.map(own),
        }
    }

    /// The event in the wire format, compact: [`LaunchEvent::parse`] reads it back unchanged.
    pub fn to_wire_json(&self) -> String {
        use std::fmt::Write;
        let s = |text: &str| serde_json::to_string(text).unwrap_or_default();
        let mut out = String::with_capacity(256);
        let _ = write!(
            out,
            "{{\"event_id\":{},\"user_id\":{},\"ts\":{}",
            s(&self.event_id),
            s(&self.user_id),
            self.event_time_ms
        );
        if let Some(t) = self.sent_at_ms {
            let _ = write!(out, ",\"sent_at\":{t}");
        }
        if let Some(p) = &self.project {
            let _ = write!(out, ",\"project\":{}", s(p));
        }
        if let Some(scene) = self.scene {
            let _ = write!(out, ",\"scene\":{scene}");
        }
        if let Some(path) = &self.path {
            let _ = write!(out, ",\"path\":{}", s(path));
        }
        if !self.query.is_empty() {
            out.push_str(",\"query\":{");
            for (i, (k, v)) in self.query.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{}:{}", s(k), s(v));
            }
            out.push('}');
        }
        if let Some(t) = self.launch_type {
            let _ = write!(out, ",\"launch_type\":\"{}\"", t.as_str());
        }
        if let Some(props) = &self.props {
            let _ = write!(out, ",\"props\":{props}");
        }
        out.push('}');
        out
    }

    /// The value of one `query` key.
    pub fn query_value(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_ref())
    }
}

fn json_error(e: serde_json::Error) -> EventError {
    let message = e.to_string();
    let message = match message.rfind(" at line ") {
        Some(at) => message[..at].to_string(),
        None => message,
    };
    EventError::Json {
        column: e.column(),
        message,
    }
}

/// The event as it arrives: every field typed loosely so that validation, not serde, says what
/// is wrong with it.
#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow, default)]
    event_id: Option<Json<'a>>,
    #[serde(borrow, default)]
    user_id: Option<Json<'a>>,
    #[serde(borrow, default)]
    ts: Option<Json<'a>>,
    #[serde(borrow, default)]
    sent_at: Option<Json<'a>>,
    #[serde(borrow, default)]
    project: Option<Json<'a>>,
    #[serde(borrow, default)]
    scene: Option<Json<'a>>,
    #[serde(borrow, default)]
    path: Option<Json<'a>>,
    #[serde(borrow, default)]
    query: Option<Query<'a>>,
    #[serde(borrow, default)]
    launch_type: Option<Json<'a>>,
    #[serde(borrow, default)]
    props: Option<&'a RawValue>,
}

impl<'a> Wire<'a> {
    fn validate(self, limits: &Limits) -> Result<LaunchEvent<'a>, EventError> {
        let event_id = required_string("event_id", self.event_id, limits.max_id_bytes)?;
        let user_id = required_string("user_id", self.user_id, limits.max_id_bytes)?;
        let event_time_ms = match self.ts {
            None | Some(Json::Null) => return Err(EventError::Missing { field: "ts" }),
            Some(ts) => timestamp("ts", ts)?,
        };
        if let Some(window) = limits.ts_window {
            check_window(event_time_ms, window)?;
        }
        let sent_at_ms = match self.sent_at {
            None | Some(Json::Null) => None,
            Some(ts) => Some(timestamp("sent_at", ts)?),
        };
        let project = optional_string("project", self.project, 64)?;
        if let Some(p) = &project {
            validate_project_name(p).map_err(|reason| EventError::Invalid {
                field: "project".into(),
                reason,
            })?;
        }
        let scene = match self.scene {
            None | Some(Json::Null) => None,
            Some(Json::Int(n)) if (0..=999_999).contains(&n) => Some(n as i32),
            Some(Json::Str(s))
                if !s.is_empty() && s.len() <= 6 && s.bytes().all(|b| b.is_ascii_digit()) =>
            {
                s.parse().ok()
            }
            Some(Json::Int(n)) => {
                return Err(EventError::Invalid {
                    field: "scene".into(),
                    reason: format!("launch scene value {n} is outside 0..=999999"),
                });
            }
            Some(other) => {
                return Err(EventError::WrongType {
                    field: "scene".into(),
                    expected: "an integer launch scene value (e.g. 1047)",
                    got: other.kind(),
                });
            }
        };
        let path = optional_string("path", self.path, limits.max_path_bytes)?;
        let query = match self.query {
            None | Some(Query::Other("null")) => Vec::new(),
            Some(Query::Other(kind)) => {
                return Err(EventError::WrongType {
                    field: "query".into(),
                    expected: "an object of strings",
                    got: kind,
                });
            }
            Some(Query::Map(entries)) => validate_query(entries, limits)?,
        };
        let launch_type = match self.launch_type {
            None | Some(Json::Null) => None,
            Some(Json::Str(s)) => match s.as_ref() {
                "cold" => Some(LaunchType::Cold),
                "hot" => Some(LaunchType::Hot),
                other => {
                    return Err(EventError::Invalid {
                        field: "launch_type".into(),
                        reason: format!(
                            "`{other}` is not a launch type: use `cold` (App.onLaunch) or `hot` (App.onShow)"
                        ),
                    });
                }
            },
            Some(other) => {
                return Err(EventError::WrongType {
                    field: "launch_type".into(),
                    expected: "\"cold\" or \"hot\"",
                    got: other.kind(),
                });
            }
        };
        let props = match self.props {
            None => None,
            Some(raw) => {
                let text = raw.get();
                if text == "null" {
                    None
                } else if !text.starts_with('{') {
                    return Err(EventError::WrongType {
                        field: "props".into(),
                        expected: "an object",
                        got: json_kind_of_text(text),
                    });
                } else if text.len() > limits.max_props_bytes {
                    return Err(EventError::TooLong {
                        field: "props".into(),
                        limit: limits.max_props_bytes,
                        actual: text.len(),
                    });
                } else if memchr::memchr2(b'\n', b'\r', text.as_bytes()).is_some() {
                    // Raw line breaks can only be whitespace between tokens in valid JSON:
                    // keep props on one line (the write-ahead log is line-oriented).
                    Some(Cow::Owned(text.replace(['\n', '\r'], " ")))
                } else {
                    Some(Cow::Borrowed(text))
                }
            }
        };
        Ok(LaunchEvent {
            event_id,
            user_id,
            event_time_ms,
            sent_at_ms,
            project,
            scene,
            path,
            query,
            launch_type,
            props,
        })
    }
}

/// Project names appear in storage paths and URLs: keep them to a safe, readable alphabet.
pub fn validate_project_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err(format!(
            "project name must be 1 to 64 characters, got {}",
            name.len()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(format!(
            "project name `{name}` has `{bad}`: use letters, digits, `-` and `_` only"
        ));
    }
    Ok(())
}

fn required_string<'a>(
    field: &'static str,
    value: Option<Json<'a>>,
    limit: usize,
) -> Result<Cow<'a, str>, EventError> {
    match optional_string(field, value, limit)? {
        Some(s) => Ok(s),
        None => Err(EventError::Missing { field }),
    }
}

fn optional_string<'a>(
    field: &'static str,
    value: Option<Json<'a>>,
    limit: usize,
) -> Result<Option<Cow<'a, str>>, EventError> {
    match value {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Str(s)) if s.is_empty() => Ok(None),
        Some(Json::Str(s)) if s.len() > limit => Err(EventError::TooLong {
            field: field.into(),
            limit,
            actual: s.len(),
        }),
        Some(Json::Str(s)) => Ok(Some(s)),
        Some(other) => Err(EventError::WrongType {
            field: field.into(),
            expected: "a string",
            got: other.kind(),
        }),
    }
}

fn timestamp(field: &'static str, value: Json<'_>) -> Result<i64, EventError> {
    let ms = match value {
        Json::Int(ms) => ms,
        Json::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => f as i64,
        Json::Str(s) => {
            return chrono::DateTime::parse_from_rfc3339(&s)
                .map(|t| t.timestamp_millis())
                .map_err(|e| EventError::Invalid {
                    field: field.into(),
                    reason: format!("`{s}` is not an RFC 3339 time ({e}); send epoch milliseconds or e.g. 2026-11-24T08:00:00+08:00"),
                })
                .and_then(|ms| check_range(field, ms));
        }
        other => {
            return Err(EventError::WrongType {
                field: field.into(),
                expected: "epoch milliseconds or an RFC 3339 string",
                got: other.kind(),
            });
        }
    };
    check_range(field, ms)
}

/// `ts` within the live window, or the reason naming the bound and by how much it is missed.
fn check_window(ms: i64, window: TsWindow) -> Result<(), EventError> {
    const DAY_MS: i64 = 86_400_000;
    let earliest = window.received_ms - i64::from(window.days_back) * DAY_MS;
    let latest = window.received_ms + i64::from(window.days_ahead) * DAY_MS;
    let days = |span: i64| span as f64 / DAY_MS as f64;
    let reason = if ms < earliest {
        format!(
            "{ms} is {:.1} days before receipt, {:.1} over the {}-day limit of live ingest; load \
             older events with `promolens backfill`",
            days(window.received_ms - ms),
            days(earliest - ms),
            window.days_back
        )
    } else if ms > latest {
        format!(
            "{ms} is {:.1} days after receipt, {:.1} over the {}-day limit (the sender's clock \
             is ahead)",
            days(ms - window.received_ms),
            days(ms - latest),
            window.days_ahead
        )
    } else {
        return Ok(());
    };
    Err(EventError::Invalid {
        field: "ts".into(),
        reason,
    })
}

fn check_range(field: &'static str, ms: i64) -> Result<i64, EventError> {
    if (MIN_TS_MS..MAX_TS_MS).contains(&ms) {
        return Ok(ms);
    }
    let hint = if (MIN_TS_MS / 1000..MAX_TS_MS / 1000).contains(&ms) {
        " (it looks like seconds: multiply by 1000)"
    } else {
        ""
    };
    Err(EventError::Invalid {
        field: field.into(),
        reason: format!("{ms} is outside 2000-01-01..2100-01-01 in epoch milliseconds{hint}"),
    })
}

fn validate_query<'a>(
    entries: Vec<(Cow<'a, str>, Json<'a>)>,
    limits: &Limits,
) -> Result<QueryPairs<'a>, EventError> {
    if entries.len() > limits.max_query_keys {
        return Err(EventError::TooMany {
            field: "query".into(),
            limit: limits.max_query_keys,
            actual: entries.len(),
        });
    }
    let mut query = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        if key.len() > limits.max_query_key_bytes {
            return Err(EventError::TooLong {
                field: format!("query key `{}…`", truncate(&key, 32)),
                limit: limits.max_query_key_bytes,
                actual: key.len(),
            });
        }
        let value = match value {
            Json::Str(s) => s,
            Json::Null => Cow::Borrowed(""),
            other => {
                return Err(EventError::WrongType {
                    field: format!("query.{key}"),
                    expected: "a string (query values arrive as strings in the mini-program)",
                    got: other.kind(),
                });
            }
        };
        if value.len() > limits.max_query_value_bytes {
            return Err(EventError::TooLong {
                field: format!("query.{key}"),
                limit: limits.max_query_value_bytes,
                actual: value.len(),
            });
        }
        query.push((key, value));
    }
    Ok(query)
}

fn truncate(s: &str, max_chars: usize) -> &str {
    match s.char_indices().nth(max_chars) {
        Some((at, _)) => &s[..at],
        None => s,
    }
}

fn json_kind_of_text(text: &str) -> &'static str {
    match text.as_bytes().first() {
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

/// Any JSON value, keeping only what validation needs: strings borrowed where possible, nested
/// containers skipped (their kind is enough for the error message).
enum Json<'a> {
    Null,
    Bool,
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
    Array,
    Object,
}

impl Json<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool => "a boolean",
            Json::Int(_) | Json::Float(_) => "a number",
            Json::Str(_) => "a string",
            Json::Array => "an array",
            Json::Object => "an object",
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Json<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Json::Bool)
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Json::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(i64::try_from(v).map_or(Json::Float(v as f64), Json::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Json::Float(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Owned(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Json::Array)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Json::Object)
    }
}

/// `query`: an object of (what should be) strings, in arrival order, or the kind of what came instead.
enum Query<'a> {
    Map(Vec<(Cow<'a, str>, Json<'a>)>),
    Other(&'static str),
}

impl<'de: 'a, 'a> Deserialize<'de> for Query<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct QueryVisitor;
        impl<'de> Visitor<'de> for QueryVisitor {
            type Value = Query<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<CowStr<'de>>()? {
                    let value: Json<'de> = map.next_value()?;
                    entries.push((key.0, value));
                }
                Ok(Query::Map(entries))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Query::Other("null"))
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(Query::Other("null"))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Query::Other("a boolean"))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Query::Other("a number"))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Query::Other("a number"))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Query::Other("a number"))
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Query::Other("a string"))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Query::Other("an array"))
            }
        }
        deserializer.deserialize_any(QueryVisitor)
    }
}

/// A map key, borrowed unless it had escapes.
struct CowStr<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for CowStr<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CowStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<LaunchEvent<'_>, EventError> {
        LaunchEvent::parse(json, &Limits::default())
    }

    #[test]
    fn parses_the_design_example() {
        let e = parse(r#"{"event_id": "8c4b", "user_id": "anon-42", "ts": 1763942400000, "scene": 1047,
            "path": "pages/index/index", "query": {"utm_source": "gzh", "utm_campaign": "1111"},
            "project": "demo", "sent_at": 1763942401000, "launch_type": "cold", "props": {"app_version": "3.1.0"}}"#)
            .unwrap();
        assert_eq!(e.event_id, "8c4b");
        assert_eq!(e.event_time_ms, 1_763_942_400_000);
        assert_eq!(e.scene, Some(1047));
        assert_eq!(e.query_value("utm_campaign"), Some("1111"));
        assert_eq!(e.launch_type, Some(LaunchType::Cold));
        assert_eq!(e.props.as_deref(), Some(r#"{"app_version": "3.1.0"}"#));
    }

    #[test]
    fn accepts_rfc3339_ts_and_escaped_strings() {
        let e = parse(r#"{"event_id":"a\"b","user_id":"u","ts":"2025-11-24T08:00:00+08:00","query":{"utm_source":"\u516c\u4f17\u53f7"}}"#).unwrap();
        assert_eq!(e.event_id, "a\"b");
        assert_eq!(e.event_time_ms, 1_763_942_400_000);
        assert_eq!(e.query_value("utm_source"), Some("公众号"));
    }

    #[test]
    fn each_rejection_names_the_field() {
        let cases: &[(&str, &str)] = &[
            (
                r#"{"user_id":"u","ts":1763942400000}"#,
                "missing required field `event_id`",
            ),
            (
                r#"{"event_id":"e","ts":1763942400000}"#,
                "missing required field `user_id`",
            ),
            (
                r#"{"event_id":"e","user_id":"u"}"#,
                "missing required field `ts`",
            ),
            (
                r#"{"event_id":"e","user_id":"u","ts":"yesterday"}"#,
                "field `ts`: `yesterday` is not an RFC 3339 time",
            ),
            (
                r#"{"event_id":"e","user_id":"u","ts":1763942400}"#,
                "it looks like seconds",
            ),
            (
                r#"{"event_id":"e","user_id":"u","ts":true}"#,
                "field `ts`: expected epoch milliseconds or an RFC 3339 string, got a boolean",
            ),
            (
                r#"{"event_id":7,"user_id":"u","ts":1763942400000}"#,
                "field `event_id`: expected a string, got a number",
            ),
            (
                r#"{"event_id":"e","user_id":"u","ts":1763942400000,"query":{"utm_source":5}}"#,
                "field `query.utm_source`: expected a string",
            ),
            (
                r#"{"event_id":"e","user_id":"u","ts":1763942400000,"query":"a=b"}"#,
                "field `query`: expected an object of strings, got a string",
            ),
            (
                r#"{"event_id":"e","user_id":"u","ts":1763942400000,"scene":"x"}"#,
                "field `scene`: expected an integer",
            ),
            (
                r#"{"event_id":"e","user_id":"u","ts":1763942400000,"launch_type":"warm"}"#,
                "field `launch_type`: `warm` is not a launch type",
            ),
            (
                r#"{"event_id":"e","user_id":"u","ts":1763942400000,"props":[1]}"#,
                "field `props`: expected an object, got an array",
            ),
            (
                r#"{"event_id":"e","user_id":"u","ts":1763942400000,"project":"a/b"}"#,
                "field `project`: project name `a/b` has `/`",
            ),
            (r#"[1,2]"#, "expected a JSON object, got an array"),
            (r#"{"event_id":"e","#, "invalid JSON at column"),
        ];
        for (json, want) in cases {
            let err = parse(json).unwrap_err().to_string();
            assert!(err.contains(want), "{json}\n  got: {err}\n want: {want}");
        }
    }

    #[test]
    fn wire_json_round_trips() {
        let e = parse(r#"{"event_id":"e\n1","user_id":"u","ts":1763942400000,"sent_at":1763942400001,"project":"p","scene":1047,"path":"pages/a","query":{"scene":"c%3Dx","b":"中"},"launch_type":"hot","props":{"a":[1,{"b":null}]}}"#).unwrap();
        assert_eq!(parse(&e.to_wire_json()).unwrap(), e);
    }

    #[test]
    fn too_long_says_limit_actual_and_overshoot() {
        let id = "x".repeat(131);
        let err = parse(&format!(
            r#"{{"event_id":"{id}","user_id":"u","ts":1763942400000}}"#
        ))
        .unwrap_err();
        assert_eq!(
            err,
            EventError::TooLong {
                field: "event_id".into(),
                limit: 128,
                actual: 131
            }
        );
        assert_eq!(
            err.to_string(),
            "field `event_id` is 131 bytes, over the 128-byte limit by 3 bytes"
        );
        // Multi-byte: 1000 Chinese characters are 3000 bytes.
        let v = "中".repeat(1000);
        let err = parse(&format!(
            r#"{{"event_id":"e","user_id":"u","ts":1763942400000,"query":{{"q":"{v}"}}}}"#
        ))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "field `query.q` is 3000 bytes, over the 2048-byte limit by 952 bytes"
        );
    }
}
