//! Edits: a reviewer approves a call with some of its arguments changed.
//!
//! An edit is a new call. It keeps the original's name, policy, parties and editable
//! arguments, gets its own digest, is judged by the policy afresh, and needs its own
//! approvals; the reviewer who proposed it counts as one of them. The original request is
//! decided as [`Decision::Edited`] and never runs. What is decided here, with no I/O:
//!
//! - whether a proposal may be made at all ([`check`]): by someone whose approval of the
//!   original would count (never the requester or the party it acts for), while it is
//!   pending and unexpired, for arguments declared editable, with values of the same JSON
//!   kind as the ones asked for, changing at least one of them;
//! - what the edited call needs ([`requirement`]): everything the original needed, and
//!   everything the policy now asks of the edited call, so an edit never skips a rule;
//! - the original's decision ([`supersede`]).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::clock::Timestamp;
use crate::policy::Requirement;
use crate::principal::Principal;
use crate::request::{
    ApprovalRequest, Change, Decision, RecordedReview, RequestId, RequestState, ReviewDecision,
};

use super::admission::{Refusal, admit};

/// Why a proposed edit was refused. The request it was proposed for stays as it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "edit", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EditRefusal {
    /// New values came with a denial or a request for changes: only an approval edits.
    #[error("only an approval can carry new values (`set`)")]
    NotApproval,
    /// A review with new values was tallied as a plain approval; it must be proposed as an
    /// edit (the gate's `submit_review` does).
    #[error(
        "an edit is a new call: propose it through the gate, it is not an approval of this one"
    )]
    NotHere,
    /// `set` named no argument.
    #[error("the edit sets no argument")]
    Empty,
    /// An argument that is not editable for this call.
    #[error("`{arg}` is not editable for this call (editable: {})", list(.editable))]
    NotEditable {
        /// The argument.
        arg: String,
        /// The arguments that are.
        editable: Vec<String>,
    },
    /// A value of another kind than the argument's.
    #[error("`{arg}` takes {expected}, not {got}")]
    WrongType {
        /// The argument.
        arg: String,
        /// The kind of value the call was made with.
        expected: String,
        /// The kind given.
        got: String,
    },
    /// Every value is the one asked for: approve the call instead.
    #[error("the edit changes nothing: every value is the one asked for; approve the call instead")]
    Unchanged,
    /// The edited call cannot be recorded (too large, too deep).
    #[error("the edited call cannot be recorded: {message}")]
    Invalid {
        /// Why.
        message: String,
    },
    /// The policy denies the edited call.
    #[error("the policy denies the edited call (rule `{rule}`): {reason}")]
    Denied {
        /// The rule.
        rule: String,
        /// Why.
        reason: String,
    },
    /// Nobody could ever approve the edited call.
    #[error("the edited call could never be approved: {reason}")]
    Infeasible {
        /// Why.
        reason: String,
    },
    /// A standing grant cannot be issued with an edit: it would cover calls nobody saw.
    #[error("a standing grant cannot come with an edit")]
    WithGrant,
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

impl From<EditRefusal> for Refusal {
    fn from(refusal: EditRefusal) -> Self {
        Refusal::Edit { refusal }
    }
}

/// Checks a review that approves `request` with new values (`review.set`): the reviewer
/// must be one whose approval of `request` would count now, and every value must be for an
/// editable argument and of its kind. Returns what changes (arguments set to the value they
/// already had are left out).
pub fn check(
    request: &ApprovalRequest,
    review: &RecordedReview,
    now: Timestamp,
) -> Result<Vec<Change>, Refusal> {
    let r = &review.review;
    let Some(set) = &r.set else {
        return Err(EditRefusal::Empty.into());
    };
    if r.decision != ReviewDecision::Approve {
        return Err(EditRefusal::NotApproval.into());
    }
    if r.grant.is_some() {
        return Err(EditRefusal::WithGrant.into());
    }
    // Whoever proposes must be someone whose approval of the call as asked would count:
    // pending, unexpired, the digest they saw, not a party to it, eligible, not yet reviewed.
    let mut plain = review.clone();
    plain.review.set = None;
    admit(request, &plain, now)?;
    if set.is_empty() {
        return Err(EditRefusal::Empty.into());
    }
    let action = &request.action;
    let mut changes = Vec::new();
    for (arg, to) in set {
        if !action.is_editable(arg) {
            let editable = action
                .editable
                .iter()
                .filter(|e| action.is_editable(e))
                .cloned()
                .collect();
            return Err(EditRefusal::NotEditable {
                arg: arg.clone(),
                editable,
            }
            .into());
        }
        let from = &action.args[arg.as_str()];
        if !same_kind(from, to) {
            return Err(EditRefusal::WrongType {
                arg: arg.clone(),
                expected: kind(from).into(),
                got: kind(to).into(),
            }
            .into());
        }
        if from != to {
            changes.push(Change {
                arg: arg.clone(),
                from: from.clone(),
                to: to.clone(),
            });
        }
    }
    if changes.is_empty() {
        return Err(EditRefusal::Unchanged.into());
    }
    Ok(changes)
}

