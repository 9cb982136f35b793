//! What the policy engine says about a call, and a policy engine written in code.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::action::{Action, SmolStr};
use crate::principal::Context;

/// The policy engine's judgement of one call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// The call runs at once.
    Allow {
        /// The rule that allowed it.
        rule: SmolStr,
        /// The version of the policy that judged it (a hash of its source, or `code`).
        policy_version: SmolStr,
    },
    /// The call is refused; the body does not run.
    Deny {
        /// The rule that refused it.
        rule: SmolStr,
        /// Why, in words a developer can act on.
        reason: String,
        /// The version of the policy that judged it.
        policy_version: SmolStr,
    },
    /// The call waits for the approvals the requirement names (which carries its version).
    /// Boxed: a verdict is moved several times on every call's way through the gate, and
    /// the requirement is most of its size (a verdict 192 bytes inline, 80 boxed).
    RequireApproval(Box<Requirement>),
}

impl Verdict {
    /// Runs outright, by `rule`, under a policy written in code.
    pub fn allow(rule: impl Into<SmolStr>) -> Self {
        Verdict::Allow {
            rule: rule.into(),
            policy_version: SmolStr::new_static(CODE_VERSION),
        }
    }

    /// Refused by `rule` with `reason`, under a policy written in code.
    pub fn deny(rule: impl Into<SmolStr>, reason: impl Into<String>) -> Self {
        Verdict::Deny {
            rule: rule.into(),
            reason: reason.into(),
            policy_version: SmolStr::new_static(CODE_VERSION),
        }
    }

    /// Waits for the approvals `requirement` names.
    ///
    /// ```
    /// use approvals_core::{Factor, Requirement, Verdict};
    /// let v = Verdict::require(Requirement::new("one-sre").factor(Factor::group("sre", 1)));
    /// assert!(matches!(v, Verdict::RequireApproval(r) if r.rule == "one-sre"));
    /// ```
    pub fn require(requirement: Requirement) -> Self {
        Verdict::RequireApproval(Box::new(requirement))
    }

    /// The same verdict stamped with another policy version.
    pub fn with_version(mut self, version: impl Into<SmolStr>) -> Self {
        let version = version.into();
        match &mut self {
            Verdict::Allow { policy_version, .. } | Verdict::Deny { policy_version, .. } => {
                *policy_version = version;
            }
            Verdict::RequireApproval(r) => r.policy_version = version,
        }
        self
    }

    /// The rule that produced the verdict.
    pub fn rule(&self) -> &str {
        match self {
            Verdict::Allow { rule, .. } | Verdict::Deny { rule, .. } => rule,
            Verdict::RequireApproval(r) => &r.rule,
        }
    }

    /// The version of the policy that produced the verdict.
    pub fn policy_version(&self) -> &str {
        match self {
            Verdict::Allow { policy_version, .. } | Verdict::Deny { policy_version, .. } => {
                policy_version
            }
            Verdict::RequireApproval(r) => &r.policy_version,
        }
    }
}

/// The version stamped by policies written in code.
pub const CODE_VERSION: &str = "code";

/// Who may approve and how many of them: one or more factors, all of which must be met.
///
/// ```
/// use approvals_core::{Factor, Requirement};
/// use std::time::Duration;
/// // "2 from sre and 1 from security" needs three different people.
/// let req = Requirement::new("prod-deploy")
///     .factor(Factor::group("sre", 2))
///     .factor(Factor::group("security", 1))
///     .expires_in(Duration::from_secs(3600));
/// assert_eq!(req.approvals_needed(), 3);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirement {
    /// The rule that produced this requirement.
    pub rule: SmolStr,
    /// Every factor must be filled, each by its own distinct people.
    pub factors: Vec<Factor>,
    /// How long the request stays open before it expires (`expires_in_ms` in JSON).
    #[serde(
        rename = "expires_in_ms",
        alias = "expires_in",
        with = "duration_millis"
    )]
    pub expires_in: Duration,
    /// Channels (approver names) to notify; empty means every approver of the gate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
    /// The version of the policy that produced this (a hash of its source, or `code`).
    pub policy_version: SmolStr,
    /// Who else to tell, and when, if nobody has decided yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub escalations: Vec<Escalation>,
    /// Reminders on the channels already notified, while the request waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reminders: Option<Reminders>,
    /// How far a reviewer may turn an approval into a standing grant (none by default).
    #[serde(default, skip_serializing_if = "GrantCaps::is_none")]
    pub grants: GrantCaps,
    /// What a new request does when one of its channels cannot deliver it.
    #[serde(default, skip_serializing_if = "IfUndelivered::is_fail")]
    pub if_undelivered: IfUndelivered,
}

