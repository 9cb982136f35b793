//! CEL conditions: any text compiles or is refused with its place, never a panic or a stack
//! overflow; a condition that compiles evaluates without panicking and within its budget.
#![no_main]

use approvals_core::{Action, Context, Principal, StaticDirectory, Timestamp};
use approvals_policy::condition::{Condition, Input};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(c) = Condition::compile(src) else {
        return;
    };
    let action = Action::builder("app::f", "p")
        .arg("limit", &5000)
        .arg("env", &"prod")
        .arg("xs", &(0..50).collect::<Vec<i64>>())
        .arg(
            "nested",
            &serde_json::json!({"a": {"b": [1, "x", null, 2.5]}}),
        )
        .build()
        .expect("plain arguments");
    let ctx = Context::new(Principal::agent("ops-bot"))
        .on_behalf_of(Principal::human("dana"))
        .label("env", "prod");
    let dir = StaticDirectory::new().group("sre", ["ops-bot"]);
    let input = Input::new(
        &action,
        &ctx,
        &dir,
        Timestamp::from_unix_micros(1_700_000_000_000_000),
    );
    let _ = c.eval(&input);
});
