//! `approvals policy check` and `approvals policy explain`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use approvals_core::{Action, Context, Directory, Principal, PrincipalKind, Timestamp, Verdict};
use approvals_policy::{Check, FilePolicy, LoadError, PolicySet};
use clap::Subcommand;
use serde_json::json;

use crate::output::{Failure, Output};

#[derive(Subcommand)]
pub(crate) enum PolicyCommand {
    /// Check a policy file; print every error with its line and column.
    Check {
        /// The policy file (approvals.toml).
        file: PathBuf,
        /// The program's gated functions (`approvals::registry::manifest()` writes it):
        /// also check that every `args.NAME` a condition reads is an argument the functions
        /// gated by its policy record.
        #[arg(long, value_name = "MANIFEST")]
        functions: Option<PathBuf>,
    },
    /// Show how a policy file judges one call: the rules tried, the one that decides, the
    /// outcome, and who could approve.
    Explain {
        /// The policy file.
        file: PathBuf,
        #[command(flatten)]
        call: Call,
    },
}

/// The call `explain` judges.
#[derive(clap::Args)]
pub(crate) struct Call {
    /// The action's name (the gated function, e.g. `export_customers`).
    #[arg(long)]
    action: String,
    /// The policy judging it (default: the policy named like the action, with `_` or `-`).
    #[arg(long)]
    policy: Option<String>,
    /// The call's arguments, as a JSON object.
    #[arg(long, default_value = "{}")]
    args: String,
    /// Who calls.
    #[arg(long)]
    requester: String,
    /// The person the requester acts for.
    #[arg(long)]
    on_behalf_of: Option<String>,
    /// A context label, `key=value`; repeat for more.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// What started the work.
    #[arg(long)]
    trigger: Option<String>,
    /// Judge it as at this time (RFC 3339, e.g. 2026-12-04T18:30:00Z), for conditions on
    /// `now`; default: now.
    #[arg(long, value_name = "TIMESTAMP")]
    at: Option<Timestamp>,
}

pub(crate) fn run(out: &Output, cmd: PolicyCommand) -> Result<(), Failure> {
    match cmd {
        PolicyCommand::Check { file, functions } => check(out, &file, functions.as_deref()),
        PolicyCommand::Explain { file, call } => explain(out, &file, &call),
    }
}

fn load(out: &Output, file: &PathBuf) -> Result<FilePolicy, Failure> {
    // The `[server]` table is checked as `approvals serve` reads it, in the same parse.
    match FilePolicy::load_with::<crate::serve::ServerConfig>(file) {
        Ok((p, _)) => Ok(p),
        Err(LoadError::Invalid(d)) => {
            let n = d.errors.len();
            if out.json() {
                let errors: Vec<_> = d
                    .errors
                    .iter()
                    .map(|e| {
                        json!({"line": e.line, "column": e.column, "message": e.message, "hint": e.hint})
                    })
                    .collect();
                out.line(&json!({"ok": false, "file": d.file, "errors": errors}).to_string());
            } else {
                anstream::eprintln!("{d}");
            }
            Err(Failure {
                message: format!(
                    "{}: {n} error{}",
                    file.display(),
                    if n == 1 { "" } else { "s" }
                ),
                seq: None,
            })
        }
        Err(e) => Err(e.into()),
    }
}

fn check(out: &Output, file: &PathBuf, functions: Option<&std::path::Path>) -> Result<(), Failure> {
    let policy = load(out, file)?;
    if let Some(manifest) = functions {
        let text = std::fs::read_to_string(manifest)
            .map_err(|e| format!("{}: {e}", manifest.display()))?;
        let uses: Vec<approvals_core::registry::FunctionUse> = serde_json::from_str(&text)
            .map_err(|e| format!("{}: not a functions manifest: {e}", manifest.display()))?;
        let unknown = approvals_core::registry::unknown_arguments(&uses, &policy);
        if !unknown.is_empty() {
            for u in &unknown {
                anstream::eprintln!("{}: error: {u}", file.display());
            }
            return Err(format!(
                "{}: {} condition{} read arguments the gated functions do not have",
                file.display(),
                unknown.len(),
                if unknown.len() == 1 { "" } else { "s" }
            )
            .into());
        }
    }
    let set = policy.current();
    let dir = set.directory();
    let people = dir.people().count();
    let groups = dir.groups().count();
    out.ok(
        &format!(
            "{}: {} policies, {people} people, {groups} groups (version {})",
            file.display(),
            set.names().len(),
            &set.version()[..12]
        ),
        json!({
            "ok": true,
            "file": file.display().to_string(),
            "policies": set.names(),
            "people": people,
            "groups": groups,
            "version": set.version(),
        }),
    );
    Ok(())
}

