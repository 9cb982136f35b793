//! Reviewer authentication: bearer tokens kept only as hashes, and signed decisions checked
//! against the reviewer's key, inside a time window, once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use approvals_core::signed::{SignatureRefusal, SignedDecision};
use approvals_core::{Directory, Principal, PrincipalKind, Timestamp};
use rand_core::{OsRng, RngCore as _};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// The prefix of every token this library makes, so a leaked one is recognisable in logs and
/// by secret scanners.
pub const TOKEN_PREFIX: &str = "apv_";

/// The SHA-256 of a bearer token: what the configuration stores instead of the token.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// The hash of a token.
    pub fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    /// Reads the stored form, `sha256:` and 64 hex digits.
    pub fn parse(s: &str) -> Result<Self, String> {
        let hex = s
            .strip_prefix("sha256:")
            .ok_or_else(|| format!("a token hash is `sha256:` and 64 hex digits, not `{s}`"))?;
        let bytes = hex::decode(hex).map_err(|e| format!("a token hash's hex: {e}"))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "a token hash has 64 hex digits".to_owned())?;
        Ok(Self(bytes))
    }
}

impl std::fmt::Display for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A hash is not secret, but a short form is enough to tell tokens apart.
        write!(f, "TokenHash(sha256:{}…)", &hex::encode(self.0)[..8])
    }
}

/// A new random token (256 bits) and its hash. Give the token to the reviewer once; keep
/// only the hash.
///
/// ```
/// use approvals_backends::http::{TokenHash, generate_token};
/// let (token, hash) = generate_token();
/// assert!(token.starts_with("apv_"));
/// assert_eq!(TokenHash::of(&token), hash);
/// assert_eq!(TokenHash::parse(&hash.to_string()), Ok(hash));
/// ```
pub fn generate_token() -> (String, TokenHash) {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    let token = format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let hash = TokenHash::of(&token);
    (token, hash)
}

/// What a token may do: review (approve, deny, sign in to the console), request (ask for
/// approval, start and finish approved calls), scrape metrics, or several of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Roles {
    /// May review requests.
    pub review: bool,
    /// May make requests.
    pub request: bool,
    /// May read `/metrics` (a Prometheus scraper), and nothing else.
    pub metrics: bool,
}

impl Roles {
    /// Reviewers' tokens: the default.
    pub const REVIEW: Self = Self {
        review: true,
        request: false,
        metrics: false,
    };
    /// Requesters' tokens (agents, services, pipelines).
    pub const REQUEST: Self = Self {
        review: false,
        request: true,
        metrics: false,
    };
    /// Both.
    pub const BOTH: Self = Self {
        review: true,
        request: true,
        metrics: false,
    };
    /// A metrics scraper's.
    pub const METRICS: Self = Self {
        review: false,
        request: false,
        metrics: true,
    };
}

/// Whom a requester's token may say it acts for (`on_behalf_of` of its requests).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum OnBehalfOf {
    /// Nobody: its requests are made on its own behalf only.
    #[default]
    Nobody,
    /// Anyone (`["*"]`).
    Anyone,
    /// These principal ids, compared as the gate compares ids.
    These(Vec<String>),
}

impl OnBehalfOf {
    /// From the configuration's list: `["*"]` is anyone, `[]` nobody.
    pub fn from_list<I, S>(ids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let ids: Vec<String> = ids.into_iter().map(Into::into).collect();
        if ids.iter().any(|i| i == "*") {
            Self::Anyone
        } else if ids.is_empty() {
            Self::Nobody
        } else {
            Self::These(ids)
        }
    }

    /// Whether the token may act for `id` (a principal id, as the directory names it).
    pub fn allows(&self, id: &str) -> bool {
        match self {
            Self::Nobody => false,
            Self::Anyone => true,
            Self::These(ids) => ids
                .iter()
                .any(|allowed| approvals_core::principal::same_id(allowed, id)),
        }
    }
}

/// One bearer token: the hash it is kept as, whose it is, and what it may do.
#[derive(Debug, Clone)]
pub struct TokenEntry {
    /// The token's SHA-256.
    pub hash: TokenHash,
    /// Who presents it.
    pub principal: Principal,
    /// What it may do.
    pub roles: Roles,
    /// For requesters: whom its requests may be made on behalf of.
    pub on_behalf_of: OnBehalfOf,
}

