//! An in-memory host for the native tests: a store with versions, a clock, ids, and a
//! WeChat that answers with a small image or a given errcode.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use super::quota::{QUOTA, QuotaRecord};
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
