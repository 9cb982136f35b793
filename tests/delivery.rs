//! Delivery and review meet: a request reviewed or decided while a channel is still
//! delivering it is shown reviewed and decided on that channel too, each thing once.

mod common;

use approvals::{
    ApprovalRequest, Approver, ApproverError, Decision, Delivery, Factor, Gate, Principal,
    RecordedReview, Requirement, Review,
};
use async_trait::async_trait;
use common::*;
use tokio::sync::watch;

/// A slow channel: while it is still delivering, a reviewer on a faster channel approves.
/// It logs what it was asked to show, in order.
struct Slow {
    shown: watch::Sender<Vec<String>>,
}

#[async_trait]
impl Approver for Slow {
    fn name(&self) -> &str {
        "slow"
    }

    async fn notify(
        &self,
        request: &ApprovalRequest,
        gate: &Gate,
    ) -> Result<Delivery, ApproverError> {
        let review = Review::approve(request, Principal::human("alice"), gate.clock().now());
        gate.submit_review(review)
            .await
            .map_err(ApproverError::from_cause)?;
        Ok(Delivery {
            channel: "slow".into(),
            id: "slow-1".into(),
            data: serde_json::Value::Null,
        })
    }

    async fn reviewed(
        &self,
        _request: &ApprovalRequest,
        review: &RecordedReview,
        delivery: &Delivery,
    ) -> Result<(), ApproverError> {
        let line = format!("{}: reviewed by {}", delivery.id, review.review.reviewer.id);
        self.shown.send_modify(|s| s.push(line));
        Ok(())
    }

    async fn resolved(
        &self,
        _request: &ApprovalRequest,
        decision: &Decision,
        delivery: &Delivery,
    ) -> Result<(), ApproverError> {
        let line = format!("{}: {}", delivery.id, decision.word());
        self.shown.send_modify(|s| s.push(line));
        Ok(())
    }
}

fn slow() -> (Slow, watch::Receiver<Vec<String>>) {
    let shown = watch::Sender::new(Vec::new());
    let seen = shown.subscribe();
    (Slow { shown }, seen)
}

#[tokio::test]
async fn a_request_decided_during_its_delivery_is_shown_reviewed_and_decided_there() {
    let (slow, shown) = slow();
    // Only the slow channel: the mock of the harness is not named by the requirement.
    let policy = approvals::CodePolicy::new().require("export", one_data_owner().channel("slow"));
    let h = Harness::with(|b| b.policy(policy).approver(slow));
    h.run(export(1, h.runs.clone())).await.unwrap();
    assert_eq!(h.runs(), 1);
    assert_eq!(
        *shown.borrow(),
        ["slow-1: reviewed by alice", "slow-1: approved"],
        "the channel that was still delivering shows the review and the outcome"
    );
    // The audit trail holds both, in the order they happened.
    let names = h.event_names();
    let decided = names.iter().position(|n| *n == "decided").unwrap();
    let notified = names.iter().position(|n| *n == "notified").unwrap();
    assert!(decided < notified, "{names:?}");
}

#[tokio::test]
async fn a_review_during_delivery_and_one_after_are_each_shown_once() {
    let (slow, mut shown) = slow();
    // Two data owners: alice approves while the channel delivers, bob once it has.
    let two = Requirement::new("two-data-owners")
        .factor(Factor::group("data-owners", 2))
        .expires_in(EXPIRY)
        .channel("slow");
    let policy = approvals::CodePolicy::new().require("export", two);
    let h = Harness::with(|b| b.policy(policy).approver(slow));
    let call = h.spawn(export(1, h.runs.clone()));
    // Delivered, and alice's review shown there: the request still waits for bob.
    let delivered = shown.wait_for(|s| !s.is_empty());
    tokio::time::timeout(std::time::Duration::from_secs(30), delivered)
        .await
        .expect("alice's review, made during the delivery, is shown on the channel")
        .unwrap();
    assert_eq!(*shown.borrow(), ["slow-1: reviewed by alice"]);
    let pending = h.gate.pending().await.unwrap().remove(0);
    assert_eq!(pending.deliveries.len(), 1);
    let bob = Review::approve(&pending, Principal::human("bob"), h.gate.clock().now());
    h.gate.submit_review(bob).await.unwrap();
    call.await.unwrap().unwrap();
    assert_eq!(
        *shown.borrow(),
        [
            "slow-1: reviewed by alice",
            "slow-1: reviewed by bob",
            "slow-1: approved"
        ]
    );
}
