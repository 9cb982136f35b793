//! Re-attachment (rule: an approval is good for one run): which requests an identical call
//! joins, state by state, against a table written out by hand.

use std::time::Duration;

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
        let who = r.context.requester.clone();
        assert_eq!(attachable(&r, &who, &r.action.digest), expected, "{name}");
        // Never for another requester, or for other arguments.
        assert!(
            !attachable(&r, &Principal::agent("other-bot"), &r.action.digest),
            "{name}"
        );
        let other = Action::builder("export", "exports")
            .arg("limit", &6)
            .build()
            .unwrap();
        assert!(!attachable(&r, &who, &other.digest), "{name}");
    }
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