/// Bearer tokens mapped to principals and their roles. Only hashes are held; a presented
/// token is hashed and compared with every entry in constant time, so neither the
/// comparison nor the position of a match tells an attacker anything.
///
/// ```
/// use approvals_backends::http::{OnBehalfOf, Tokens, TokenHash};
/// use approvals_core::Principal;
/// let tokens = Tokens::new()
///     .human(TokenHash::of("apv_alice"), "alice")
///     .requester(TokenHash::of("apv_bot"), Principal::agent("ops-bot"), OnBehalfOf::from_list(["dana"]));
/// assert!(tokens.authenticate("apv_alice").unwrap().roles.review);
/// let bot = tokens.authenticate("apv_bot").unwrap();
/// assert!(bot.roles.request && !bot.roles.review);
/// assert!(bot.on_behalf_of.allows("dana") && !bot.on_behalf_of.allows("alice"));
/// ```
#[derive(Clone, Default)]
pub struct Tokens {
    entries: Vec<TokenEntry>,
}

/// The former name of [`Tokens`], when every token was a reviewer's.
pub type ReviewerTokens = Tokens;

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("count", &self.entries.len())
            .finish()
    }
}

impl Tokens {
    /// No tokens: every bearer request is refused.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a reviewer's token (by its hash) for `principal`.
    pub fn insert(self, hash: TokenHash, principal: Principal) -> Self {
        self.entry(TokenEntry {
            hash,
            principal,
            roles: Roles::REVIEW,
            on_behalf_of: OnBehalfOf::Nobody,
        })
    }

    /// Adds a reviewer's token for a human with this principal id.
    pub fn human(self, hash: TokenHash, id: &str) -> Self {
        self.insert(hash, Principal::new(id, PrincipalKind::Human))
    }

    /// Adds a requester's token (an agent's, a service's, a pipeline's): it may ask for
    /// approval as `principal`, acting for whom `on_behalf_of` allows, and nothing else.
    pub fn requester(
        self,
        hash: TokenHash,
        principal: Principal,
        on_behalf_of: OnBehalfOf,
    ) -> Self {
        self.entry(TokenEntry {
            hash,
            principal,
            roles: Roles::REQUEST,
            on_behalf_of,
        })
    }

    /// Adds a token as given.
    pub fn entry(mut self, entry: TokenEntry) -> Self {
        self.entries.push(entry);
        self
    }

    /// The entry of a presented token.
    pub fn authenticate(&self, token: &str) -> Option<&TokenEntry> {
        let presented = TokenHash::of(token);
        let mut found = None;
        for e in &self.entries {
            if bool::from(e.hash.0.ct_eq(&presented.0)) {
                found = Some(e);
            }
        }
        found
    }

    /// How many tokens are configured.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Checks signed decisions: the reviewer's key from the directory, the time window, and that
/// no signature is accepted twice.
#[derive(Debug)]
pub(crate) struct SignatureChecker {
    pub(crate) window: Duration,
    /// Signatures seen (their 64 bytes, however they were spelled in base64 or spaced),
    /// with when they stop mattering (after that the window refuses them).
    seen: Mutex<HashMap<[u8; 64], Timestamp>>,
}

impl SignatureChecker {
    pub(crate) fn new(window: Duration) -> Self {
        Self {
            window,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Verifies `d` and remembers it; returns the reviewer and their key.
    pub(crate) fn check(
        &self,
        d: &SignedDecision,
        directory: &dyn Directory,
        now: Timestamp,
    ) -> Result<(Principal, ed25519_dalek::VerifyingKey), SignatureRefusal> {
        let person = directory.person(&d.reviewer);
        let Some((person, key)) = person.and_then(|p| p.ed25519.map(|k| (p, k))) else {
            return Err(SignatureRefusal::UnknownKey {
                reviewer: d.reviewer.clone(),
            });
        };
        d.verify(&key)?;
        d.check_time(now, self.window)?;
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Forget what the window refuses anyway, so the set stays bounded.
        seen.retain(|_, until| *until > now);
        let until = d.at.saturating_add(self.window);
        if seen.insert(d.signature_bytes()?, until).is_some() {
            return Err(SignatureRefusal::Replayed);
        }
        Ok((person.principal(), key))
    }
}
