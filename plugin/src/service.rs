//! The operations the plugin exports, written against [`Host`] so that they run natively in
//! tests (an in-memory host) exactly as they run in wasm (the imports the host grants).
//!
//! Records of the project's store:
//! - `authorization`: the mini-program's AppID (JSON);
//! - `quota`: A+C codes made so far (JSON `{"used": n}`), updated by compare-and-set; set to the
//!   limit when WeChat answers 45029 (its own count is full: WeChat's count is the truth);
//! - `codes/<id>`: a code (JSON of the WIT `code` record);
//! - `images/<id>`: the image WeChat returned (raw bytes; its type is in the code).

use serde::{Deserialize, Serialize};

use crate::bindings::promolens::codes::host::{CodeImage, Level, Versioned, WechatEndpoint};
use crate::bindings::promolens::codes::types::{
    Authorization, BatchOutcome, BatchRow, Code, CodeKind, CodePreview, CodeRequest, EnvVersion,
    Error, QuotaState,
};
use crate::encoding::{self, ID_LEN, PREVIEW_ID};
use crate::errors::{corrupt, invalid, not_authorized, not_found};

/// WeChat's lifetime limit on A and C codes of one mini-program.
pub const QUOTA_LIMIT: u32 = 100_000;
/// From this many A and C codes on, every answer about the quota warns.
pub const QUOTA_WARNING: u32 = QUOTA_LIMIT / 10 * 9;

/// The powers the host grants: the WIT `host` interface, as a trait.
pub trait Host {
    fn wechat_call(&self, endpoint: WechatEndpoint, body: &str) -> Result<CodeImage, Error>;
    fn store_get(&self, key: &str) -> Result<Option<Versioned>, Error>;
    fn store_put(&self, key: &str, value: &[u8], expected: Option<u64>) -> Result<u64, Error>;
    fn store_list(&self, prefix: &str) -> Result<Vec<String>, Error>;
    fn store_delete(&self, key: &str) -> Result<(), Error>;
    fn now_ms(&self) -> i64;
    fn new_id(&self) -> String;
    fn log(&self, level: Level, message: &str);
}

const AUTHORIZATION: &str = "authorization";
const QUOTA: &str = "quota";

fn code_key(id: &str) -> String {
    format!("codes/{id}")
}

fn image_key(id: &str) -> String {
    format!("images/{id}")
}

/// Ids are made by `new-id`; anything else cannot name a code (and never reaches the store).
/// An id that cannot name a record is not found (ids are `0-9a-z`, as record keys are: an
/// upper-case id would reach the host as a key it refuses).
fn check_id(id: &str) -> Result<(), Error> {
    let id_byte = |b: u8| b.is_ascii_digit() || b.is_ascii_lowercase();
    if id.is_empty() || id.len() > 32 || !id.bytes().all(id_byte) {
        return Err(not_found(id));
    }
    Ok(())
}

