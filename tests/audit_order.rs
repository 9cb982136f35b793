//! The audit trail of each request reads in the order things happened: a decision is
//! recorded before the body it permits starts, whichever task records what.

mod common;
use std::collections::BTreeMap;

use common::*;

const ORDER: [&str; 6] = [
    "requested",
    "notified",
    "review_accepted",
    "decided",
    "started",
    "finished",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_reads_in_causal_order() {
    let h = Harness::new();
    for i in 0..200 {
        let call = h.spawn(export(i, h.runs.clone()));
        h.next().await.approve_as("alice").await.unwrap();
        assert_eq!(call.await.unwrap().unwrap(), i);
    }
    let mut per_request: BTreeMap<_, Vec<&str>> = BTreeMap::new();
    let records = h.records();
    for r in &records {
        per_request
            .entry(r.event.request_id)
            .or_default()
            .push(r.event.name());
    }
    assert_eq!(per_request.len(), 200);
    for (id, names) in per_request {
        assert_eq!(names, ORDER, "request {id:?}");
    }
    // Sequence numbers are gap-free and in order.
    assert!(records.iter().enumerate().all(|(i, r)| r.seq == i as u64));
}
