//! Audit events: every request, review, refusal and decision, as one record each.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::action::{Action, Digest, SmolStr};
use crate::canonical::to_canonical_string;
use crate::clock::Timestamp;
use crate::error::AuditError;
use crate::grant::{Grant, GrantId};
use crate::policy::Requirement;
use crate::principal::{Context, Principal};
use crate::request::{Decision, RequestId, Review};
use crate::tally::Refusal;

/// The call an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRef {
    /// The action's name.
    pub name: SmolStr,
    /// The policy that judged it.
    pub policy: SmolStr,
    /// Its digest.
    pub digest: Digest,
}

impl From<&Action> for ActionRef {
    fn from(a: &Action) -> Self {
        Self {
            name: a.name.clone(),
            policy: a.policy.clone(),
            digest: a.digest,
        }
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// The policy let the call run outright.
    Allowed {
        /// The rule.
        rule: SmolStr,
    },
    /// The policy refused the call.
    PolicyDenied {
        /// The rule.
        rule: SmolStr,
        /// Why.
        reason: String,
    },
    /// An approval request was made.
    Requested {
        /// The recorded arguments (redacted ones as their hash).
        args: Value,
        /// Who asked, for whom, why. Boxed, as the requirement, the reviews and the grant
        /// below: every event is as large as its largest kind, and an allowed call's record,
        /// the most common, is moved several times on its way into the log.
        context: Box<Context>,
        /// Who must approve; carries the rule and policy version.
        requirement: Box<Requirement>,
        /// When it expires.
        expires_at: Timestamp,
        /// The arguments a reviewer may change when approving.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        editable: Vec<String>,
        /// For an edited call: the request it replaces, who changed what. Boxed: every
        /// record is as large as the largest kind, and few are edits.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        edit_of: Option<Box<crate::request::EditOf>>,
    },
    /// An identical call (same requester, same digest) joined an existing request instead
    /// of asking again: a retry, a racing duplicate, or a restarted process.
    Attached,
    /// The request was delivered on a channel.
    Notified {
        /// The channel.
        channel: String,
        /// The channel's id for the message.
        delivery_id: String,
    },
    /// A channel failed to deliver the request.
    NotifyFailed {
        /// The channel.
        channel: String,
        /// What went wrong.
        error: String,
    },
    /// A review was accepted.
    ReviewAccepted {
        /// The review, with its evidence.
        review: Box<Review>,
    },
    /// Someone tried to review and could not be authenticated: a click from a chat user the
    /// directory does not know, a decision whose signature does not verify, is stale or was
    /// presented before. Recorded when the request is known; nothing counts.
    ReviewUnauthenticated {
        /// The channel it arrived on.
        channel: String,
        /// Who it claimed to be (a chat user id, a reviewer id), if anyone; cut to 128
        /// characters.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        claimed: Option<String>,
        /// Why it was refused.
        reason: String,
        /// How many attempts on the same request and channel were left out of the trail
        /// since the last one recorded (more than the gate records a minute).
        #[serde(default, skip_serializing_if = "is_zero")]
        suppressed: u64,
    },
    /// A review was refused (self-approval, not eligible, duplicate, ...).
    ReviewRefused {
        /// The review, with its evidence.
        review: Box<Review>,
        /// Why it was refused.
        refusal: Refusal,
    },
    /// The request reached its final state.
    Decided {
        /// The decision.
        decision: Decision,
    },
    /// The approved body started (the permit was taken).
    Started,
    /// The approved body finished.
    Finished {
        /// Whether it returned `Ok`.
        ok: bool,
        /// The error's text, if it failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// What the requester reported of a run that succeeded (a remote call's `summary`),
        /// at most 4,096 bytes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        summary: Option<String>,
    },
    /// Nobody decided in time: an escalation step fired (its channels are notified next).
    Escalated {
        /// The step's index in the requirement, from 0.
        step: u32,
        /// The channels it notifies.
        channels: Vec<String>,
    },
    /// A reminder went out on the channels that showed the request.
    Reminded {
        /// The reminder's number, from 1.
        number: u32,
    },
    /// An approval carried a standing grant, now issued.
    GrantIssued {
        /// The grant.
        grant: Box<Grant>,
    },
    /// A call ran under a standing grant instead of asking.
    GrantUsed {
        /// The grant used.
        grant_id: GrantId,
        /// Which use this was, from 1.
        number: u32,
        /// Of how many.
        max_uses: u32,
        /// Who granted it.
        granted_by: Vec<Principal>,
    },
    /// A standing grant was revoked.
    GrantRevoked {
        /// The grant.
        grant_id: GrantId,
        /// Why.
        reason: String,
    },
    /// A requester outside the process asked for something its credentials do not allow
    /// (acting on behalf of someone its token may not name). Nothing was judged or made.
    CallRefused {
        /// Why.
        reason: String,
    },
    /// A rule in shadow mode would have decided the call otherwise than it went: judged and
    /// recorded, not enforced (`mode = "shadow"` in a policy file).
    Shadow {
        /// The shadow rule that would have decided.
        rule: String,
        /// What it would have done: `allow`, `deny` or `require_approval`.
        would: String,
        /// The particulars: the denial's reason, or the approvals it would have required.
        detail: String,
    },
    /// A stored request could not be read back (written by another version, or damaged):
    /// it was set aside, out of the open and due lists, with its row kept for an operator.
    /// The record's action is unknown: empty name and policy, a digest of zeros.
    RequestUnreadable {
        /// Why it could not be read.
        error: String,
    },
}

impl EventKind {
    /// The event's particulars in a few words, for timelines: `rule export`, `needs 1 from
    /// data-owners`, `refused: self-approval: ...`, `approved by alice`, `ok=true`.
    pub fn summary(&self) -> String {
        match self {
            EventKind::Allowed { rule } => format!("rule {rule}"),
            EventKind::PolicyDenied { rule, reason } => format!("rule {rule}: {reason}"),
            EventKind::Requested {
                requirement,
                expires_at,
                ..
            } => {
                let f: Vec<String> = requirement
                    .factors
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                format!(
                    "needs {} (rule {}), expires {expires_at}",
                    f.join(" and "),
                    requirement.rule
                )
            }
            EventKind::Attached | EventKind::Started => String::new(),
            EventKind::Notified {
                channel,
                delivery_id,
            } => format!("on {channel} ({delivery_id})"),
            EventKind::NotifyFailed { channel, error } => format!("on {channel}: {error}"),
            EventKind::ReviewAccepted { review } => {
                let verb = review.decision.verb();
                match &review.comment {
                    Some(c) => format!("{verb}: {c}"),
                    None => verb.to_owned(),
                }
            }
            EventKind::ReviewRefused { refusal, .. } => format!("refused: {refusal}"),
            EventKind::ReviewUnauthenticated {
                channel,
                claimed,
                reason,
                suppressed,
            } => {
                let mut s = match claimed {
                    Some(c) => format!("on {channel}, as {c}: {reason}"),
                    None => format!("on {channel}: {reason}"),
                };
                if *suppressed > 0 {
                    s.push_str(&format!(" (and {suppressed} more not recorded one by one)"));
                }
                s
            }
            EventKind::Decided { decision } => decision.to_string(),
            EventKind::Finished { ok, error, summary } => match error.as_ref().or(summary.as_ref())
            {
                Some(e) => format!("ok={ok}: {e}"),
                None => format!("ok={ok}"),
            },
            EventKind::Escalated { step, channels } => {
                format!("step {}: notify {}", step + 1, channels.join(", "))
            }
            EventKind::Reminded { number } => format!("reminder {number}"),
            EventKind::GrantIssued { grant } => format!(
                "{}: {} uses until {}{}",
                grant.id,
                grant.max_uses,
                grant.expires_at,
                grant
                    .when
                    .as_ref()
                    .map_or_else(String::new, |w| format!(" when {w}"))
            ),
            EventKind::GrantUsed {
                grant_id,
                number,
                max_uses,
                ..
            } => format!("{grant_id}: use {number} of {max_uses}"),
            EventKind::GrantRevoked { grant_id, reason } => format!("{grant_id}: {reason}"),
            EventKind::RequestUnreadable { error } => format!("set aside: {error}"),
            EventKind::CallRefused { reason } => reason.clone(),
            EventKind::Shadow {
                rule,
                would,
                detail,
            } => {
                let would = match would.as_str() {
                    "allow" => "would have allowed",
                    "deny" => "would have denied",
                    _ => "would have required approval",
                };
                if detail.is_empty() {
                    format!("rule {rule} {would}")
                } else {
                    format!("rule {rule} {would}: {detail}")
                }
            }
        }
    }
}

/// One audit event, before the sink gives it a sequence number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When it happened (RFC 3339, UTC).
    pub at: Timestamp,
    /// The request, if one exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    /// The call.
    pub action: ActionRef,
    /// Who did it: the requester, the reviewer, or none for the gate itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<Principal>,
    /// The version of the policy the event happened under: the SHA-256 of the policy file's
    /// source, or `code`.
    pub policy_version: SmolStr,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

impl AuditEvent {
    /// The event's name: `allowed`, `requested`, `review_refused`, ...
    pub fn name(&self) -> &'static str {
        match &self.kind {
            EventKind::Allowed { .. } => "allowed",
            EventKind::PolicyDenied { .. } => "policy_denied",
            EventKind::Requested { .. } => "requested",
            EventKind::Attached => "attached",
            EventKind::Notified { .. } => "notified",
            EventKind::NotifyFailed { .. } => "notify_failed",
            EventKind::ReviewAccepted { .. } => "review_accepted",
            EventKind::ReviewRefused { .. } => "review_refused",
            EventKind::ReviewUnauthenticated { .. } => "review_unauthenticated",
            EventKind::Decided { .. } => "decided",
            EventKind::Started => "started",
            EventKind::Finished { .. } => "finished",
            EventKind::Escalated { .. } => "escalated",
            EventKind::Reminded { .. } => "reminded",
            EventKind::GrantIssued { .. } => "grant_issued",
            EventKind::GrantUsed { .. } => "grant_used",
            EventKind::GrantRevoked { .. } => "grant_revoked",
            EventKind::RequestUnreadable { .. } => "request_unreadable",
            EventKind::CallRefused { .. } => "call_refused",
            EventKind::Shadow { .. } => "shadow",
        }
    }
}

