//! Re-attachment (rule: an approval is good for one run): which requests an identical call
//! joins, state by state, against a table written out by hand.

use std::time::Duration;

use approvals_core::RequestId;
use approvals_core::tally::{self, attachable};
use approvals_core::{
    Action, ApprovalRequest, Context, Decision, Execution, Factor, Principal, RequestState,
    Requirement, Timestamp,
};

fn request() -> ApprovalRequest {
    let action = Action::builder("export", "exports")
        .arg("limit", &5)
        .build()
        .unwrap();
    let requirement = Requirement::new("r")
        .factor(Factor::group("sre", 1))
        .expires_in(Duration::from_secs(60));
    ApprovalRequest::new(
        action,
        Context::new(Principal::agent("ops-bot")),
        requirement,
        Timestamp::from_unix_micros(0),
    )
}

fn approved(execution: Execution) -> ApprovalRequest {
    let mut r = request();
    let at = Timestamp::from_unix_micros(1);
    r.state = RequestState::Decided(Decision::Approved { at, by: vec![] });
    r.execution = execution;
    r
}

#[test]
fn an_identical_call_joins_open_unfinished_and_unreported_requests_only() {
    let at = Timestamp::from_unix_micros(1);
    let mut denied = request();
    denied.state = RequestState::Decided(Decision::Denied {
        at,
        by: Principal::human("bob"),
        reason: None,
    });
    let mut denied_reported = denied.clone();
    denied_reported.outcome_reported = true;
    let cases = [
        ("pending", request(), true),
        (
            "approved, permit unused",
            approved(Execution::NotStarted),
            true,
        ),
        // Started and never finished: running elsewhere or in doubt. Joining it means the
        // identical call is refused (AlreadyRan) rather than asking for a second run.
        (
            "approved, started, no finish (in doubt)",
            approved(Execution::Started { at }),
            true,
        ),
        (
            "approved, finished",
            approved(Execution::Finished {
                started_at: at,
                at,
                ok: true,
            }),
            false,
        ),
        ("denied, caller not yet told", denied, true),
        ("denied, caller told", denied_reported, false),
    ];
    for (name, r, expected) in cases {
        assert_eq!(attachable(&r, &request()), expected, "{name}");
        // Never for another requester, or for other arguments.
        let mut other_bot = request();
        other_bot.context.requester = Principal::agent("other-bot");
        assert!(!attachable(&r, &other_bot), "{name}");
        let mut other_args = request();
        other_args.action = Action::builder("export", "exports")
            .arg("limit", &6)
            .build()
            .unwrap();
        assert!(!attachable(&r, &other_args), "{name}");
    }
}

/// Hole 1 of the attack (issue 14): an approval carried over to the identical call made in
/// another context or judged under a stronger requirement. Each change below makes the new
/// call a different call; only spelling differences of the same party do not.
#[test]
fn an_approval_never_carries_over_to_other_parties_labels_or_terms() {
    let at = Timestamp::from_unix_micros(1);
    let mut approved = request();
    approved.context = Context::new(Principal::agent("ops-bot"))
        .on_behalf_of(Principal::human("dana"))
        .label("env", "staging");
    approved.state = RequestState::Decided(Decision::Approved {
        at,
        by: vec![Principal::human("alice")],
    });
    let same = || {
        let mut r = request();
        r.id = RequestId::generate();
        r.context = approved.context.clone();
        r
    };
    assert!(attachable(&approved, &same()), "the same call joins");

    let mut spelled = same();
    spelled.context.requester = Principal::agent("Ops-Bot");
    spelled.context.on_behalf_of = Some(Principal::human("DANA"));
    assert!(
        attachable(&approved, &spelled),
        "another spelling is the same party"
    );

    let cases: Vec<(&str, ApprovalRequest)> = vec![
        ("labelled env=prod", {
            let mut r = same();
            r.context.labels.insert("env".into(), "prod".into());
            r
        }),
        ("on behalf of its approver", {
            let mut r = same();
            r.context.on_behalf_of = Some(Principal::human("alice"));
            r
        }),
        ("on behalf of nobody", {
            let mut r = same();
            r.context.on_behalf_of = None;
            r
        }),
        ("a stronger factor", {
            let mut r = same();
            r.requirement.factors = vec![Factor::group("sre", 2)];
            r
        }),
        ("another rule", {
            let mut r = same();
            r.requirement.rule = "prod-exports".into();
            r
        }),
        ("another policy version", {
            let mut r = same();
            r.requirement.policy_version = "b".repeat(64).into();
            r
        }),
    ];
    for (name, fresh) in cases {
        assert!(!attachable(&approved, &fresh), "{name}: must ask again");
    }
}

/// A request cancelled because its caller was told it failed to start (delivery or audit
/// failure) is not joined by the next identical call: it asks again.
#[test]
fn a_request_abandoned_at_start_is_not_joined() {
    let mut r = request();
    let d = tally::abandon(
        &mut r,
        "could not deliver on slack",
        Timestamp::from_unix_micros(1),
    );
    assert!(matches!(d, Some(Decision::Cancelled { .. })));
    assert!(!attachable(&r, &request()));
    // A cancellation nobody has been told of yet is still learnt by re-attaching.
    let mut c = request();
    tally::cancel(&mut c, None, "withdrawn", Timestamp::from_unix_micros(1));
    assert!(attachable(&c, &request()));
}

#[test]
fn a_started_call_takes_no_second_permit() {
    let mut r = approved(Execution::NotStarted);
    let at = Timestamp::from_unix_micros(2);
    assert!(tally::start(&mut r, at).is_ok());
    assert_eq!(
        tally::start(&mut r, at),
        Err(tally::PermitRefusal::AlreadyUsed),
        "in doubt or running: never a second run"
    );
}

#[test]
fn every_change_through_the_rules_moves_the_version_and_only_a_change_does() {
    // A delivery is recorded in any state, and moves the version (the store wakes waiters).
    for mut r in [request(), approved(Execution::NotStarted)] {
        let before = r.version;
        tally::record_delivery(
            &mut r,
            approvals_core::request::Delivery {
                channel: "slack".into(),
                id: "1700000000.000100".into(),
                data: serde_json::Value::Null,
            },
        );
        assert_eq!((r.version, r.deliveries.len()), (before + 1, 1));
    }
    // Reporting an outcome changes a decided-against request once, and nothing else.
    let mut pending = request();
    let before = pending.version;
    tally::report(&mut pending);
    assert_eq!(
        pending.version, before,
        "a pending request has nothing to report"
    );
}
