//! Who acts and who reviews: principals and the context of a call.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use smol_str::SmolStr;
use unicode_normalization::UnicodeNormalization as _;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory as _};

/// What kind of party a [`Principal`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    /// An AI agent or other automated actor.
    Agent,
    /// A person.
    Human,
    /// A service account or pipeline.
    Service,
}

/// A party that requests or reviews: an agent, a human or a service.
///
/// Principals are compared by `id` alone in every rule: an id that appears as requester and
/// as reviewer is the same party, whatever kind each side claims. Ids are compared the way
/// [`same_id`] does (case, width and compatibility forms folded), so `Dana` and `dana` are
/// one party; the gate also resolves each party through the directory, so a person's Slack
/// id or email names that person too.
///
/// ```
/// use approvals_core::{Principal, PrincipalKind};
/// let dana = Principal::human("dana");
/// assert_eq!(dana.kind, PrincipalKind::Human);
/// assert_eq!(dana.to_string(), "human:dana");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Principal {
    /// Stable identifier, unique across kinds. Shared, not copied: a short id is kept
    /// inline, and a call's records take its requester without an allocation.
    pub id: SmolStr,
    /// What kind of party this is.
    pub kind: PrincipalKind,
}

impl Principal {
    /// A principal of the given kind.
    pub fn new(id: impl Into<SmolStr>, kind: PrincipalKind) -> Self {
        Self {
            id: id.into(),
            kind,
        }
    }
    /// An AI agent.
    pub fn agent(id: impl Into<SmolStr>) -> Self {
        Self::new(id, PrincipalKind::Agent)
    }
    /// A person.
    pub fn human(id: impl Into<SmolStr>) -> Self {
        Self::new(id, PrincipalKind::Human)
    }
    /// A service account.
    pub fn service(id: impl Into<SmolStr>) -> Self {
        Self::new(id, PrincipalKind::Service)
    }

    /// Whether both name the same party: ids equal under [`same_id`].
    pub fn same_party(&self, other: &Principal) -> bool {
        same_id(&self.id, &other.id)
    }
}

/// The longest principal id accepted, in bytes.
pub const MAX_ID_BYTES: usize = 256;

/// A principal id that cannot safely name anyone: empty, too long, or holding whitespace,
/// control or invisible format characters (which make two ids look alike).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("principal id {shown} is refused: {problem}")]
pub struct InvalidId {
    /// The id as given, shortened and escaped for display.
    pub shown: String,
    /// What is wrong with it.
    pub problem: String,
}

/// Checks that `id` can name a principal: 1 to [`MAX_ID_BYTES`] bytes, with no whitespace,
/// control characters or format characters (zero-width spaces, direction marks, ...).
///
/// ```
/// use approvals_core::principal::check_id;
/// assert!(check_id("dana").is_ok());
/// assert!(check_id("dana@example.com").is_ok());
/// assert!(check_id("dana ").is_err());
/// assert!(check_id("da\u{200b}na").is_err());
/// assert!(check_id("").is_err());
/// ```
pub fn check_id(id: &str) -> Result<(), InvalidId> {
    let refuse = |problem: String| InvalidId {
        shown: shown(id),
        problem,
    };
    if id.is_empty() {
        return Err(refuse("it is empty".into()));
    }
    if id.len() > MAX_ID_BYTES {
        return Err(refuse(format!(
            "it is {} bytes long; the most is {MAX_ID_BYTES}",
            id.len()
        )));
    }
    // Printable ASCII (what nearly every id is) holds none of what is refused below.
    if id.bytes().all(|b| b.is_ascii_graphic()) {
        return Ok(());
    }
    for (at, c) in id.char_indices() {
        let what = if c.is_whitespace() {
            "whitespace"
        } else if c.is_control() {
            "a control character"
        } else if c.general_category() == GeneralCategory::Format {
            "an invisible format character"
        } else {
            continue;
        };
        return Err(refuse(format!(
            "it holds {what} (U+{:04X} at byte {at})",
            u32::from(c)
        )));
    }
    Ok(())
}

/// An id shortened to 64 characters and escaped, for messages.
fn shown(id: &str) -> String {
    let mut s: String = id.chars().take(64).collect();
    if s.len() < id.len() {
        s.push('…');
    }
    format!("{s:?}")
}

/// The form two ids are compared in: Unicode compatibility caseless matching (Unicode
/// 15, D146: NFD, case fold, NFKD, case fold, NFKD), after trimming. `Dana`, `DANA` and
/// `ｄａｎａ` (full-width) all have the key `dana`.
///
/// ```
/// use approvals_core::principal::{id_key, same_id};
/// assert_eq!(id_key("Dana"), "dana");
/// assert!(same_id("ｄａｎａ", "dana"));
/// assert!(same_id("Straße", "STRASSE"));
/// assert!(!same_id("dana", "dan"));
/// ```
pub fn id_key(id: &str) -> Cow<'_, str> {
    let id = id.trim();
    // ASCII folds to lower case and is its own normal form: the common case allocates only
    // when there is an upper-case letter.
    if id.is_ascii() {
        return if id.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(id.to_ascii_lowercase())
        } else {
            Cow::Borrowed(id)
        };
    }
    use caseless::Caseless as _;
    Cow::Owned(
        id.chars()
            .nfd()
            .default_case_fold()
            .nfkd()
            .default_case_fold()
            .nfkd()
            .collect(),
    )
}

/// Whether two ids name the same principal: equal [`id_key`]s.
pub fn same_id(a: &str, b: &str) -> bool {
    a == b || id_key(a) == id_key(b)
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            PrincipalKind::Agent => "agent",
            PrincipalKind::Human => "human",
            PrincipalKind::Service => "service",
        };
        write!(f, "{kind}:{}", self.id)
    }
}

