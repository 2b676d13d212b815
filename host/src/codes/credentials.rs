//! A project's WeChat credentials (AppID and AppSecret), kept by the host only: encrypted at
//! rest (XChaCha20-Poly1305, key from `PROMOLENS_SECRET_KEY`), stored at
//! `secrets/project=<P>/wechat`, outside `codes/` where the plugin's records live, never logged
//! and never returned by any API (the secret has no `Serialize` and a redacting `Debug`).

use std::fmt;

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use object_store::{ObjectStoreExt, PutPayload};
use promolens_ingest::Storage;

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error(
        "no encryption key for WeChat credentials: set PROMOLENS_SECRET_KEY to 64 hexadecimal \
         digits (32 random bytes, e.g. `openssl rand -hex 32`)"
    )]
    NoKey,
    #[error("PROMOLENS_SECRET_KEY must be 64 hexadecimal digits (32 bytes)")]
    BadKey,
    #[error("the stored credentials of project {0} cannot be decrypted with this key")]
    Undecryptable(String),
    #[error("credential storage: {0}")]
    Storage(#[from] object_store::Error),
}

/// AppID and AppSecret of a mini-program.
#[derive(Clone, serde::Deserialize)]
pub struct Credentials {
    pub app_id: String,
    pub secret: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("app_id", &self.app_id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The 32-byte key, from 64 hexadecimal digits.
pub fn parse_key(hex: &str) -> Result<[u8; 32], CredentialError> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(CredentialError::BadKey);
    }
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte =
            u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| CredentialError::BadKey)?;
    }
    Ok(key)
}

pub struct CredentialStore {
    storage: Storage,
    cipher: Option<XChaCha20Poly1305>,
}

impl CredentialStore {
    /// `key`: `None` when none is configured (then credentials can be neither stored nor read).
    pub fn new(storage: Storage, key: Option<[u8; 32]>) -> CredentialStore {
        CredentialStore {
            storage,
            cipher: key.map(|k| XChaCha20Poly1305::new(&k.into())),
        }
    }

    fn path(&self, project: &str) -> object_store::path::Path {
        self.storage
            .path(&promolens_schemas::layout::wechat_credentials(project))
    }

    fn cipher(&self) -> Result<&XChaCha20Poly1305, CredentialError> {
        self.cipher.as_ref().ok_or(CredentialError::NoKey)
    }

    pub async fn put(
        &self,
        project: &str,
        credentials: &Credentials,
    ) -> Result<(), CredentialError> {
        let cipher = self.cipher()?;
        let plain = serde_json::json!({"app_id": credentials.app_id, "secret": credentials.secret})
            .to_string();
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = cipher
            .encrypt(&nonce, plain.as_bytes())
            .map_err(|_| CredentialError::Undecryptable(project.to_string()))?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        self.storage
            .store
            .put(&self.path(project), PutPayload::from(bytes))
            .await?;
        Ok(())
    }

    pub async fn get(&self, project: &str) -> Result<Option<Credentials>, CredentialError> {
        let bytes = match self.storage.store.get(&self.path(project)).await {
            Ok(r) => r.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let cipher = self.cipher()?;
        let undecryptable = || CredentialError::Undecryptable(project.to_string());
        if bytes.len() < 24 {
            return Err(undecryptable());
        }
        let (nonce, sealed) = bytes.split_at(24);
        let plain = cipher
            .decrypt(XNonce::from_slice(nonce), sealed)
            .map_err(|_| undecryptable())?;
        serde_json::from_slice(&plain)
            .map(Some)
            .map_err(|_| undecryptable())
    }

    pub async fn delete(&self, project: &str) -> Result<(), CredentialError> {
        match self.storage.store.delete(&self.path(project)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_secret_is_not_in_the_stored_bytes_and_a_wrong_key_cannot_read_it() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path().to_str().unwrap()).unwrap();
        let store = CredentialStore::new(storage.clone(), Some([7; 32]));
        let credentials = Credentials {
            app_id: "wx0123456789abcdef".into(),
            secret: "s3cr3t-app-secret-value".into(),
        };
        store.put("p", &credentials).await.unwrap();
        let raw = std::fs::read(dir.path().join("secrets/project=p/wechat")).unwrap();
        assert!(!String::from_utf8_lossy(&raw).contains("s3cr3t"));
        assert_eq!(
            store.get("p").await.unwrap().unwrap().secret,
            credentials.secret
        );
        assert!(!format!("{credentials:?}").contains("s3cr3t"));
        let other = CredentialStore::new(storage.clone(), Some([8; 32]));
        assert!(matches!(
            other.get("p").await,
            Err(CredentialError::Undecryptable(_))
        ));
        let none = CredentialStore::new(storage, None);
        assert!(matches!(
            none.put("q", &credentials).await,
            Err(CredentialError::NoKey)
        ));
        assert!(matches!(parse_key("abc"), Err(CredentialError::BadKey)));
        assert_eq!(parse_key(&"0f".repeat(32)).unwrap(), [15; 32]);
    }
}
