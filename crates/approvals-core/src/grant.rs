//! Standing grants: "approve, and don't ask again" for a bounded time or number of uses.
//!
//! A reviewer approving a request may ask that the same requester (acting for the same
//! person) may make the same action again without asking, for at most the time and uses the
//! policy's caps allow, optionally only when the arguments meet a condition. When a request
//! needing several approvers is approved, a grant is issued only if every approver asked for
//! one, with the tightest of their terms: a grant never carries less approval than the
//! request it came from. Each use is audited with the grant it used; grants can be revoked.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::action::Action;
use crate::clock::Timestamp;
use crate::policy::GrantCaps;
use crate::principal::{Context, Principal};
use crate::request::RequestId;

/// The id of a standing grant (a ULID).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GrantId(crate::request::Halves);

impl GrantId {
    /// A new, unique id, greater than every id generated before it in this process.
    pub fn generate() -> Self {
        Self(crate::request::next_ulid().into())
    }
}

impl fmt::Display for GrantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "grant-{}", self.0)
    }
}

impl std::str::FromStr for GrantId {
    type Err = crate::request::RequestIdParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let id: RequestId = s.strip_prefix("grant-").unwrap_or(s).parse()?;
        Ok(Self(id.halves()))
    }
}

/// What a reviewer asks for when approving: a grant lasting `duration`, for `uses` calls,
/// only when `when` (a condition in the policy engine's language) holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantTerms {
    /// How long the grant lasts from its issue.
    #[serde(with = "crate::policy::duration_millis")]
    pub duration: Duration,
    /// How many calls it allows.
    pub uses: u32,
    /// A condition the call's arguments must meet, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
}

impl GrantTerms {
    /// A grant for `duration` and `uses` calls, unconditional.
    pub fn new(duration: Duration, uses: u32) -> Self {
        Self {
            duration,
            uses,
            when: None,
        }
    }
    /// Only for calls meeting `condition`.
    pub fn when(mut self, condition: impl Into<String>) -> Self {
        self.when = Some(condition.into());
        self
    }

    /// Checks the terms against the policy's caps.
    pub fn within(&self, caps: &GrantCaps) -> Result<(), GrantRefusal> {
        if caps.is_none() {
            return Err(GrantRefusal::NotAllowed);
        }
        if self.uses == 0 || self.duration.is_zero() {
            return Err(GrantRefusal::Empty);
        }
        if self.duration > caps.max_duration || self.uses > caps.max_uses {
            return Err(GrantRefusal::ExceedsCaps {
                asked: format!(
                    "{} uses over {}",
                    self.uses,
                    crate::clock::human(self.duration)
                ),
                allowed: format!(
                    "{} uses over {}",
                    caps.max_uses,
                    crate::clock::human(caps.max_duration)
                ),
            });
        }
        Ok(())
    }
}

/// Why a grant could not be issued or used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum GrantRefusal {
    /// The policy allows no grants here (a cap is zero).
    #[error("the policy allows no standing grants for this action")]
    NotAllowed,
    /// Zero uses or zero duration.
    #[error("a grant needs at least one use and a duration above zero")]
    Empty,
    /// The terms exceed the policy's caps.
    #[error("the grant asked for {asked}; the policy allows at most {allowed}")]
    ExceedsCaps {
        /// What was asked.
        asked: String,
        /// What the caps allow.
        allowed: String,
    },
    /// The grant's condition is not valid.
    #[error("the grant's condition is not valid: {message}")]
    BadCondition {
        /// The engine's error.
        message: String,
    },
    /// Only an approval can carry a grant.
    #[error("only an approval can carry a grant")]
    OnDenial,
    /// The grant has expired.
    #[error("the grant expired at {0}")]
    Expired(Timestamp),
    /// Every use has been made.
    #[error("all {0} uses of the grant have been made")]
    UsedUp(u32),
    /// The grant was revoked.
    #[error("the grant was revoked")]
    Revoked,
}

/// A grant's revocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// When.
    pub at: Timestamp,
    /// Who revoked it, if a person did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<Principal>,
    /// Why.
    pub reason: String,
}

/// A standing grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// Unique id.
    pub id: GrantId,
    /// The requester it lets act.
    pub requester: Principal,
    /// The person the requester must be acting for (as when it was granted), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<Principal>,
    /// The action name it covers.
    pub action: String,
    /// The policy the action is judged by.
    pub policy: String,
    /// A condition the call must meet, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// The approvers who granted it.
    pub granted_by: Vec<Principal>,
    /// The request whose approval carried it.
    pub from_request: RequestId,
    /// The digest of the call that request approved.
    pub from_digest: crate::Digest,
    /// The version of the policy in force when it was granted.
    pub policy_version: String,
    /// When it was issued.
    pub created_at: Timestamp,
    /// After this it no longer applies.
    pub expires_at: Timestamp,
    /// How many uses it allows.
    pub max_uses: u32,
    /// How many uses have been made.
    pub uses: u32,
    /// Set once revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<Revocation>,
}

impl Grant {
    /// Whether the grant covers a call of `action` by `context`'s requester, for its
    /// on_behalf_of, ignoring the condition, time and uses.
    pub fn covers(&self, action: &Action, context: &Context) -> bool {
        self.action == action.name
            && self.policy == action.policy
            && self.requester.same_party(&context.requester)
            && match (&self.on_behalf_of, &context.on_behalf_of) {
                (None, None) => true,
                (Some(a), Some(b)) => a.same_party(b),
                _ => false,
            }
    }

    /// Whether it may be used at `now` (not revoked, not expired, uses left).
    pub fn usable(&self, now: Timestamp) -> Result<(), GrantRefusal> {
        if self.revoked.is_some() {
            return Err(GrantRefusal::Revoked);
        }
        if now >= self.expires_at {
            return Err(GrantRefusal::Expired(self.expires_at));
        }
        if self.uses >= self.max_uses {
            return Err(GrantRefusal::UsedUp(self.max_uses));
        }
        Ok(())
    }
}

/// Takes one use of a grant at `now`: the rule every store runs in its transaction. Returns
/// the number of this use (from 1).
pub fn use_grant(grant: &mut Grant, now: Timestamp) -> Result<u32, GrantRefusal> {
    grant.usable(now)?;
    grant.uses += 1;
    Ok(grant.uses)
}

/// Revokes a grant; `false` if it was already revoked.
pub fn revoke(grant: &mut Grant, by: Option<Principal>, reason: &str, now: Timestamp) -> bool {
    if grant.revoked.is_some() {
        return false;
    }
    grant.revoked = Some(Revocation {
        at: now,
        by,
        reason: reason.to_owned(),
    });
    true
}