/// What a new request does when a channel fails to deliver it (Slack down, a webhook
/// receiver refusing). Either way the failure is audited as `notify_failed`, and a request
/// that reached nobody is cancelled: it is never approved by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IfUndelivered {
    /// Cancel the request and fail the call closed as soon as any channel fails (the default).
    #[default]
    Fail,
    /// Keep the request open on the channels that did deliver it; fail closed only when none
    /// did.
    Wait,
}

impl IfUndelivered {
    /// Whether this is the default, [`IfUndelivered::Fail`].
    pub fn is_fail(&self) -> bool {
        matches!(self, Self::Fail)
    }
}

/// "After `after`, notify `channels`": one escalation step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Escalation {
    /// Time since the request was created (`after_ms` in JSON).
    #[serde(rename = "after_ms", alias = "after", with = "duration_millis")]
    pub after: Duration,
    /// Channels (approver names) to notify at that time.
    pub channels: Vec<String>,
}

/// Reminders: every `every` since creation, at most `max` times (unbounded if `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reminders {
    /// Interval between reminders (`every_ms` in JSON).
    #[serde(rename = "every_ms", alias = "every", with = "duration_millis")]
    pub every: Duration,
    /// How many reminders at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
}

/// The limits on standing grants a policy allows; zero in either means none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantCaps {
    /// The longest a grant may last (`max_duration_ms` in JSON).
    #[serde(
        rename = "max_duration_ms",
        alias = "max_duration",
        with = "duration_millis"
    )]
    pub max_duration: Duration,
    /// The most uses a grant may allow.
    pub max_uses: u32,
}

impl GrantCaps {
    /// Whether grants are not allowed at all.
    pub fn is_none(&self) -> bool {
        self.max_duration.is_zero() || self.max_uses == 0
    }
}

/// Default expiry of a requirement: one hour.
pub const DEFAULT_EXPIRY: Duration = Duration::from_secs(3600);

impl Requirement {
    /// A requirement produced by `rule`, with no factors yet and the default expiry.
    pub fn new(rule: impl Into<SmolStr>) -> Self {
        Self {
            rule: rule.into(),
            factors: Vec::new(),
            expires_in: DEFAULT_EXPIRY,
            channels: Vec::new(),
            policy_version: SmolStr::new_static(CODE_VERSION),
            escalations: Vec::new(),
            reminders: None,
            grants: GrantCaps::default(),
            if_undelivered: IfUndelivered::Fail,
        }
    }
    /// Adds a factor.
    pub fn factor(mut self, factor: Factor) -> Self {
        self.factors.push(factor);
        self
    }
    /// Sets the expiry.
    pub fn expires_in(mut self, d: Duration) -> Self {
        self.expires_in = d;
        self
    }
    /// Names a channel (approver) to notify.
    pub fn channel(mut self, name: impl Into<String>) -> Self {
        self.channels.push(name.into());
        self
    }
    /// Sets the policy version.
    pub fn policy_version(mut self, v: impl Into<SmolStr>) -> Self {
        self.policy_version = v.into();
        self
    }
    /// Adds an escalation step: after `after`, notify `channels` too.
    pub fn escalate<I, S>(mut self, after: Duration, channels: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.escalations.push(Escalation {
            after,
            channels: channels.into_iter().map(Into::into).collect(),
        });
        self.escalations.sort_by_key(|e| e.after);
        self
    }
    /// Reminds the notified channels every `every`, at most `max` times.
    pub fn remind_every(mut self, every: Duration, max: Option<u32>) -> Self {
        self.reminders = Some(Reminders { every, max });
        self
    }
    /// Lets reviewers grant standing approvals up to these caps.
    pub fn grants(mut self, max_duration: Duration, max_uses: u32) -> Self {
        self.grants = GrantCaps {
            max_duration,
            max_uses,
        };
        self
    }
    /// Sets what happens when a channel cannot deliver the request.
    ///
    /// ```
    /// use approvals_core::{Factor, IfUndelivered, Requirement};
    /// // Slack or email: losing one channel must not block the deploy.
    /// let req = Requirement::new("deploy")
    ///     .factor(Factor::group("sre", 1))
    ///     .channel("slack")
    ///     .channel("email")
    ///     .if_undelivered(IfUndelivered::Wait);
    /// assert_eq!(req.if_undelivered, IfUndelivered::Wait);
    /// ```
    pub fn if_undelivered(mut self, v: IfUndelivered) -> Self {
        self.if_undelivered = v;
        self
    }
    /// Total number of distinct approvers needed.
    pub fn approvals_needed(&self) -> u32 {
        self.factors.iter().map(|f| f.count).sum()
    }
}

