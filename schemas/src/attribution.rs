//! The attribution codec: from a launch's scene value and `query` to UTM columns (DESIGN.md §4).
//!
//! Sources, in order of precedence, merged field by field:
//! 1. explicit `utm_*` keys in `query` (A and C codes, shared cards, links), each decoded once as
//!    `decodeURIComponent` does;
//! 2. a B code's `query.scene`, which WeChat hands over URL-encoded: decoded once, then parsed as
//!    `k=v&…` (a scene that is still encoded after one decoding, because a tool encoded it twice, is
//!    decoded once more);
//! 3. an ordinary link QR code's `query.q`: the URL-encoded link, decoded, its query parsed with form
//!    encoding (`+` is a space there).
//!
//! A promolens code reference `c=<id>` is kept as `code_id` (resolved against the code's record by
//! the caller). Empty values are null. Undecodable text is kept raw and flagged in the status; the
//! launch is never dropped for it.
//!
//! A project's [`Attributor`] says which parameter names fill each UTM field (aliases such as
//! `src` or `gio_utm_source`, in order of preference within a source) and how each field's value
//! is normalised (trimmed, lower-cased, spellings merged); the default reads the `utm_*` keys
//! and keeps values as sent. Code ids are never normalised.
//!
//! Values borrow from the launch's `query` when they need no decoding (most explicit keys): a
//! backfill decodes millions of launches, and an allocation per value was a measurable part of it.

use std::borrow::Cow;

use crate::percent::{DecodeError, decode_form_component, decode_uri_component};

/// The five UTM keys, in column order.
pub const UTM_KEYS: [&str; 5] = [
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_content",
    "utm_term",
];

/// The query key of a promolens code reference.
pub const CODE_REF_KEY: &str = "c";

/// The five UTM fields of a launch, borrowed from its `query` where they need no decoding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Utm<'a> {
    pub source: Option<Cow<'a, str>>,
    pub medium: Option<Cow<'a, str>>,
    pub campaign: Option<Cow<'a, str>>,
    pub content: Option<Cow<'a, str>>,
    pub term: Option<Cow<'a, str>>,
}

impl<'a> Utm<'a> {
    /// The field stored under `key` (one of [`UTM_KEYS`]).
    pub fn field_mut(&mut self, key: &str) -> Option<&mut Option<Cow<'a, str>>> {
        match key {
            "utm_source" => Some(&mut self.source),
            "utm_medium" => Some(&mut self.medium),
            "utm_campaign" => Some(&mut self.campaign),
            "utm_content" => Some(&mut self.content),
            "utm_term" => Some(&mut self.term),
            _ => None,
        }
    }

    /// The fields in [`UTM_KEYS`] order.
    pub fn fields(&self) -> [&Option<Cow<'a, str>>; 5] {
        [
            &self.source,
            &self.medium,
            &self.campaign,
            &self.content,
            &self.term,
        ]
    }

    /// Fills every field still empty from `other` (field-by-field merge, first source wins).
    pub fn fill_from(&mut self, other: Utm<'a>) {
        let Utm {
            source,
            medium,
            campaign,
            content,
            term,
        } = other;
        let pairs = [
            (&mut self.source, source),
            (&mut self.medium, medium),
            (&mut self.campaign, campaign),
            (&mut self.content, content),
            (&mut self.term, term),
        ];
        for (slot, value) in pairs {
            if slot.is_none() {
                *slot = value;
            }
        }
    }

    /// The same fields, owning their text.
    pub fn into_owned(self) -> Utm<'static> {
        let own = |v: Option<Cow<'_, str>>| v.map(|v| Cow::Owned(v.into_owned()));
        Utm {
            source: own(self.source),
            medium: own(self.medium),
            campaign: own(self.campaign),
            content: own(self.content),
            term: own(self.term),
        }
    }
}

/// What kind of code the launch came through, from the launch scene value and the parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeKind {
    /// `wxacode.get`: a mini-program code with page + query.
    A,
    /// `wxacode.getUnlimited`: a mini-program code with a `scene`.
    B,
    /// `wxacode.createQRCode`: a square QR code with page + query.
    C,
    /// An ordinary link QR code (the link arrives in `query.q`).
    Link,
}

impl CodeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CodeKind::A => "A",
            CodeKind::B => "B",
            CodeKind::C => "C",
            CodeKind::Link => "link",
        }
    }
}

/// How decoding went. Stored in column `attribution`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttributionStatus {
    /// Parameters found and decoded.
    Ok,
    /// No attribution parameters at all.
    None,
    /// A `%` not starting a valid escape somewhere: that value is kept raw.
    BadPercentEncoding,
    /// Escapes that decode to invalid UTF-8 somewhere: that value is kept raw.
    BadUtf8,
}

