//! A loaded policy file and how it judges a call.

use approvals_core::SmolStr;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use approvals_core::{
    Action, Context, Directory, Eligible, Requirement, StaticDirectory, Timestamp, Verdict,
};

use crate::condition::{Condition, Input};

/// The name of the verdict given when no rule of a policy matches.
pub const NO_MATCH: &str = "no-rule-matched";

/// The name of the verdict a policy in shadow mode gives: it enforces nothing, so the call
/// runs, and what it would have done is recorded.
pub const SHADOW_MODE: &str = "shadow-mode";

/// A checked, compiled policy file.
#[derive(Debug, Clone)]
pub struct PolicySet {
    pub(crate) version: SmolStr,
    pub(crate) directory: StaticDirectory,
    pub(crate) policies: BTreeMap<String, Policy>,
}

/// One named policy: its rules, in file order.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The policy's name, as `#[requires_approval(policy = "...")]` gives it.
    pub name: String,
    /// Its rules in the order written.
    pub rules: Vec<Rule>,
    /// `mode = "shadow"`: every rule is judged and recorded, none enforced; calls run.
    pub shadow: bool,
}

/// One rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The rule's name (`<policy>#<n>` if the file gives none); shared with the verdicts
    /// and records it makes, not copied into each.
    pub name: SmolStr,
    /// The line it starts on.
    pub line: usize,
    /// Its condition; `None` matches every call.
    pub when: Option<Condition>,
    /// What it decides.
    pub outcome: Outcome,
    /// `mode = "shadow"` (or its policy's): judged and recorded, not enforced.
    pub shadow: bool,
}

/// What a rule decides.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The call runs.
    Allow,
    /// The call is refused, with this reason.
    Deny(String),
    /// The call waits for these approvals.
    Require(Requirement),
}

/// How one rule fared against a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// Its condition held (or it has none): it decided.
    Matched,
    /// Its condition was false.
    NotMatched,
    /// Its condition failed; the call is denied.
    Failed(String),
}

/// The judgement of one call with the rules tried on the way, in the order tried.
#[derive(Debug, Clone)]
pub struct Evaluation<'a> {
    /// The verdict.
    pub verdict: Verdict,
    /// Each enforced rule tried, and how it fared.
    pub tried: Vec<(&'a Rule, Check)>,
    /// What a rule in shadow mode would have decided instead, when one would have decided
    /// (all rules tried in order, shadow ones as if enforced).
    pub shadow: Option<approvals_core::policy::Shadow>,
}

impl PolicySet {
    /// The version: the SHA-256 of the file's source, in hex.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The directory the file defines.
    pub fn directory(&self) -> &StaticDirectory {
        &self.directory
    }

    /// The policy names.
    pub fn names(&self) -> BTreeSet<String> {
        self.policies.keys().cloned().collect()
    }

    /// What the policy `name` can decide: allow if a rule allows, approval if a rule
    /// requires it, deny if a rule denies, a condition might fail, or no rule matches every
    /// call (a call nothing matches is denied).
    pub fn possible(&self, name: &str) -> Option<approvals_core::policy::Possible> {
        let policy = self.policies.get(name)?;
        let mut p = approvals_core::policy::Possible::default();
        let mut catch_all = false;
        for r in &policy.rules {
            match r.outcome {
                Outcome::Allow => p.allow = true,
                Outcome::Require(_) => p.approval = true,
                Outcome::Deny(_) => p.deny = true,
            }
            match (&r.when, &r.outcome) {
                (Some(_), _) => p.deny = true,
                // Deny rules are tried first: one without a condition refuses every call.
                (None, Outcome::Deny(_)) => {
                    return Some(approvals_core::policy::Possible {
                        deny: true,
                        ..Default::default()
                    });
                }
                (None, _) => catch_all = true,
            }
        }
        p.deny |= !catch_all;
        Some(p)
    }

    /// The arguments the conditions of policy `name` read, rule by rule.
    pub fn arguments_read(&self, name: &str) -> Option<Vec<approvals_core::policy::ArgumentRead>> {
        let policy = self.policies.get(name)?;
        Some(
            policy
                .rules
                .iter()
                .filter_map(|r| r.when.as_ref().map(|c| (r, c)))
                .flat_map(|(r, c)| {
                    c.arguments()
                        .into_iter()
                        .map(|argument| approvals_core::policy::ArgumentRead {
                            argument,
                            rule: r.name.to_string(),
                            line: r.line,
                        })
                })
                .collect(),
        )
    }

    /// One policy.
    pub fn policy(&self, name: &str) -> Option<&Policy> {
        self.policies.get(name)
    }

    /// Every channel any rule notifies or escalates to.
    pub fn channels(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for p in self.policies.values() {
            for r in &p.rules {
                if let Outcome::Require(req) = &r.outcome {
                    out.extend(req.channels.iter().cloned());
                    for e in &req.escalations {
                        out.extend(e.channels.iter().cloned());
                    }
                }
            }
        }
        out
    }

