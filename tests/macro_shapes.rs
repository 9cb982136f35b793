//! `#[requires_approval]` on every shape of function the issue lists.

// Generated code must not depend on what `core` means here.
#[allow(dead_code)]
mod core {}

mod common;
use std::fmt::Display;
use std::sync::Arc;

use approvals::mock::MockApprover;
use approvals::{CodePolicy, Context, Error, EventKind, Gate, Principal, requires_approval, scope};
use async_trait::async_trait;
use common::*;
use serde::Serialize;

fn auto_gate(policy: CodePolicy) -> Harness {
    Harness::with(|b| {
        b.policy(policy)
            .approver(MockApprover::auto_approve("alice").named("auto"))
    })
}

fn deploy_policy() -> CodePolicy {
    CodePolicy::new()
        .require("deploy", one_data_owner())
        .allow("read")
}

struct Deployer {
    gate: Gate,
    deployed: Vec<String>,
}

impl Deployer {
    #[requires_approval(policy = "deploy", gate = self.gate)]
    async fn deploy(&self, service: &str) -> Result<String, Error> {
        Ok(format!("{service} deployed"))
    }

    #[requires_approval(policy = "deploy", gate = &self.gate)]
    async fn deploy_mut(&mut self, service: String) -> Result<usize, Error> {
        self.deployed.push(service);
        Ok(self.deployed.len())
    }

    #[requires_approval(policy = "deploy", gate = self.gate.clone())]
    async fn into_report(self) -> Result<Vec<String>, Error> {
        Ok(self.deployed)
    }

