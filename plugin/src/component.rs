//! The component: the exports call [`crate::service`] with the imports as its [`Host`].

use crate::bindings::exports::promolens::codes::codes::Guest;
use crate::bindings::promolens::codes::host::{self, CodeImage, Level, Versioned, WechatEndpoint};
use crate::bindings::promolens::codes::types::{
    Authorization, BatchRow, Code, CodePreview, CodeRequest, Error, QuotaState,
};
use crate::service::{self, Host};

/// The host's imports.
struct Imports;

impl Host for Imports {
    fn wechat_call(&self, endpoint: WechatEndpoint, body: &str) -> Result<CodeImage, Error> {
        host::wechat_call(endpoint, body)
    }
    fn store_get(&self, key: &str) -> Result<Option<Versioned>, Error> {
        host::store_get(key)
    }
    fn store_put(&self, key: &str, value: &[u8], expected: Option<u64>) -> Result<u64, Error> {
        host::store_put(key, value, expected)
    }
    fn store_list(&self, prefix: &str) -> Result<Vec<String>, Error> {
        host::store_list(prefix)
    }
    fn store_delete(&self, key: &str) -> Result<(), Error> {
        host::store_delete(key)
    }
    fn now_ms(&self) -> i64 {
        host::now_ms()
    }
    fn new_id(&self) -> String {
        host::new_id()
    }
    fn log(&self, level: Level, message: &str) {
        host::log(level, message)
    }
}

struct Component;

impl Guest for Component {
    fn authorization_status() -> Result<Option<Authorization>, Error> {
        service::authorization_status(&Imports)
    }
    fn register_authorization(app_id: String) -> Result<Authorization, Error> {
        service::register_authorization(&Imports, &app_id)
    }
    fn revoke_authorization() -> Result<(), Error> {
        service::revoke_authorization(&Imports)
    }
    fn preview(request: CodeRequest) -> Result<CodePreview, Error> {
        service::preview(&Imports, &request)
    }
    fn create(request: CodeRequest) -> Result<Code, Error> {
        service::create(&Imports, &request)
    }
    fn batch_create(csv: String) -> Result<Vec<BatchRow>, Error> {
        service::batch_create(&Imports, &csv)
    }
    fn list(include_deleted: bool) -> Result<Vec<Code>, Error> {
        service::list(&Imports, include_deleted)
    }
    fn get(id: String) -> Result<Code, Error> {
        service::get(&Imports, &id)
    }
    fn rename(id: String, name: String) -> Result<Code, Error> {
        service::rename(&Imports, &id, &name)
    }
    fn delete(id: String) -> Result<Code, Error> {
        service::delete(&Imports, &id)
    }
    fn image(id: String) -> Result<CodeImage, Error> {
        service::image(&Imports, &id)
    }
    fn quota() -> Result<QuotaState, Error> {
        service::quota(&Imports)
    }
}

crate::bindings::export!(Component with_types_in crate::bindings);
