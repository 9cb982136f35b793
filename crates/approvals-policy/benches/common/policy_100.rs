//! The 100-policy file both policy benches judge calls with (shared with
//! `benches/cedar-compare`, which writes the same rules in Cedar), and the call they judge.

use approvals_core::{Action, Context, Principal};

/// 100 policies `p000`..`p099`, each with four rules: a deny, an allow, two requirements.
pub(crate) fn policy_file() -> String {
    let mut src = String::from(
        "[[people]]\nid = \"alice\"\n[[people]]\nid = \"bob\"\n[[people]]\nid = \"carol\"\n\n[groups]\nsre = [\"alice\", \"carol\"]\ndata-owners = [\"alice\", \"bob\"]\n",
    );
    for i in 0..100 {
        src.push_str(&format!(
            r#"
[[policies.p{i:03}.rules]]
name = "no-bulk-in-prod"
when = "args.limit > 100000 && labels.env == 'prod'"
deny = "bulk exports in prod go through the pipeline"

[[policies.p{i:03}.rules]]
name = "tiny-runs"
when = "args.limit <= 10"
allow = true

[[policies.p{i:03}.rules]]
name = "sre-or-staging"
when = "'sre' in requester.groups || args.env == 'staging'"
require = [{{ group = "sre", count = 1 }}]

[[policies.p{i:03}.rules]]
name = "owner"
require = [{{ group = "data-owners", count = 1 }}]
"#
        ));
    }
    src
}

/// A call of `p050` by ops-bot for dana, labelled `env=prod`.
pub(crate) fn call(limit: i64, env: &str) -> (Action, Context) {
    let action = Action::builder("app::export_customers", "p050")
        .arg("limit", &limit)
        .arg("env", env)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let ctx = Context::new(Principal::agent("ops-bot"))
        .on_behalf_of(Principal::human("dana"))
        .label("env", "prod");
    (action, ctx)
}
