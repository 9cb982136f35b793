//! The same 100 policies judged by an `approvals.toml` (CEL conditions, ordered rules) and by
//! Cedar (`cedar-policy`), in one run.
//!
//! Cedar has no "require approval" outcome and no rule order, so each rule is a `permit`
//! whose annotations carry what approvals needs (`@outcome("deny" | "allow" | "require")`,
//! `@factor("group:count")`, `@order("n")`); the verdict is the satisfied policy that comes
//! first in approvals' order (denies first, then by position). Both sides build their inputs
//! from the call for every evaluation, as a gate would.
//!
//! `cargo bench --manifest-path benches/cedar-compare/Cargo.toml`

use std::hint::black_box;
use std::str::FromStr;
use std::time::{Duration, Instant};

use approvals_core::{Action, Context, PolicyEngine};
use approvals_policy::FilePolicy;
use cedar_policy::{Authorizer, Context as CedarContext, Entities, EntityUid, PolicySet, Request};
use criterion::{Criterion, criterion_group, criterion_main};

#[path = "../../../crates/approvals-policy/benches/common/policy_100.rs"]
mod policy_100;
use policy_100::{call, policy_file};

const POLICIES: usize = 100;

fn cedar_policies() -> String {
    let mut src = String::new();
    for i in 0..POLICIES {
        src.push_str(&format!(
            r#"
@id("p{i:03}/no-bulk-in-prod") @outcome("deny") @order("0")
@reason("bulk exports in prod go through the pipeline")
permit(principal, action == Action::"p{i:03}", resource)
when {{ context.args.limit > 100000 && context.labels.env == "prod" }};

@id("p{i:03}/tiny-runs") @outcome("allow") @order("1")
permit(principal, action == Action::"p{i:03}", resource)
when {{ context.args.limit <= 10 }};

@id("p{i:03}/sre-or-staging") @outcome("require") @factor("sre:1") @order("2")
permit(principal, action == Action::"p{i:03}", resource)
when {{ principal in Group::"sre" || context.args.env == "staging" }};

@id("p{i:03}/owner") @outcome("require") @factor("data-owners:1") @order("3")
permit(principal, action == Action::"p{i:03}", resource);
"#
        ));
    }
    src
}

/// What a verdict comes to, for comparing the two engines.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Allow(String),
    Deny(String),
    Require(String),
}

struct Cedar {
    policies: PolicySet,
    authorizer: Authorizer,
}

impl Cedar {
    fn new() -> Self {
        Self {
            policies: PolicySet::from_str(&cedar_policies()).unwrap_or_else(|e| panic!("{e}")),
            authorizer: Authorizer::new(),
        }
    }

    /// Only the rules of one policy: what a deployment that slices its Cedar policy set per
    /// action (as approvals indexes by policy name) would authorize against.
    fn sliced(&self, policy: &str) -> Self {
        let mut set = PolicySet::new();
        for p in self.policies.policies() {
            if p.annotation("id")
                .is_some_and(|id| id.starts_with(&format!("{policy}/")))
            {
                set.add(p.clone()).unwrap_or_else(|e| panic!("{e}"));
            }
        }
        Self {
            policies: set,
            authorizer: Authorizer::new(),
        }
    }

    /// Judges a call the way a gate would have to with Cedar: build the entities and the
    /// context from the call, authorize, then pick the first satisfied rule in order.
    fn judge(&self, action: &Action, ctx: &Context) -> Option<Outcome> {
        let (request, entities) = self.inputs(action, ctx)?;
        self.decide(&request, &entities)
    }

    fn inputs(&self, action: &Action, ctx: &Context) -> Option<(Request, Entities)> {
        let principal = EntityUid::from_str(&format!("User::{:?}", ctx.requester.id)).ok()?;
        let entities = Entities::from_json_value(
            serde_json::json!([
                { "uid": { "type": "User", "id": ctx.requester.id }, "attrs": {}, "parents": [] },
                { "uid": { "type": "Group", "id": "sre" }, "attrs": {}, "parents": [] },
            ]),
            None,
        )
        .ok()?;
        let context = CedarContext::from_json_value(
            serde_json::json!({ "args": action.args, "labels": ctx.labels }),
            None,
        )
        .ok()?;
        let request = Request::new(
            principal,
            EntityUid::from_str(&format!("Action::{:?}", action.policy)).ok()?,
            EntityUid::from_str("Resource::\"call\"").ok()?,
            context,
            None,
        )
        .ok()?;
        Some((request, entities))
    }

