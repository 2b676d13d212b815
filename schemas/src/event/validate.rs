//! From the loosely typed [`Wire`] object to an [`Event`], or the rule it breaks: which
//! field, which limit, by how much.

use std::borrow::Cow;

use super::wire::{Json, Query, Wire};
use super::{
    Event, EventError, IDENTIFY, LAUNCH, LaunchType, Limits, MAX_TS_MS, MIN_TS_MS, QueryPairs,
    TsWindow,
};

/// Longest event name, bytes.
pub const MAX_EVENT_NAME_BYTES: usize = 64;

impl<'a> Wire<'a> {
    pub(super) fn validate(self, limits: &Limits) -> Result<Event<'a>, EventError> {
        let event = match optional_string("event", self.event, MAX_EVENT_NAME_BYTES)? {
            None => Cow::Borrowed(LAUNCH),
            Some(name) => {
                validate_event_name(&name).map_err(|reason| EventError::Invalid {
                    field: "event".into(),
                    reason,
                })?;
                name
            }
        };
        if event != LAUNCH {
            let launch_only = [
                ("scene", self.scene.is_some()),
                ("query", self.query.is_some()),
                ("launch_type", self.launch_type.is_some()),
            ];
            if let Some((field, _)) = launch_only.iter().find(|(_, present)| *present) {
                return Err(EventError::Invalid {
                    field: (*field).into(),
                    reason: format!(
                        "only launches carry `{field}`; this event is `{event}` (leave `event` \
                         out, or send `launch`, for a launch)"
                    ),
                });
            }
        }
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
        if event == IDENTIFY {
            check_login_id(props.as_deref(), limits)?;
        }
        Ok(Event {
            event,
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

/// Event names are metric names (`purchase_users`) and SQL values: a letter, then letters,
/// digits, `_`, `.` or `-`. `$` names are promolens' own ([`IDENTIFY`]).
pub fn validate_event_name(name: &str) -> Result<(), String> {
    if name == IDENTIFY {
        return Ok(());
    }
    if name.starts_with('$') {
        return Err(format!(
            "`{name}` is not an event promolens knows: names starting with `$` are reserved \
             (`{IDENTIFY}` is the only one)"
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(format!("event name `{name}` must start with a letter"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!(
            "event name `{name}` has `{bad}`: use letters, digits, `_`, `.` and `-` only"
        ));
    }
    Ok(())
}

/// An `$identify` names the logged-in id in `props.login_id`: a non-empty string of at most
/// the id limit.
fn check_login_id(props: Option<&str>, limits: &Limits) -> Result<(), EventError> {
    #[derive(serde::Deserialize)]
    struct Identify<'p> {
        #[serde(borrow)]
        login_id: Option<Json<'p>>,
    }
    let login_id = props
        .and_then(|text| serde_json::from_str::<Identify<'_>>(text).ok())
        .and_then(|p| p.login_id);
    match optional_string("props.login_id", login_id, limits.max_id_bytes)? {
        Some(_) => Ok(()),
        None => Err(EventError::Missing {
            field: "props.login_id",
        }),
    }
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

pub(super) fn json_kind_of_text(text: &str) -> &'static str {
    match text.as_bytes().first() {
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}
