//! Many calls that need approval arriving at once: a bounded number make their requests at
//! a time and the rest queue (as text), and every one of them is then asked for, approved
//! and run once, with the arguments it was called with. (The gate's ordering stripes bound
//! the calls inside the sink too, so the first check holds with or without the queue; what
//! this shows of the queue is that its calls come back as they were asked.)

mod common;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use approvals::memory::MemoryAudit;
use approvals::{AuditError, AuditEvent, AuditReceipt, AuditSink};
use async_trait::async_trait;
use common::*;
use tokio::sync::watch;

/// Calls arriving together: more than the gate lets make their requests at once (64).
const CALLS: u32 = 200;

/// Delegates to a memory log, but holds each `requested` record until it is opened,
/// counting the calls it holds: a durable sink's writer that every call queues for.
struct Held {
    log: Arc<MemoryAudit>,
    holding: watch::Sender<usize>,
    open: watch::Receiver<bool>,
}

#[async_trait]
impl AuditSink for Held {
    async fn append(&self, event: AuditEvent) -> Result<AuditReceipt, AuditError> {
        if event.name() == "requested" {
            self.holding.send_modify(|n| *n += 1);
            let mut open = self.open.clone();
            let _ = open.wait_for(|o| *o).await;
        }
        self.log.append(event).await
    }
}

// On the test's one thread every spawned call runs until it waits, between the yields of
// the test: what the calls do is what they can do, not what a timer let them do.
#[tokio::test]
async fn a_burst_of_calls_queues_for_its_turn_then_each_runs_once_as_called() {
    let log = Arc::new(MemoryAudit::new());
    let (holding, mut held) = watch::channel(0);
    let (opener, open) = watch::channel(false);
    let sink = Held {
        log: log.clone(),
        holding,
        open,
    };
    let h = Harness::with(|b| b.audit(sink));
    let calls: Vec<_> = (0..CALLS)
        .map(|limit| h.spawn(export(limit, h.runs.clone())))
        .collect();

    // Some calls reach the sink; the rest wait for their turn without making a request.
    held.wait_for(|n| *n > 0).await.unwrap();
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    let making = *held.borrow();
    assert!(
        (1..=64).contains(&making),
        "{making} of {CALLS} calls were making their request at once"
    );
    assert_eq!(h.runs(), 0);

    opener.send_replace(true);
    let mut asked = BTreeSet::new();
    for _ in 0..CALLS {
        let r = h.next().await;
        assert!(r.request.action.digest_is_consistent());
        asked.insert(r.request.action.args["limit"].as_u64().unwrap());
        r.approve_as("alice").await.unwrap();
    }
    // Every call was asked for once, with its own arguments.
    assert_eq!(asked, (0..u64::from(CALLS)).collect::<BTreeSet<_>>());
    let mut ran = BTreeSet::new();
    for call in calls {
        ran.insert(call.await.unwrap().unwrap());
    }
    assert_eq!(ran, (0..CALLS).collect::<BTreeSet<_>>());
    assert_eq!(h.runs.load(Ordering::SeqCst), CALLS as usize);
    let requested = log
        .records()
        .iter()
        .filter(|r| r.event.name() == "requested")
        .count();
    assert_eq!(requested, CALLS as usize);
    // Nothing was asked twice.
    assert!(h.mock.try_next().is_none());
}
