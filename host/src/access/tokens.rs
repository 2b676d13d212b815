//! Bearer tokens: API keys (`plk_<id>_<secret>`) and invitation tokens (`pli_<id>_<secret>`).
//!
//! The id (64 random bits, 16 hex digits) is public: lists, logs and the audit log name a key
//! by it. The secret is 256 random bits. Only the SHA-256 digest of the whole token is stored;
//! a token is 256 bits of entropy, so a slow password hash would add nothing but latency to
//! every ingest request. Digests are compared in constant time.

use chacha20poly1305::aead::OsRng;
use chacha20poly1305::aead::rand_core::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Which kind of token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Key,
    Invitation,
}

impl TokenKind {
    fn prefix(self) -> &'static str {
        match self {
            TokenKind::Key => "plk_",
            TokenKind::Invitation => "pli_",
        }
    }
}

/// A newly made token: shown once, then only its digest is kept.
pub struct NewToken {
    pub id: String,
    pub token: String,
    pub digest: String,
}

pub fn generate(kind: TokenKind) -> NewToken {
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    OsRng.fill_bytes(&mut id);
    OsRng.fill_bytes(&mut secret);
    let id = hex(&id);
    let token = format!("{}{id}_{}", kind.prefix(), hex(&secret));
    NewToken {
        digest: digest(&token),
        id,
        token,
    }
}

/// The id a well-formed token of `kind` names, or `None` for anything else.
pub fn id_of(kind: TokenKind, token: &str) -> Option<&str> {
    let rest = token.strip_prefix(kind.prefix())?;
    let (id, secret) = rest.split_once('_')?;
    let well_formed = id.len() == 16
        && secret.len() == 64
        && id
            .bytes()
            .chain(secret.bytes())
            .all(|b| b.is_ascii_hexdigit());
    well_formed.then_some(id)
}

/// SHA-256 of the token, in hex.
pub fn digest(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// Whether `token` is the one whose digest was stored, in time independent of where they differ.
pub fn matches(token: &str, stored_digest: &str) -> bool {
    digest(token)
        .as_bytes()
        .ct_eq(stored_digest.as_bytes())
        .into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_id_and_matches_only_its_digest() {
        let made = generate(TokenKind::Key);
        assert_eq!(made.token.len(), 4 + 16 + 1 + 64);
        assert_eq!(id_of(TokenKind::Key, &made.token), Some(made.id.as_str()));
        assert_eq!(id_of(TokenKind::Invitation, &made.token), None);
        assert!(matches(&made.token, &made.digest));
        let other = generate(TokenKind::Key);
        assert_ne!(other.id, made.id);
        assert!(!matches(&other.token, &made.digest));
        // One changed digit of the secret.
        let mut forged = made.token.clone();
        let last = if forged.ends_with('0') { "1" } else { "0" };
        forged.replace_range(forged.len() - 1.., last);
        assert!(!matches(&forged, &made.digest));
        for bad in [
            "",
            "plk_",
            "plk_zz",
            "Bearer x",
            &made.token[..made.token.len() - 1],
        ] {
            assert_eq!(id_of(TokenKind::Key, bad), None, "{bad}");
        }
    }
}
