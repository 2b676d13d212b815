//! Batch creation from CSV: one row per channel (`name,kind,page,utm_source,…`), each row read on
//! its own so that a bad row is reported with its line and does not stop the others.

use crate::bindings::promolens::codes::types::{CodeKind, CodeRequest, Error, ImageOptions, Utm};
use crate::errors::invalid;

/// Most rows in one batch: a marketer's list of shops, not a data load.
pub const MAX_ROWS: usize = 1000;

const REQUIRED: [&str; 3] = ["name", "kind", "page"];
const OPTIONAL: [&str; 7] = [
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_content",
    "utm_term",
    "params",
    "width",
];

/// One row of a batch.
pub struct Row {
    /// Line number in the CSV (the header is line 1).
    pub line: u32,
    pub name: String,
    /// The request, or why the row cannot be one.
    pub request: Result<CodeRequest, Error>,
}

/// The rows of a batch. A header that cannot be used fails the whole batch.
pub fn parse(csv_text: &str) -> Result<Vec<Row>, Error> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(csv_text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| invalid("csv", format!("the header cannot be read: {e}")))?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').to_ascii_lowercase())
        .collect();
    for required in REQUIRED {
        if !header.iter().any(|h| h == required) {
            return Err(invalid(
                "csv",
                format!(
                    "the header has no `{required}` column; columns: {} (required), {} (optional)",
                    REQUIRED.join(", "),
                    OPTIONAL.join(", ")
                ),
            ));
        }
    }
    if let Some(unknown) = header
        .iter()
        .find(|h| !REQUIRED.contains(&h.as_str()) && !OPTIONAL.contains(&h.as_str()))
    {
        return Err(invalid(
            "csv",
            format!(
                "unknown column `{unknown}`; columns: {}, {}",
                REQUIRED.join(", "),
                OPTIONAL.join(", ")
            ),
        ));
    }
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = record
            .as_ref()
            .ok()
            .and_then(|r| r.position())
            .map_or(i as u32 + 2, |p| p.line() as u32);
        if rows.len() == MAX_ROWS {
            return Err(invalid(
                "csv",
                format!("more than {MAX_ROWS} rows; split the batch"),
            ));
        }
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                rows.push(Row {
                    line,
                    name: String::new(),
                    request: Err(invalid("csv", e.to_string())),
                });
                continue;
            }
        };
        if record.iter().all(str::is_empty) {
            continue;
        }
        let cell = |name: &str| -> Option<String> {
            let at = header.iter().position(|h| h == name)?;
            record.get(at).filter(|v| !v.is_empty()).map(str::to_string)
        };
        let name = cell("name").unwrap_or_default();
        rows.push(Row {
            line,
            name,
            request: request_of(&cell),
        });
    }
    Ok(rows)
}

fn request_of(cell: &dyn Fn(&str) -> Option<String>) -> Result<CodeRequest, Error> {
    let kind = match cell("kind")
        .as_deref()
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        Some("A") => CodeKind::A,
        Some("B") => CodeKind::B,
        Some("C") => CodeKind::C,
        Some(other) => {
            return Err(invalid(
                "kind",
                format!("`{other}` is not a code kind: A, B or C"),
            ));
        }
        None => return Err(invalid("kind", "missing: A, B or C")),
    };
    let width = match cell("width") {
        None => None,
        Some(w) => Some(
            w.parse::<u32>()
                .map_err(|_| invalid("width", format!("`{w}` is not a number of pixels")))?,
        ),
    };
    let params = match cell("params") {
        None => Vec::new(),
        Some(query) => query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|pair| match pair.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (pair.to_string(), String::new()),
            })
            .collect(),
    };
    Ok(CodeRequest {
        name: cell("name").unwrap_or_default(),
        kind,
        page: cell("page").unwrap_or_default(),
        utm: Utm {
            source: cell("utm_source"),
            medium: cell("utm_medium"),
            campaign: cell("utm_campaign"),
            content: cell("utm_content"),
            term: cell("utm_term"),
        },
        params,
        image: ImageOptions {
            width,
            auto_color: false,
            line_color: None,
            is_hyaline: false,
            env_version: None,
            check_path: None,
        },
    })
}
