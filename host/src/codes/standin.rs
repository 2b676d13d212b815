//! A local stand-in for WeChat's API (the real host is unreachable here): the same endpoints,
//! token expiry, A+C quota, per-minute limit and errcodes, answering a real PNG whose QR symbol
//! encodes what was asked for: the `path` of an A or C code, `page?scene=<scene>` of a B code.
//! (A round mini-program "sun" code cannot be drawn outside WeChat; a QR symbol stands in.)
//! Used by the tests and by `promolens serve --demo`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

/// How the stand-in behaves.
#[derive(Debug, Clone)]
pub struct StandinConfig {
    /// AppID → AppSecret pairs it accepts.
    pub apps: Vec<(String, String)>,
    /// Lifetime of an access token.
    pub token_ttl: Duration,
    /// A+C codes it makes per AppID before answering 45029 (WeChat: 100,000).
    pub quota: u32,
    /// B calls per minute before answering 45009 (WeChat: 5,000).
    pub b_per_minute: u32,
}

impl Default for StandinConfig {
    fn default() -> StandinConfig {
        StandinConfig {
            apps: vec![("wx0123456789abcdef".into(), "demo-secret".into())],
            token_ttl: Duration::from_secs(7200),
            quota: 100_000,
            b_per_minute: 5_000,
        }
    }
}

#[derive(Default)]
struct Counters {
    /// token → (AppID, expiry).
    tokens: HashMap<String, (String, Instant)>,
    used: HashMap<String, u32>,
    b_calls: Vec<Instant>,
    /// Errcodes to answer next, for tests of transient failures.
    injected: Vec<i32>,
    /// Code calls whose work is done but whose answer is lost (HTTP 502), next.
    lost_answers: u32,
    token_fetches: u32,
    code_calls: u32,
}

#[derive(Clone)]
struct Standin {
    config: Arc<StandinConfig>,
    counters: Arc<Mutex<Counters>>,
}

fn error(errcode: i32, errmsg: &str) -> Response {
    Json(json!({"errcode": errcode, "errmsg": errmsg})).into_response()
}

/// The stand-in's routes; `POST /standin/fail {"errcodes": [...], "lost_answers": n}` makes the
/// next code calls fail with those errcodes, or do their work and lose the answer (502);
/// `GET /standin/stats` counts token fetches, code calls and A+C codes made.
pub fn router(config: StandinConfig) -> Router {
    let state = Standin {
        config: Arc::new(config),
        counters: Arc::default(),
    };
    Router::new()
        .route("/cgi-bin/stable_token", post(stable_token))
        .route("/wxa/getwxacode", post(|s, q, b| code(s, q, b, 'A')))
        .route("/wxa/getwxacodeunlimit", post(|s, q, b| code(s, q, b, 'B')))
        .route(
            "/cgi-bin/wxaapp/createwxaqrcode",
            post(|s, q, b| code(s, q, b, 'C')),
        )
        .route("/standin/fail", post(inject))
        .route("/standin/stats", axum::routing::get(stats))
        .with_state(state)
}

async fn stable_token(State(s): State<Standin>, Json(body): Json<Value>) -> Response {
    let app_id = body["appid"].as_str().unwrap_or_default();
    let secret = body["secret"].as_str().unwrap_or_default();
    // As WeChat: an unknown AppID is 40013, a wrong AppSecret for a known one 40125.
    match s.config.apps.iter().find(|(a, _)| a == app_id) {
        None => return error(40013, "invalid appid"),
        Some((_, k)) if k != secret => return error(40125, "invalid appsecret"),
        Some(_) => {}
    }
    let mut c = s.counters.lock().unwrap_or_else(|e| e.into_inner());
    c.token_fetches += 1;
    let token = format!("tok-{}-{}", c.token_fetches, uuid::Uuid::new_v4().simple());
    c.tokens.insert(
        token.clone(),
        (app_id.to_string(), Instant::now() + s.config.token_ttl),
    );
    Json(json!({"access_token": token, "expires_in": s.config.token_ttl.as_secs()})).into_response()
}

async fn inject(State(s): State<Standin>, Json(body): Json<Value>) -> Response {
    let codes: Vec<i32> = body["errcodes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_i64())
                .map(|v| v as i32)
                .collect()
        })
        .unwrap_or_default();
    let lost = body["lost_answers"].as_u64().unwrap_or(0) as u32;
    let mut c = s.counters.lock().unwrap_or_else(|e| e.into_inner());
    c.injected.extend(codes);
    c.lost_answers += lost;
    Json(json!({"ok": true})).into_response()
}

