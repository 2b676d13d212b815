//! Which mini-program the project's codes are made for: its AppID (the secret stays with the
//! host), registered once the host has checked it with WeChat.

use super::Host;
use super::records::{read, update};
use crate::bindings::promolens::codes::host::Level;
use crate::bindings::promolens::codes::types::{Authorization, Error};
use crate::errors::{invalid, not_authorized};

const AUTHORIZATION: &str = "authorization";

pub fn authorization_status(host: &dyn Host) -> Result<Option<Authorization>, Error> {
    Ok(read::<Authorization>(host, AUTHORIZATION)?.map(|(a, _)| a))
}

pub(super) fn require_authorization(host: &dyn Host) -> Result<Authorization, Error> {
    authorization_status(host)?.ok_or_else(not_authorized)
}

/// A mini-program AppID: `wx` and 16 hexadecimal digits.
fn check_app_id(app_id: &str) -> Result<(), Error> {
    let ok = app_id.len() == 18
        && app_id.starts_with("wx")
        && app_id[2..].bytes().all(|b| b.is_ascii_hexdigit());
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "app_id",
            format!(
                "`{app_id}` is not a mini-program AppID (wx and 16 hexadecimal digits, as in the \
                 mini-program's admin console under Development > Development settings)"
            ),
        ))
    }
}

pub fn register_authorization(host: &dyn Host, app_id: &str) -> Result<Authorization, Error> {
    check_app_id(app_id)?;
    let now = host.now_ms();
    let authorization = update(host, AUTHORIZATION, |_: Option<Authorization>| {
        Ok(Authorization {
            app_id: app_id.to_string(),
            authorized_at_ms: now,
        })
    })?;
    host.log(Level::Info, &format!("authorized mini-program {app_id}"));
    Ok(authorization)
}

pub fn revoke_authorization(host: &dyn Host) -> Result<(), Error> {
    host.store_delete(AUTHORIZATION)?;
    host.log(Level::Info, "authorization revoked");
    Ok(())
}
