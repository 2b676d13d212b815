//! Building the WIT `error` variant, and WeChat's errcodes in plain words.

use crate::bindings::promolens::codes::types::{Error, FieldError, TooLong, WechatError};

pub fn invalid(field: &str, reason: impl Into<String>) -> Error {
    Error::InvalidField(FieldError {
        field: field.to_string(),
        reason: reason.into(),
    })
}

pub fn too_long(field: &str, limit: u32, actual: u32, unit: &str) -> Error {
    Error::TooLong(TooLong {
        field: field.to_string(),
        limit,
        actual,
        over: actual.saturating_sub(limit),
        unit: unit.to_string(),
    })
}

pub fn not_authorized() -> Error {
    Error::NotAuthorized(
        "this project has no authorized mini-program: an administrator of the mini-program \
         registers its AppID and AppSecret first (`promolens codes authorize`, or PUT \
         /v1/projects/{project}/authorization)"
            .to_string(),
    )
}

pub fn not_found(id: &str) -> Error {
    Error::NotFound(format!("no code with id `{id}` in this project"))
}

pub fn wechat(errcode: i32, errmsg: &str) -> Error {
    Error::Wechat(WechatError {
        errcode,
        errmsg: errmsg.to_string(),
        meaning: promolens_schemas::wechat::errcode_meaning(errcode).to_string(),
    })
}

/// A record the plugin wrote cannot be read back: the store is damaged.
pub fn corrupt(key: &str, why: impl std::fmt::Display) -> Error {
    Error::Host(format!("record `{key}` cannot be read: {why}"))
}
