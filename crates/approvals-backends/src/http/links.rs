//! Signed links to the console's approval page: what a Teams webhook card's buttons open.
//!
//! A link names one request, its digest, the verdict, when it expires and a random nonce,
//! and carries an HMAC-SHA256 tag under the service's link key. The console accepts it only
//! signed, unexpired and unused, and only from a reviewer who has signed in; the decision is
//! then an ordinary review by that reviewer. A link is used up when the reviewer confirms,
//! not when it is opened, so previews and prefetches do not spend it.

use std::collections::HashMap;
use std::sync::Mutex;

use approvals_core::{Digest, RequestId, ReviewDecision, Timestamp};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand_core::{OsRng, RngCore as _};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The key links are signed with. Its `Debug` does not show it.
#[derive(Clone)]
pub struct LinkKey([u8; 32]);

impl std::fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkKey(…)")
    }
}

/// What a link grants the right to ask for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// The request.
    pub request_id: RequestId,
    /// The digest of the call the card showed.
    pub digest: Digest,
    /// Approve or deny.
    pub verdict: ReviewDecision,
    /// When it stops working.
    pub expires_at: Timestamp,
    /// Makes each link unique, and is what "used" is recorded by.
    pub nonce: String,
}

/// Why a link is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// Not a link, or altered: the tag does not match.
    #[error("this link is not valid")]
    Invalid,
    /// Past its expiry.
    #[error("this link expired at {0}")]
    Expired(Timestamp),
    /// Already used.
    #[error("this link was already used")]
    Used,
}

type Tag = Hmac<Sha256>;

impl LinkKey {
    /// A new random key.
    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        OsRng.fill_bytes(&mut k);
        Self(k)
    }

    /// A key from its 32 bytes (as kept in a secret store).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    fn tag(&self, payload: &str) -> Tag {
        let mut mac = <Tag as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(payload.as_bytes());
        mac
    }

    /// The token for `link`: base64url of its JSON, a dot, base64url of the tag.
    ///
    /// ```
    /// use approvals_backends::http::{Link, LinkKey};
    /// use approvals_core::{Digest, RequestId, ReviewDecision, Timestamp};
    /// let key = LinkKey::generate();
    /// let link = Link {
    ///     request_id: RequestId::generate(),
    ///     digest: Digest([7; 32]),
    ///     verdict: ReviewDecision::Approve,
    ///     expires_at: Timestamp::from_unix_micros(2_000_000_000_000_000),
    ///     nonce: "n1".into(),
    /// };
    /// let token = key.sign(&link);
    /// let now = Timestamp::from_unix_micros(1_900_000_000_000_000);
    /// assert_eq!(key.open(&token, now), Ok(link));
    /// assert!(LinkKey::generate().open(&token, now).is_err(), "another key");
    /// ```
    pub fn sign(&self, link: &Link) -> String {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let payload = b64.encode(serde_json::to_vec(link).unwrap_or_default());
        let tag = b64.encode(self.tag(&payload).finalize().into_bytes());
        format!("{payload}.{tag}")
    }

    /// Reads a token: checks its tag (in constant time) and its expiry. Whether it was used
    /// is the console's to check.
    pub fn open(&self, token: &str, now: Timestamp) -> Result<Link, LinkError> {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let (payload, tag) = token.split_once('.').ok_or(LinkError::Invalid)?;
        let tag = b64.decode(tag).map_err(|_| LinkError::Invalid)?;
        self.tag(payload)
            .verify_slice(&tag)
            .map_err(|_| LinkError::Invalid)?;
        let link: Link = b64
            .decode(payload)
            .ok()
            .and_then(|p| serde_json::from_slice(&p).ok())
            .ok_or(LinkError::Invalid)?;
        if now >= link.expires_at {
            return Err(LinkError::Expired(link.expires_at));
        }
        Ok(link)
    }
}

impl Link {
    /// A fresh random nonce (128 bits) for a new link.
    pub fn new_nonce() -> String {
        let mut b = [0u8; 16];
        OsRng.fill_bytes(&mut b);
        hex::encode(b)
    }
}

/// Nonces of used links, kept until the link would have expired anyway.
#[derive(Debug, Default)]
pub(crate) struct UsedLinks {
    used: Mutex<HashMap<String, Timestamp>>,
}

impl UsedLinks {
    /// Marks `link` used; false if it already was.
    pub(crate) fn spend(&self, link: &Link, now: Timestamp) -> bool {
        let mut used = self
            .used
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        used.retain(|_, until| *until > now);
        used.insert(link.nonce.clone(), link.expires_at).is_none()
    }

    /// Gives a link back (its decision was refused, so it decided nothing).
    pub(crate) fn release(&self, link: &Link) {
        self.used
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&link.nonce);
    }

    pub(crate) fn is_used(&self, link: &Link) -> bool {
        self.used
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains_key(&link.nonce)
    }
}
