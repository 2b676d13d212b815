//! The codes: preview, create (with WeChat), read, list, rename, soft delete, image, batch.

use super::Host;
use super::authorization::require_authorization;
use super::quota::{
    QUOTA_LIMIT, WECHAT_QUOTA_FULL, mark_exhausted, quota, quota_of, release, reserve, uses_quota,
};
use super::records::{check_id, code_key, image_key, read, update, write};
use crate::bindings::promolens::codes::host::{CodeImage, Level, WechatEndpoint};
use crate::bindings::promolens::codes::types::{
    BatchOutcome, BatchRow, Code, CodeKind, CodePreview, CodeRequest, EnvVersion, Error,
};
use crate::encoding::{self, ID_LEN, PREVIEW_ID};
use crate::errors::{corrupt, not_found};

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
