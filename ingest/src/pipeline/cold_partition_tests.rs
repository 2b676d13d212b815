//! The committer does not wait on storage for a request: reading a cold partition's stored ids
//! (to dedupe against them) happens off its thread, and every other request is answered
//! meanwhile.

use std::sync::Arc;

use tokio::sync::{Notify, Semaphore};

use super::testing::Hooked;
use super::*;

const NOV_20: i64 = 1_763_596_800_000; // 2025-11-20T00:00:00Z
const NOV_24: i64 = 1_763_942_400_000; // 2025-11-24T00:00:00Z

fn events_at(ts: i64, ids: &[&str], ingestor: &Ingestor) -> Rows {
    testing::launch_rows(ingestor, ts, ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_partitions_listing_holds_up_only_the_requests_that_touch_it() {
    let data = tempfile::tempdir().unwrap();
    let wal = tempfile::tempdir().unwrap();
    let local = Storage::open(data.path().to_str().unwrap()).unwrap();
    let mut config = IngestConfig::new(chrono_tz::UTC);
    config.wal_dir = Some(wal.path().to_path_buf());
    config.flush_age = Duration::from_secs(3600);

    // An earlier process stored event `old` of Nov 20.
    let earlier = Ingestor::start(local.clone(), config.clone())
        .await
        .unwrap();
    earlier
        .append(events_at(NOV_20, &["old"], &earlier))
        .await
        .unwrap();
    earlier.shutdown().await.unwrap();
    drop(earlier);

    // Now listing Nov 20's folder waits until the test opens the gate.
    let gate = Arc::new(Semaphore::new(0));
    let listing = Arc::new(Notify::new());
    let mut hooked = Hooked::new(local.store.clone());
    let (held_gate, started) = (gate.clone(), listing.clone());
    hooked.before_list = Box::new(move |prefix| {
        let held = prefix.is_some_and(|p| p.as_ref().contains("dt=2025-11-20"));
        let (gate, started) = (held_gate.clone(), started.clone());
        Box::pin(async move {
            if held {
                started.notify_one();
                let _ = gate.acquire().await.map(|permit| permit.forget());
            }
            Ok(())
        })
    });
    let storage = Storage {
        store: Arc::new(hooked),
        ..local.clone()
    };
    let ingestor = Arc::new(Ingestor::start(storage, config).await.unwrap());
    ingestor
        .append(events_at(NOV_24, &["a"], &ingestor))
        .await
        .unwrap();

    // A request touching Nov 20 waits for its listing…
    let cold = tokio::spawn({
        let ingestor = ingestor.clone();
        async move {
            let rows = events_at(NOV_20, &["old", "new"], &ingestor);
            ingestor.append(rows).await
        }
    });
    listing.notified().await;
    // …while one touching Nov 24 (loaded) is answered.
    let warm = tokio::time::timeout(
        Duration::from_secs(20),
        ingestor.append(events_at(NOV_24, &["a", "b"], &ingestor)),
    )
    .await
    .expect("a request to a loaded partition waited for another partition's listing")
    .unwrap();
    assert_eq!((warm.accepted(), warm.duplicates()), (1, 1));
    assert!(!cold.is_finished());

    // Once listed, the waiting request is deduped against what was stored.
    gate.add_permits(1_000);
    let cold = cold.await.unwrap().unwrap();
    assert_eq!(cold.stored, [false, true], "`old` was stored before");
    ingestor.shutdown().await.unwrap();
    assert_eq!(
        testing::stored_event_ids(&local).await,
        ["a", "b", "new", "old"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_waiting_for_a_listing_that_fails_gets_the_error_and_others_go_on() {
    let data = tempfile::tempdir().unwrap();
    let local = Storage::open(data.path().to_str().unwrap()).unwrap();
    // Listing Nov 20's folder fails.
    let mut hooked = Hooked::new(local.store.clone());
    hooked.before_list = Box::new(|prefix| {
        let broken = prefix.is_some_and(|p| p.as_ref().contains("dt=2025-11-20"));
        Box::pin(async move {
            if broken {
                return Err(object_store::Error::Generic {
                    store: "Hooked",
                    source: "injected: the listing failed".into(),
                });
            }
            Ok(())
        })
    });
    let storage = Storage {
        store: Arc::new(hooked),
        ..local.clone()
    };
    let ingestor = Ingestor::start(storage, IngestConfig::new(chrono_tz::UTC))
        .await
        .unwrap();
    let error = ingestor
        .append(events_at(NOV_20, &["x"], &ingestor))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::StorageUnavailable(_)), "{error}");
    let fine = ingestor
        .append(events_at(NOV_24, &["y"], &ingestor))
        .await
        .unwrap();
    assert_eq!(fine.accepted(), 1);
    ingestor.shutdown().await.unwrap();
}
