//! An approval serves only the call it was given for: the same digest, the same parties,
//! the same labels and the same requirement (issue 14, hole 1). A person is the same party
//! under every spelling and identity the directory gives them (hole 2).

mod common;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use approvals::{
    CodePolicy, Context, Error, Factor, Person, Principal, PrincipalKind, Refusal, Requirement,
    SelfRole, StaticDirectory, Verdict, scope,
};
use common::*;

/// `export` under env=staging needs one data owner; under env=prod, two from sre.
fn by_environment() -> CodePolicy {
    CodePolicy::new().rule("export", |_, ctx| {
        Ok(Verdict::require(
            if ctx.labels.get("env").map(String::as_str) == Some("prod") {
                Requirement::new("prod-exports")
                    .factor(Factor::group("sre", 2))
                    .expires_in(EXPIRY)
            } else {
                Requirement::new("staging-exports")
                    .factor(Factor::group("data-owners", 1))
                    .expires_in(EXPIRY)
            },
        ))
    })
}

async fn deferred_as(h: &Harness, ctx: Context, runs: &Arc<AtomicUsize>) -> Result<u32, Error> {
    scope::with_gate(
        h.gate.clone(),
        scope::with_context(ctx, export_deferred(9, runs.clone())),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staging_approval_does_not_run_the_prod_call() {
    let h = Harness::with_policy(by_environment());
    let staging = agent().label("env", "staging");
    let prod = agent().label("env", "prod");

    let first = deferred_as(&h, staging.clone(), &h.runs).await.unwrap_err();
    h.next().await.approve_as("alice").await.unwrap();

    // The identical call, labelled env=prod: a new request under the stronger rule.
    let err = deferred_as(&h, prod, &h.runs).await.unwrap_err();
    let Error::Pending { request_id } = err else {
        panic!("expected a new pending request, got {err}")
    };
    assert_ne!(Some(request_id), first.request_id());
    let fresh = h.gate.request(request_id).await.unwrap().unwrap();
    assert_eq!(fresh.requirement.rule, "prod-exports");
    assert_eq!(
        h.runs(),
        0,
        "the prod call must not run on a staging approval"
    );

    // The staging call itself still runs once on its approval.
    assert_eq!(deferred_as(&h, staging, &h.runs).await.unwrap(), 9);
    assert_eq!(h.runs(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_does_not_serve_the_call_made_on_behalf_of_its_approver() {
    let h = Harness::new();
    let for_dana = agent();
    let for_alice =
        Context::new(Principal::agent("ops-bot")).on_behalf_of(Principal::human("alice"));

    deferred_as(&h, for_dana, &h.runs).await.unwrap_err();
    h.next().await.approve_as("alice").await.unwrap();

    let err = deferred_as(&h, for_alice, &h.runs).await.unwrap_err();
    let Error::Pending { request_id } = err else {
        panic!("expected a new pending request, got {err}")
    };
    let req = h.next().await;
    assert_eq!(req.request.id, request_id);
    // And on that new request alice is a party.
    let refused = req.approve_as("alice").await.unwrap_err();
    assert!(matches!(
        refused.refusal(),
        Some(Refusal::SelfApproval {
            role: SelfRole::OnBehalfOf,
            ..
        })
    ));
    assert_eq!(h.runs(), 0);
}

/// dana, with her Slack id and email, is a data owner.
fn with_dana() -> StaticDirectory {
    directory().person(
        Person::new("dana", PrincipalKind::Human)
            .slack("U0DANA")
            .email("Dana@Example.com"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dana_cannot_approve_a_call_made_for_her_under_another_name() {
    for name in [
        "Dana",
        "DANA",
        "ｄａｎａ",
        "U0DANA",
        "dana@example.com",
        "DANA@EXAMPLE.COM",
    ] {
        let h = Harness::with(|b| b.policy(policy()).directory(with_dana()));
        let ctx = Context::new(Principal::agent("ops-bot")).on_behalf_of(Principal::human(name));
        let runs = h.runs.clone();
        let call = tokio::spawn(scope::with_gate(
            h.gate.clone(),
            scope::with_context(ctx, export(10, runs)),
        ));
        let req = h.next().await;
        assert_eq!(
            req.request
                .context
                .on_behalf_of
                .as_ref()
                .map(|p| p.id.as_str()),
            Some("dana"),
            "{name}: the party is recorded as the directory names her"
        );
        let err = req.approve_as("dana").await.unwrap_err();
        assert!(
            matches!(
                err.refusal(),
                Some(Refusal::SelfApproval {
                    role: SelfRole::OnBehalfOf,
                    ..
                })
            ),
            "{name}: {err}"
        );
        // Nor under another spelling of her own name as reviewer.
        let err = req.approve_as("Dana").await.unwrap_err();
        assert!(
            matches!(err.refusal(), Some(Refusal::SelfApproval { .. })),
            "{name}: {err}"
        );
        assert_eq!(h.runs(), 0);
        req.approve_as("bob").await.unwrap();
        assert_eq!(call.await.unwrap().unwrap(), 10);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_with_whitespace_or_invisible_characters_are_refused_before_judging() {
    for name in [
        "dana ",
        " dana",
        "da\u{200b}na",
        "dana\u{200d}",
        "da\tna",
        "",
        "da\u{202e}na",
    ] {
        let h = Harness::new();
        let ctx = Context::new(Principal::agent("ops-bot")).on_behalf_of(Principal::human(name));
        let err = scope::with_gate(
            h.gate.clone(),
            scope::with_context(ctx, export(10, h.runs.clone())),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, Error::Context(_)), "{name:?}: {err}");
        assert_eq!(h.runs(), 0);
        assert!(h.records().is_empty(), "{name:?}: nothing was judged");
    }
    // The requester too.
    let h = Harness::new();
    let ctx = Context::new(Principal::agent("ops-bot\u{feff}"));
    let err = scope::with_gate(
        h.gate.clone(),
        scope::with_context(ctx, export(1, h.runs.clone())),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("invisible format character"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_context_fields_are_refused() {
    let h = Harness::new();
    let ctx = agent().reason("x".repeat(100_000));
    let err = scope::with_gate(
        h.gate.clone(),
        scope::with_context(ctx, export(1, h.runs.clone())),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Context(_)), "{err}");
    let mut ctx = agent();
    for i in 0..100 {
        ctx = ctx.label(format!("k{i}"), "v");
    }
    let err = scope::with_gate(
        h.gate.clone(),
        scope::with_context(ctx, export(1, h.runs.clone())),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("labels"), "{err}");
    assert_eq!(h.runs(), 0);
}

/// The gate borrows the caller's context (its scope's, or its own default) and copies it
/// only when the directory renames a party: an allowed call made under another of dana's
/// names is judged and recorded as dana, for a scoped context and for the gate's default,
/// and the context the caller holds still says what the caller wrote.
#[tokio::test]
async fn an_allowed_call_under_another_name_is_judged_and_recorded_as_the_person() {
    // Allowed only for dana herself, by the name the directory gives her.
    let as_dana = || {
        CodePolicy::new().rule("export", |_, ctx| {
            Ok(match ctx.requester.id.as_str() {
                "dana" => Verdict::allow("dana-exports"),
                other => Verdict::deny("not-dana", format!("requester {other}")),
            })
        })
    };
    let actors = |h: &Harness| {
        h.records()
            .iter()
            .map(|r| r.event.actor.as_ref().map(|p| p.id.to_string()))
            .collect::<Vec<_>>()
    };

    // In a scope.
    let h = Harness::with(|b| b.policy(as_dana()).directory(with_dana()));
    let ctx = Context::new(Principal::human("U0DANA"));
    let runs = h.runs.clone();
    let seen = scope::with_gate(
        h.gate.clone(),
        scope::with_context(ctx, async move {
            let out = export(3, runs).await;
            (
                out,
                scope::current_context().map(|c| c.requester.id.to_string()),
            )
        }),
    )
    .await;
    assert_eq!(seen.0.unwrap(), 3);
    assert_eq!(
        seen.1.as_deref(),
        Some("U0DANA"),
        "the caller's context is its own"
    );
    assert_eq!(h.event_names(), ["allowed"]);
    assert_eq!(actors(&h), [Some("dana".to_owned())]);
    assert_eq!(h.runs(), 1);

    // The gate's default.
    let h = Harness::with(|b| {
        b.policy(as_dana())
            .directory(with_dana())
            .default_context(Context::new(Principal::human("dana@example.com")))
    });
    let runs = h.runs.clone();
    assert_eq!(
        scope::with_gate(h.gate.clone(), export(4, runs))
            .await
            .unwrap(),
        4
    );
    assert_eq!(actors(&h), [Some("dana".to_owned())]);
    assert_eq!(
        h.gate.default_context().map(|c| c.requester.id.as_str()),
        Some("dana@example.com"),
        "the gate's default is kept as it was given"
    );
    assert_eq!(h.runs(), 1);
}
