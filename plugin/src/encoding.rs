//! A code's parameters within WeChat's limits: validation, percent-encoding, byte and character
//! counts. Every code carries its id (`c=<id>`); A and C codes also carry their UTM parameters
//! when they fit beside it.
//!
//! The launch decoder (`promolens_schemas::decode_attribution`) reads back what is written here:
//! explicit `utm_*` keys of an A/C path (percent-decoded once), `c=<id>` in a path or in a B scene.

use promolens_schemas::percent::push_uri_component;

use crate::bindings::promolens::codes::types::{CodeKind, CodeRequest, Encoding, Error, Utm};
use crate::errors::{invalid, too_long};

/// WeChat's limit on an A or C `path`, in bytes.
pub const PATH_LIMIT: u32 = 128;
/// WeChat's limit on a B `scene`, in characters.
pub const SCENE_LIMIT: u32 = 32;
/// Length of a code id (`new-id` gives 8 characters of `0-9a-z`).
pub const ID_LEN: usize = 8;
/// Stands for the id in a preview, before one is given.
pub const PREVIEW_ID: &str = "********";
/// Longest code name, in characters.
pub const NAME_LIMIT: usize = 100;

/// Characters WeChat accepts in a B `scene` besides ASCII letters and digits.
const SCENE_PUNCTUATION: &str = "!#$&'()*+,/:;=?@-._~";

/// The UTM fields with their query keys, in the order they are written.
pub fn utm_pairs(utm: &Utm) -> Vec<(&'static str, &str)> {
    [
        ("utm_source", &utm.source),
        ("utm_medium", &utm.medium),
        ("utm_campaign", &utm.campaign),
        ("utm_content", &utm.content),
        ("utm_term", &utm.term),
    ]
    .into_iter()
    .filter_map(|(key, value)| match value.as_deref() {
        Some(v) if !v.is_empty() => Some((key, v)),
        _ => None,
    })
    .collect()
}

/// Checks a code's name (as stored: trimmed) and gives it back trimmed.
pub fn check_name(name: &str) -> Result<&str, Error> {
    let name = name.trim();
    if name.is_empty() {
        return Err(invalid("name", "give the code a name"));
    }
    let chars = name.chars().count();
    if chars > NAME_LIMIT {
        return Err(invalid(
            "name",
            format!("{chars} characters, {NAME_LIMIT} at most"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid("name", "control characters are not allowed"));
    }
    Ok(name)
}

/// Checks what does not depend on the kind's limit: name, page, parameter keys.
pub fn validate(request: &CodeRequest) -> Result<(), Error> {
    check_name(&request.name)?;
    let page = &request.page;
    if page.is_empty() {
        return Err(invalid(
            "page",
            "give the page the code opens, e.g. pages/index/index",
        ));
    }
    if page.starts_with('/') {
        return Err(invalid(
            "page",
            "no leading `/`: write pages/index/index, not /pages/index/index",
        ));
    }
    if page.contains('?') {
        return Err(invalid(
            "page",
            "the page has no query: put its parameters in `params`",
        ));
    }
    if let Some(c) = page
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "/_-.".contains(*c)))
    {
        return Err(invalid(
            "page",
            format!("`{c}` is not allowed in a page path (letters, digits, / _ - . only)"),
        ));
    }
    for (i, (key, _)) in request.params.iter().enumerate() {
        // Named only on failure: a preview runs on every keystroke.
        let field = || format!("params[{i}]");
        if key.is_empty() {
            return Err(invalid(&field(), "a parameter needs a name"));
        }
        if key == "c" || key == "scene" || key == "q" || key.starts_with("utm_") {
            return Err(invalid(
                &field(),
                format!(
                    "`{key}` is reserved for attribution; use the utm fields for campaign parameters"
                ),
            ));
        }
    }
    if let Some(width) = request.image.width
        && !(280..=1280).contains(&width)
    {
        return Err(invalid(
            "image.width",
            format!("{width} pixels: WeChat accepts 280 to 1280"),
        ));
    }
    Ok(())
}

/// Encodes a validated request for code `id` (or [`PREVIEW_ID`] in a preview).
pub fn encode(request: &CodeRequest, id: &str) -> Result<Encoding, Error> {
    validate(request)?;
    match request.kind {
        CodeKind::A | CodeKind::C => encode_path(request, id),
        CodeKind::B => encode_scene(request, id),
    }
}