/// The circumstances of a call: who asks, for whom, why, and what started it.
///
/// Set it for a block of agent code with [`crate::scope::with_context`]; a gate may carry a
/// default for code that sets none.
///
/// ```
/// use approvals_core::{Context, Principal};
/// let ctx = Context::new(Principal::agent("ops-bot"))
///     .on_behalf_of(Principal::human("dana"))
///     .trigger("slack:#ops message 1718")
///     .reason("weekly churn report")
///     .label("env", "prod");
/// assert_eq!(ctx.labels["env"], "prod");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Context {
    /// The party making the call (usually the agent).
    pub requester: Principal,
    /// The human the requester works for, if any. Never counts as a reviewer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<Principal>,
    /// The event that started this work (a message, a ticket, a schedule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    /// Why the requester says it needs to act.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Free-form labels: environment, run id, ticket.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl Context {
    /// A context with only a requester.
    pub fn new(requester: Principal) -> Self {
        Self {
            requester,
            on_behalf_of: None,
            trigger: None,
            reason: None,
            labels: BTreeMap::new(),
        }
    }
    /// Sets the human the requester acts for.
    pub fn on_behalf_of(mut self, principal: Principal) -> Self {
        self.on_behalf_of = Some(principal);
        self
    }
    /// Sets the triggering event.
    pub fn trigger(mut self, trigger: impl Into<String>) -> Self {
        self.trigger = Some(trigger.into());
        self
    }
    /// Sets the stated reason.
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }
    /// Adds a label.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Whether `principal` is the requester or the party it acts for; such a principal's
    /// review never counts.
    pub fn is_party(&self, principal: &Principal) -> Option<SelfRole> {
        self.role_of(&principal.id)
    }

    /// [`Context::is_party`] by principal id (principals are compared by id alone, as
    /// [`same_id`] compares them).
    pub fn role_of(&self, principal_id: &str) -> Option<SelfRole> {
        if same_id(&self.requester.id, principal_id) {
            Some(SelfRole::Requester)
        } else if self
            .on_behalf_of
            .as_ref()
            .is_some_and(|p| same_id(&p.id, principal_id))
        {
            Some(SelfRole::OnBehalfOf)
        } else {
            None
        }
    }
}

/// The most bytes of a context's `reason`.
pub const MAX_REASON_BYTES: usize = 4096;
/// The most bytes of a context's `trigger`.
pub const MAX_TRIGGER_BYTES: usize = 1024;
/// The most labels a context may carry.
pub const MAX_LABELS: usize = 32;
/// The most bytes of a label's key.
pub const MAX_LABEL_KEY_BYTES: usize = 64;
/// The most bytes of a label's value.
pub const MAX_LABEL_VALUE_BYTES: usize = 1024;

/// A call's context that the gate refuses to judge. The body does not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ContextError {
    /// The requester's or `on_behalf_of`'s id is not a valid id.
    #[error("{field}: {source}")]
    Id {
        /// `requester` or `on_behalf_of`.
        field: &'static str,
        /// What is wrong with the id.
        #[source]
        source: InvalidId,
    },
    /// The id is an identity of more than one person in the directory.
    #[error(
        "{field} {id:?} names more than one person in the directory ({people}); use their principal id"
    )]
    Ambiguous {
        /// `requester` or `on_behalf_of`.
        field: &'static str,
        /// The id as given.
        id: String,
        /// The people it could be.
        people: String,
    },
    /// A field is longer than the gate records.
    #[error("{field} is {len} bytes long; the most is {max}")]
    TooLong {
        /// The field (`reason`, `trigger`, `labels.<key>`).
        field: String,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Too many labels.
    #[error("the context has {count} labels; the most is {max}")]
    TooManyLabels {
        /// How many were given.
        count: usize,
        /// The limit.
        max: usize,
    },
}

impl Context {
    /// Checks what the gate records of a context before it judges a call: the parties' ids
    /// ([`check_id`]) and the sizes of the reason, trigger and labels.
    pub fn check(&self) -> Result<(), ContextError> {
        let id = |field: &'static str, p: &Principal| {
            check_id(&p.id).map_err(|source| ContextError::Id { field, source })
        };
        id("requester", &self.requester)?;
        if let Some(p) = &self.on_behalf_of {
            id("on_behalf_of", p)?;
        }
        let long = |field: &str, len: usize, max: usize| {
            if len > max {
                Err(ContextError::TooLong {
                    field: field.to_owned(),
                    len,
                    max,
                })
            } else {
                Ok(())
            }
        };
        long(
            "reason",
            self.reason.as_ref().map_or(0, String::len),
            MAX_REASON_BYTES,
        )?;
        long(
            "trigger",
            self.trigger.as_ref().map_or(0, String::len),
            MAX_TRIGGER_BYTES,
        )?;
        if self.labels.len() > MAX_LABELS {
            return Err(ContextError::TooManyLabels {
                count: self.labels.len(),
                max: MAX_LABELS,
            });
        }
        for (k, v) in &self.labels {
            long("a label's key", k.len(), MAX_LABEL_KEY_BYTES)?;
            let key: String = k.chars().take(64).collect();
            long(&format!("labels.{key}"), v.len(), MAX_LABEL_VALUE_BYTES)?;
        }
        Ok(())
    }
}

/// Which side of a request a would-be reviewer stands on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SelfRole {
    /// The reviewer made the request.
    Requester,
    /// The request was made on the reviewer's behalf.
    OnBehalfOf,
}

impl fmt::Display for SelfRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SelfRole::Requester => "the requester",
            SelfRole::OnBehalfOf => "the person the request is made on behalf of",
        })
    }
}