impl AttributionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AttributionStatus::Ok => "ok",
            AttributionStatus::None => "none",
            AttributionStatus::BadPercentEncoding => "bad_percent_encoding",
            AttributionStatus::BadUtf8 => "bad_utf8",
        }
    }
}

/// The attribution columns of one launch, borrowed from its `query` where they can be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribution<'a> {
    pub utm: Utm<'a>,
    pub code_id: Option<Cow<'a, str>>,
    pub code_kind: Option<CodeKind>,
    pub status: AttributionStatus,
}

impl Attribution<'_> {
    /// A launch counts as attributed when it has a `utm_source` or a code.
    pub fn is_attributed(&self) -> bool {
        self.utm.source.is_some() || self.code_id.is_some()
    }
}

/// Launch scene values of scanning a mini-program code (scan, long-press, from the album).
pub const MINI_PROGRAM_CODE_SCENES: [i32; 3] = [1047, 1048, 1049];
/// Launch scene values of scanning a QR code (scan, long-press, from the album).
pub const QR_CODE_SCENES: [i32; 3] = [1011, 1012, 1013];

/// Decodes one launch with the default [`Attributor`]. `query` is the launch `query` exactly as
/// the mini-program received it.
pub fn decode_attribution<'q, K: AsRef<str>, V: AsRef<str>>(
    scene: Option<i32>,
    query: &'q [(K, V)],
) -> Attribution<'q> {
    Attributor::default_ref().decode(scene, query)
}

/// A field an attribution parameter fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// One of the five UTM fields, by its index in [`UTM_KEYS`].
    Utm(usize),
    Code,
}

/// One parameter name a project reads, the field it fills, and its place among that field's
/// names (0 is preferred).
#[derive(Debug, Clone, PartialEq, Eq)]
struct ParamName {
    key: Box<str>,
    target: Target,
    rank: u8,
}

/// How one UTM field's values are normalised, in this order: trimmed, lower-cased, then looked
/// up in the value map (whose keys were trimmed and lower-cased the same way).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Normalizer {
    pub trim: bool,
    pub lowercase: bool,
    values: std::collections::HashMap<String, String>,
}

impl Normalizer {
    /// A normaliser that merges each `(from, to)` spelling into `to`.
    pub fn new(
        trim: bool,
        lowercase: bool,
        values: impl IntoIterator<Item = (String, String)>,
    ) -> Self {
        let mut normalizer = Normalizer {
            trim,
            lowercase,
            values: Default::default(),
        };
        let values = values
            .into_iter()
            .map(|(from, to)| (normalizer.clean(&from).into_owned(), to))
            .collect();
        normalizer.values = values;
        normalizer
    }

    fn clean<'a>(&self, value: &'a str) -> Cow<'a, str> {
        let value = if self.trim { value.trim() } else { value };
        if self.lowercase && value.chars().any(char::is_uppercase) {
            Cow::Owned(value.to_lowercase())
        } else {
            Cow::Borrowed(value)
        }
    }

    /// The normalised value; `None` when trimming leaves nothing.
    pub fn apply<'a>(&self, value: Cow<'a, str>) -> Option<Cow<'a, str>> {
        let cleaned: Cow<'a, str> = match value {
            Cow::Borrowed(text) => self.clean(text),
            Cow::Owned(text) => Cow::Owned(self.clean(&text).into_owned()),
        };
        if cleaned.is_empty() {
            return None;
        }
        match self.values.get(cleaned.as_ref()) {
            Some(merged) => Some(Cow::Owned(merged.clone())),
            None => Some(cleaned),
        }
    }
}

/// A project's way of reading attribution parameters: which names fill each field and how values
/// are normalised, as of one version of its settings. Version 0 is the default every project
/// starts with: the `utm_*` keys and `c`, values as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributor {
    version: u32,
    names: Vec<ParamName>,
    normalizers: [Option<Normalizer>; 5],
}

impl Default for Attributor {
    fn default() -> Self {
        Attributor::new(
            0,
            std::array::from_fn(|i| vec![UTM_KEYS[i].to_string()]),
            Default::default(),
        )
    }
}

static DEFAULT_ATTRIBUTOR: std::sync::LazyLock<Attributor> =
    std::sync::LazyLock::new(Attributor::default);