/// One factor of a requirement: `count` distinct approvers drawn from `from`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Factor {
    /// Who is eligible to fill this factor.
    pub from: Eligible,
    /// How many distinct approvers it needs (at least 1).
    pub count: u32,
}

impl Factor {
    /// `count` approvers from a directory group.
    pub fn group(name: impl Into<String>, count: u32) -> Self {
        Self {
            from: Eligible::Group(name.into()),
            count,
        }
    }
    /// `count` approvers from a list of people (principal ids).
    pub fn people<I, S>(ids: I, count: u32) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            from: Eligible::People(ids.into_iter().map(Into::into).collect()),
            count,
        }
    }
    /// Whether a reviewer with this id and these group memberships may fill this factor.
    pub fn admits(&self, id: &str, groups: &BTreeSet<String>) -> bool {
        match &self.from {
            Eligible::Group(g) => groups.contains(g),
            Eligible::People(ids) => {
                ids.contains(id) || ids.iter().any(|p| crate::principal::same_id(p, id))
            }
        }
    }
}

impl fmt::Display for Factor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.from {
            Eligible::Group(g) => write!(f, "{} from {g}", self.count),
            Eligible::People(p) => {
                let names: Vec<&str> = p.iter().map(String::as_str).collect();
                write!(f, "{} of {}", self.count, names.join(", "))
            }
        }
    }
}

/// Where a factor's approvers come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Eligible {
    /// Members of a directory group at the time of their review.
    Group(String),
    /// These principal ids.
    People(BTreeSet<String>),
}

/// The policy engine failed to judge a call. The call does not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// No policy of this name is configured.
    #[error("no policy named `{0}` is configured; add it to the policy engine")]
    UnknownPolicy(String),
    /// The engine could not evaluate the policy.
    #[error("policy `{policy}` could not be evaluated: {message}")]
    Evaluation {
        /// The policy.
        policy: String,
        /// What went wrong.
        message: String,
    },
}

/// What a rule in shadow mode would have decided, where it would have decided otherwise
/// than the rules enforced: recorded in the audit trail, never enforced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shadow {
    /// The shadow rule that would have decided.
    pub rule: String,
    /// Its verdict, had it been enforced.
    pub verdict: Verdict,
}

impl Shadow {
    /// `allow`, `deny` or `require_approval`.
    pub fn would(&self) -> &'static str {
        match self.verdict {
            Verdict::Allow { .. } => "allow",
            Verdict::Deny { .. } => "deny",
            Verdict::RequireApproval(_) => "require_approval",
        }
    }

    /// The particulars: a denial's reason, or the approvals it would have required.
    pub fn detail(&self) -> String {
        match &self.verdict {
            Verdict::Allow { .. } => String::new(),
            Verdict::Deny { reason, .. } => reason.clone(),
            Verdict::RequireApproval(req) => {
                let f: Vec<String> = req.factors.iter().map(ToString::to_string).collect();
                f.join(" and ")
            }
        }
    }
}

/// Judges each call in context. Called once per gated call, before anything else happens.
#[async_trait]
pub trait PolicyEngine: Send + Sync {
    /// The verdict for `action` made in `context`.
    async fn evaluate(&self, action: &Action, context: &Context) -> Result<Verdict, PolicyError>;

    /// The verdict, and what a rule in shadow mode would have decided instead, if one would
    /// have: what the gate calls. Engines without shadow rules need not implement it.
    async fn evaluate_with_shadow(
        &self,
        action: &Action,
        context: &Context,
    ) -> Result<(Verdict, Option<Shadow>), PolicyError> {
        Ok((self.evaluate(action, context).await?, None))
    }

