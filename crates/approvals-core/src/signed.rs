//! Decisions signed with a reviewer's own Ed25519 key: evidence a reviewer cannot later deny.
//!
//! The signed bytes are a fixed context line followed by the canonical JSON of the request
//! id, its digest, the reviewer, the verdict, the comment and the time:
//!
//! ```text
//! approvals decision v1
//! {"at":"2026-11-22T10:00:00Z","comment":"ok","digest":"…","request_id":"…","reviewer":"alice","verdict":"approve"}
//! ```
//!
//! The context line keeps a decision signature from being valid as anything else the same key
//! may sign. The signature travels with the review into the audit trail
//! ([`Evidence::Signed`]), so anyone holding the reviewer's public key can check it later.

use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::action::Digest;
use crate::canonical::to_canonical_string;
use crate::clock::Timestamp;
use crate::principal::Principal;
use crate::request::{Evidence, RequestId, Review, ReviewDecision};

/// The first line of every signed decision.
pub const CONTEXT: &str = "approvals decision v1\n";

/// A reviewer's decision on one request, signed with their key.
///
/// ```
/// use approvals_core::signed::SignedDecision;
/// use approvals_core::{Digest, RequestId, ReviewDecision, Timestamp};
/// let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
/// let d = SignedDecision::sign(
///     &key,
///     RequestId::generate(),
///     Digest([1; 32]),
///     "alice",
///     ReviewDecision::Approve,
///     Some("looks right".into()),
///     Timestamp::from_unix_micros(1_700_000_000_000_000),
/// );
/// assert!(d.verify(&key.verifying_key()).is_ok());
/// // Any change to what was signed breaks it.
/// let mut forged = d.clone();
/// forged.verdict = ReviewDecision::Deny;
/// assert!(forged.verify(&key.verifying_key()).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedDecision {
    /// The request decided on.
    pub request_id: RequestId,
    /// The digest of the call the reviewer saw.
    pub digest: Digest,
    /// The reviewer's principal id, whose key must verify the signature.
    pub reviewer: String,
    /// Approve or deny.
    pub verdict: ReviewDecision,
    /// What they said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// When they signed.
    pub at: Timestamp,
    /// New values for editable arguments: an approval of the call changed so (see
    /// [`Review::set`]). Signed with the rest; absent from the message when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<serde_json::Map<String, serde_json::Value>>,
    /// The Ed25519 signature over [`SignedDecision::message`], base64.
    pub signature: String,
}

/// Why a signed decision is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureRefusal {
    /// The signature is not 64 bytes of base64.
    #[error("the signature is not a base64 Ed25519 signature")]
    Malformed,
    /// The signature does not verify with the reviewer's key.
    #[error("the signature does not verify with {reviewer}'s key")]
    Invalid {
        /// The claimed reviewer.
        reviewer: String,
    },
    /// The directory has no key for this reviewer.
    #[error("{reviewer} has no Ed25519 key in the approvers directory")]
    UnknownKey {
        /// The claimed reviewer.
        reviewer: String,
    },
    /// Signed too long ago, or in the future: outside the accepted window.
    #[error("the decision was signed at {at}, outside the accepted window of {window_secs} s")]
    Stale {
        /// When it claims to have been signed.
        at: Timestamp,
        /// The window, either side of now.
        window_secs: u64,
    },
    /// This exact signature was presented before.
    #[error("this signed decision was already presented")]
    Replayed,
}

impl SignedDecision {
    /// Signs a decision with `key`.
    pub fn sign(
        key: &SigningKey,
        request_id: RequestId,
        digest: Digest,
        reviewer: &str,
        verdict: ReviewDecision,
        comment: Option<String>,
        at: Timestamp,
    ) -> Self {
        let mut d = Self {
            request_id,
            digest,
            reviewer: reviewer.to_owned(),
            verdict,
            comment,
            at,
            set: None,
            signature: String::new(),
        };
        d.resign(key);
        d
    }

