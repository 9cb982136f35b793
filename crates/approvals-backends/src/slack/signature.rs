//! Verifying that a request came from Slack: `X-Slack-Signature` over the raw body.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far `X-Slack-Request-Timestamp` may be from now, either way (Slack's own advice).
pub const MAX_SKEW_SECS: i64 = 300;

/// Why a request was not accepted as Slack's. Nothing in its body was read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// A header is missing.
    #[error("missing header {0}")]
    Missing(&'static str),
    /// The timestamp is not a number of seconds.
    #[error("X-Slack-Request-Timestamp is not a unix time: {0:?}")]
    BadTimestamp(String),
    /// The timestamp is too far from now: a replay, or a wrong clock.
    #[error("X-Slack-Request-Timestamp is {skew} s from now (at most {MAX_SKEW_SECS} s allowed)")]
    Stale {
        /// Seconds between the timestamp and now (positive: in the past).
        skew: i64,
    },
    /// The signature is not `v0=` and 64 hex digits.
    #[error("X-Slack-Signature is not v0=<64 hex digits>")]
    Malformed,
    /// The signature does not match the body.
    #[error("X-Slack-Signature does not match the request")]
    Mismatch,
}

/// The signing secret of a Slack app. Its `Debug` does not show it.
#[derive(Clone)]
pub struct SigningSecret(String);

impl SigningSecret {
    /// Wraps a signing secret (from the app's Basic Information page).
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    fn mac(&self, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
        // HMAC takes a key of any length; this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.0.as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(b"v0:");
        mac.update(timestamp.as_bytes());
        mac.update(b":");
        mac.update(body);
        mac
    }

    /// The `X-Slack-Signature` value for `body` sent at `timestamp` (for tests and fakes).
    pub fn sign(&self, timestamp: &str, body: &[u8]) -> String {
        format!(
            "v0={}",
            hex::encode(self.mac(timestamp, body).finalize().into_bytes())
        )
    }

    /// Checks the headers against the raw body, at unix time `now`: the timestamp within
    /// [`MAX_SKEW_SECS`], then the HMAC, compared in constant time.
    ///
    /// ```
    /// use approvals_backends::slack::SigningSecret;
    /// let secret = SigningSecret::new("8f742231b10e8888abcd99yyyzzz85a5");
    /// let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J";
    /// let sig = secret.sign("1531420618", body);
    /// assert!(secret.verify(Some("1531420618"), Some(&sig), body, 1531420618).is_ok());
    /// assert!(secret.verify(Some("1531420618"), Some(&sig), b"tampered", 1531420618).is_err());
    /// ```
    pub fn verify(
        &self,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
        now: i64,
    ) -> Result<(), SignatureError> {
        let timestamp = timestamp.ok_or(SignatureError::Missing("X-Slack-Request-Timestamp"))?;
        let signature = signature.ok_or(SignatureError::Missing("X-Slack-Signature"))?;
        let at: i64 = timestamp
            .trim()
            .parse()
            .map_err(|_| SignatureError::BadTimestamp(timestamp.chars().take(32).collect()))?;
        let skew = now.saturating_sub(at);
        if skew.saturating_abs() > MAX_SKEW_SECS {
            return Err(SignatureError::Stale { skew });
        }
        let given = signature
            .strip_prefix("v0=")
            .filter(|h| h.len() == 64)
            .and_then(|h| hex::decode(h).ok())
            .ok_or(SignatureError::Malformed)?;
        self.mac(timestamp, body)
            .verify_slice(&given)
            .map_err(|_| SignatureError::Mismatch)
    }
}

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret(…)")
    }
}
