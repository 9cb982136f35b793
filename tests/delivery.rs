//! Delivery and decision meet: a request decided while a channel is still delivering it is
//! shown decided on that channel too.

mod common;
use std::sync::{Arc, Mutex};

use approvals::{
    ApprovalRequest, Approver, ApproverError, Decision, Delivery, Gate, Principal, Review,
};
use async_trait::async_trait;
use common::*;

/// A slow channel: while it is still delivering, a reviewer on a faster channel approves.
struct Slow {
    resolved: Arc<Mutex<Vec<(String, String)>>>,
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
            .map_err(|e| ApproverError::new(e.to_string()))?;
        Ok(Delivery {
            channel: "slow".into(),
            id: "slow-1".into(),
            data: serde_json::Value::Null,
        })
    }

    async fn resolved(
        &self,
        _request: &ApprovalRequest,
        decision: &Decision,
        delivery: &Delivery,
    ) -> Result<(), ApproverError> {
        self.resolved
            .lock()
            .unwrap()
            .push((delivery.id.clone(), decision.word().to_owned()));
        Ok(())
    }
}

#[tokio::test]
async fn a_request_decided_during_its_delivery_is_shown_decided_there() {
    let resolved = Arc::new(Mutex::new(Vec::new()));
    let slow = Slow {
        resolved: resolved.clone(),
    };
    // Only the slow channel: the mock of the harness is not named by the requirement.
    let policy = approvals::CodePolicy::new().require("export", one_data_owner().channel("slow"));
    let h = Harness::with(|b| b.policy(policy).approver(slow));
    h.run(export(1, h.runs.clone())).await.unwrap();
    assert_eq!(h.runs(), 1);
    assert_eq!(
        *resolved.lock().unwrap(),
        [("slow-1".to_owned(), "approved".to_owned())],
        "the channel that was still delivering shows the outcome"
    );
    // The audit trail holds both, in the order they happened.
    let names = h.event_names();
    let decided = names.iter().position(|n| *n == "decided").unwrap();
    let notified = names.iter().position(|n| *n == "notified").unwrap();
    assert!(decided < notified, "{names:?}");
}
