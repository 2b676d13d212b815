//! The WeChat client: the real HTTP protocol of the three code endpoints (DESIGN.md §2).
//!
//! - Access tokens come from `POST /cgi-bin/stable_token`, are cached per AppID, refreshed five
//!   minutes before they expire, and force-refreshed when WeChat answers 40001/42001. One
//!   refresh per AppID at a time: concurrent callers wait for it and share its token.
//! - A code endpoint answers an image (`Content-Type: image/…`) or, with HTTP 200 too, a JSON
//!   `{errcode, errmsg}`: told apart by the content type (and by the body when the type lies).
//! - Transient failures (connection errors, HTTP 5xx, errcode -1) are retried with backoff.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::bindings::promolens::codes::host::{CodeImage, WechatEndpoint};
use super::bindings::promolens::codes::types::{Error, WechatError};
use super::credentials::{CredentialStore, Credentials};
use super::imports::WechatGateway;

/// WeChat's API host.
pub const DEFAULT_BASE_URL: &str = "https://api.weixin.qq.com";

fn wechat_error(errcode: i32, errmsg: String) -> Error {
    Error::Wechat(WechatError {
        errcode,
        errmsg,
        meaning: promolens_schemas::wechat::errcode_meaning(errcode).to_string(),
    })
}

struct Token {
    value: String,
    refresh_after: Instant,
}

type TokenSlot = Arc<tokio::sync::Mutex<Option<Token>>>;

pub struct WechatClient {
    http: reqwest::Client,
    base_url: String,
    credentials: Arc<CredentialStore>,
    tokens: Mutex<HashMap<String, TokenSlot>>,
    /// Attempts per call for transient failures.
    attempts: u32,
}

#[derive(serde::Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    expires_in: Option<u64>,
    errcode: Option<i32>,
    errmsg: Option<String>,
}

#[derive(serde::Deserialize)]
struct ErrorAnswer {
    errcode: i32,
    #[serde(default)]
    errmsg: String,
}

/// Makes ring the process's TLS crypto provider. reqwest is built without one of its own (its
/// default, aws-lc-rs, is a long C build) and panics when a client is built before one is
/// installed: call this first. ring is the provider object_store already brings.
pub fn use_ring_for_tls() {
    // Fails only when a provider is installed already, which is what is wanted.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn host_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Host(format!("{what}: {e}"))
}

/// An HTTP client error without its URL: the URL of a WeChat call carries the access token, and
/// the message reaches logs and answers.
fn request_error(what: &str, e: reqwest::Error) -> Error {
    host_error(what, e.without_url())
}

impl WechatClient {
    pub fn new(base_url: &str, credentials: Arc<CredentialStore>) -> Result<WechatClient, Error> {
        use_ring_for_tls();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .map_err(|e| host_error("cannot build the HTTPS client", e))?;
        Ok(WechatClient {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
            credentials,
            tokens: Mutex::new(HashMap::new()),
            attempts: 4,
        })
    }

    /// Checks credentials by fetching a token with them (which is then cached).
    pub async fn verify(&self, credentials: &Credentials) -> Result<(), Error> {
        let slot = self.slot(&credentials.app_id);
        // Credentials may have changed: never answer from a token of the old ones.
        *slot.lock().await = None;
        self.token(credentials, None).await.map(|_| ())
    }

    fn slot(&self, app_id: &str) -> TokenSlot {
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens.entry(app_id.to_string()).or_default().clone()
    }

    /// A valid token; a new one when there is none, it is due, or it is `stale` (rejected).
    async fn token(&self, credentials: &Credentials, stale: Option<&str>) -> Result<String, Error> {
        let slot = self.slot(&credentials.app_id);
        let mut current = slot.lock().await;
        if let Some(token) = current.as_ref() {
            let rejected = stale == Some(token.value.as_str());
            if !rejected && Instant::now() < token.refresh_after {
                return Ok(token.value.clone());
            }
        }
        let force = stale.is_some();
        let answer: TokenAnswer = self
            .with_retries("fetching an access token", Resend::Always, || {
                self.http
                    .post(format!("{}/cgi-bin/stable_token", self.base_url))
                    .json(&serde_json::json!({
                        "grant_type": "client_credential",
                        "appid": credentials.app_id,
                        "secret": credentials.secret,
                        "force_refresh": force,
                    }))
                    .send()
            })
            .await?
            .json()
            .await
            .map_err(|e| request_error("reading WeChat's token answer", e))?;
        let (Some(value), Some(expires_in)) = (answer.access_token, answer.expires_in) else {
            return Err(wechat_error(
                answer.errcode.unwrap_or(-1),
                answer.errmsg.unwrap_or_default(),
            ));
        };
        // Five minutes early, as WeChat renews stable tokens.
        let lifetime = Duration::from_secs(expires_in.saturating_sub(300).max(1));
        *current = Some(Token {
            value: value.clone(),
            refresh_after: Instant::now() + lifetime,
        });
        Ok(value)
    }

