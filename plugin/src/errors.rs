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

/// What a WeChat errcode means for the person making codes.
pub fn wechat_meaning(errcode: i32) -> &'static str {
    match errcode {
        -1 => "WeChat is busy; try again in a moment",
        40001 | 42001 => "the access token was invalid or expired (the host refreshes it)",
        40097 => "invalid env_version: use release, trial or develop",
        40129 => "the scene holds a character WeChat does not accept",
        40159 => "the path is longer than WeChat accepts",
        40169 => "the scene is longer than 32 characters",
        40189 => "invalid width: WeChat accepts 280 to 1280 pixels",
        41030 => {
            "the page does not exist or is not published; publish it, or make a B code with \
             check_path off for a page under development"
        }
        45009 => "WeChat's call limit (per minute or per day) is reached; try again later",
        45029 => {
            "the mini-program has used its 100,000 A and C codes; make B codes, which are unlimited"
        }
        45063 => "this mini-program has no permission for this interface",
        _ => "see WeChat's documentation of this errcode",
    }
}

pub fn wechat(errcode: i32, errmsg: &str) -> Error {
    Error::Wechat(WechatError {
        errcode,
        errmsg: errmsg.to_string(),
        meaning: wechat_meaning(errcode).to_string(),
    })
}

/// A record the plugin wrote cannot be read back: the store is damaged.
pub fn corrupt(key: &str, why: impl std::fmt::Display) -> Error {
    Error::Host(format!("record `{key}` cannot be read: {why}"))
}