/// The policy for `action` when none is named: the one named like the action's last path
/// segment, as written or with `_` and `-` swapped.
fn policy_for(set: &PolicySet, action: &str) -> Result<String, Failure> {
    let last = action.rsplit("::").next().unwrap_or(action);
    let candidates = [
        last.to_owned(),
        last.replace('_', "-"),
        last.replace('-', "_"),
    ];
    candidates
        .into_iter()
        .find(|c| set.policy(c).is_some())
        .ok_or_else(|| {
            let names: Vec<String> = set.names().into_iter().collect();
            Failure::from(format!(
                "no policy is named like action `{action}`; pass --policy (policies: {})",
                names.join(", ")
            ))
        })
}

fn principal(dir: &dyn Directory, id: &str, default: PrincipalKind) -> Principal {
    let kind = dir.person(id).map_or(default, |p| p.kind);
    Principal::new(id, kind)
}

fn explain(out: &Output, file: &PathBuf, call: &Call) -> Result<(), Failure> {
    let policy = load(out, file)?;
    let set = policy.current();
    let dir = set.directory();
    let policy_name = match &call.policy {
        Some(p) => p.clone(),
        None => policy_for(&set, &call.action)?,
    };
    let args: serde_json::Value =
        serde_json::from_str(&call.args).map_err(|e| format!("--args is not valid JSON: {e}"))?;
    let serde_json::Value::Object(args) = args else {
        return Err("--args must be a JSON object, e.g. '{\"limit\": 5000}'".into());
    };
    let mut builder = Action::builder(&call.action, &policy_name);
    for (k, v) in &args {
        builder = builder.arg(k, v);
    }
    let action = builder.build()?;
    let mut context = Context::new(principal(dir, &call.requester, PrincipalKind::Agent));
    if let Some(o) = &call.on_behalf_of {
        context = context.on_behalf_of(principal(dir, o, PrincipalKind::Human));
    }
    if let Some(t) = &call.trigger {
        context = context.trigger(t.clone());
    }
    for l in &call.labels {
        let (k, v) = l
            .split_once('=')
            .ok_or_else(|| format!("--label takes key=value, got `{l}`"))?;
        context = context.label(k, v);
    }
    let Some(eval) = set.evaluate(&action, &context, call.at.unwrap_or_else(Timestamp::now)) else {
        let names: Vec<String> = set.names().into_iter().collect();
        return Err(format!(
            "policy `{policy_name}` is not in {}; policies: {}",
            file.display(),
            names.join(", ")
        )
        .into());
    };
    let mut outcome = json!({});
    let mut lines = vec![format!(
        "policy `{policy_name}` (version {}) for {} by {}{}",
        &set.version()[..12],
        call.action,
        context.requester.id,
        context
            .on_behalf_of
            .as_ref()
            .map_or_else(String::new, |p| format!(" on behalf of {}", p.id))
    )];
    lines.push("rules tried (deny rules first, then in order):".into());
    for (rule, check) in &eval.tried {
        let (name, line) = (&rule.name, rule.line);
        let result = match check {
            Check::Matched => "matches".to_owned(),
            Check::NotMatched => "no match".to_owned(),
            Check::Failed(e) => format!("error: {e}"),
        };
        lines.push(format!("  line {line:>3}  {name:<32} {result}"));
    }
    let decided = eval.tried.last().filter(|(_, c)| *c != Check::NotMatched);
    let why = match decided.map(|(rule, _)| *rule) {
        Some(rule) => match &rule.when {
            None => format!(
                "rule `{}` has no condition, so it matches every call",
                rule.name
            ),
            Some(c) => format!("rule `{}`: `{}` holds", rule.name, c.source()),
        },
        None => "no rule matched".to_owned(),
    };
    match &eval.verdict {
        Verdict::Allow { rule, .. } => {
            lines.push(format!("outcome: ALLOW by rule `{rule}`"));
            lines.push(format!("why: {why}"));
            outcome = json!({"outcome": "allow", "rule": rule});
        }
        Verdict::Deny { rule, reason, .. } => {
            lines.push(format!("outcome: DENY by rule `{rule}`: {reason}"));
            lines.push(format!("why: {why}"));
            outcome = json!({"outcome": "deny", "rule": rule, "reason": reason});
        }
        Verdict::RequireApproval(req) => {
            let factors: Vec<String> = req.factors.iter().map(ToString::to_string).collect();
            lines.push(format!(
                "outcome: REQUIRE APPROVAL by rule `{}`: {}, expires in {}",
                req.rule,
                factors.join(" and "),
                approvals_core::clock::human(req.expires_in)
            ));
            lines.push(format!("why: {why}"));
            let approvers = set.approvers(req, &context);
            lines.push("who could approve:".into());
            for a in &approvers {
                lines.push(format!("  {a}"));
            }
            let ids: BTreeSet<String> = approvers
                .iter()
                .flat_map(|a| a.eligible.iter().cloned())
                .chain(
                    approvers
                        .iter()
                        .flat_map(|a| a.excluded.iter().map(|(id, _)| id.clone())),
                )
                .collect();
            let candidates: BTreeMap<String, BTreeSet<String>> = ids
                .into_iter()
                .map(|id| {
                    let g = dir.groups_of(&id);
                    (id, g)
                })
                .collect();
            let feasible = approvals_core::tally::feasible(req, &context, &candidates);
            if let Err(reason) = &feasible {
                lines.push(format!("the gate denies this call at once: {reason}"));
            }
            if !req.grants.is_none() {
                lines.push(format!(
                    "standing grants allowed: up to {} uses over {}",
                    req.grants.max_uses,
                    approvals_core::clock::human(req.grants.max_duration)
                ));
            }
            outcome = json!({
                "outcome": "require_approval",
                "rule": req.rule,
                "factors": factors,
                "expires_in": approvals_core::clock::human(req.expires_in),
                "approvers": approvers.iter().map(|a| json!({
                    "factor": a.factor,
                    "eligible": a.eligible,
                    "excluded": a.excluded.iter().map(|(id, why)| json!({"id": id, "why": why})).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
                "denied_at_once": feasible.err(),
            });
        }
    }
    if set.policy(&policy_name).is_some_and(|p| p.shadow) {
        lines.push(format!(
            "policy `{policy_name}` is in shadow mode: it enforces nothing, the call runs"
        ));
    }
    if let Some(shadow) = &eval.shadow {
        let detail = shadow.detail();
        let would = match shadow.would() {
            "allow" => "ALLOW".to_owned(),
            "deny" => format!("DENY: {detail}"),
            _ => format!("REQUIRE APPROVAL: {detail}"),
        };
        lines.push(format!(
            "shadow: rule `{}` (mode = \"shadow\", recorded, not enforced) would have decided {would}",
            shadow.rule
        ));
        outcome["shadow"] = json!({
            "rule": shadow.rule,
            "would": shadow.would(),
            "detail": detail,
        });
    }
    if out.json() {
        outcome["policy"] = json!(policy_name);
        outcome["version"] = json!(set.version());
        outcome["tried"] = eval
            .tried
            .iter()
            .map(|(rule, check)| {
                json!({"rule": rule.name, "line": rule.line, "result": match check {
                    Check::Matched => "matched".to_owned(),
                    Check::NotMatched => "no_match".to_owned(),
                    Check::Failed(e) => format!("error: {e}"),
                }})
            })
            .collect();
        out.line(&outcome.to_string());
    } else {
        for l in lines {
            out.line(&l);
        }
    }
    Ok(())
}
