//! The project's records through the host's store: keys, and JSON values read, written and
//! changed by compare-and-set.

use serde::{Deserialize, Serialize};

use super::Host;
use crate::bindings::promolens::codes::host::Versioned;
use crate::bindings::promolens::codes::types::Error;
use crate::errors::{corrupt, not_found};

pub(super) fn code_key(id: &str) -> String {
    format!("codes/{id}")
}

pub(super) fn image_key(id: &str) -> String {
    format!("images/{id}")
}

/// Ids are made by `new-id`; anything else cannot name a code (and never reaches the store).
/// An id that cannot name a record is not found (ids are `0-9a-z`, as record keys are: an
/// upper-case id would reach the host as a key it refuses).
pub(super) fn check_id(id: &str) -> Result<(), Error> {
    let id_byte = |b: u8| b.is_ascii_digit() || b.is_ascii_lowercase();
    if id.is_empty() || id.len() > 32 || !id.bytes().all(id_byte) {
        return Err(not_found(id));
    }
    Ok(())
}

pub(super) fn read<T: for<'de> Deserialize<'de>>(
    host: &dyn Host,
    key: &str,
) -> Result<Option<(T, u64)>, Error> {
    match host.store_get(key)? {
        None => Ok(None),
        Some(Versioned { value, version }) => serde_json::from_slice(&value)
            .map(|v| Some((v, version)))
            .map_err(|e| corrupt(key, e)),
    }
}

pub(super) fn write<T: Serialize>(
    host: &dyn Host,
    key: &str,
    value: &T,
    expected: Option<u64>,
) -> Result<u64, Error> {
    let bytes = serde_json::to_vec(value).map_err(|e| corrupt(key, e))?;
    host.store_put(key, &bytes, expected)
}

/// Reads, changes and writes a record by compare-and-set, again when another write came first.
pub(super) fn update<T: Serialize + for<'de> Deserialize<'de>>(
    host: &dyn Host,
    key: &str,
    mut change: impl FnMut(Option<T>) -> Result<T, Error>,
) -> Result<T, Error> {
    for _ in 0..16 {
        let (current, version) = match read::<T>(host, key)? {
            Some((value, version)) => (Some(value), Some(version)),
            None => (None, None),
        };
        let next = change(current)?;
        match write(host, key, &next, version) {
            Ok(_) => return Ok(next),
            Err(Error::Conflict(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Error::Conflict(format!(
        "`{key}` kept changing under concurrent writes; try again"
    )))
}
