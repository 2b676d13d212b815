//! `serve --demo`: the sample events shipped in `data/` (made by `promolens gen`), loaded into
//! project `demo` with their days moved so that the last one is yesterday: "the past 7 days"
//! shows numbers at once, whatever the date.

use std::io::Read;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use futures::TryStreamExt;
use object_store::ObjectStore;
use promolens_ingest::Ingestor;
use promolens_schemas::{LaunchEvent, Limits};

use crate::error::{Error, Result};

pub const DEMO_PROJECT: &str = "demo";

/// The sample events, gzip NDJSON.
pub static DEMO_EVENTS: &[u8] = include_bytes!("../../data/demo-events.ndjson.gz");

const DAY_MS: i64 = 86_400_000;

/// Loads the sample events unless project `demo` already has data. Returns how many were stored.
pub async fn load(ingestor: &Ingestor, now: DateTime<Utc>) -> Result<Option<u64>> {
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
    let events: Vec<LaunchEvent> = text
        .lines()
        .filter_map(|line| LaunchEvent::parse(line, &limits).ok())
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
    let mut rows = ingestor.rows(DEMO_PROJECT);
    for mut e in events {
        e.event_time_ms += shift;
        e.sent_at_ms = e.sent_at_ms.map(|t| t + shift);
        e.project = None;
        rows.push(&e, received_at);
    }
    let rows = rows.finish()?;
    let outcome = ingestor.append(rows).await?;
    ingestor.flush().await?;
    Ok(Some(outcome.accepted() as u64))
}
