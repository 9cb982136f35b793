//! Verifying that an activity came from the Bot Framework: the bearer JWT, RS256, signed by a
//! key from the published OpenID metadata, issued by `https://api.botframework.com` to this
//! bot, unexpired, endorsed for the channel, and naming the activity's `serviceUrl`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::RwLock;

/// Where the Bot Framework publishes its OpenID metadata.
pub const METADATA_URL: &str = "https://login.botframework.com/v1/.well-known/openidconfiguration";
/// The issuer of tokens the Bot Framework sends to bots.
pub const ISSUER: &str = "https://api.botframework.com";
/// The clock skew allowed on `exp` and `nbf` (the Bot Framework's documented 5 minutes).
pub const LEEWAY_SECS: u64 = 300;
/// Unknown key ids refetch the keys, but by default not more often than this.
pub const MIN_REFRESH: Duration = Duration::from_secs(10);
/// Known keys are refetched after this long anyway (the Bot Framework rotates them).
const MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// Why a request was not accepted as the Bot Framework's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("no bearer token")]
    Missing,
    /// Not a JWT, or not RS256, or no key id.
    #[error("the token is not an RS256 JWT with a key id: {0}")]
    Malformed(String),
    /// Signed with a key the Bot Framework does not publish.
    #[error("the token is signed with an unknown key `{0}`")]
    UnknownKey(String),
    /// The signature does not verify.
    #[error("the token's signature does not verify")]
    BadSignature,
    /// Expired, or not yet valid, beyond the allowed skew.
    #[error("the token has expired or is not valid yet")]
    Expired,
    /// Issued by someone else.
    #[error("the token was not issued by {ISSUER}")]
    WrongIssuer,
    /// Issued for another bot.
    #[error("the token is for another bot")]
    WrongAudience,
    /// The `serviceUrl` claim does not match the activity's.
    #[error("the token's serviceUrl does not match the activity's")]
    ServiceUrl,
    /// The key is not endorsed for the activity's channel.
    #[error("the signing key is not endorsed for channel `{0}`")]
    NotEndorsed(String),
    /// Any other invalid claim.
    #[error("the token is not valid: {0}")]
    Invalid(String),
    /// The signing keys could not be fetched.
    #[error("the Bot Framework signing keys could not be fetched: {0}")]
    KeysUnavailable(String),
}

#[derive(Debug, Deserialize)]
struct Metadata {
    jwks_uri: String,
}

#[derive(Debug, Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Debug, Deserialize)]
struct Jwk {
    kid: String,
    #[serde(default)]
    kty: String,
    n: Option<String>,
    e: Option<String>,
    #[serde(default)]
    endorsements: Vec<String>,
}

struct Key {
    decoding: DecodingKey,
    endorsements: Vec<String>,
}

#[derive(Default)]
struct Cache {
    keys: HashMap<String, Key>,
    fetched: Option<Instant>,
    /// Keys given once ([`BotAuth::from_jwks`]): never refetched.
    fixed: bool,
}

/// The claims this library reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Claims {
    /// The service URL the token is for.
    #[serde(rename = "serviceurl", alias = "serviceUrl", default)]
    pub service_url: Option<String>,
    /// The audience (the bot's app id).
    pub aud: String,
}

/// Checks the bearer tokens of incoming activities. Keys are fetched from the OpenID
/// metadata once, kept, and refetched when a token names a key id not seen yet (at most every
/// 10 s, so forged key ids cannot make it hammer the endpoint) or after a day.
pub struct BotAuth {
    app_id: String,
    metadata_url: String,
    min_refresh: Duration,
    http: reqwest::Client,
    cache: RwLock<Cache>,
}

impl std::fmt::Debug for BotAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BotAuth")
            .field("app_id", &self.app_id)
            .field("metadata_url", &self.metadata_url)
            .finish_non_exhaustive()
    }
}

impl BotAuth {
    /// Tokens must be addressed to `app_id`, the bot's Microsoft App ID.
    pub fn new(app_id: impl Into<String>) -> Self {
        Self {
            app_id: app_id.into(),
            metadata_url: METADATA_URL.into(),
            min_refresh: MIN_REFRESH,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            cache: RwLock::new(Cache::default()),
        }
    }

    /// Fetches the OpenID metadata from `url` instead (a government cloud, a test).
    pub fn metadata_url(mut self, url: impl Into<String>) -> Self {
        self.metadata_url = url.into();
        self
    }