impl Attributor {
    /// The attributor of settings `version`: per UTM field (in [`UTM_KEYS`] order), the parameter
    /// names it is read from, preferred first, and its normaliser. The caller has checked that no
    /// name fills two fields and that none is `c`, `scene` or `q`.
    pub fn new(
        version: u32,
        aliases: [Vec<String>; 5],
        normalizers: [Option<Normalizer>; 5],
    ) -> Self {
        let mut names = vec![ParamName {
            key: CODE_REF_KEY.into(),
            target: Target::Code,
            rank: 0,
        }];
        for (field, keys) in aliases.into_iter().enumerate() {
            for (rank, key) in keys.into_iter().enumerate() {
                names.push(ParamName {
                    key: key.into_boxed_str(),
                    target: Target::Utm(field),
                    rank: u8::try_from(rank).unwrap_or(u8::MAX),
                });
            }
        }
        Attributor {
            version,
            names,
            normalizers,
        }
    }

    /// The shared default (version 0).
    pub fn default_ref() -> &'static Attributor {
        &DEFAULT_ATTRIBUTOR
    }

    /// The settings version this attributor comes from (stored with each launch it decodes).
    pub fn version(&self) -> u32 {
        self.version
    }

    fn param(&self, key: &str) -> Option<&ParamName> {
        self.names.iter().find(|name| &*name.key == key)
    }

    /// Decodes one launch. `query` is the launch `query` exactly as the mini-program received it.
    pub fn decode<'q, K: AsRef<str>, V: AsRef<str>>(
        &self,
        scene: Option<i32>,
        query: &'q [(K, V)],
    ) -> Attribution<'q> {
        let mut decoder = Decoder {
            problem: None,
            attributor: self,
        };

        // 1. Explicit keys, found in the same pass as the sources below.
        let mut explicit = Params::default();
        let (mut scene_text, mut link) = (None, None);
        for (key, value) in query {
            let (key, value) = (key.as_ref(), value.as_ref());
            match key {
                "scene" => {
                    scene_text.get_or_insert(value);
                }
                "q" => {
                    link.get_or_insert(value);
                }
                _ => {
                    if let Some(name) = self.param(key) {
                        let value = decoder.keep_raw_on_error(value, decode_uri_component(value));
                        explicit.set(name, value);
                    }
                }
            }
        }
        let Params {
            mut utm,
            mut code_id,
            ..
        } = explicit;
        // 2. The B code's scene, then 3. the link inside an ordinary link QR code.
        let scene_params = scene_text.map(|raw| decoder.scene_params(raw));
        let link_params = link.map(|raw| decoder.link_params(raw));
        for params in [scene_params, link_params].into_iter().flatten() {
            utm.fill_from(params.utm);
            code_id = code_id.or(params.code_id);
        }
        self.normalize(&mut utm);

        let code_kind = match scene {
            Some(s) if MINI_PROGRAM_CODE_SCENES.contains(&s) => Some(if scene_text.is_some() {
                CodeKind::B
            } else {
                CodeKind::A
            }),
            Some(s) if QR_CODE_SCENES.contains(&s) => Some(if link.is_some() {
                CodeKind::Link
            } else {
                CodeKind::C
            }),
            _ => None,
        };
        let found_any = utm.fields().iter().any(|f| f.is_some()) || code_id.is_some();
        let status = match decoder.problem {
            Some(problem) => problem,
            None if found_any => AttributionStatus::Ok,
            None => AttributionStatus::None,
        };
        Attribution {
            utm,
            code_id,
            code_kind,
            status,
        }
    }

    /// Applies each field's normaliser.
    fn normalize(&self, utm: &mut Utm<'_>) {
        for (field, normalizer) in self.normalizers.iter().enumerate() {
            let Some(normalizer) = normalizer else {
                continue;
            };
            if let Some(slot) = utm.field_mut(UTM_KEYS[field]) {
                *slot = slot.take().and_then(|value| normalizer.apply(value));
            }
        }
    }
}

/// The attribution parameters one source carries.
#[derive(Default)]
struct Params<'a> {
    utm: Utm<'a>,
    code_id: Option<Cow<'a, str>>,
    /// The rank of the name each UTM field's value came from.
    ranks: [u8; 5],
}

impl<'a> Params<'a> {
    /// Records a parameter's value. An empty value is no value; of a field's names the preferred
    /// one wins, and of one name its first occurrence.
    fn set(&mut self, name: &ParamName, value: Cow<'a, str>) {
        if value.is_empty() {
            return;
        }
        let (slot, rank) = match name.target {
            Target::Code => (&mut self.code_id, None),
            Target::Utm(field) => {
                let slot = self
                    .utm
                    .field_mut(UTM_KEYS[field])
                    .expect("UTM_KEYS names the fields");
                (slot, Some(&mut self.ranks[field]))
            }
        };
        match rank {
            Some(rank) if slot.is_none() || name.rank < *rank => {
                *rank = name.rank;
                *slot = Some(value);
            }
            None if slot.is_none() => *slot = Some(value),
            _ => {}
        }
    }

