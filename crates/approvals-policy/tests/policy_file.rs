//! The policy file: each kind of error is found with its line and column; rules are tried deny
//! first, then in order; what no rule matches is denied; the shipped files check clean.

use approvals_core::{Action, Context, Principal, Timestamp, Verdict};
use approvals_policy::{Diagnostics, FilePolicy, LoadError, PolicySet};

const PEOPLE: &str = r#"[[people]]
id = "alice"
[[people]]
id = "bob"
[[people]]
id = "dana"

[groups]
owners = ["alice", "bob", "dana"]
"#;

/// The diagnostics of a file that must not load.
fn errors(src: &str) -> Diagnostics {
    match FilePolicy::from_source("p.toml", src) {
        Ok(_) => panic!("loaded:\n{src}"),
        Err(LoadError::Invalid(d)) => d,
        Err(e) => panic!("{e}"),
    }
}

/// Asserts one error at `line:column` whose message contains `text`.
fn has(d: &Diagnostics, line: usize, column: usize, text: &str) {
    assert!(
        d.errors
            .iter()
            .any(|e| e.line == line && e.column == column && e.message.contains(text)),
        "no error {line}:{column} containing {text:?} in:\n{d}"
    );
}

fn set(src: &str) -> std::sync::Arc<PolicySet> {
    FilePolicy::from_source("p.toml", src)
        .unwrap_or_else(|e| panic!("{e}"))
        .current()
}

fn judge(set: &PolicySet, policy: &str, args: serde_json::Value) -> Verdict {
    let mut b = Action::builder("app::call", policy);
    for (k, v) in args.as_object().unwrap() {
        b = b.arg(k, v);
    }
    let ctx = Context::new(Principal::agent("ops-bot")).on_behalf_of(Principal::human("dana"));
    set.evaluate(&b.build().unwrap(), &ctx, Timestamp::from_unix_micros(0))
        .expect("the policy exists")
        .verdict
}

#[test]
fn unknown_keys_are_named_with_a_suggestion() {
    let d = errors(&format!(
        "{PEOPLE}\n[[policies.p.rules]]\nname = \"r\"\nrequire = [{{ group = \"owners\", cuont = 1 }}]\nexpire_in = \"1h\"\n"
    ));
    has(&d, 13, 32, "unknown key `cuont` in a factor");
    has(&d, 14, 1, "unknown key `expire_in` in a rule");
    let text = d.to_string();
    assert!(text.contains("p.toml:14:1: error: unknown key `expire_in` in a rule\n  hint: did you mean `expires_in`?"), "{text}");
}

#[test]
fn unknown_people_and_groups() {
    let d = errors(&format!(
        "{PEOPLE}\n[[policies.p.rules]]\nrequire = [{{ group = \"ownerz\" }}, {{ people = [\"alise\"] }}]\n"
    ));
    has(&d, 12, 22, "unknown group `ownerz`");
    has(&d, 12, 46, "unknown person `alise`");
    assert!(d.to_string().contains("did you mean `alice`?"), "{d}");

    let d = errors("[groups]\nsre = [\"mallory\"]\n[[policies.p.rules]]\nallow = true\n");
    has(&d, 2, 8, "group `sre` lists unknown person `mallory`");
}

#[test]
fn counts_larger_than_the_eligible_people() {
    let d = errors(&format!(
        "{PEOPLE}\n[[policies.p.rules]]\nrequire = [{{ group = \"owners\", count = 4 }}]\n"
    ));
    has(
        &d,
        12,
        12,
        "count 4 is more than the 3 member(s) of group `owners`",
    );

    let d = errors(&format!(
        "{PEOPLE}\n[[policies.p.rules]]\nrequire = [{{ people = [\"alice\", \"bob\"], count = 3 }}]\n"
    ));
    has(&d, 12, 12, "count 3 is more than the 2 people listed");

    // Each factor fits on its own, but three distinct people cannot fill 2 + 2.
    let d = errors(&format!(
        "{PEOPLE}\n[[policies.p.rules]]\nrequire = [{{ group = \"owners\", count = 2 }}, {{ people = [\"alice\", \"bob\"], count = 2 }}]\n"
    ));
    has(&d, 12, 11, "asks for more approvers than exist");

    let d = errors(&format!(
        "{PEOPLE}\n[[policies.p.rules]]\nrequire = [{{ group = \"owners\", count = 0 }}]\n"
    ));
    has(&d, 12, 40, "`count` must be at least 1");
}

