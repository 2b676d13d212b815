//! Percent-decoding with the exact semantics the mini-program side has: JavaScript's
//! `decodeURIComponent` (strict: a `%` must start a valid `%XX` escape and the bytes must be UTF-8,
//! `+` stays `+`) and HTML form decoding (`+` is a space), used for the query of a link in `q`.

use std::borrow::Cow;

/// Why a percent-encoded text could not be decoded; the raw text is kept by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// A `%` not followed by two hex digits (`decodeURIComponent` throws `URIError`).
    BadEscape,
    /// Well-formed escapes whose bytes are not UTF-8 (also a `URIError` in JavaScript).
    BadUtf8,
}

/// `decodeURIComponent`: decodes every `%XX`; `+` is left as is.
pub fn decode_uri_component(text: &str) -> Result<Cow<'_, str>, DecodeError> {
    decode(text, false)
}

/// `application/x-www-form-urlencoded` decoding of one key or value: `+` is a space, then `%XX`.
pub fn decode_form_component(text: &str) -> Result<Cow<'_, str>, DecodeError> {
    decode(text, true)
}

fn decode(text: &str, plus_is_space: bool) -> Result<Cow<'_, str>, DecodeError> {
    let bytes = text.as_bytes();
    let needs_work = if plus_is_space {
        memchr::memchr2(b'%', b'+', bytes).is_some()
    } else {
        memchr::memchr(b'%', bytes).is_some()
    };
    if !needs_work {
        return Ok(Cow::Borrowed(text));
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = bytes.get(i + 1).and_then(|&b| hex_value(b));
                let lo = bytes.get(i + 2).and_then(|&b| hex_value(b));
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                    _ => return Err(DecodeError::BadEscape),
                }
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| DecodeError::BadUtf8)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `encodeURIComponent`: what a mini-program or a code generator applies to one value.
pub fn encode_uri_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    push_uri_component(&mut out, text);
    out
}

/// Appends `text` to `out` as `encodeURIComponent` would write it (no intermediate string).
pub fn push_uri_component(out: &mut String, text: &str) {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    // encodeURIComponent leaves A-Z a-z 0-9 - _ . ! ~ * ' ( ) unescaped.
    const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'!')
        .remove(b'~')
        .remove(b'*')
        .remove(b'\'')
        .remove(b'(')
        .remove(b')');
    out.extend(utf8_percent_encode(text, COMPONENT));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_component_is_strict_like_javascript() {
        assert_eq!(decode_uri_component("a%20b+c").unwrap(), "a b+c");
        assert_eq!(decode_uri_component("%E5%85%AC").unwrap(), "公");
        assert_eq!(decode_uri_component("50%off"), Err(DecodeError::BadEscape));
        assert_eq!(decode_uri_component("%E5%85"), Err(DecodeError::BadUtf8));
        assert_eq!(decode_uri_component("%"), Err(DecodeError::BadEscape));
        assert_eq!(decode_uri_component("%4"), Err(DecodeError::BadEscape));
    }

    #[test]
    fn form_component_turns_plus_into_space() {
        assert_eq!(decode_form_component("a+b%2Bc").unwrap(), "a b+c");
    }

    #[test]
    fn encode_matches_encode_uri_component() {
        assert_eq!(
            encode_uri_component("a b&c=d/中"),
            "a%20b%26c%3Dd%2F%E4%B8%AD"
        );
        assert_eq!(encode_uri_component("-_.!~*'()"), "-_.!~*'()");
    }
}