/// What an edited call needs: every factor of the original's requirement, and every factor
/// the policy asks of the edited call (`judged`; `None` when the policy would let it run
/// outright, which an edit cannot make it do). A factor both ask for from the same people
/// needs the larger count. The original's terms (expiry, channels, escalations) stand.
pub fn requirement(original: &Requirement, judged: Option<&Requirement>) -> Requirement {
    let mut merged = original.clone();
    let Some(judged) = judged else {
        return merged;
    };
    for f in &judged.factors {
        match merged.factors.iter_mut().find(|m| m.from == f.from) {
            Some(m) => m.count = m.count.max(f.count),
            None => merged.factors.push(f.clone()),
        }
    }
    if judged.rule != original.rule {
        merged.rule = format!("{} + {}", original.rule, judged.rule).into();
    }
    for c in &judged.channels {
        if !merged.channels.is_empty() && !merged.channels.contains(c) {
            merged.channels.push(c.clone());
        }
    }
    merged.expires_in = merged.expires_in.min(judged.expires_in);
    merged.grants = Default::default();
    merged
}

/// Decides `request` as edited into `edit` by `by`, if it is still pending and unexpired.
/// Returns the decision, or `None` when it was decided meanwhile (the edit must then be
/// withdrawn).
pub fn supersede(
    request: &mut ApprovalRequest,
    by: &Principal,
    edit: RequestId,
    changes: &[Change],
    now: Timestamp,
) -> Option<Decision> {
    if !request.is_pending() || now >= request.expires_at {
        return None;
    }
    let d = Decision::Edited {
        at: now,
        by: by.clone(),
        edit,
        changes: changes.to_vec(),
    };
    request.state = RequestState::Decided(d.clone());
    request.version += 1;
    Some(d)
}