#[test]
fn bad_durations() {
    let d = errors(&format!(
        "{PEOPLE}\n[[policies.p.rules]]\nrequire = [{{ group = \"owners\" }}]\nexpires_in = \"ten minutes\"\nescalate = [{{ after = 5, notify = [\"slack\"] }}]\nremind = {{ every = \"0s\" }}\n"
    ));
    has(&d, 13, 14, "bad duration `ten minutes`");
    has(&d, 14, 23, "a duration must be a string, found an integer");
    has(&d, 15, 20, "`every` must be longer than zero");

    let d = errors(&format!(
        "{PEOPLE}\n[[policies.p.rules]]\nrequire = [{{ group = \"owners\" }}]\nexpires_in = \"10m\"\nescalate = [{{ after = \"1h\", notify = [\"slack\"] }}]\n"
    ));
    has(
        &d,
        14,
        13,
        "escalation after 1h never happens: the request expires after 10m",
    );
}

#[test]
fn cel_syntax_and_type_errors_point_into_the_condition() {
    let d = errors(&format!(
        "{PEOPLE}\n[[policies.p.rules]]\nwhen = \"args.limit >\"\nallow = true\n\n[[policies.q.rules]]\nwhen = \"requester.id > 5\"\nallow = true\n\n[[policies.r.rules]]\nwhen = \"requestor.id == 'x'\"\nallow = true\n"
    ));
    // `when = "args.limit >"`: the error is at the end of the expression.
    has(&d, 12, 21, "CEL syntax error");
    // Type errors point at the operator.
    has(&d, 16, 22, "cannot order a string against a number");
    has(&d, 20, 9, "unknown variable `requestor`");
    assert!(d.to_string().contains("did you mean `requester`?"), "{d}");
}

#[test]
fn rules_after_an_unconditional_one_are_unreachable() {
    let d = errors(&format!(
        "{PEOPLE}\n[[policies.p.rules]]\nname = \"all\"\nallow = true\n\n[[policies.p.rules]]\nname = \"never\"\nwhen = \"args.x == 1\"\nrequire = [{{ group = \"owners\" }}]\n"
    ));
    has(&d, 15, 1, "rule `never` can never match");
    assert!(
        d.to_string()
            .contains("rule `all` on line 11 has no `when`"),
        "{d}"
    );

    // An unconditional deny shadows every other rule, wherever it is written.
    let d = errors(&format!(
        "{PEOPLE}\n[[policies.p.rules]]\nname = \"first\"\nwhen = \"args.x == 1\"\nallow = true\n\n[[policies.p.rules]]\nname = \"freeze\"\ndeny = \"frozen\"\n"
    ));
    has(&d, 11, 1, "rule `first` can never match");
    assert!(
        d.to_string()
            .contains("deny rules are tried before all others"),
        "{d}"
    );
}

