//! Keyed digests for redacted arguments.
//!
//! `redact(token)` records HMAC-SHA256(key, the argument's canonical JSON) instead of the
//! value. Without the key, the digest tells nothing about the value, even a four-digit PIN
//! or a short password that an unkeyed hash would give away to anyone who tries every
//! candidate (as Vault's audit devices do with their HMAC). The digest still binds the exact
//! call: a different value gives a different digest, so an approval covers only the value
//! that was asked for.
//!
//! **The key.** One per deployment, 32 bytes: from [`KEY_ENV`] (64 hex digits), or given with
//! [`set_key`] before the first redaction. Every process that must recognise the same call
//! (the agent that re-attaches after a restart, a remote gate and its service) needs the
//! same key. Without one, a process draws a random key at first use: values stay protected,
//! but an identical call from another process is a different call. The records carry the
//! key's id (not the key), so an auditor can tell which key made a digest.
//!
//! **What it does not protect.** Anyone holding the key can test candidate values against a
//! digest. Keep it where you keep other secrets; rotating it changes the digest of every
//! later call (an approval pending across the rotation is not re-attached to).

use std::sync::OnceLock;

use hmac::{Hmac, Mac};
use sha2::{Digest as _, Sha256};

/// The environment variable holding a deployment's redaction key: 64 hex digits.
pub const KEY_ENV: &str = "APPROVALS_REDACTION_KEY";

struct Key {
    bytes: [u8; 32],
    id: String,
}

static KEY: OnceLock<Key> = OnceLock::new();

/// The redaction key was already chosen (set, read from the environment, or drawn at the
/// first redaction) and is not changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the redaction key is already in use (key id {0}); set it before the first redaction")]
pub struct KeyAlreadySet(pub String);

/// Sets this process's redaction key. Call it at start-up, before any call is gated; once a
/// key is in use it cannot change.
///
/// ```
/// approvals_core::redaction::set_key([7; 32]).ok();
/// assert_eq!(approvals_core::redaction::key_id(), "06c6a22b");
/// ```
pub fn set_key(bytes: [u8; 32]) -> Result<(), KeyAlreadySet> {
    let mut set = false;
    let key = KEY.get_or_init(|| {
        set = true;
        Key::new(bytes)
    });
    if set || key.bytes == bytes {
        Ok(())
    } else {
        Err(KeyAlreadySet(key.id.clone()))
    }
}

/// The id of the key in use: the first 4 bytes, in hex, of SHA-256 over a fixed label and
/// the key.
pub fn key_id() -> &'static str {
    &key().id
}

impl Key {
    fn new(bytes: [u8; 32]) -> Self {
        let mut h = Sha256::new();
        h.update(b"approvals redaction key id\0");
        h.update(bytes);
        Self {
            bytes,
            id: hex::encode(&h.finalize()[..4]),
        }
    }
}

fn key() -> &'static Key {
    KEY.get_or_init(|| {
        let from_env = std::env::var(KEY_ENV).ok().and_then(|v| {
            let parsed: Option<[u8; 32]> =
                hex::decode(v.trim()).ok().and_then(|b| b.try_into().ok());
            if parsed.is_none() {
                tracing::error!(
                    "{KEY_ENV} is not 64 hex digits; redacting with a random key for this process"
                );
            }
            parsed
        });
        Key::new(from_env.unwrap_or_else(|| {
            let mut bytes = [0u8; 32];
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
            bytes
        }))
    })
}

/// HMAC-SHA256 of `canonical` under the key in use, in hex.
pub(crate) fn digest(canonical: &[u8]) -> String {
    let key = &key().bytes;
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(canonical);
            hex::encode(mac.finalize().into_bytes())
        }
        // HMAC takes keys of any length: never taken, and still keyed if it were.
        Err(_) => {
            let mut h = Sha256::new();
            h.update(key);
            h.update(canonical);
            hex::encode(h.finalize())
        }
    }
}
