//! The operations the plugin exports, written against [`Host`] so that they run natively in
//! tests (an in-memory host, `memory`) exactly as they run in wasm (the imports the host
//! grants): [`authorization`], the A+C [`quota`], and the [`codes`] themselves, over the
//! project's [`records`].
//!
//! Records of the project's store:
//! - `authorization`: the mini-program's AppID (JSON);
//! - `quota`: A+C codes made so far (JSON `{"used": n}`), updated by compare-and-set; set to the
//!   limit when WeChat answers 45029 (its own count is full: WeChat's count is the truth);
//! - `codes/<id>`: a code (JSON of the WIT `code` record);
//! - `images/<id>`: the image WeChat returned (raw bytes; its type is in the code).

pub mod authorization;
pub mod codes;
#[cfg(test)]
pub mod memory;
pub mod quota;
pub mod records;

use crate::bindings::promolens::codes::host::{CodeImage, Level, Versioned, WechatEndpoint};
use crate::bindings::promolens::codes::types::Error;

pub use authorization::{authorization_status, register_authorization, revoke_authorization};
pub use codes::{batch_create, create, delete, get, image, list, preview, rename};
pub use quota::{QUOTA_LIMIT, QUOTA_WARNING, quota};

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