/// The kind of a JSON value, as an edit must match it: a whole number that was not negative
/// stays one (it may be an unsigned type), a whole number stays whole, and any number fits
/// where a fraction was. A `null` (an absent optional value) takes anything.
fn same_kind(from: &Value, to: &Value) -> bool {
    match (from, to) {
        (Value::Null, _) => true,
        (Value::Number(f), Value::Number(t)) => {
            if f.is_u64() {
                t.is_u64()
            } else if f.is_i64() {
                t.is_i64()
            } else {
                true
            }
        }
        _ => std::mem::discriminant(from) == std::mem::discriminant(to),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "true or false",
        Value::Number(n) if n.is_u64() => "a whole number, not negative",
        Value::Number(n) if n.is_i64() => "a whole number",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Factor;
    use crate::request::Review;
    use crate::{Action, Context};
    use serde_json::json;
    use std::time::Duration;

    fn request() -> ApprovalRequest {
        let action = Action::builder("export", "exports")
            .arg("limit", &50_000)
            .arg("table", &"customers")
            .arg("ratio", &0.5)
            .editable("limit")
            .editable("ratio")
            .build()
            .unwrap();
        let mut req = Requirement::new("big-export");
        req.factors = vec![Factor::people(["alice", "bob"], 1)];
        ApprovalRequest::new(
            action,
            Context::new(Principal::agent("bot")),
            req,
            Timestamp::from_unix_micros(1_000_000),
        )
    }

    fn proposal(r: &ApprovalRequest, who: &str, set: Value) -> RecordedReview {
        let mut review = Review::approve(r, Principal::human(who), r.created_at);
        review.set = set.as_object().cloned();
        RecordedReview {
            review,
            groups: Default::default(),
        }
    }

    fn refusal(r: &ApprovalRequest, who: &str, set: Value) -> EditRefusal {
        match check(r, &proposal(r, who, set), r.created_at) {
            Err(Refusal::Edit { refusal }) => refusal,
            other => panic!("expected an edit refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_valid_edit_lists_what_changes() {
        let r = request();
        let changes = check(
            &r,
            &proposal(&r, "alice", json!({"limit": 500, "ratio": 0.5})),
            r.created_at,
        )
        .unwrap();
        assert_eq!(
            changes,
            vec![Change {
                arg: "limit".into(),
                from: json!(50_000),
                to: json!(500)
            }]
        );
    }

    #[test]
    fn bad_edits_are_refused_with_the_reason() {
        let r = request();
        assert_eq!(
            refusal(&r, "alice", json!({"table": "staff"})),
            EditRefusal::NotEditable {
                arg: "table".into(),
                editable: vec!["limit".into(), "ratio".into()]
            }
        );
        assert!(matches!(
            refusal(&r, "alice", json!({"limit": "500"})),
            EditRefusal::WrongType { .. }
        ));
        assert!(matches!(
            refusal(&r, "alice", json!({"limit": -5})),
            EditRefusal::WrongType { .. }
        ));
        assert!(matches!(
            refusal(&r, "alice", json!({"limit": 2.5})),
            EditRefusal::WrongType { .. }
        ));
        // A fraction's place takes any number.
        assert!(
            check(
                &r,
                &proposal(&r, "alice", json!({"ratio": 1})),
                r.created_at
            )
            .is_ok()
        );
        assert_eq!(
            refusal(&r, "alice", json!({"limit": 50_000})),
            EditRefusal::Unchanged
        );
        assert_eq!(refusal(&r, "alice", json!({})), EditRefusal::Empty);
    }

    #[test]
    fn only_someone_whose_approval_counts_may_propose() {
        let r = request();
        let by_requester = check(&r, &proposal(&r, "bot", json!({"limit": 5})), r.created_at);
        assert!(matches!(by_requester, Err(Refusal::SelfApproval { .. })));
        let outsider = check(
            &r,
            &proposal(&r, "mallory", json!({"limit": 5})),
            r.created_at,
        );
        assert!(matches!(outsider, Err(Refusal::NotEligible { .. })));
        let late = r.expires_at;
        let expired = check(&r, &proposal(&r, "alice", json!({"limit": 5})), late);
        assert!(matches!(expired, Err(Refusal::Expired { .. })));
        let mut deny = proposal(&r, "alice", json!({"limit": 5}));
        deny.review.decision = ReviewDecision::Deny;
        assert_eq!(
            check(&r, &deny, r.created_at),
            Err(EditRefusal::NotApproval.into())
        );
    }

    #[test]
    fn an_edit_needs_what_both_rules_need() {
        let mut original = Requirement::new("big");
        original.factors = vec![Factor::group("sre", 1)];
        original.expires_in = Duration::from_secs(600);
        let mut judged = Requirement::new("prod");
        judged.factors = vec![Factor::group("sre", 2), Factor::group("security", 1)];
        judged.expires_in = Duration::from_secs(60);
        let merged = requirement(&original, Some(&judged));
        assert_eq!(
            merged.factors,
            vec![Factor::group("sre", 2), Factor::group("security", 1)]
        );
        assert_eq!(merged.rule, "big + prod");
        assert_eq!(merged.expires_in, Duration::from_secs(60));
        // Allowed outright by the policy: the original's requirement still holds.
        assert_eq!(requirement(&original, None), original);
    }

    #[test]
    fn superseding_decides_a_pending_request_once() {
        let mut r = request();
        let id = RequestId::generate();
        let by = Principal::human("alice");
        let at = r.created_at;
        let d = supersede(&mut r, &by, id, &[], at);
        assert!(matches!(d, Some(Decision::Edited { edit, .. }) if edit == id));
        assert_eq!(r.version, 1);
        assert_eq!(supersede(&mut r, &by, id, &[], at), None);
    }
}