    /// The same decision approving the call with `set` as its edit, signed again.
    ///
    /// ```
    /// # use approvals_core::signed::SignedDecision;
    /// # use approvals_core::{Digest, RequestId, ReviewDecision, Timestamp};
    /// let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    /// let d = SignedDecision::sign(&key, RequestId::generate(), Digest([1; 32]), "alice",
    ///     ReviewDecision::Approve, None, Timestamp::from_unix_micros(1_700_000_000_000_000));
    /// let set = serde_json::json!({"limit": 500}).as_object().unwrap().clone();
    /// let edit = d.clone().with_set(&key, set);
    /// assert!(edit.verify(&key.verifying_key()).is_ok());
    /// assert!(edit.message().contains(r#""set":{"limit":500}"#));
    /// // The plain approval's signature does not cover an edit.
    /// let mut forged = edit.clone();
    /// forged.signature = d.signature.clone();
    /// assert!(forged.verify(&key.verifying_key()).is_err());
    /// ```
    pub fn with_set(
        mut self,
        key: &SigningKey,
        set: serde_json::Map<String, serde_json::Value>,
    ) -> Self {
        self.set = Some(set);
        self.resign(key);
        self
    }

    fn resign(&mut self, key: &SigningKey) {
        let sig = key.sign(self.message().as_bytes());
        self.signature = base64::engine::general_purpose::STANDARD.encode(sig.to_bytes());
    }

    /// The exact text that is signed.
    pub fn message(&self) -> String {
        let mut body = json!({
            "request_id": self.request_id.to_string(),
            "digest": self.digest.to_string(),
            "reviewer": self.reviewer,
            "verdict": self.verdict.verb(),
            "comment": self.comment,
            "at": self.at.to_string(),
        });
        if let Some(set) = &self.set {
            body["set"] = serde_json::Value::Object(set.clone());
        }
        format!("{CONTEXT}{}", to_canonical_string(&body))
    }

    /// The signature's 64 bytes: what identifies it, however its base64 was spaced.
    pub fn signature_bytes(&self) -> Result<[u8; 64], SignatureRefusal> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(self.signature.trim())
            .map_err(|_| SignatureRefusal::Malformed)?;
        bytes.try_into().map_err(|_| SignatureRefusal::Malformed)
    }

    /// Checks the signature with the reviewer's public key (strictly: no malleable or
    /// small-order forms, so one decision has exactly one valid signature).
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), SignatureRefusal> {
        let sig = ed25519_dalek::Signature::from_bytes(&self.signature_bytes()?);
        key.verify_strict(self.message().as_bytes(), &sig)
            .map_err(|_| SignatureRefusal::Invalid {
                reviewer: self.reviewer.clone(),
            })
    }

    /// Whether it was signed within `window` of `now`, either side.
    pub fn check_time(
        &self,
        now: Timestamp,
        window: std::time::Duration,
    ) -> Result<(), SignatureRefusal> {
        let skew = if self.at > now {
            self.at.duration_since(now)
        } else {
            now.duration_since(self.at)
        };
        if skew > window {
            return Err(SignatureRefusal::Stale {
                at: self.at,
                window_secs: window.as_secs(),
            });
        }
        Ok(())
    }

    /// The review it makes, with the signed decision as its evidence. Verify it first.
    pub fn into_review(self, reviewer: Principal, key: &VerifyingKey, channel: &str) -> Review {
        let evidence = Evidence::Signed {
            channel: channel.to_owned(),
            public_key: hex::encode(key.to_bytes()),
            message: self.message(),
            signature: self.signature.clone(),
        };
        Review {
            request_id: self.request_id,
            digest: self.digest,
            reviewer,
            decision: self.verdict,
            comment: self.comment,
            at: self.at,
            evidence,
            grant: None,
            set: self.set,
        }
    }
}

impl Evidence {
    /// For [`Evidence::Signed`]: whether its signature verifies over its message. `None` for
    /// other evidence.
    pub fn verify_signature(&self) -> Option<bool> {
        let Evidence::Signed {
            public_key,
            message,
            signature,
            ..
        } = self
        else {
            return None;
        };
        let key: Option<[u8; 32]> = hex::decode(public_key).ok().and_then(|b| b.try_into().ok());
        let sig: Option<[u8; 64]> = base64::engine::general_purpose::STANDARD
            .decode(signature)
            .ok()
            .and_then(|b| b.try_into().ok());
        let (Some(key), Some(sig)) = (key, sig) else {
            return Some(false);
        };
        let Ok(key) = VerifyingKey::from_bytes(&key) else {
            return Some(false);
        };
        Some(
            key.verify(
                message.as_bytes(),
                &ed25519_dalek::Signature::from_bytes(&sig),
            )
            .is_ok(),
        )
    }
}