/// An event with its place in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Position in the log, from 0, without gaps.
    pub seq: u64,
    /// The Merkle leaf hash of the record before this one (absent for record 0), so that a
    /// change to any record is pinned to its sequence number by the record after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev: Option<Digest>,
    /// The event.
    #[serde(flatten)]
    pub event: AuditEvent,
}

impl AuditRecord {
    /// The record's Merkle leaf hash: `SHA-256(0x00 || canonical JSON)`.
    pub fn leaf_hash(&self) -> Digest {
        Digest(crate::merkle::leaf_hash(
            self.to_canonical_json().as_bytes(),
        ))
    }

    /// The record's canonical JSON (the bytes a Merkle leaf is computed over).
    ///
    /// Written straight from the record ([`crate::canonical::write_serialized`]); through a
    /// `serde_json::Value` only if that refuses it, which gives the same bytes.
    pub fn to_canonical_json(&self) -> String {
        let mut out = String::with_capacity(512);
        if self.write_allowed(&mut out)
            || crate::canonical::write_serialized(self, &mut out).is_ok()
        {
            // Every record any test writes, of every kind, is checked against the value
            // path (the definition); release builds write it once.
            #[cfg(debug_assertions)]
            if let Ok(v) = serde_json::to_value(self) {
                assert_eq!(out, to_canonical_string(&v), "a record written straight");
            }
            return out;
        }
        match serde_json::to_value(self) {
            Ok(v) => to_canonical_string(&v),
            // Every field is plain data with string keys; serialisation cannot fail.
            Err(e) => format!("{{\"error\":{:?}}}", e.to_string()),
        }
    }