    /// The verdict and shadow of [`PolicyEngine::evaluate_with_shadow`], given without
    /// awaiting by an engine that never needs to (its rules are in process): the gate asks
    /// this first, and awaits `evaluate_with_shadow` only on `None`, the default. An engine
    /// that answers must answer as `evaluate_with_shadow` would; what it saves every call is
    /// the boxed future of an async trait method.
    fn evaluate_now(
        &self,
        _action: &Action,
        _context: &Context,
    ) -> Option<Result<(Verdict, Option<Shadow>), PolicyError>> {
        None
    }

    /// The policy names this engine defines, if it can list them. When it can, building a
    /// gate checks that every policy named by a `#[requires_approval]` in the program is
    /// among them.
    fn policy_names(&self) -> Option<BTreeSet<String>> {
        None
    }

    /// The policy names to tell a requester who named an unknown one. Defaults to
    /// [`PolicyEngine::policy_names`]; an engine that does not want the start-up check may
    /// still list them here.
    fn known_policies(&self) -> Option<BTreeSet<String>> {
        self.policy_names()
    }

    /// The arguments the conditions of `policy` read (`args.NAME`), with the rule and line
    /// of each, when the engine can tell. Building a gate checks them against the arguments
    /// the program's gated functions record.
    fn arguments_read(&self, _policy: &str) -> Option<Vec<ArgumentRead>> {
        None
    }

    /// Takes the clock of the gate that uses this engine, for whatever it reads the time
    /// for (`now` in conditions). Building a gate calls it, so that one clock rules the gate
    /// and its policy. Engines that do not read the time ignore it.
    fn use_clock(&self, _clock: std::sync::Arc<dyn crate::clock::Clock>) {}

    /// What a policy can decide, over every call it might judge, when the engine can tell
    /// (`None`: it cannot, or knows no such policy). A gateway hides the tools a policy can
    /// only refuse, and says which ones need approval.
    fn possible(&self, _policy: &str) -> Option<Possible> {
        None
    }

    /// Checks a standing grant's condition (an expression over the call's arguments) when a
    /// reviewer asks for a conditional grant. Engines without a condition language refuse.
    fn check_condition(&self, _condition: &str) -> Result<(), PolicyError> {
        Err(PolicyError::Evaluation {
            policy: String::new(),
            message: "this policy engine has no condition language; grants cannot be conditional"
                .into(),
        })
    }

    /// Whether a call meets a standing grant's condition. An error means it does not.
    fn condition_holds(
        &self,
        condition: &str,
        _action: &Action,
        _context: &Context,
    ) -> Result<bool, PolicyError> {
        self.check_condition(condition).map(|()| false)
    }
}

/// An argument a policy's condition reads (see [`PolicyEngine::arguments_read`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgumentRead {
    /// The argument's name (`args.NAME`).
    pub argument: String,
    /// The rule whose condition reads it.
    pub rule: String,
    /// The rule's line (0 when unknown).
    pub line: usize,
}

/// What a policy can decide over every call it might judge (see [`PolicyEngine::possible`]).
///
/// ```
/// use approvals_core::policy::Possible;
/// let only_refuses = Possible { allow: false, approval: false, deny: true };
/// assert!(only_refuses.only_denies());
/// assert!(!Possible { allow: false, approval: true, deny: true }.only_denies());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Possible {
    /// Some call may run outright.
    pub allow: bool,
    /// Some call may wait for approval.
    pub approval: bool,
    /// Some call may be refused.
    pub deny: bool,
}

impl Possible {
    /// Every call it judges is refused.
    pub fn only_denies(&self) -> bool {
        !self.allow && !self.approval
    }
}

type RuleFn = dyn Fn(&Action, &Context) -> Result<Verdict, PolicyError> + Send + Sync;

/// A policy engine written in code: policy name → verdict, requirement, or closure.
///
/// For tests, examples and programs that keep their rules in Rust. Unknown policy names are
/// an error (the call fails closed), never an implicit allow.
///
/// ```
/// use approvals_core::{CodePolicy, Factor, Requirement, Verdict};
/// let policy = CodePolicy::new()
///     .allow("read")
///     .deny("drop", "agents never drop tables")
///     .require("export", Requirement::new("export").factor(Factor::group("data-owners", 1)))
///     .rule("deploy", |action, _ctx| {
///         Ok(if action.args["env"] == "prod" {
///             Verdict::deny("deploy", "no prod deploys today")
///         } else {
///             Verdict::allow("deploy")
///         })
///     });
/// ```
#[derive(Clone, Default)]
pub struct CodePolicy {
    rules: BTreeMap<String, Arc<RuleFn>>,
}

