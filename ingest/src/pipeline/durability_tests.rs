//! The order that makes a 2xx survive a power cut: a write-ahead log segment is deleted only
//! after every file of its flush is stored (and a local store's put returns only once the file is
//! fsynced, `durable_store`); a flush that cannot be stored deletes nothing, and the next start
//! stores its events from the log.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::testing::Hooked;
use super::*;

fn segments_in(dir: &std::path::Path) -> Vec<u64> {
    let mut found: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            name.strip_prefix("wal-")?
                .strip_suffix(".log")?
                .parse()
                .ok()
        })
        .collect();
    found.sort_unstable();
    found
}

/// Events `e<i>` of one day, one user each.
fn events(ids: std::ops::Range<usize>, ingestor: &Ingestor) -> Rows {
    let ids: Vec<String> = ids.map(|id| format!("e{id}")).collect();
    testing::launch_rows(ingestor, 1_763_942_400_000, &ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_log_segment_is_deleted_before_its_files_are_stored_and_a_failed_flush_deletes_none() {
    let data = tempfile::tempdir().unwrap();
    let wal = tempfile::tempdir().unwrap();
    let local = Storage::open(data.path().to_str().unwrap()).unwrap();
    // The store can be made to fail, and notes for each stored file the log segments that
    // existed once its put had returned.
    let failing = Arc::new(AtomicBool::new(false));
    type Notes = Vec<(String, Vec<u64>)>;
    let stored: Arc<Mutex<Notes>> = Arc::default();
    let mut hooked = Hooked::new(local.store.clone());
    let fail = failing.clone();
    hooked.before_put = Box::new(move |_| {
        if fail.load(Ordering::SeqCst) {
            return Err(object_store::Error::Generic {
                store: "Hooked",
                source: "injected: the disk is gone".into(),
            });
        }
        Ok(())
    });
    let (notes, wal_dir): (_, PathBuf) = (stored.clone(), wal.path().to_path_buf());
    hooked.after_put = Box::new(move |location| {
        let present = segments_in(&wal_dir);
        notes.lock().unwrap().push((location.to_string(), present));
    });
    let storage = Storage {
        store: Arc::new(hooked),
        ..local.clone()
    };
    let mut config = IngestConfig::new(chrono_tz::UTC);
    config.wal_dir = Some(wal.path().to_path_buf());
    config.flush_age = Duration::from_secs(3600);
    let ingestor = Ingestor::start(storage.clone(), config.clone())
        .await
        .unwrap();

    // A flush that stores: each of its files (launches and first-seen rows) was stored while
    // the segment holding its events (1) was still there; afterwards the segment is gone.
    ingestor.append(events(0..10, &ingestor)).await.unwrap();
    assert_eq!(segments_in(wal.path()), [1]);
    ingestor.flush().await.unwrap();
    let stored = std::mem::take(&mut *stored.lock().unwrap());
    assert!(stored.len() >= 2, "{stored:?}");
    for (file, present) in &stored {
        assert!(
            present.contains(&1),
            "{file} was stored after its log segment was deleted"
        );
    }
    assert_eq!(segments_in(wal.path()), [2]);

    // The disk fails: the flush fails (after its retries) and its segment stays.
    failing.store(true, Ordering::SeqCst);
    ingestor.append(events(10..20, &ingestor)).await.unwrap();
    assert!(ingestor.flush().await.is_err());
    assert!(
        segments_in(wal.path()).contains(&2),
        "the failed flush's segment was deleted"
    );
    drop(ingestor);

    // The next start (the disk back) stores the failed flush's events from the log, once.
    failing.store(false, Ordering::SeqCst);
    let ingestor = Ingestor::start(storage.clone(), config).await.unwrap();
    ingestor.shutdown().await.unwrap();
    let expected: Vec<String> = {
        let mut ids: Vec<String> = (0..20).map(|id| format!("e{id}")).collect();
        ids.sort();
        ids
    };
    assert_eq!(testing::stored_event_ids(&local).await, expected);
    assert!(!segments_in(wal.path()).contains(&2));
}