    /// An `allowed` record's canonical JSON, written from its fields in key order; `false`,
    /// with nothing written, for any other record. It is the record every allowed call
    /// leaves, one a call, and on a durable sink it is written on the call's path. Serde's
    /// `flatten` (of the record's event, and of the event's kind) hands a serializer the
    /// record as one map with its keys out of order, which the general writer sorts and
    /// writes again: 13,800 instructions a record under callgrind, where this takes 3,100.
    /// The general writer remains the definition: in debug builds every record
    /// written here is checked against it as it is written (`to_canonical_json`), and the
    /// tests below compare the two on records of every shape this writes.
    fn write_allowed(&self, out: &mut String) -> bool {
        use crate::canonical::{write_serialized, write_str};
        let AuditRecord { seq, prev, event } = self;
        let AuditEvent {
            at,
            request_id: None,
            action:
                ActionRef {
                    name,
                    policy,
                    digest,
                },
            actor,
            policy_version,
            kind: EventKind::Allowed { rule },
        } = event
        else {
            return false;
        };
        let start = out.len();
        let mut write = || -> Result<(), crate::canonical::Unsupported> {
            out.push_str(r#"{"action":{"digest":"#);
            write_serialized(digest, out)?;
            out.push_str(r#","name":"#);
            write_str(name, out);
            out.push_str(r#","policy":"#);
            write_str(policy, out);
            out.push('}');
            if let Some(actor) = actor {
                out.push_str(r#","actor":"#);
                write_serialized(actor, out)?;
            }
            out.push_str(r#","at":"#);
            write_serialized(at, out)?;
            out.push_str(r#","event":"allowed","policy_version":"#);
            write_str(policy_version, out);
            if let Some(prev) = prev {
                out.push_str(r#","prev":"#);
                write_serialized(prev, out)?;
            }
            out.push_str(r#","rule":"#);
            write_str(rule, out);
            out.push_str(r#","seq":"#);
            out.push_str(itoa::Buffer::new().format(*seq));
            out.push('}');
            Ok(())
        };
        if write().is_err() {
            out.truncate(start);
            return false;
        }
        true
    }
}

/// What a sink returns for an appended event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditReceipt {
    /// The sequence number given to the record.
    pub seq: u64,
}

/// Appends audit events. An error fails the call closed.
#[async_trait]
pub trait AuditSink: Send + Sync {
    /// Appends one event; returns once it is as durable as the sink promises.
    async fn append(&self, event: AuditEvent) -> Result<AuditReceipt, AuditError>;

    /// Appends one event without awaiting, for a sink that never needs to (one in memory):
    /// the gate tries this first and awaits [`AuditSink::append`] only when the event comes
    /// back (`Err(event)`, the default). A sink that takes the event must do what `append`
    /// would; what it saves every call is the boxed future of an async trait method, and
    /// the event's move into it. The event comes back as it is, not boxed: a sink that
    /// awaits is given no allocation more than `append` alone would cost.
    #[allow(clippy::result_large_err)] // the large "error" is the event itself, moved back
    fn append_now(
        &self,
        event: AuditEvent,
    ) -> Result<Result<AuditReceipt, AuditError>, AuditEvent> {
        Err(event)
    }

    /// Makes everything appended durable and signs a final checkpoint, on graceful
    /// shutdown ([`Gate::shutdown`](crate::Gate::shutdown)).
    async fn flush(&self) -> Result<(), AuditError> {
        Ok(())
    }

    /// Names the log this sink appends to when a store can append to the same log inside
    /// its own transactions (one database holds both): a gate whose store answers the same
    /// from [`Store::log_id`](crate::store::Store::log_id) commits each state change with
    /// its audit records ([`Store::update_recorded`](crate::store::Store::update_recorded)).
    /// `None`, the default, for a sink no store shares.
    fn log_id(&self) -> Option<&str> {
        None
    }
}

/// A shared sink: a test or service keeps an `Arc` and gives the gate a clone.
#[async_trait]
impl<T: AuditSink + ?Sized> AuditSink for std::sync::Arc<T> {
    async fn append(&self, event: AuditEvent) -> Result<AuditReceipt, AuditError> {
        (**self).append(event).await
    }
    #[allow(clippy::result_large_err)]
    fn append_now(
        &self,
        event: AuditEvent,
    ) -> Result<Result<AuditReceipt, AuditError>, AuditEvent> {
        (**self).append_now(event)
    }
    async fn flush(&self) -> Result<(), AuditError> {
        (**self).flush().await
    }
    fn log_id(&self) -> Option<&str> {
        (**self).log_id()
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::principal::PrincipalKind;
    use proptest::prelude::*;

    /// The definition: the record through a `serde_json::Value`, canonical.
    fn through_value(record: &AuditRecord) -> String {
        to_canonical_string(&serde_json::to_value(record).unwrap())
    }

    fn allowed(
        seq: u64,
        prev: Option<[u8; 32]>,
        (name, policy, rule, version): (&str, &str, &str, &str),
        actor: Option<(&str, PrincipalKind)>,
        at_micros: i64,
    ) -> AuditRecord {
        AuditRecord {
            seq,
            prev: prev.map(Digest),
            event: AuditEvent {
                at: Timestamp::from_unix_micros(at_micros),
                request_id: None,
                action: ActionRef {
                    name: name.into(),
                    policy: policy.into(),
                    digest: Digest([0xA7; 32]),
                },
                actor: actor.map(|(id, kind)| Principal::new(id, kind)),
                policy_version: version.into(),
                kind: EventKind::Allowed { rule: rule.into() },
            },
        }
    }

    #[test]
    fn an_allowed_record_is_written_as_the_definition_writes_it() {
        let names = ("dashboards::read", "read", "read-only", "code");
        let odd = ("a\"b\\c\n\u{1}é", "p\u{7f}", "r\t\u{2028}", "ß\u{0}");
        let kinds = [
            PrincipalKind::Agent,
            PrincipalKind::Human,
            PrincipalKind::Service,
        ];
        for (seq, prev) in [
            (0, None),
            (1, Some([0u8; 32])),
            (u64::MAX, Some([0xFF; 32])),
        ] {
            for strings in [names, odd] {
                for actor in [
                    None,
                    Some(("ops-bot", kinds[0])),
                    Some(("Dana \"D\"", kinds[1])),
                    Some(("ci", kinds[2])),
                ] {
                    let record = allowed(seq, prev, strings, actor, 1_765_000_000_123_456);
                    let mut out = String::new();
                    assert!(record.write_allowed(&mut out));
                    assert_eq!(out, through_value(&record));
                    assert_eq!(record.to_canonical_json(), out);
                }
            }
        }
    }

    #[test]
    fn other_records_are_left_to_the_general_writer() {
        let mut record = allowed(3, None, ("a", "b", "c", "d"), None, 0);
        record.event.request_id = Some(RequestId::generate());
        let mut out = String::from("kept");
        assert!(!record.write_allowed(&mut out));
        assert_eq!(out, "kept");
        assert_eq!(record.to_canonical_json(), through_value(&record));
        record.event.request_id = None;
        record.event.kind = EventKind::PolicyDenied {
            rule: "c".into(),
            reason: "no".into(),
        };
        assert!(!record.write_allowed(&mut out));
        assert_eq!(out, "kept");
        assert_eq!(record.to_canonical_json(), through_value(&record));
    }

    proptest! {
        #[test]
        fn any_allowed_record_is_written_as_the_definition_writes_it(
            seq in any::<u64>(),
            prev in proptest::option::of(any::<[u8; 32]>()),
            name in any::<String>(),
            policy in any::<String>(),
            rule in any::<String>(),
            version in any::<String>(),
            actor in proptest::option::of((any::<String>(), 0..3usize)),
            at in any::<i64>(),
        ) {
            let kinds = [PrincipalKind::Agent, PrincipalKind::Human, PrincipalKind::Service];
            let actor = actor.as_ref().map(|(id, k)| (id.as_str(), kinds[*k]));
            let record = allowed(seq, prev, (&name, &policy, &rule, &version), actor, at);
            let mut out = String::new();
            prop_assert!(record.write_allowed(&mut out));
            prop_assert_eq!(out, through_value(&record));
        }
    }
}