    fn into_owned(self) -> Params<'static> {
        Params {
            utm: self.utm.into_owned(),
            code_id: self.code_id.map(|c| Cow::Owned(c.into_owned())),
            ranks: self.ranks,
        }
    }
}

/// Decodes the sources and remembers the first problem met.
struct Decoder<'s> {
    problem: Option<AttributionStatus>,
    attributor: &'s Attributor,
}

impl Decoder<'_> {
    fn keep_raw_on_error<'a>(
        &mut self,
        raw: &'a str,
        decoded: Result<Cow<'a, str>, DecodeError>,
    ) -> Cow<'a, str> {
        decoded.unwrap_or_else(|e| {
            self.problem.get_or_insert(match e {
                DecodeError::BadEscape => AttributionStatus::BadPercentEncoding,
                DecodeError::BadUtf8 => AttributionStatus::BadUtf8,
            });
            Cow::Borrowed(raw)
        })
    }

    fn scene_params<'q>(&mut self, raw: &'q str) -> Params<'q> {
        let mut scene = self.keep_raw_on_error(raw, decode_uri_component(raw));
        // Encoded twice (`utm_source%253Dgzh` arrives as `utm_source%3Dgzh` after one decoding):
        // a legal scene has no `%` at all, so one that still has escapes and no `=` is decoded again.
        if !scene.contains('=')
            && scene.contains('%')
            && let Ok(again) = decode_uri_component(&scene)
        {
            scene = Cow::Owned(again.into_owned());
        }
        match scene {
            Cow::Borrowed(scene) => self.scene_pairs(scene),
            Cow::Owned(scene) => self.scene_pairs(&scene).into_owned(),
        }
    }

    /// The parameters of a decoded scene, `k=v&…`.
    fn scene_pairs<'s>(&mut self, scene: &'s str) -> Params<'s> {
        let mut params = Params::default();
        for pair in scene.split('&') {
            let Some((key, value)) = pair.split_once('=') else {
                continue;
            };
            if let Some(name) = self.attributor.param(key) {
                let value = self.keep_raw_on_error(value, decode_uri_component(value));
                params.set(name, value);
            }
        }
        params
    }

    fn link_params<'q>(&mut self, raw: &'q str) -> Params<'q> {
        match self.keep_raw_on_error(raw, decode_uri_component(raw)) {
            Cow::Borrowed(link) => self.link_query(link),
            Cow::Owned(link) => self.link_query(&link).into_owned(),
        }
    }

    /// The parameters of a link's query, form-decoded; the fragment is not part of it.
    fn link_query<'s>(&mut self, link: &'s str) -> Params<'s> {
        let mut params = Params::default();
        let Some((_, after)) = link.split_once('?') else {
            return params;
        };
        let query = after.split('#').next().unwrap_or("");
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let Ok(key) = decode_form_component(key) else {
                continue;
            };
            if let Some(name) = self.attributor.param(&key) {
                let value = self.keep_raw_on_error(value, decode_form_component(value));
                params.set(name, value);
            }
        }
        params
    }
}

/// What ties a scan to a code that carries no `c=<id>` (codes made before every code carried
/// its id): the page and the query pairs, each key and value decoded once as
/// `decodeURIComponent` does (raw when that fails), sorted. A scan's `path` and `query` and the
/// code's own `path` give the same key exactly when the scan carries that code's parameters, in
/// any order and whether the mini-program saw them encoded or not. Separators are control
/// characters, which no page or parameter of a code holds.
pub fn scan_key<'q>(page: &str, pairs: impl IntoIterator<Item = (&'q str, &'q str)>) -> String {
    let decode = |text: &'q str| decode_uri_component(text).unwrap_or(Cow::Borrowed(text));
    let mut decoded: Vec<(Cow<'q, str>, Cow<'q, str>)> = pairs
        .into_iter()
        .map(|(key, value)| (decode(key), decode(value)))
        .collect();
    decoded.sort_unstable();
    let mut key = String::with_capacity(page.len() + 64);
    key.push_str(page.strip_prefix('/').unwrap_or(page));
    for (k, v) in &decoded {
        key.push('\u{1}');
        key.push_str(k);
        key.push('\u{2}');
        key.push_str(v);
    }
    key
}

/// [`scan_key`] of an A or C code's `path` (`page?k=v&…`), as the mini-program receives it.
pub fn path_scan_key(path: &str) -> String {
    let (page, query) = path.split_once('?').unwrap_or((path, ""));
    scan_key(
        page,
        query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| pair.split_once('=').unwrap_or((pair, ""))),
    )
}
