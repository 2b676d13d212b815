//! `serve --demo`: the sample events shipped in `data/` (made by `promolens gen`), loaded into
//! project `demo` with their days moved so that the last one is yesterday: "the past 7 days"
//! shows numbers at once, whatever the date. The project gets a few codes of each kind first,
//! and one launch in five of the sample becomes a scan of one of them (as WeChat gives a scan to
//! the mini-program), so the codes list shows real numbers too. The sample has signups and
//! purchases too (`promolens gen --events 6000 --users 1200 --days 30 --end 2025-11-23 --seed 7
//! --core-events`).

use std::io::Read;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use futures::TryStreamExt;
use object_store::ObjectStore;
use promolens_ingest::Ingestor;
use promolens_schemas::{Event, Limits};

use crate::codes::{Code, CodeKind, Codes, NewCode};
use crate::error::{Error, Result};

pub const DEMO_PROJECT: &str = "demo";

/// The sample events, gzip NDJSON.
pub static DEMO_EVENTS: &[u8] = include_bytes!("../../data/demo-events.ndjson.gz");

const DAY_MS: i64 = 86_400_000;

/// The demo's codes: name, kind, source, medium, campaign, and the share of the scans (out of
/// 17) that are theirs, so that the list has a clear order.
const DEMO_CODES: [(&str, &str, &str, &str, &str, usize); 6] = [
    (
        "公众号菜单 Official account menu",
        "A",
        "gzh",
        "menu",
        "always-on",
        5,
    ),
    (
        "公众号文章 Article, Double 11",
        "A",
        "gzh",
        "article",
        "double11",
        4,
    ),
    (
        "门店收银台 Shop counter, Nanjing Road",
        "B",
        "shop",
        "counter",
        "always-on",
        3,
    ),
    (
        "合作伙伴 Partner leaflet",
        "B",
        "partner",
        "leaflet",
        "double11",
        2,
    ),
    (
        "地铁海报 Metro poster, line 2",
        "C",
        "poster",
        "metro",
        "double11",
        2,
    ),
    (
        "展会易拉宝 Trade fair banner",
        "C",
        "fair",
        "banner",
        "spring-fair",
        1,
    ),
];

/// Makes the demo's codes unless the project has codes already; returns the project's codes.
pub async fn seed_codes(codes: &Codes) -> Result<Vec<Code>> {
    let existing = codes
        .list(DEMO_PROJECT, false)
        .await
        .map_err(|e| Error::Setup(format!("listing the demo's codes: {e}")))?;
    if !existing.is_empty() {
        return Ok(existing);
    }
    let mut made = Vec::new();
    for (name, kind, source, medium, campaign, _) in DEMO_CODES {
        let request = NewCode {
            name: name.into(),
            kind: kind.into(),
            page: "pages/index/index".into(),
            utm_source: Some(source.into()),
            utm_medium: Some(medium.into()),
            utm_campaign: Some(campaign.into()),
            ..NewCode::default()
        }
        .into_request()
        .map_err(|e| Error::Setup(format!("the demo code {name}: {}", e.message)))?;
        let code = codes
            .create(DEMO_PROJECT, request)
            .await
            .map_err(|e| Error::Setup(format!("making the demo code {name}: {e}")))?;
        made.push(code);
    }
    Ok(made)
}

/// The launch a scan of a code gives the mini-program.
#[derive(Clone)]
struct Scan {
    /// WeChat's launch scene value.
    scene: i32,
    /// A, C: the code's path query, values percent-encoded as in the path; B: `scene` holding
    /// the code's scene, percent-encoded.
    query: Vec<(String, String)>,
    page: String,
}

fn scan_of(code: &Code) -> Scan {
    let encoding = &code.encoding;
    let scene_value = match code.kind {
        CodeKind::A | CodeKind::B => 1047,
        CodeKind::C => 1011,
    };
    let query = match (&encoding.scene, &encoding.path) {
        (Some(scene), _) => vec![(
            "scene".to_string(),
            promolens_schemas::percent::encode_uri_component(scene),
        )],
        (None, Some(path)) => path
            .split_once('?')
            .map_or("", |(_, query)| query)
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                (key.to_string(), value.to_string())
            })
            .collect(),
        (None, None) => Vec::new(),
    };
    Scan {
        scene: scene_value,
        query,
        page: code.page.clone(),
    }
}

/// Loads the sample events unless project `demo` already has data, one launch in five made a
/// scan of one of `codes`. Returns how many were stored.
pub async fn load(ingestor: &Ingestor, codes: &[Code], now: DateTime<Utc>) -> Result<Option<u64>> {
    let storage = ingestor.storage();
    let project_dir = storage.path(&promolens_schemas::layout::project_dir(
        promolens_schemas::tables::LAUNCH_EVENTS,
        DEMO_PROJECT,
    ));
    let existing = storage
        .store
        .list(Some(&project_dir))
        .try_next()
        .await
        .map_err(promolens_ingest::Error::from)?;
    if existing.is_some() {
        return Ok(None);
    }
    let mut text = String::new();
    flate2::read::GzDecoder::new(DEMO_EVENTS)
        .read_to_string(&mut text)
        .map_err(|e| Error::io("reading the embedded demo events", e))?;
    let limits = Limits::default();
    let events: Vec<Event> = text
        .lines()
        .filter_map(|line| Event::parse(line, &limits).ok())
        .collect();
    let tz: Tz = ingestor.config().zones.get(DEMO_PROJECT);
    let Some(last) = events.iter().map(|e| e.event_time_ms).max() else {
        return Ok(Some(0));
    };
    let day = |ms: i64| {
        DateTime::<Utc>::from_timestamp_millis(ms)
            .unwrap_or_default()
            .with_timezone(&tz)
            .date_naive()
    };
    let yesterday = now.with_timezone(&tz).date_naive() - chrono::Days::new(1);
    let shift = (yesterday - day(last)).num_days() * DAY_MS;
    let received_at = now.timestamp_millis();
    // Each code's scans, as many times as its share.
    let scans: Vec<Scan> = codes
        .iter()
        .enumerate()
        .flat_map(|(i, code)| {
            let share = DEMO_CODES.get(i).map_or(1, |c| c.5);
            std::iter::repeat_n(scan_of(code), share)
        })
        .collect();
    let mut rows = ingestor.rows(DEMO_PROJECT);
    let mut launches = 0;
    for mut e in events {
        e.event_time_ms += shift;
        e.sent_at_ms = e.sent_at_ms.map(|t| t + shift);
        e.project = None;
        let i = launches;
        if e.is_launch() {
            launches += 1;
        }
        if e.is_launch() && i % 5 == 0 && !scans.is_empty() {
            let scan = &scans[(i / 5) % scans.len()];
            e.scene = Some(scan.scene);
            e.path = Some(scan.page.as_str().into());
            e.query = scan
                .query
                .iter()
                .map(|(key, value)| (key.as_str().into(), value.as_str().into()))
                .collect();
        }
        rows.push(&e, received_at);
    }
    let rows = rows.finish()?;
    let outcome = ingestor.append(rows).await?;
    ingestor.flush().await?;
    Ok(Some(outcome.accepted() as u64))
}