fn read<T: for<'de> Deserialize<'de>>(
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

fn write<T: Serialize>(
    host: &dyn Host,
    key: &str,
    value: &T,
    expected: Option<u64>,
) -> Result<u64, Error> {
    let bytes = serde_json::to_vec(value).map_err(|e| corrupt(key, e))?;
    host.store_put(key, &bytes, expected)
}

/// Reads, changes and writes a record by compare-and-set, again when another write came first.
fn update<T: Serialize + for<'de> Deserialize<'de>>(
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

// ---- authorization ----

pub fn authorization_status(host: &dyn Host) -> Result<Option<Authorization>, Error> {
    Ok(read::<Authorization>(host, AUTHORIZATION)?.map(|(a, _)| a))
}

fn require_authorization(host: &dyn Host) -> Result<Authorization, Error> {
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

// ---- quota ----

#[derive(Serialize, Deserialize, Default)]
struct QuotaRecord {
    used: u32,
}

fn quota_of(used: u32) -> QuotaState {
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
fn reserve(host: &dyn Host, n: u32) -> Result<QuotaState, Error> {
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
const WECHAT_QUOTA_FULL: i32 = 45029;

/// Records WeChat's answer that its count of A and C codes is full (codes made outside promolens
/// count there too): from now on the quota is refused here, without calling WeChat.
fn mark_exhausted(host: &dyn Host) -> Result<QuotaState, Error> {
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
fn release(host: &dyn Host, n: u32) -> Result<(), Error> {
    update(host, QUOTA, |current: Option<QuotaRecord>| {
        Ok(QuotaRecord {
            used: current.unwrap_or_default().used.saturating_sub(n),
        })
    })
    .map(|_| ())
}

fn uses_quota(kind: CodeKind) -> bool {
    matches!(kind, CodeKind::A | CodeKind::C)
}

// ---- codes ----

pub fn preview(host: &dyn Host, request: &CodeRequest) -> Result<CodePreview, Error> {
    let encoding = encoding::encode(request, PREVIEW_ID)?;
    let quota = if uses_quota(request.kind) {
        // Once exhausted, the quota as it is: creating would be refused.
        let now = quota(host)?;
        Some(if now.exhausted {
            now
        } else {
            quota_of(now.used.saturating_add(1))
        })
    } else {
        None
    };
    Ok(CodePreview { encoding, quota })
}

/// The JSON body of the WeChat call for an encoded request.
fn wechat_body(
    request: &CodeRequest,
    encoding: &crate::bindings::promolens::codes::types::Encoding,
) -> String {
    let image = &request.image;
    let mut body = serde_json::Map::new();
    let mut put = |key: &str, value: serde_json::Value| {
        body.insert(key.to_string(), value);
    };
    match request.kind {
        CodeKind::A | CodeKind::C => put("path", encoding.path.clone().unwrap_or_default().into()),
        CodeKind::B => {
            put("scene", encoding.scene.clone().unwrap_or_default().into());
            put("page", encoding.page.clone().unwrap_or_default().into());
            if let Some(check) = image.check_path {
                put("check_path", check.into());
            }
        }
    }
    if let Some(width) = image.width {
        put("width", width.into());
    }
    if !matches!(request.kind, CodeKind::C) {
        put("auto_color", image.auto_color.into());
        if let Some(c) = image.line_color {
            put(
                "line_color",
                serde_json::json!({"r": c.r, "g": c.g, "b": c.b}),
            );
        }
        put("is_hyaline", image.is_hyaline.into());
        if let Some(env) = image.env_version {
            let name = match env {
                EnvVersion::Release => "release",
                EnvVersion::Trial => "trial",
                EnvVersion::Develop => "develop",
            };
            put("env_version", name.into());
        }
    }
    serde_json::Value::Object(body).to_string()
}

fn endpoint(kind: CodeKind) -> WechatEndpoint {
    match kind {
        CodeKind::A => WechatEndpoint::GetWxacode,
        CodeKind::B => WechatEndpoint::GetWxacodeUnlimit,
        CodeKind::C => WechatEndpoint::CreateWxaqrcode,
    }
}

/// A fresh id from the host, checked (it ends up in paths and scenes).
fn new_id(host: &dyn Host) -> Result<String, Error> {
    let id = host.new_id();
    if id.len() != ID_LEN
        || !id
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
    {
        return Err(Error::Host(format!(
            "new-id gave `{id}`: expected {ID_LEN} characters of 0-9a-z"
        )));
    }
    Ok(id)
}

pub fn create(host: &dyn Host, request: &CodeRequest) -> Result<Code, Error> {
    encoding::validate(request)?;
    require_authorization(host)?;
    let id = new_id(host)?;
    // Every path and scene holds the code's id, so two codes' payloads can be equal only when
    // their ids are: an id that already names a code is refused, naming it.
    if let Some((existing, _)) = read::<Code>(host, &code_key(&id))? {
        return Err(Error::Conflict(format!(
            "the new code's id {id} already names code `{}`; its path would equal that code's: \
             try again",
            existing.name
        )));
    }
    let encoding = encoding::encode(request, &id)?;
    if uses_quota(request.kind) {
        reserve(host, 1)?;
    }
    let image = match host.wechat_call(endpoint(request.kind), &wechat_body(request, &encoding)) {
        Ok(image) => image,
        Err(Error::Wechat(w)) if w.errcode == WECHAT_QUOTA_FULL && uses_quota(request.kind) => {
            return Err(Error::QuotaExhausted(mark_exhausted(host)?));
        }
        Err(e) => {
            if uses_quota(request.kind) {
                release(host, 1)?;
            }
            return Err(e);
        }
    };
    let now = host.now_ms();
    let code = Code {
        id: id.clone(),
        name: request.name.trim().to_string(),
        kind: request.kind,
        page: request.page.clone(),
        utm: request.utm.clone(),
        params: request.params.clone(),
        image: request.image,
        encoding,
        content_type: image.content_type.clone(),
        image_bytes: image.bytes.len() as u32,
        created_at_ms: now,
        updated_at_ms: now,
        deleted_at_ms: None,
    };
    // The image first: a record never points at an image that is not there.
    host.store_put(&image_key(&id), &image.bytes, None)?;
    write(host, &code_key(&id), &code, None)?;
    host.log(
        Level::Info,
        &format!("created code {id} ({:?}) `{}`", code.kind, code.name),
    );
    Ok(code)
}

pub fn get(host: &dyn Host, id: &str) -> Result<Code, Error> {
    check_id(id)?;
    read::<Code>(host, &code_key(id))?
        .map(|(code, _)| code)
        .ok_or_else(|| not_found(id))
}

pub fn list(host: &dyn Host, include_deleted: bool) -> Result<Vec<Code>, Error> {
    let mut codes = Vec::new();
    for key in host.store_list("codes/")? {
        if let Some((code, _)) = read::<Code>(host, &key)?
            && (include_deleted || code.deleted_at_ms.is_none())
        {
            codes.push(code);
        }
    }
    codes.sort_by(|a, b| {
        b.created_at_ms
            .cmp(&a.created_at_ms)
            .then_with(|| a.id.cmp(&b.id))
    });
    Ok(codes)
}

/// Changes a code by compare-and-set; `not-found` when it does not exist.
fn change_code(
    host: &dyn Host,
    id: &str,
    mut change: impl FnMut(&mut Code),
) -> Result<Code, Error> {
    check_id(id)?;
    update(host, &code_key(id), |current: Option<Code>| {
        let mut code = current.ok_or_else(|| not_found(id))?;
        change(&mut code);
        Ok(code)
    })
}

pub fn rename(host: &dyn Host, id: &str, name: &str) -> Result<Code, Error> {
    let name = encoding::check_name(name)?;
    let now = host.now_ms();
    change_code(host, id, |code| {
        code.name = name.to_string();
        code.updated_at_ms = now;
    })
}

pub fn delete(host: &dyn Host, id: &str) -> Result<Code, Error> {
    let now = host.now_ms();
    let code = change_code(host, id, |code| {
        if code.deleted_at_ms.is_none() {
            code.deleted_at_ms = Some(now);
            code.updated_at_ms = now;
        }
    })?;
    host.log(Level::Info, &format!("deleted code {id}"));
    Ok(code)
}

pub fn image(host: &dyn Host, id: &str) -> Result<CodeImage, Error> {
    let code = get(host, id)?;
    require_authorization(host)?;
    if code.deleted_at_ms.is_some() {
        return Err(Error::Deleted(format!(
            "code {id} `{}` was deleted: its image can no longer be downloaded (its scans still count)",
            code.name
        )));
    }
    let bytes = host
        .store_get(&image_key(id))?
        .ok_or_else(|| corrupt(&image_key(id), "the image is missing"))?
        .value;
    Ok(CodeImage {
        content_type: code.content_type,
        bytes,
    })
}

pub fn batch_create(host: &dyn Host, csv: &str) -> Result<Vec<BatchRow>, Error> {
    let mut rows = crate::batch::parse(csv)?;
    // Check every row first, so that the quota is checked for the rows that will be made.
    for row in &mut rows {
        if let Ok(request) = &row.request
            && let Err(e) = encoding::encode(request, PREVIEW_ID)
        {
            row.request = Err(e);
        }
    }
    let needed = rows
        .iter()
        .filter(|row| row.request.as_ref().is_ok_and(|r| uses_quota(r.kind)))
        .count() as u32;
    if needed > 0 {
        require_authorization(host)?;
        let now = quota(host)?;
        if now.used.saturating_add(needed) > QUOTA_LIMIT {
            return Err(Error::QuotaExhausted(now));
        }
    }
    Ok(rows
        .into_iter()
        .map(|row| BatchRow {
            line: row.line,
            name: row.name,
            outcome: match row.request.and_then(|r| create(host, &r)) {
                Ok(code) => BatchOutcome::Created(code),
                Err(e) => BatchOutcome::Failed(e),
            },
        })
        .collect())
}

#[cfg(test)]
pub mod memory {
    //! An in-memory host for the native tests: a store with versions, a clock, ids, and a
    //! WeChat that answers with a small image or a given errcode.

    use std::cell::{Cell, RefCell};
    use std::collections::BTreeMap;

    use super::*;
    use crate::errors::wechat;

    #[derive(Default)]
    pub struct MemoryHost {
        pub store: RefCell<BTreeMap<String, (Vec<u8>, u64)>>,
        pub calls: RefCell<Vec<(WechatEndpoint, String)>>,
        pub fail_with: Cell<Option<i32>>,
        pub next_id: Cell<u64>,
        pub logs: RefCell<Vec<String>>,
    }

    impl Host for MemoryHost {
        fn wechat_call(&self, endpoint: WechatEndpoint, body: &str) -> Result<CodeImage, Error> {
            self.calls.borrow_mut().push((endpoint, body.to_string()));
            if let Some(code) = self.fail_with.get() {
                return Err(wechat(code, "stand-in failure"));
            }
            Ok(CodeImage {
                content_type: "image/png".into(),
                bytes: body.as_bytes().to_vec(),
            })
        }
        fn store_get(&self, key: &str) -> Result<Option<Versioned>, Error> {
            Ok(self
                .store
                .borrow()
                .get(key)
                .map(|(value, version)| Versioned {
                    value: value.clone(),
                    version: *version,
                }))
        }
        fn store_put(&self, key: &str, value: &[u8], expected: Option<u64>) -> Result<u64, Error> {
            let mut store = self.store.borrow_mut();
            let current = store.get(key).map(|(_, v)| *v);
            if current != expected {
                return Err(Error::Conflict(format!("{key} changed")));
            }
            let version = current.unwrap_or(0) + 1;
            store.insert(key.to_string(), (value.to_vec(), version));
            Ok(version)
        }
        fn store_list(&self, prefix: &str) -> Result<Vec<String>, Error> {
            Ok(self
                .store
                .borrow()
                .keys()
                .filter(|k| k.starts_with(prefix))
                .cloned()
                .collect())
        }
        fn store_delete(&self, key: &str) -> Result<(), Error> {
            self.store.borrow_mut().remove(key);
            Ok(())
        }
        fn now_ms(&self) -> i64 {
            1_763_942_400_000 + self.next_id.get() as i64
        }
        fn new_id(&self) -> String {
            let n = self.next_id.get() + 1;
            self.next_id.set(n);
            format!("{n:08}")
        }
        fn log(&self, _level: Level, message: &str) {
            self.logs.borrow_mut().push(message.to_string());
        }
    }

    impl MemoryHost {
        pub fn authorized() -> MemoryHost {
            let host = MemoryHost::default();
            register_authorization(&host, "wx0123456789abcdef").unwrap();
            host
        }

        pub fn set_quota_used(&self, used: u32) {
            let bytes = serde_json::to_vec(&QuotaRecord { used }).unwrap();
            let version = self.store.borrow().get(QUOTA).map(|(_, v)| *v);
            self.store_put(QUOTA, &bytes, version).unwrap();
        }
    }
}