async fn stats(State(s): State<Standin>) -> Response {
    let c = s.counters.lock().unwrap_or_else(|e| e.into_inner());
    let quota_used: u32 = c.used.values().sum();
    Json(
        json!({"token_fetches": c.token_fetches, "code_calls": c.code_calls,
        "quota_used": quota_used}),
    )
    .into_response()
}

const SCENE_PUNCTUATION: &str = "!#$&'()*+,/:;=?@-._~";

async fn code(
    State(s): State<Standin>,
    Query(query): Query<HashMap<String, String>>,
    Json(body): Json<Value>,
    kind: char,
) -> Response {
    let (payload, lose_answer) = {
        let mut c = s.counters.lock().unwrap_or_else(|e| e.into_inner());
        c.code_calls += 1;
        let token = query.get("access_token").cloned().unwrap_or_default();
        let app_id = match c.tokens.get(&token) {
            None => {
                return error(
                    40001,
                    "invalid credential, access_token is invalid or not latest",
                );
            }
            Some((_, expiry)) if *expiry <= Instant::now() => {
                return error(42001, "access_token expired");
            }
            Some((app_id, _)) => app_id.clone(),
        };
        if !c.injected.is_empty() {
            let errcode = c.injected.remove(0);
            return error(errcode, "injected by the stand-in");
        }
        if let Some(width) = body.get("width").and_then(Value::as_i64)
            && !(280..=1280).contains(&width)
        {
            return error(40189, "invalid width");
        }
        if let Some(env) = body.get("env_version").and_then(Value::as_str)
            && !["release", "trial", "develop"].contains(&env)
        {
            return error(40097, "invalid env_version");
        }
        let payload = match kind {
            'B' => {
                let now = Instant::now();
                c.b_calls
                    .retain(|t| now.duration_since(*t) < Duration::from_secs(60));
                if c.b_calls.len() as u32 >= s.config.b_per_minute {
                    return error(45009, "reach max api daily quota limit");
                }
                c.b_calls.push(now);
                let scene = body["scene"].as_str().unwrap_or_default();
                let page = body["page"].as_str().unwrap_or_default();
                if scene.chars().count() > 32 {
                    return error(40169, "invalid length for scene");
                }
                if scene
                    .chars()
                    .any(|ch| !(ch.is_ascii_alphanumeric() || SCENE_PUNCTUATION.contains(ch)))
                {
                    return error(40129, "invalid scene");
                }
                let check_path = body
                    .get("check_path")
                    .and_then(Value::as_bool)
                    .unwrap_or(true);
                if check_path && page.starts_with("pages/draft") {
                    return error(41030, "invalid page");
                }
                format!("{page}?scene={scene}")
            }
            _ => {
                let path = body["path"].as_str().unwrap_or_default();
                if path.len() > 128 {
                    return error(40159, "invalid length for path");
                }
                let used = c.used.entry(app_id).or_default();
                if *used >= s.config.quota {
                    return error(45029, "qrcode count out of limit");
                }
                *used += 1;
                path.to_string()
            }
        };
        let lose_answer = c.lost_answers > 0;
        c.lost_answers = c.lost_answers.saturating_sub(1);
        (payload, lose_answer)
    };
    if lose_answer {
        // The code is made (and an A or C code counted) but the answer never arrives whole.
        return (
            axum::http::StatusCode::BAD_GATEWAY,
            "the answer was lost on the way",
        )
            .into_response();
    }
    match qr_png(&payload) {
        Ok(png) => ([(header::CONTENT_TYPE, "image/png")], png).into_response(),
        Err(e) => error(-1, &format!("system error: {e}")),
    }
}

/// A PNG of a QR symbol encoding `text`.
pub fn qr_png(text: &str) -> Result<Vec<u8>, String> {
    let code = qrcode::QrCode::new(text.as_bytes()).map_err(|e| e.to_string())?;
    let image = code
        .render::<image::Luma<u8>>()
        .min_dimensions(280, 280)
        .build();
    let mut png = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut png, image::ImageFormat::Png)
        .map_err(|e| e.to_string())?;
    Ok(png.into_inner())
}

/// Serves the stand-in on `listener` until the task is dropped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: StandinConfig,
) -> std::io::Result<()> {
    axum::serve(listener, router(config)).await
}
