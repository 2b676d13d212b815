//! What the server reports about itself, as `promolens_ingest::internal_events` does for the
//! pipeline: one struct per runtime event, whose `emit()` logs and counts together.

use std::time::Duration;

pub use promolens_ingest::internal_events::InternalEvent;

/// One HTTP request answered.
pub struct HttpRequest<'a> {
    pub method: &'a str,
    /// The route as registered (`/v1/projects/{project}/events`), never the raw path: a label
    /// per project or code id would grow without bound. `unmatched` for unknown routes.
    pub route: &'a str,
    pub status: u16,
    pub elapsed: Duration,
}

impl InternalEvent for HttpRequest<'_> {
    fn emit(self) {
        tracing::info!(
            method = self.method,
            route = self.route,
            status = self.status,
            elapsed_ms = self.elapsed.as_secs_f64() * 1e3,
            "request"
        );
        let labels = [
            ("method", self.method.to_string()),
            ("route", self.route.to_string()),
            ("status", self.status.to_string()),
        ];
        metrics::counter!("promolens_http_requests_total", &labels).increment(1);
        metrics::histogram!("promolens_http_request_seconds", "route" => self.route.to_string())
            .record(self.elapsed.as_secs_f64());
    }
}

/// One call into the code-management plugin.
pub struct PluginCall<'a> {
    /// `ok`, `error` (the plugin answered an error: a bad field, WeChat refused) or `stopped`
    /// (the sandbox stopped it: a trap, out of fuel or memory).
    pub outcome: &'static str,
    pub project: &'a str,
    pub elapsed: Duration,
}

impl InternalEvent for PluginCall<'_> {
    fn emit(self) {
        if self.outcome == "stopped" {
            tracing::warn!(
                project = self.project,
                "the plugin call was stopped by the sandbox"
            );
        }
        metrics::counter!("promolens_plugin_calls_total", "outcome" => self.outcome).increment(1);
        metrics::histogram!("promolens_plugin_call_seconds").record(self.elapsed.as_secs_f64());
    }
}
