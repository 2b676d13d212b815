//! Duplicate detection by `event_id`, scoped by partition.
//!
//! A retry carries the same `event_id` and the same `ts`, so it lands in the same
//! `project=P/dt=D` partition: the index keeps, per partition, the 128-bit hashes of the ids
//! stored there, loaded on first use from the partition's Parquet files (their `event_id` column
//! only) and kept up to date as events are accepted. Memory is bounded by `max_ids`: the least
//! recently used partitions with nothing waiting to be flushed are dropped, and reloaded from
//! Parquet if touched again. Limits (DESIGN.md §6): the same `event_id` sent with a `ts` on another
//! day is not recognised, and two processes writing to one bucket do not see each other's
//! unflushed events.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::error::Result;
use crate::parquet_io::for_each_event_id;
use crate::partition::PartitionKey;
use crate::storage::Storage;

/// 128-bit hash of an event id: collisions are out of reach at any realistic volume.
pub fn id_hash(event_id: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(event_id.as_bytes())
}

/// The ids are already uniform hashes: use their low bits as the table hash.
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes.iter().take(8) {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }
}

pub type IdSet = HashSet<u128, BuildHasherDefault<IdHasher>>;

struct PartitionIds {
    ids: IdSet,
    last_used: u64,
    /// Flush generation of the newest event accepted into this partition.
    dirty_generation: Option<u64>,
}

pub struct DedupeIndex {
    partitions: HashMap<PartitionKey, PartitionIds>,
    total_ids: usize,
    max_ids: usize,
    clock: u64,
}

impl DedupeIndex {
    pub fn new(max_ids: usize) -> DedupeIndex {
        DedupeIndex {
            partitions: HashMap::new(),
            total_ids: 0,
            max_ids,
            clock: 0,
        }
    }

    pub fn is_loaded(&self, key: &PartitionKey) -> bool {
        self.partitions.contains_key(key)
    }

    pub fn insert_loaded(&mut self, key: PartitionKey, ids: IdSet) {
        self.total_ids += ids.len();
        self.partitions.insert(
            key,
            PartitionIds {
                ids,
                last_used: self.clock,
                dirty_generation: None,
            },
        );
    }

    /// Records the ids of some rows of one loaded partition, setting for each row whether its
    /// id is new (false: a duplicate). One partition lookup for all of them, not one per row.
    pub fn insert_rows(
        &mut self,
        key: &PartitionKey,
        rows: impl Iterator<Item = (usize, u128)>,
        generation: u64,
        stored: &mut [bool],
    ) {
        self.clock += 1;
        let Some(part) = self.partitions.get_mut(key) else {
            debug_assert!(false, "partition {key:?} not loaded");
            for (row, _) in rows {
                stored[row] = true;
            }
            return;
        };
        part.last_used = self.clock;
        for (row, id) in rows {
            let new = part.ids.insert(id);
            if new {
                part.dirty_generation = Some(generation);
                self.total_ids += 1;
            }
            stored[row] = new;
        }
    }

    /// Forgets an id whose write failed, so that a retry is not taken for a duplicate.
    pub fn remove(&mut self, key: &PartitionKey, id: u128) {
        if let Some(part) = self.partitions.get_mut(key)
            && part.ids.remove(&id)
        {
            self.total_ids -= 1;
        }
    }

    /// Drops least recently used partitions whose events are all in Parquet (flush generation
    /// `flushed` and before) until the index is within its bound.
    pub fn evict(&mut self, flushed: Option<u64>) {
        if self.total_ids <= self.max_ids {
            return;
        }
        let mut candidates: Vec<(u64, PartitionKey, usize)> = self
            .partitions
            .iter()
            .filter(|(_, p)| match (p.dirty_generation, flushed) {
                (None, _) => true,
                (Some(dirty), Some(flushed)) => dirty <= flushed,
                (Some(_), None) => false,
            })
            .map(|(k, p)| (p.last_used, k.clone(), p.ids.len()))
            .collect();
        candidates.sort();
        for (_, key, len) in candidates {
            if self.total_ids <= self.max_ids {
                break;
            }
            self.partitions.remove(&key);
            self.total_ids -= len;
        }
    }
}

/// Reads the ids of every event stored in a partition.
pub async fn load_partition_ids(storage: &Storage, key: &PartitionKey) -> Result<IdSet> {
    let dir = storage.path(&key.relative_dir());
    let files: Vec<_> = storage
        .store
        .list(Some(&dir))
        .try_filter(|meta| futures::future::ready(meta.location.as_ref().ends_with(".parquet")))
        .try_collect()
        .await?;
    let mut ids = IdSet::default();
    for file in files {
        let bytes = storage.store.get(&file.location).await?.bytes().await?;
        for_each_event_id(bytes, |id| {
            ids.insert(id_hash(id));
        })?;
    }
    Ok(ids)
}