#[test]
fn other_mistakes() {
    let d = errors(&format!(
        "{PEOPLE}\n[[policies.p.rules]]\nname = \"two\"\nallow = true\ndeny = \"no\"\n\n[[policies.q.rules]]\nname = \"none\"\nwhen = \"true\"\n\n[[policies.r.rules]]\nallow = true\nexpires_in = \"1h\"\n"
    ));
    has(
        &d,
        11,
        1,
        "rule `two` has more than one outcome (allow, deny)",
    );
    has(&d, 16, 1, "rule `none` has no outcome");
    has(
        &d,
        22,
        1,
        "`expires_in` only applies to rules that require approval",
    );

    let d = errors(
        "[[people]]\nid = \"a\"\nslack = \"U1\"\n[[people]]\nid = \"a\"\n[[people]]\nid = \"b\"\nslack = \"U1\"\ned25519 = \"abc\"\n[[policies.p.rules]]\nallow = true\n",
    );
    has(&d, 5, 6, "person `a` is defined twice");
    has(&d, 8, 9, "slack identity `U1` is also given to `a`");
    has(&d, 9, 11, "ed25519 key of `b` is not valid");

    let d = errors("");
    has(&d, 1, 1, "the file defines no policies");
    let d = errors("policies = 3\n");
    has(&d, 1, 12, "`policies` must be a table, found an integer");
    let d = errors("[[policies.p.rules]\nallow = true\n");
    assert!(d.errors[0].message.starts_with("TOML syntax"), "{d}");
}

#[test]
fn every_error_of_a_file_is_reported_at_once() {
    let d = errors(&format!(
        "{PEOPLE}\n[defaults]\nexpire_in = \"1h\"\n\n[[policies.p.rules]]\nwhen = \"args.x >\"\nrequire = [{{ group = \"nope\", count = 9 }}]\nexpires_in = \"forever\"\n"
    ));
    assert!(d.errors.len() >= 4, "{d}");
    let mut lines: Vec<usize> = d.errors.iter().map(|e| e.line).collect();
    let sorted = {
        let mut s = lines.clone();
        s.sort_unstable();
        s
    };
    assert_eq!(lines, sorted, "in file order");
    lines.dedup();
    assert!(lines.len() >= 3, "{d}");
}

#[test]
fn deny_rules_come_first_then_the_first_match_wins() {
    let s = set(&format!(
        r#"{PEOPLE}
[[policies.p.rules]]
name = "small-runs"
when = "args.n < 10"
allow = true

[[policies.p.rules]]
name = "medium-needs-owner"
when = "args.n < 1000"
require = [{{ group = "owners" }}]

[[policies.p.rules]]
name = "anything-else-needs-two"
require = [{{ group = "owners", count = 2 }}]

[[policies.p.rules]]
name = "never-seven"
when = "args.n == 7"
deny = "seven is unlucky"
"#
    ));
    // 7 is small, but the deny rule written last is tried first.
    assert!(
        matches!(judge(&s, "p", serde_json::json!({"n": 7})), Verdict::Deny { rule, reason, .. } if rule == "never-seven" && reason == "seven is unlucky")
    );
    assert!(
        matches!(judge(&s, "p", serde_json::json!({"n": 3})), Verdict::Allow { rule, .. } if rule == "small-runs")
    );
    // 5 < 1000 too, but the earlier rule wins.
    match judge(&s, "p", serde_json::json!({"n": 500})) {
        Verdict::RequireApproval(r) => {
            assert_eq!(r.rule, "medium-needs-owner");
            assert_eq!(r.approvals_needed(), 1);
        }
        v => panic!("{v:?}"),
    }
    match judge(&s, "p", serde_json::json!({"n": 5000})) {
        Verdict::RequireApproval(r) => assert_eq!(r.approvals_needed(), 2),
        v => panic!("{v:?}"),
    }
}

#[test]
fn what_no_rule_matches_is_denied() {
    let s = set(&format!(
        "{PEOPLE}\n[[policies.p.rules]]\nname = \"staging\"\nwhen = \"args.env == 'staging'\"\nallow = true\n"
    ));
    match judge(&s, "p", serde_json::json!({"env": "prod"})) {
        Verdict::Deny { rule, reason, .. } => {
            assert_eq!(rule, "no-rule-matched");
            assert!(reason.contains("no rule of policy `p` matches"), "{reason}");
        }
        v => panic!("{v:?}"),
    }
    // An unknown policy is no verdict at all (the engine reports it; the gate fails closed).
    let ctx = Context::new(Principal::agent("ops-bot"));
    let a = Action::builder("x", "unknown").build().unwrap();
    assert!(
        s.evaluate(&a, &ctx, Timestamp::from_unix_micros(0))
            .is_none()
    );
}