    /// Authorizes prepared inputs and picks the first satisfied rule in approvals' order.
    fn decide(&self, request: &Request, entities: &Entities) -> Option<Outcome> {
        let response = self
            .authorizer
            .is_authorized(request, &self.policies, entities);
        let mut satisfied: Vec<(u8, u8, &str, &str)> = response
            .diagnostics()
            .reason()
            .filter_map(|id| {
                let p = self.policies.policy(id)?;
                let outcome = p.annotation("outcome")?;
                let order: u8 = p.annotation("order")?.parse().ok()?;
                let first = u8::from(outcome != "deny");
                Some((first, order, outcome, p.annotation("id")?))
            })
            .collect();
        satisfied.sort_unstable();
        let (_, _, outcome, id) = satisfied.first()?;
        let rule = id.rsplit('/').next().unwrap_or(id).to_owned();
        Some(match *outcome {
            "deny" => Outcome::Deny(rule),
            "allow" => Outcome::Allow(rule),
            _ => Outcome::Require(rule),
        })
    }
}

fn ours(
    rt: &tokio::runtime::Runtime,
    file: &FilePolicy,
    action: &Action,
    ctx: &Context,
) -> Option<Outcome> {
    match rt.block_on(file.evaluate(action, ctx)).ok()? {
        approvals_core::Verdict::Allow { rule, .. } => Some(Outcome::Allow(rule)),
        approvals_core::Verdict::Deny { rule, .. } => Some(Outcome::Deny(rule)),
        approvals_core::Verdict::RequireApproval(r) => Some(Outcome::Require(r.rule)),
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let file =
        FilePolicy::from_source("bench.toml", &policy_file()).unwrap_or_else(|e| panic!("{e}"));
    let cedar = Cedar::new();

    // Both engines must agree before their speed means anything.
    for (limit, env) in [
        (5000, "prod"),
        (5, "prod"),
        (500_000, "prod"),
        (500, "staging"),
    ] {
        let (a, x) = call(limit, env);
        assert_eq!(
            ours(&rt, &file, &a, &x),
            cedar.judge(&a, &x),
            "limit {limit} env {env}"
        );
    }

    let (action, ctx) = call(5000, "prod");
    let mut group = c.benchmark_group("policy_100");
    group.bench_function("approvals_toml_cel", |b| {
        b.iter(|| black_box(ours(&rt, &file, black_box(&action), black_box(&ctx))))
    });
    group.bench_function("cedar_policy", |b| {
        b.iter(|| black_box(cedar.judge(black_box(&action), black_box(&ctx))))
    });
    let sliced = cedar.sliced("p050");
    assert_eq!(sliced.judge(&action, &ctx), cedar.judge(&action, &ctx));
    group.bench_function("cedar_policy_sliced_to_the_action", |b| {
        b.iter(|| black_box(sliced.judge(black_box(&action), black_box(&ctx))))
    });
    let (request, entities) = cedar
        .inputs(&action, &ctx)
        .unwrap_or_else(|| panic!("inputs"));
    group.bench_function("cedar_policy_inputs_prebuilt", |b| {
        b.iter(|| black_box(cedar.decide(black_box(&request), black_box(&entities))))
    });
    group.finish();

    let n = 2_000u32;
    let time = |f: &dyn Fn() -> Option<Outcome>| {
        let start = Instant::now();
        for _ in 0..n {
            black_box(f());
        }
        start.elapsed()
    };
    let a = time(&|| ours(&rt, &file, &action, &ctx));
    let k = time(&|| cedar.judge(&action, &ctx));
    let s = time(&|| sliced.judge(&action, &ctx));
    let per = |d: Duration| d.as_nanos() as f64 / f64::from(n);
    println!(
        "policy_100: approvals.toml (CEL) {:.0} ns/call; cedar-policy, whole set {:.0} ns/call (ratio cedar/approvals {:.1}x); sliced to the action {:.0} ns/call ({:.2}x)",
        per(a),
        per(k),
        per(k) / per(a),
        per(s),
        per(s) / per(a)
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