impl fmt::Debug for CodePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CodePolicy")
            .field("policies", &self.rules.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl CodePolicy {
    /// An engine with no policies.
    pub fn new() -> Self {
        Self::default()
    }

    /// Calls under `policy` run outright.
    pub fn allow(self, policy: &str) -> Self {
        let rule = SmolStr::from(policy);
        self.rule(policy, move |_, _| Ok(Verdict::allow(rule.clone())))
    }

    /// Calls under `policy` are refused with `reason`.
    pub fn deny(self, policy: &str, reason: &str) -> Self {
        let (rule, reason) = (SmolStr::from(policy), reason.to_owned());
        self.rule(policy, move |_, _| {
            Ok(Verdict::deny(rule.clone(), reason.clone()))
        })
    }

    /// Calls under `policy` wait for `requirement`.
    pub fn require(self, policy: &str, requirement: Requirement) -> Self {
        self.rule(policy, move |_, _| {
            Ok(Verdict::RequireApproval(Box::new(requirement.clone())))
        })
    }

    /// Calls under `policy` are judged by a closure.
    pub fn rule<F>(mut self, policy: &str, f: F) -> Self
    where
        F: Fn(&Action, &Context) -> Result<Verdict, PolicyError> + Send + Sync + 'static,
    {
        self.rules.insert(policy.to_owned(), Arc::new(f));
        self
    }

    /// The policy names this engine knows.
    pub fn policies(&self) -> impl Iterator<Item = &str> {
        self.rules.keys().map(String::as_str)
    }
}

impl CodePolicy {
    fn judge(&self, action: &Action, context: &Context) -> Result<Verdict, PolicyError> {
        let rule = self
            .rules
            .get(action.policy.as_str())
            .ok_or_else(|| PolicyError::UnknownPolicy(action.policy.to_string()))?;
        rule(action, context)
    }
}

#[async_trait]
impl PolicyEngine for CodePolicy {
    async fn evaluate(&self, action: &Action, context: &Context) -> Result<Verdict, PolicyError> {
        self.judge(action, context)
    }

    // Its own, not the default: the default would box a second future on every call.
    async fn evaluate_with_shadow(
        &self,
        action: &Action,
        context: &Context,
    ) -> Result<(Verdict, Option<Shadow>), PolicyError> {
        Ok((self.judge(action, context)?, None))
    }

    fn evaluate_now(
        &self,
        action: &Action,
        context: &Context,
    ) -> Option<Result<(Verdict, Option<Shadow>), PolicyError>> {
        Some(self.judge(action, context).map(|verdict| (verdict, None)))
    }

    fn known_policies(&self) -> Option<BTreeSet<String>> {
        Some(self.rules.keys().cloned().collect())
    }
}

pub(crate) mod duration_millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// A shared engine (for instance one that reloads its file while gates use it).
#[async_trait]
impl<T: PolicyEngine + ?Sized> PolicyEngine for Arc<T> {
    async fn evaluate(&self, action: &Action, context: &Context) -> Result<Verdict, PolicyError> {
        (**self).evaluate(action, context).await
    }
    async fn evaluate_with_shadow(
        &self,
        action: &Action,
        context: &Context,
    ) -> Result<(Verdict, Option<Shadow>), PolicyError> {
        (**self).evaluate_with_shadow(action, context).await
    }
    fn evaluate_now(
        &self,
        action: &Action,
        context: &Context,
    ) -> Option<Result<(Verdict, Option<Shadow>), PolicyError>> {
        (**self).evaluate_now(action, context)
    }
    fn policy_names(&self) -> Option<BTreeSet<String>> {
        (**self).policy_names()
    }
    fn known_policies(&self) -> Option<BTreeSet<String>> {
        (**self).known_policies()
    }
    fn check_condition(&self, condition: &str) -> Result<(), PolicyError> {
        (**self).check_condition(condition)
    }
    fn condition_holds(
        &self,
        condition: &str,
        action: &Action,
        context: &Context,
    ) -> Result<bool, PolicyError> {
        (**self).condition_holds(condition, action, context)
    }
    fn use_clock(&self, clock: Arc<dyn crate::clock::Clock>) {
        (**self).use_clock(clock);
    }
    fn arguments_read(&self, policy: &str) -> Option<Vec<ArgumentRead>> {
        (**self).arguments_read(policy)
    }
    fn possible(&self, policy: &str) -> Option<Possible> {
        (**self).possible(policy)
    }
}