#[test]
fn conditions_see_the_context() {
    let s = set(&format!(
        r#"{PEOPLE}
[[policies.p.rules]]
when = "on_behalf_of != null && on_behalf_of.id == 'dana' && requester.kind == 'agent' && !('owners' in requester.groups)"
allow = true
"#
    ));
    assert!(matches!(
        judge(&s, "p", serde_json::json!({})),
        Verdict::Allow { .. }
    ));
}

#[test]
fn the_shipped_example_and_the_documented_example_check_clean() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let example = std::fs::read_to_string(format!("{root}/examples/approvals.toml")).unwrap();
    let s = set(&example);
    for name in ["read-dashboard", "export-customers", "drop-table", "deploy"] {
        assert!(s.policy(name).is_some(), "{name}");
    }
    let doc = std::fs::read_to_string(format!("{root}/docs/policy.md")).unwrap();
    let start = doc
        .find("```toml\n")
        .expect("docs/policy.md has a toml example")
        + 8;
    let end = start + doc[start..].find("```").unwrap();
    let documented = &doc[start..end];
    assert_eq!(
        documented.trim(),
        example.trim(),
        "docs/policy.md shows examples/approvals.toml as it is"
    );
}

#[test]
fn if_undelivered_from_defaults_and_rules() {
    use approvals_core::IfUndelivered;
    let src = format!(
        "[defaults]\nif_undelivered = \"wait\"\n{PEOPLE}\n[[policies.p.rules]]\nname = \"small\"\nwhen = \"args.n < 10\"\nrequire = [{{ group = \"owners\" }}]\n[[policies.p.rules]]\nname = \"big\"\nrequire = [{{ group = \"owners\" }}]\nif_undelivered = \"fail\"\n"
    );
    let s = set(&src);
    let undelivered = |n: i64| match judge(&s, "p", serde_json::json!({ "n": n })) {
        Verdict::RequireApproval(r) => r.if_undelivered,
        other => panic!("{other:?}"),
    };
    assert_eq!(undelivered(1), IfUndelivered::Wait, "from [defaults]");
    assert_eq!(undelivered(100), IfUndelivered::Fail, "the rule overrides");

    let d = errors(&format!(
        "{PEOPLE}\n[[policies.p.rules]]\nrequire = [{{ group = \"owners\" }}]\nif_undelivered = \"retry\"\n"
    ));
    has(&d, 13, 18, "unknown `if_undelivered` value `retry`");
    let d = errors(&format!(
        "{PEOPLE}\n[[policies.p.rules]]\nallow = true\nif_undelivered = \"wait\"\n"
    ));
    has(
        &d,
        13,
        1,
        "`if_undelivered` only applies to rules that require approval",
    );
}

#[test]
fn verifier_keys_whose_base64_holds_a_plus_are_read() {
    // Written by `approvals keygen --name bob`; its base64 holds `+` twice.
    let vkey = "bob+c2a364fc+AUtPl+6uETQ8+1vihxvM5cKXJt4H5qmzxhadcvUPAkn3";
    let policy = FilePolicy::from_source(
        "p.toml",
        &format!(
            "[[people]]\nid = \"bob\"\ned25519 = \"{vkey}\"\n[[policies.p.rules]]\nallow = true\n"
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let person = approvals_core::Directory::person(&policy.directory(), "bob").unwrap();
    let expected = approvals_core::note::NoteVerifier::from_vkey(vkey).unwrap();
    assert_eq!(person.ed25519.unwrap(), *expected.key());
}