    #[requires_approval(policy = "deploy", gate = Arc::new(self.gate.clone()))]
    fn deploy_sync(&self, service: &str) -> std::io::Result<String> {
        Ok(format!("{service} deployed synchronously"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_with_every_receiver() {
    let h = auto_gate(deploy_policy());
    let mut d = Deployer {
        gate: h.gate.clone(),
        deployed: vec![],
    };
    scope::with_context(agent(), async move {
        assert_eq!(d.deploy("api").await.unwrap(), "api deployed");
        assert_eq!(d.deploy_mut("web".into()).await.unwrap(), 1);
        assert_eq!(d.deploy_sync("db").unwrap(), "db deployed synchronously");
        assert_eq!(d.into_report().await.unwrap(), ["web"]);
    })
    .await;
    assert_eq!(
        h.event_names().iter().filter(|n| **n == "finished").count(),
        4
    );
}

#[requires_approval(policy = "deploy")]
async fn generic<'a, T>(items: &'a [T]) -> Result<String, Error>
where
    T: Serialize + Display + Send + Sync,
{
    Ok(items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(","))
}

#[requires_approval(policy = "deploy", skip(items))]
async fn with_impl_trait(
    items: impl IntoIterator<Item = u32> + Send,
    label: &str,
) -> Result<u32, Error> {
    let _ = label;
    Ok(items.into_iter().sum())
}

#[derive(Serialize)]
struct Point {
    x: i32,
    y: i32,
}

#[requires_approval(policy = "deploy")]
async fn patterns((a, b): (u32, u32), Point { x, y: _ }: Point, _unused: u8) -> Result<i64, Error> {
    Ok(i64::from(a + b) + i64::from(x))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generics_impl_trait_and_patterns() {
    let h = auto_gate(deploy_policy());
    h.run(async {
        assert_eq!(generic(&[1, 2, 3]).await.unwrap(), "1,2,3");
        assert_eq!(with_impl_trait(vec![4, 5], "sum").await.unwrap(), 9);
        assert_eq!(
            patterns((1, 2), Point { x: 10, y: 0 }, 0).await.unwrap(),
            13
        );
    })
    .await;
    let args: Vec<_> = requested_args(&h);
    assert_eq!(args[0], serde_json::json!({"items": [1, 2, 3]}));
    assert_eq!(args[1], serde_json::json!({"label": "sum"}));
    assert_eq!(
        args[2],
        serde_json::json!({"a": 1, "b": 2, "x": 10, "_unused": 0})
    );
}

fn requested_args(h: &Harness) -> Vec<serde_json::Value> {
    h.records()
        .into_iter()
        .filter_map(|r| match r.event.kind {
            EventKind::Requested { args, .. } => Some(args),
            _ => None,
        })
        .collect()
}

#[async_trait]
trait Tool {
    async fn call(&self, input: String) -> Result<String, Error>;
    async fn call_pattern(&self, pair: (u8, u8)) -> Result<u8, Error>;
}

#[async_trait]
impl Tool for Deployer {
    #[requires_approval(policy = "deploy", gate = self.gate)]
    async fn call(&self, input: String) -> Result<String, Error> {
        let shout = input.to_uppercase();
        Ok(format!("{shout} via {}", self.deployed.len()))
    }

    #[requires_approval(policy = "deploy", gate = self.gate)]
    async fn call_pattern(&self, (a, b): (u8, u8)) -> Result<u8, Error> {
        Ok(a + b)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inside_async_trait_impls() {
    let h = Harness::with(|b| b.policy(deploy_policy()));
    let d: Arc<dyn Tool + Send + Sync> = Arc::new(Deployer {
        gate: h.gate.clone(),
        deployed: vec![],
    });
    let call = tokio::spawn(scope::with_context(agent(), {
        let d = d.clone();
        async move { d.call("hi".into()).await }
    }));
    let req = h.next().await;
    assert_eq!(req.request.action.args, serde_json::json!({"input": "hi"}));
    assert!(
        !call.is_finished(),
        "suspends inside an async-trait method too"
    );
    req.approve_as("bob").await.unwrap();
    assert_eq!(call.await.unwrap().unwrap(), "HI via 0");

    let call = tokio::spawn(scope::with_context(agent(), async move {
        d.call_pattern((2, 3)).await
    }));
    h.next().await.approve_as("bob").await.unwrap();
    assert_eq!(call.await.unwrap().unwrap(), 5);
}

#[requires_approval(policy = "deploy", name = "ops::restart", redact(token), skip(client))]
async fn restart(service: &str, token: &str, client: &NotSerialize) -> Result<(), Error> {
    let _ = (service, token, client);
    Ok(())
}

struct NotSerialize;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn name_skip_and_redact_shape_the_record() {
    // The deployment's redaction key (as APPROVALS_REDACTION_KEY would give it).
    approvals::redaction::set_key([7; 32]).unwrap();
    let h = auto_gate(deploy_policy());
    h.run(restart("api", "hunter2", &NotSerialize))
        .await
        .unwrap();
    let requested = h
        .records()
        .into_iter()
        .find(|r| r.event.name() == "requested")
        .unwrap();
    assert_eq!(requested.event.action.name, "ops::restart");
    let args = &requested_args(&h)[0];
    assert_eq!(args["service"], "api");
    assert!(args.get("client").is_none());
    // HMAC-SHA256 of the canonical JSON `"hunter2"` under the key set above, from Python:
    // hmac.new(bytes([7]*32), b'"hunter2"', hashlib.sha256).hexdigest()
    assert_eq!(
        args["token"]["redacted_hmac"],
        "d0aa72ac424a9908d6691908523b9da3b811ecfa856fdfee96bbfffd858bab9c"
    );
    assert_eq!(args["token"]["key_id"], "06c6a22b");
    assert!(!requested.to_canonical_json().contains("hunter2"));
}

#[derive(Debug)]
enum MyError {
    Approval(Error),
    Parse(std::num::ParseIntError),
}

impl From<Error> for MyError {
    fn from(e: Error) -> Self {
        MyError::Approval(e)
    }
}
impl From<std::num::ParseIntError> for MyError {
    fn from(e: std::num::ParseIntError) -> Self {
        MyError::Parse(e)
    }
}

#[requires_approval(policy = "read")]
async fn parse(text: &str) -> Result<i32, MyError> {
    if text.is_empty() {
        return Ok(0);
    }
    let n: i32 = text.parse()?; // `?` converts into the function's own error type
    Ok(n)
}

#[requires_approval(policy = "deploy")]
async fn boxed(n: u8) -> Result<u8, Box<dyn std::error::Error + Send + Sync>> {
    Ok(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_error_types_question_mark_and_early_return() {
    let h = Harness::with(|b| b.policy(CodePolicy::new().allow("read").deny("deploy", "frozen")));
    h.run(async {
        assert_eq!(parse("").await.unwrap(), 0);
        assert_eq!(parse("42").await.unwrap(), 42);
        assert!(matches!(parse("x").await, Err(MyError::Parse(e)) if e.to_string().contains("invalid digit")));
        let err = boxed(1).await.unwrap_err();
        let inner = err.downcast_ref::<Error>().expect("the approval error inside the box");
        assert_eq!(inner.denial().unwrap().reason.as_deref(), Some("frozen"));
    })
    .await;
    let h2 = Harness::with(|b| b.policy(CodePolicy::new().deny("read", "nope")));
    let err = h2.run(parse("1")).await.unwrap_err();
    assert!(matches!(err, MyError::Approval(Error::Denied(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_body_is_recorded_with_its_error_text() {
    let h = Harness::with(|b| b.policy(CodePolicy::new().require("read", one_data_owner())));
    let call = h.spawn(async { parse("x").await.map_err(|e| format!("{e:?}")) });
    h.next().await.approve_as("alice").await.unwrap();
    assert!(call.await.unwrap().is_err());
    let finished = h.records().pop().unwrap();
    // MyError has no Display: its Debug text is recorded.
    assert!(
        matches!(
            finished.event.kind,
            EventKind::Finished { ok: false, error: Some(ref e), .. } if e.starts_with("Parse(ParseIntError")
        ),
        "{:?}",
        finished.event.kind
    );
}

#[requires_approval(policy = "deploy")]
fn sync_deploy(service: &str) -> Result<String, Error> {
    Ok(format!("{service} up"))
}

#[test]
fn sync_fn_without_any_runtime_blocks_until_approved() {
    let h = auto_gate(deploy_policy());
    let out = scope::with_gate_sync(h.gate.clone(), || {
        scope::with_context_sync(agent(), || sync_deploy("api"))
    });
    assert_eq!(out.unwrap(), "api up");
    assert!(h.event_names().contains(&"review_accepted"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_fn_on_a_multi_thread_runtime_worker() {
    let h = auto_gate(deploy_policy());
    let out = h.run(async { sync_deploy("db") }).await;
    assert_eq!(out.unwrap(), "db up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_fn_on_a_blocking_thread() {
    let h = Harness::with(|b| b.policy(deploy_policy()));
    let gate = h.gate.clone();
    let call = tokio::task::spawn_blocking(move || {
        scope::with_gate_sync(gate, || {
            scope::with_context_sync(agent(), || sync_deploy("cache"))
        })
    });
    let req = h.next().await;
    assert!(
        !call.is_finished(),
        "the thread is blocked until a human decides"
    );
    req.approve_as("alice").await.unwrap();
    assert_eq!(call.await.unwrap().unwrap(), "cache up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_global_gate_is_the_last_resort() {
    let h = auto_gate(deploy_policy());
    approvals::set_global_gate(h.gate.clone()).expect("only this test sets it");
    let other = Context::new(Principal::service("ci"));
    assert_eq!(
        scope::with_context(other, sync_deploy_async("x"))
            .await
            .unwrap(),
        "x"
    );
    assert!(
        approvals::set_global_gate(h.gate.clone()).is_err(),
        "set once"
    );
}

#[requires_approval(policy = "deploy")]
async fn sync_deploy_async(s: &str) -> Result<String, Error> {
    Ok(s.to_owned())
}

extern crate approvals as renamed_approvals;

#[requires_approval(policy = "read", crate = "renamed_approvals")]
async fn through_a_renamed_crate(n: u8) -> Result<u8, Error> {
    Ok(n)
}

#[tokio::test]
async fn the_crate_option_reaches_a_renamed_dependency() {
    let h = Harness::with(|b| b.policy(CodePolicy::new().allow("read")));
    assert_eq!(h.run(through_a_renamed_crate(4)).await.unwrap(), 4);
    assert_eq!(h.event_names(), ["allowed"]);
}

#[requires_approval(policy = "deploy")]
async fn one_number(n: u64) -> Result<u64, Error> {
    Ok(n)
}

/// A gated function's future is what a waiting call's task keeps for as long as it waits.
/// It holds, at each await, what that await needs: the gate's answer (its `Result<Permit,
/// Error>`, 80 bytes) while the call is judged and waits; the permit and the body while the
/// body runs; the result and a pointer while the end is recorded. Keeping the permit and
/// the result in scope across every await (as the expansion once did) made it 240 bytes,
/// and put a waiting call's tokio task in a 384-byte cell instead of 256.
#[test]
fn a_gated_function_keeps_one_step_at_a_time() {
    let answer = std::mem::size_of::<Result<approvals::Permit, Error>>();
    let future = std::mem::size_of_val(&one_number(7));
    // The answer, the argument (kept twice by any `async fn`), the gate and a few flags.
    assert!(
        future <= answer + 48,
        "{future} bytes for a function of one u64 (the answer alone is {answer})"
    );
}
