//! The terminal approver: shows the full context, asks yes/no and a comment, and never
//! prompts a party to the request.

mod common;
use std::io::{Cursor, Write};
use std::sync::Arc;

use tokio::sync::watch;

use approvals::terminal::TerminalApprover;
use approvals::{EventKind, Evidence, ReviewDecision};
use common::*;

/// A writer the test can read back, and wait on.
#[derive(Clone)]
struct Screen(Arc<watch::Sender<String>>);

impl Default for Screen {
    fn default() -> Self {
        Screen(Arc::new(watch::Sender::new(String::new())))
    }
}

impl Write for Screen {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .send_modify(|s| s.push_str(&String::from_utf8_lossy(buf)));
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Screen {
    fn text(&self) -> String {
        self.0.borrow().clone()
    }
    async fn wait_for(&self, needle: &str) {
        let mut rx = self.0.subscribe();
        rx.wait_for(|s| s.contains(needle)).await.unwrap();
    }
}

fn terminal(reviewer: &str, typed: &str) -> (TerminalApprover, Screen) {
    let screen = Screen::default();
    let t = TerminalApprover::with_io(Cursor::new(typed.as_bytes().to_vec()), screen.clone())
        .reviewer(reviewer);
    (t, screen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approves_with_a_comment_after_showing_the_context() {
    let (t, screen) = terminal("alice", "maybe\ny\nlooks right\n");
    let h = Harness::with(|b| b.approver(t));
    assert_eq!(h.run(export(250, h.runs.clone())).await.unwrap(), 250);

    let shown = screen.text();
    for expected in [
        "action     billing::export  (policy export, rule one-data-owner)",
        "arguments  {\"limit\":250}",
        "requester  agent:ops-bot",
        "for        human:dana",
        "reason     weekly churn report",
        "needs      1 more from data-owners",
        "Approve as alice? [y/n]",
    ] {
        assert!(
            shown.contains(expected),
            "missing {expected:?} in:\n{shown}"
        );
    }
    assert_eq!(
        shown.matches("[y/n]").count(),
        2,
        "an unclear answer is asked again"
    );
    let review = h
        .records()
        .into_iter()
        .find_map(|r| match r.event.kind {
            EventKind::ReviewAccepted { review } => Some(review),
            _ => None,
        })
        .unwrap();
    assert_eq!(review.reviewer.id, "alice");
    assert_eq!(review.decision, ReviewDecision::Approve);
    assert_eq!(review.comment.as_deref(), Some("looks right"));
    assert!(matches!(review.evidence, Evidence::Terminal { .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denies_with_a_reason() {
    let (t, _) = terminal("bob", "n\nnot this week\n");
    let h = Harness::with(|b| b.approver(t));
    let err = h.run(export(1, h.runs.clone())).await.unwrap_err();
    assert_eq!(err.to_string(), "denied by bob: not this week");
    assert_eq!(h.runs(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_party_to_the_request_is_not_prompted() {
    // dana is who ops-bot acts for: her terminal shows the request but asks nothing.
    let (t, screen) = terminal("dana", "y\nsure\n");
    let h = Harness::with(|b| b.approver(t));
    let call = h.spawn(export(1, h.runs.clone()));
    let req = h.next().await; // the mock channel also got it
    screen.wait_for("cannot approve their own request").await;
    req.approve_as("alice").await.unwrap();
    call.await.unwrap().unwrap();
    let shown = screen.text();
    assert!(!shown.contains("[y/n]"), "{shown}");
    assert!(h.refusals().is_empty(), "nothing was submitted for dana");
}
