//! The event wire format (DESIGN.md §4) and its validation: launches, which carry the
//! attribution, and core events (`event` other than `launch`: a signup, a purchase, the
//! `$identify` of a login), which carry `props`.
//!
//! One event is one JSON object. Parsing borrows from the input where it can (the hot path of
//! ingest and backfill) and every rejection names the field, the rule and the actual value or size,
//! so that a developer can fix the sender from the message alone. [`wire`] reads an object as
//! it comes (every field typed loosely); [`validate`] turns it into an [`Event`] or the
//! precise reason why not.

mod validate;
mod wire;

use std::borrow::Cow;

use validate::json_kind_of_text;
pub use validate::{MAX_EVENT_NAME_BYTES, validate_event_name, validate_project_name};
use wire::Wire;

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

/// The `event` of a launch, and its default.
pub const LAUNCH: &str = "launch";

/// The `event` the SDK's `identify(login_id)` sends: `props.login_id` is the logged-in id of
/// the event's (anonymous) `user_id`. Names starting with `$` are promolens' own; this is the
/// only one.
pub const IDENTIFY: &str = "$identify";

/// A validated event. Its text borrows from the JSON it was parsed from where it can (no
/// allocation on the hot path of ingest); [`Event::into_owned`] detaches it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event<'a> {
    /// What happened: [`LAUNCH`] (the default), a core event's name, or [`IDENTIFY`]. Only a
    /// launch carries `scene`, `query` and `launch_type`.
    pub event: Cow<'a, str>,
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

impl<'a> Event<'a> {
    /// Parses and validates one event from its JSON text.
    pub fn parse(json: &'a str, limits: &Limits) -> Result<Event<'a>, EventError> {
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
    pub fn into_owned(self) -> Event<'static> {
        let own = |s: Cow<'a, str>| Cow::Owned(s.into_owned());
        Event {
            event: own(self.event),
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

    /// The event in the wire format, compact: [`Event::parse`] reads it back unchanged.
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
        if !self.is_launch() {
            let _ = write!(out, ",\"event\":{}", s(&self.event));
        }
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

    /// Whether this is a launch (else a core event, or an identification).
    pub fn is_launch(&self) -> bool {
        self.event == LAUNCH
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Event<'_>, EventError> {
        Event::parse(json, &Limits::default())
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
    fn core_events_and_their_rules() {
        let e = parse(r#"{"event":"purchase","event_id":"e","user_id":"u","ts":1763942400000,"path":"pages/pay","props":{"amount":12.5}}"#).unwrap();
        assert_eq!((e.event.as_ref(), e.is_launch()), ("purchase", false));
        assert_eq!(parse(&e.to_wire_json()).unwrap(), e);
        let launch = parse(r#"{"event_id":"e","user_id":"u","ts":1763942400000}"#).unwrap();
        assert!(launch.is_launch());
        assert!(
            !launch.to_wire_json().contains("\"event\""),
            "a launch is written as before"
        );
        assert!(
            parse(
                r#"{"event":"launch","event_id":"e","user_id":"u","ts":1763942400000,"scene":1047}"#
            )
            .unwrap()
            .is_launch()
        );
        let identify = parse(r#"{"event":"$identify","event_id":"e","user_id":"u","ts":1763942400000,"props":{"login_id":"M-1"}}"#).unwrap();
        assert_eq!(identify.event, IDENTIFY);
        let cases: &[(&str, &str)] = &[
            (
                r#"{"event":"signup","event_id":"e","user_id":"u","ts":1763942400000,"scene":1047}"#,
                "field `scene`: only launches carry `scene`; this event is `signup`",
            ),
            (
                r#"{"event":"signup","event_id":"e","user_id":"u","ts":1763942400000,"query":{}}"#,
                "field `query`: only launches carry `query`",
            ),
            (
                r#"{"event":"9lives","event_id":"e","user_id":"u","ts":1763942400000}"#,
                "field `event`: event name `9lives` must start with a letter",
            ),
            (
                r#"{"event":"add to cart","event_id":"e","user_id":"u","ts":1763942400000}"#,
                "event name `add to cart` has ` `",
            ),
            (
                r#"{"event":"$pageview","event_id":"e","user_id":"u","ts":1763942400000}"#,
                "names starting with `$` are reserved",
            ),
            (
                r#"{"event":7,"event_id":"e","user_id":"u","ts":1763942400000}"#,
                "field `event`: expected a string, got a number",
            ),
            (
                r#"{"event":"$identify","event_id":"e","user_id":"u","ts":1763942400000}"#,
                "missing required field `props.login_id`",
            ),
            (
                r#"{"event":"$identify","event_id":"e","user_id":"u","ts":1763942400000,"props":{"login_id":5}}"#,
                "field `props.login_id`: expected a string, got a number",
            ),
        ];
        for (json, want) in cases {
            let err = parse(json).unwrap_err().to_string();
            assert!(err.contains(want), "{json}\n  got: {err}\n want: {want}");
        }
        let long = "e".repeat(65);
        let err = parse(&format!(
            r#"{{"event":"{long}","event_id":"e","user_id":"u","ts":1763942400000}}"#
        ))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "field `event` is 65 bytes, over the 64-byte limit by 1 bytes"
        );
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
