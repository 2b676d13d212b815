//! Turning a request body (NDJSON or a JSON array, optionally gzip) into validated rows, with a
//! precise reason for every line that is not one.

use std::io::Read;

use promolens_schemas::{EventError, Limits};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::error::{Error, Result};
use crate::record::{Rows, RowsBuilder};

/// One rejected line or array element.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Rejected {
    /// 0-based line number (NDJSON) or element index (JSON array).
    pub index: usize,
    /// The field at fault, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub reason: String,
}

impl Rejected {
    fn new(index: usize, error: &EventError) -> Rejected {
        Rejected {
            index,
            field: error.field().map(str::to_string),
            reason: error.to_string(),
        }
    }
}

/// Inflates a gzip body, cutting it at `limit` bytes of output (a gzip bomb stops there).
pub fn gunzip(body: &[u8], limit: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(body)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| Error::BadBody(format!("body is not valid gzip: {e}")))?;
    if out.len() > limit {
        return Err(Error::PayloadTooLarge {
            limit_bytes: limit,
            detail: " after gzip decompression",
        });
    }
    Ok(out)
}

/// Rejects listed in an answer: the first ones say what is wrong; a body of a million bad lines
/// must not get an answer (and a memory bill) three times its own size.
pub const LISTED_REJECTS: usize = 100;

/// The events of a body, each validated; rejects keep their position.
pub struct ParsedBody {
    pub rows: Rows,
    /// Line (or element) index of each row.
    pub indices: Vec<usize>,
    /// The first [`LISTED_REJECTS`] rejected lines.
    pub rejected: Vec<Rejected>,
    /// All rejected lines.
    pub rejected_count: usize,
}

/// Parses an NDJSON body or a JSON array into `rows` (whose project is the URL's: an event naming
/// another one is rejected).
pub fn parse_body(body: &[u8], rows: RowsBuilder, limits: &Limits) -> Result<ParsedBody> {
    let mut parsing = Parsing {
        rows,
        indices: Vec::new(),
        rejected: Vec::new(),
        rejected_count: 0,
    };
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        let text = std::str::from_utf8(body)
            .map_err(|e| Error::BadBody(format!("JSON array body is not UTF-8: {e}")))?;
        let elements: Vec<&RawValue> = serde_json::from_str(text)
            .map_err(|e| Error::BadBody(format!("body is not a JSON array of events: {e}")))?;
        for (index, element) in elements.into_iter().enumerate() {
            parsing.push(index, element.get(), limits);
        }
    } else {
        for (index, line) in body.split(|&b| b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match std::str::from_utf8(line) {
                Ok(line) => parsing.push(index, line, limits),
                Err(e) => parsing.reject(|| Rejected {
                    index,
                    field: None,
                    reason: format!("line is not valid UTF-8 (at byte {})", e.valid_up_to()),
                }),
            }
        }
    }
    Ok(ParsedBody {
        rows: parsing.rows.finish()?,
        indices: parsing.indices,
        rejected: parsing.rejected,
        rejected_count: parsing.rejected_count,
    })
}

struct Parsing {
    rows: RowsBuilder,
    indices: Vec<usize>,
    rejected: Vec<Rejected>,
    rejected_count: usize,
}

impl Parsing {
    fn push(&mut self, index: usize, json: &str, limits: &Limits) {
        match self.rows.push_json(json, limits) {
            Ok(()) => self.indices.push(index),
            Err(e) => self.reject(|| Rejected::new(index, &e)),
        }
    }

    /// Counts a reject, and lists it when it is among the first.
    fn reject(&mut self, rejected: impl FnOnce() -> Rejected) {
        self.rejected_count += 1;
        if self.rejected.len() < LISTED_REJECTS {
            self.rejected.push(rejected());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_rejects_are_listed_all_are_counted() {
        let body = "1\n".repeat(5000) + r#"{"event_id":"e","user_id":"u","ts":1763942400000}"#;
        let parsed = parse_body(
            body.as_bytes(),
            RowsBuilder::new("p", 0, false),
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(parsed.rows.len(), 1);
        assert_eq!(parsed.indices, [5000]);
        assert_eq!(parsed.rejected_count, 5000);
        assert_eq!(parsed.rejected.len(), LISTED_REJECTS);
        assert_eq!(parsed.rejected[99].index, 99);
    }

    const GOOD: &str = r#"{"event_id":"e1","user_id":"u","ts":1763942400000}"#;

    fn rows() -> RowsBuilder {
        RowsBuilder::new("p", 0, false)
    }

    #[test]
    fn one_bad_line_keeps_the_good_ones() {
        let body = format!(
            "{GOOD}\n{{\"event_id\":\"e2\"}}\n\n{}\n",
            GOOD.replace("e1", "e3")
        );
        let parsed = parse_body(body.as_bytes(), rows(), &Limits::default()).unwrap();
        assert_eq!(parsed.indices, [0, 3]);
        assert_eq!(parsed.rows.len(), 2);
        assert_eq!(parsed.rejected.len(), 1);
        assert_eq!(parsed.rejected[0].index, 1);
        assert_eq!(parsed.rejected[0].field.as_deref(), Some("user_id"));
    }

    #[test]
    fn json_array_elements_are_indexed() {
        let body = format!("[{GOOD}, 5, {}]", GOOD.replace("e1", "e2"));
        let parsed = parse_body(body.as_bytes(), rows(), &Limits::default()).unwrap();
        assert_eq!(parsed.rows.len(), 2);
        assert_eq!(parsed.rejected[0].index, 1);
        assert!(parsed.rejected[0].reason.contains("expected a JSON object"));
    }

    #[test]
    fn invalid_utf8_line_is_rejected_alone() {
        let mut body = GOOD.as_bytes().to_vec();
        body.extend_from_slice(b"\n{\"event_id\":\"\xff\"}\n");
        let parsed = parse_body(&body, rows(), &Limits::default()).unwrap();
        assert_eq!(parsed.rows.len(), 1);
        assert!(parsed.rejected[0].reason.contains("not valid UTF-8"));
    }

    #[test]
    fn event_for_another_project_is_rejected() {
        let body = GOOD.replace("}", r#","project":"other"}"#);
        let parsed = parse_body(body.as_bytes(), rows(), &Limits::default()).unwrap();
        assert!(parsed.rejected[0].reason.contains("sent to project `p`"));
    }

    #[test]
    fn gzip_bomb_is_cut_at_the_limit() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![b' '; 5_000_000]).unwrap();
        let small = gz.finish().unwrap();
        assert!(small.len() < 20_000);
        let err = gunzip(&small, 1_000_000).unwrap_err();
        assert_eq!(
            err.to_string(),
            "body is over the 1000000-byte limit after gzip decompression"
        );
    }
}