    /// Refetches the keys for an unknown key id at most this often (default 10 s).
    pub fn min_refresh(mut self, d: Duration) -> Self {
        self.min_refresh = d;
        self
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, AuthError> {
        let unavailable = |e: reqwest::Error| AuthError::KeysUnavailable(e.to_string());
        self.http
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(unavailable)?
            .json()
            .await
            .map_err(unavailable)
    }

    /// Checks tokens against the keys of a JWKS document given here (the `keys` array the
    /// Bot Framework publishes), never fetching any: for hosts that cannot reach the
    /// metadata endpoint, which then load a copy they keep current themselves.
    ///
    /// ```
    /// use approvals_backends::teams::BotAuth;
    /// let auth = BotAuth::from_jwks("app-id", r#"{"keys": []}"#).unwrap();
    /// # let _ = auth;
    /// ```
    pub fn from_jwks(app_id: impl Into<String>, jwks: &str) -> Result<Self, AuthError> {
        let jwks: Jwks = serde_json::from_str(jwks).map_err(|e| {
            AuthError::KeysUnavailable(format!("the JWKS document is not valid: {e}"))
        })?;
        let auth = Self::new(app_id);
        let cache = Cache {
            keys: keys_of(jwks),
            fetched: Some(Instant::now()),
            fixed: true,
        };
        Ok(Self {
            cache: RwLock::new(cache),
            ..auth
        })
    }

    async fn fetch(&self) -> Result<HashMap<String, Key>, AuthError> {
        let meta: Metadata = self.get_json(&self.metadata_url).await?;
        let jwks: Jwks = self.get_json(&meta.jwks_uri).await?;
        Ok(keys_of(jwks))
    }
}

/// The usable keys of a JWKS document: RSA keys with both components.
fn keys_of(jwks: Jwks) -> HashMap<String, Key> {
    let mut keys = HashMap::new();
    for k in jwks.keys {
        let (Some(n), Some(e)) = (&k.n, &k.e) else {
            continue;
        };
        if k.kty != "RSA" {
            continue;
        }
        if let Ok(decoding) = DecodingKey::from_rsa_components(n, e) {
            keys.insert(
                k.kid,
                Key {
                    decoding,
                    endorsements: k.endorsements,
                },
            );
        }
    }
    keys
}

impl BotAuth {
    /// Refetches the keys if allowed now.
    async fn refresh(&self, force: bool) -> Result<(), AuthError> {
        let mut cache = self.cache.write().await;
        if cache.fixed {
            return Ok(());
        }
        let due = cache
            .fetched
            .is_none_or(|t| t.elapsed() >= self.min_refresh && (force || t.elapsed() >= MAX_AGE));
        if due {
            cache.keys = self.fetch().await?;
            cache.fetched = Some(Instant::now());
        }
        Ok(())
    }

    /// Verifies the `Authorization` header of an activity from `channel_id` with
    /// `service_url`.
    pub async fn verify(
        &self,
        authorization: Option<&str>,
        service_url: &str,
        channel_id: &str,
    ) -> Result<Claims, AuthError> {
        let token = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or(AuthError::Missing)?;
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Malformed(e.to_string()))?;
        if header.alg != Algorithm::RS256 {
            return Err(AuthError::Malformed(format!("{:?}", header.alg)));
        }
        let kid = header
            .kid
            .ok_or_else(|| AuthError::Malformed("no kid".into()))?;
        self.refresh(false).await?;
        if !self.cache.read().await.keys.contains_key(&kid) {
            self.refresh(true).await?;
        }
        let cache = self.cache.read().await;
        let key = cache
            .keys
            .get(&kid)
            .ok_or_else(|| AuthError::UnknownKey(kid.clone()))?;
        let mut v = Validation::new(Algorithm::RS256);
        v.set_issuer(&[ISSUER]);
        v.set_audience(&[&self.app_id]);
        v.leeway = LEEWAY_SECS;
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = jsonwebtoken::decode::<Claims>(token, &key.decoding, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::InvalidSignature => AuthError::BadSignature,
                K::ExpiredSignature | K::ImmatureSignature => AuthError::Expired,
                K::InvalidIssuer => AuthError::WrongIssuer,
                K::InvalidAudience => AuthError::WrongAudience,
                other => AuthError::Invalid(format!("{other:?}")),
            }
        })?;
        // As the Bot Framework SDKs do: the key must be endorsed for the activity's channel.
        // A key with no endorsements is endorsed for none.
        if !key.endorsements.iter().any(|e| e == channel_id) {
            return Err(AuthError::NotEndorsed(channel_id.to_owned()));
        }
        let claimed = data
            .claims
            .service_url
            .as_deref()
            .map(|u| u.trim_end_matches('/'));
        if claimed != Some(service_url.trim_end_matches('/')) {
            return Err(AuthError::ServiceUrl);
        }
        Ok(data.claims)
    }
}
