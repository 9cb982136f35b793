//! Who acts and who reviews: principals and the context of a call.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

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
/// as reviewer is the same party, whatever kind each side claims.
///
/// ```
/// use approvals_core::{Principal, PrincipalKind};
/// let dana = Principal::human("dana");
/// assert_eq!(dana.kind, PrincipalKind::Human);
/// assert_eq!(dana.to_string(), "human:dana");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Principal {
    /// Stable identifier, unique across kinds.
    pub id: String,
    /// What kind of party this is.
    pub kind: PrincipalKind,
}

impl Principal {
    /// A principal of the given kind.
    pub fn new(id: impl Into<String>, kind: PrincipalKind) -> Self {
        Self {
            id: id.into(),
            kind,
        }
    }
    /// An AI agent.
    pub fn agent(id: impl Into<String>) -> Self {
        Self::new(id, PrincipalKind::Agent)
    }
    /// A person.
    pub fn human(id: impl Into<String>) -> Self {
        Self::new(id, PrincipalKind::Human)
    }
    /// A service account.
    pub fn service(id: impl Into<String>) -> Self {
        Self::new(id, PrincipalKind::Service)
    }

    /// Whether both name the same party (same id).
    pub fn same_party(&self, other: &Principal) -> bool {
        self.id == other.id
    }
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

    /// [`Context::is_party`] by principal id (principals are compared by id alone).
    pub fn role_of(&self, principal_id: &str) -> Option<SelfRole> {
        if self.requester.id == principal_id {
            Some(SelfRole::Requester)
        } else if self
            .on_behalf_of
            .as_ref()
            .is_some_and(|p| p.id == principal_id)
        {
            Some(SelfRole::OnBehalfOf)
        } else {
            None
        }
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