/// `page?k=v&…` with keys and values as `encodeURIComponent` writes them; `page` alone when
/// there are no pairs.
fn path_of<'a>(page: &str, pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut path = String::with_capacity(PATH_LIMIT as usize + 16);
    path.push_str(page);
    for (i, (key, value)) in pairs.into_iter().enumerate() {
        path.push(if i == 0 { '?' } else { '&' });
        push_uri_component(&mut path, key);
        path.push('=');
        push_uri_component(&mut path, value);
    }
    path
}

/// A and C: `page?params&utm_…&c=<id>`, or `page?params&c=<id>` when the UTM parameters do not
/// fit beside the id. Every code carries its id, so that its scans are its own even when another
/// code has the same UTM values (the id counts against the 128 bytes).
fn encode_path(request: &CodeRequest, id: &str) -> Result<Encoding, Error> {
    let params = || request.params.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    let utm = utm_pairs(&request.utm);
    let reference = [("c", id)];
    let inline = path_of(
        &request.page,
        params().chain(utm.iter().copied()).chain(reference),
    );
    let inline_bytes = inline.len() as u32;
    if inline_bytes <= PATH_LIMIT {
        return Ok(Encoding {
            path: Some(inline),
            page: None,
            scene: None,
            used: inline_bytes,
            limit: PATH_LIMIT,
            by_reference: false,
            inline_bytes: None,
            note: format!(
                "{inline_bytes} of {PATH_LIMIT} bytes used (c={id} included), {} left",
                PATH_LIMIT - inline_bytes
            ),
        });
    }
    let by_id = path_of(&request.page, params().chain(reference));
    let used = by_id.len() as u32;
    if utm.is_empty() || used > PATH_LIMIT {
        // Nothing can move into the record: the page, its own parameters and the id are too long.
        let field = if request.params.is_empty() {
            "page"
        } else {
            "params"
        };
        return Err(too_long(field, PATH_LIMIT, used, "bytes"));
    }
    Ok(Encoding {
        path: Some(by_id),
        page: None,
        scene: None,
        used,
        limit: PATH_LIMIT,
        by_reference: true,
        inline_bytes: Some(inline_bytes),
        note: format!(
            "the UTM parameters and c={id} need {inline_bytes} bytes, {} over the {PATH_LIMIT}-byte \
             limit: the code carries only c={id} ({used} bytes) and scans take their UTM values \
             from its record",
            inline_bytes - PATH_LIMIT
        ),
    })
}

/// B: `page` and the scene `c=<id>&params…`, in WeChat's scene alphabet.
fn encode_scene(request: &CodeRequest, id: &str) -> Result<Encoding, Error> {
    let mut scene = format!("c={id}");
    for (i, (key, value)) in request.params.iter().enumerate() {
        for text in [key, value] {
            if let Some(c) = text.chars().find(|c| !allowed_in_scene(*c)) {
                return Err(invalid(
                    &format!("params[{i}]"),
                    format!(
                        "`{c}` cannot be in a B code's scene (0-9 a-z A-Z and {SCENE_PUNCTUATION} only); \
                         use kind A or C for this parameter"
                    ),
                ));
            }
            if text.contains(['&', '=']) {
                return Err(invalid(
                    &format!("params[{i}]"),
                    "`&` and `=` separate a scene's parameters; they cannot be inside one",
                ));
            }
        }
        for piece in ["&", key, "=", value] {
            scene.push_str(piece);
        }
    }
    let used = scene.chars().count() as u32;
    if used > SCENE_LIMIT {
        return Err(too_long("scene", SCENE_LIMIT, used, "characters"));
    }
    Ok(Encoding {
        path: None,
        page: Some(request.page.clone()),
        scene: Some(scene),
        used,
        limit: SCENE_LIMIT,
        by_reference: true,
        inline_bytes: None,
        note: format!(
            "{used} of {SCENE_LIMIT} scene characters used; a B code carries c={id} and scans \
             are attributed from its record"
        ),
    })
}

fn allowed_in_scene(c: char) -> bool {
    c.is_ascii_alphanumeric() || SCENE_PUNCTUATION.contains(c)
}