    /// Sends a request, again after failures it may repeat, with backoff. A request that may
    /// spend quota (`Resend::OnlyIfNeverSent`) is sent again only when it cannot have reached
    /// WeChat (no connection); after a timeout or a 5xx its outcome is unknown and the error
    /// says so ([`OUTCOME_UNKNOWN`]).
    async fn with_retries<F, Fut>(
        &self,
        what: &str,
        resend: Resend,
        send: F,
    ) -> Result<reqwest::Response, Error>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = reqwest::Result<reqwest::Response>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = send().await;
            let never_sent = matches!(&outcome, Err(e) if e.is_connect());
            let failed = match &outcome {
                Ok(r) => r.status().is_server_error(),
                Err(e) => e.is_connect() || e.is_timeout() || e.is_request(),
            };
            let may_resend = never_sent || resend == Resend::Always;
            if failed && may_resend && attempt < self.attempts {
                tokio::time::sleep(backoff(attempt)).await;
                continue;
            }
            let unknown = |detail: String| {
                host_error(
                    what,
                    format!(
                        "{OUTCOME_UNKNOWN}: {detail}; WeChat may have made the code and counted \
                         it against the A+C quota, so it was not sent again: look for it before \
                         creating it again"
                    ),
                )
            };
            return match outcome {
                Ok(r) if r.status().is_success() => Ok(r),
                Ok(r) if failed && !may_resend => {
                    Err(unknown(format!("WeChat answered HTTP {}", r.status())))
                }
                Ok(r) => Err(host_error(
                    what,
                    format!("WeChat answered HTTP {}", r.status()),
                )),
                Err(e) if failed && !may_resend => Err(unknown(e.without_url().to_string())),
                Err(e) => Err(request_error(what, e)),
            };
        }
    }
}

/// Whether a request may be sent again after it may have reached WeChat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resend {
    /// Repeating it changes nothing (a token fetch, a B code: unlimited).
    Always,
    /// It may spend what WeChat never gives back (an A or C code): only when it never left.
    OnlyIfNeverSent,
}

/// How an error whose outcome is unknown begins (the HTTP answer is then 504 `outcome_unknown`).
pub const OUTCOME_UNKNOWN: &str = "outcome unknown";

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100 << attempt.min(6))
}

fn endpoint_path(endpoint: WechatEndpoint) -> &'static str {
    match endpoint {
        WechatEndpoint::GetWxacode => "/wxa/getwxacode",
        WechatEndpoint::GetWxacodeUnlimit => "/wxa/getwxacodeunlimit",
        WechatEndpoint::CreateWxaqrcode => "/cgi-bin/wxaapp/createwxaqrcode",
    }
}

#[async_trait::async_trait]
impl WechatGateway for WechatClient {
    async fn call(
        &self,
        project: &str,
        endpoint: WechatEndpoint,
        body: &str,
    ) -> Result<CodeImage, Error> {
        let credentials = self
            .credentials
            .get(project)
            .await
            .map_err(|e| host_error("reading the project's WeChat credentials", e))?
            .ok_or_else(|| {
                Error::NotAuthorized(
                    "no WeChat credentials are stored for this project: authorize it again \
                     (`promolens codes authorize`)"
                        .into(),
                )
            })?;
        let mut stale: Option<String> = None;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let token = self.token(&credentials, stale.as_deref()).await?;
            let url = format!(
                "{}{}?access_token={}",
                self.base_url,
                endpoint_path(endpoint),
                url::form_urlencoded::byte_serialize(token.as_bytes()).collect::<String>()
            );
            let resend = match endpoint {
                WechatEndpoint::GetWxacodeUnlimit => Resend::Always,
                WechatEndpoint::GetWxacode | WechatEndpoint::CreateWxaqrcode => {
                    Resend::OnlyIfNeverSent
                }
            };
            let response = self
                .with_retries("calling WeChat", resend, || {
                    self.http
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.to_string())
                        .send()
                })
                .await?;
            let content_type = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let bytes = response
                .bytes()
                .await
                .map_err(|e| request_error("reading WeChat's answer", e))?;
            let error: Option<ErrorAnswer> = if content_type.starts_with("image/") {
                None
            } else {
                serde_json::from_slice(&bytes).ok()
            };
            let Some(ErrorAnswer { errcode, errmsg }) = error else {
                if !content_type.starts_with("image/") {
                    return Err(host_error(
                        "calling WeChat",
                        format!("an answer that is neither an image nor an error ({content_type})"),
                    ));
                }
                return Ok(CodeImage {
                    content_type,
                    bytes: bytes.to_vec(),
                });
            };
            match errcode {
                40001 | 42001 if attempt < self.attempts => stale = Some(token),
                -1 if attempt < self.attempts => tokio::time::sleep(backoff(attempt)).await,
                _ => return Err(wechat_error(errcode, errmsg)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failed_calls_error_does_not_carry_its_url_and_token() {
        use_ring_for_tls();
        // Nothing listens on port 1.
        let failed = reqwest::Client::new()
            .post("http://127.0.0.1:1/wxa/getwxacode?access_token=SECRET-TOKEN")
            .send()
            .await
            .unwrap_err();
        assert!(
            failed.to_string().contains("SECRET-TOKEN"),
            "the test's premise"
        );
        let message = request_error("calling WeChat", failed).to_string();
        assert!(!message.contains("SECRET-TOKEN"), "{message}");
        assert!(
            message.contains("calling WeChat: error sending request"),
            "{message}"
        );
    }
}