    /// Judges a call: deny rules first, in order; then the other rules in order; the first
    /// whose condition holds decides. A condition that fails to evaluate denies the call
    /// with the error. When nothing matches, the call is denied (fail closed). `None` if the
    /// policy is not defined.
    ///
    /// Rules in shadow mode are not tried for the verdict; a policy in shadow mode enforces
    /// nothing (the call runs, by [`SHADOW_MODE`]). Where there are shadow rules, the call is
    /// judged again with them as if enforced, and if a shadow rule decides that judgement,
    /// it is the evaluation's [`Evaluation::shadow`].
    pub fn evaluate(
        &self,
        action: &Action,
        context: &Context,
        now: Timestamp,
    ) -> Option<Evaluation<'_>> {
        let policy = self.policies.get(action.policy.as_str())?;
        let input = Input::new(action, context, &self.directory, now);
        let (verdict, tried) = if policy.shadow {
            let verdict = Verdict::Allow {
                rule: SmolStr::new_static(SHADOW_MODE),
                policy_version: self.version.clone(),
            };
            (verdict, Vec::new())
        } else {
            let (verdict, _, tried) = self.first_match(policy, &input, false);
            (verdict, tried)
        };
        let shadow = policy
            .rules
            .iter()
            .any(|r| r.shadow || policy.shadow)
            .then(|| self.first_match(policy, &input, true))
            .and_then(|(would, by, _)| {
                let by = match by {
                    Some(rule) if rule.shadow || policy.shadow => rule.name.clone(),
                    // A shadow policy whose rules match nothing would have denied the call.
                    None if policy.shadow => SmolStr::new_static(NO_MATCH),
                    _ => return None,
                };
                Some(approvals_core::policy::Shadow {
                    rule: by.into(),
                    verdict: would,
                })
            });
        Some(Evaluation {
            verdict,
            tried,
            shadow,
        })
    }

    /// The first rule that decides, in the order rules are tried (deny rules first); shadow
    /// rules only `with_shadow`. The verdict, the deciding rule, and every rule tried.
    fn first_match<'a>(
        &'a self,
        policy: &'a Policy,
        input: &Input<'_>,
        with_shadow: bool,
    ) -> (Verdict, Option<&'a Rule>, Vec<(&'a Rule, Check)>) {
        let mut tried = Vec::new();
        let tried_here = |r: &&Rule| with_shadow || !r.shadow;
        let order = policy
            .rules
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Deny(_)))
            .chain(
                policy
                    .rules
                    .iter()
                    .filter(|r| !matches!(r.outcome, Outcome::Deny(_))),
            )
            .filter(tried_here);
        for rule in order {
            let check = match &rule.when {
                None => Check::Matched,
                Some(c) => match c.eval(input) {
                    Ok(true) => Check::Matched,
                    Ok(false) => Check::NotMatched,
                    Err(e) => Check::Failed(e),
                },
            };
            let verdict = match &check {
                Check::NotMatched => {
                    tried.push((rule, check));
                    continue;
                }
                Check::Failed(e) => Verdict::Deny {
                    rule: rule.name.clone(),
                    reason: format!(
                        "{e}; a call whose policy cannot be evaluated is denied (rule `{}`, line {})",
                        rule.name, rule.line
                    ),
                    policy_version: self.version.clone(),
                },
                Check::Matched => match &rule.outcome {
                    Outcome::Allow => Verdict::Allow {
                        rule: rule.name.clone(),
                        policy_version: self.version.clone(),
                    },
                    Outcome::Deny(reason) => Verdict::Deny {
                        rule: rule.name.clone(),
                        reason: reason.clone(),
                        policy_version: self.version.clone(),
                    },
                    Outcome::Require(req) => Verdict::RequireApproval(Box::new(req.clone())),
                },
            };
            tried.push((rule, check));
            return (verdict, Some(rule), tried);
        }
        let verdict = Verdict::Deny {
            rule: SmolStr::new_static(NO_MATCH),
            reason: format!(
                "no rule of policy `{}` matches this call, so it is denied; add a rule that allows or requires approval for it",
                policy.name
            ),
            policy_version: self.version.clone(),
        };
        (verdict, None, tried)
    }

    /// Who could approve `req` for this context: per factor, the eligible people, and those
    /// left out because they are the requester or act as the person the call is for.
    pub fn approvers(&self, req: &Requirement, context: &Context) -> Vec<FactorApprovers> {
        req.factors
            .iter()
            .map(|f| {
                let pool: BTreeSet<String> = match &f.from {
                    Eligible::Group(g) => self.directory.members(g).unwrap_or_default(),
                    Eligible::People(p) => p.clone(),
                };
                let mut eligible = Vec::new();
                let mut excluded = Vec::new();
                for id in pool {
                    match context.role_of(&id) {
                        Some(role) => excluded.push((id, role.to_string())),
                        None => eligible.push(id),
                    }
                }
                FactorApprovers {
                    factor: f.to_string(),
                    eligible,
                    excluded,
                }
            })
            .collect()
    }
}

/// The people who could fill one factor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactorApprovers {
    /// The factor, in words (`1 from data-owners`).
    pub factor: String,
    /// Who may approve.
    pub eligible: Vec<String>,
    /// Who may not, and why (`dana`, `the person the request is made on behalf of`).
    pub excluded: Vec<(String, String)>,
}

impl fmt::Display for FactorApprovers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.factor)?;
        if self.eligible.is_empty() {
            f.write_str("nobody")?;
        } else {
            f.write_str(&self.eligible.join(", "))?;
        }
        for (id, why) in &self.excluded {
            write!(f, " (not {id}: {why})")?;
        }
        Ok(())
    }
}
