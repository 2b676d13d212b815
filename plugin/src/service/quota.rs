//! The A+C quota: WeChat makes at most 100,000 codes of kinds A and C per mini-program, ever,
//! and never gives one back. Reserved before a create, released when WeChat refuses it.

use serde::{Deserialize, Serialize};

use super::Host;
use super::records::{read, update};
use crate::bindings::promolens::codes::host::Level;
use crate::bindings::promolens::codes::types::{CodeKind, Error, QuotaState};

/// WeChat's lifetime limit on A and C codes of one mini-program.
pub const QUOTA_LIMIT: u32 = 100_000;
/// From this many A and C codes on, every answer about the quota warns.
pub const QUOTA_WARNING: u32 = QUOTA_LIMIT / 10 * 9;

pub(super) const QUOTA: &str = "quota";

#[derive(Serialize, Deserialize, Default)]
pub(super) struct QuotaRecord {
    pub(super) used: u32,
}

pub(super) fn quota_of(used: u32) -> QuotaState {
    QuotaState {
        used,
        limit: QUOTA_LIMIT,
        warning: used >= QUOTA_WARNING,
        exhausted: used >= QUOTA_LIMIT,
    }
}

pub fn quota(host: &dyn Host) -> Result<QuotaState, Error> {
    let used = read::<QuotaRecord>(host, QUOTA)?.map_or(0, |(q, _)| q.used);
    Ok(quota_of(used))
}

/// Takes `n` codes from the quota, or refuses without taking any.
pub(super) fn reserve(host: &dyn Host, n: u32) -> Result<QuotaState, Error> {
    let record = update(host, QUOTA, |current: Option<QuotaRecord>| {
        let used = current.unwrap_or_default().used;
        if used.saturating_add(n) > QUOTA_LIMIT {
            return Err(Error::QuotaExhausted(quota_of(used)));
        }
        Ok(QuotaRecord { used: used + n })
    })?;
    let quota = quota_of(record.used);
    if quota.warning {
        host.log(
            Level::Warn,
            &format!(
                "{} of {} A and C codes used; B codes are unlimited",
                quota.used, quota.limit
            ),
        );
    }
    Ok(quota)
}

/// WeChat's errcode for "the mini-program's A and C codes are used up".
pub(super) const WECHAT_QUOTA_FULL: i32 = 45029;

/// Records WeChat's answer that its count of A and C codes is full (codes made outside promolens
/// count there too): from now on the quota is refused here, without calling WeChat.
pub(super) fn mark_exhausted(host: &dyn Host) -> Result<QuotaState, Error> {
    update(host, QUOTA, |_: Option<QuotaRecord>| {
        Ok(QuotaRecord { used: QUOTA_LIMIT })
    })?;
    host.log(
        Level::Warn,
        "WeChat answered 45029: the mini-program's A and C codes are used up (WeChat's count, \
         which includes codes made outside promolens); B codes are unlimited",
    );
    Ok(quota_of(QUOTA_LIMIT))
}

/// Gives back codes reserved for a creation WeChat refused.
pub(super) fn release(host: &dyn Host, n: u32) -> Result<(), Error> {
    update(host, QUOTA, |current: Option<QuotaRecord>| {
        Ok(QuotaRecord {
            used: current.unwrap_or_default().used.saturating_sub(n),
        })
    })
    .map(|_| ())
}

pub(super) fn uses_quota(kind: CodeKind) -> bool {
    matches!(kind, CodeKind::A | CodeKind::C)
}
