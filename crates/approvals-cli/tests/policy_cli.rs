//! `approvals policy check` and `approvals policy explain`, run as a user would.

mod common;
use common::{approvals, text};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/approvals.toml");

#[test]
fn the_example_checks_clean() {
    let out = approvals(&["policy", "check", EXAMPLE]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("4 policies, 5 people, 3 groups"),
        "{}",
        text(&out)
    );
}

#[test]
fn each_error_kind_exits_non_zero_and_names_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let head = "[[people]]\nid = \"alice\"\n[[people]]\nid = \"bob\"\n[groups]\nsre = [\"alice\", \"bob\"]\n";
    let cases: &[(&str, &str)] = &[
        (
            "[[policies.p.rules]]\nallow = true\nexpire_in = \"1h\"\n",
            ":9:1: error: unknown key `expire_in`",
        ),
        (
            "[[policies.p.rules]]\nrequire = [{ group = \"sre\", count = 1 }, { people = [\"carol\"] }]\n",
            ":8:54: error: unknown person `carol`",
        ),
        (
            "[[policies.p.rules]]\nrequire = [{ group = \"ops\" }]\n",
            ":8:22: error: unknown group `ops`",
        ),
        (
            "[[policies.p.rules]]\nrequire = [{ group = \"sre\", count = 3 }]\n",
            ":8:12: error: count 3 is more than the 2 member(s)",
        ),
        (
            "[[policies.p.rules]]\nrequire = [{ group = \"sre\" }]\nexpires_in = \"soon\"\n",
            ":9:14: error: bad duration `soon`",
        ),
        (
            "[[policies.p.rules]]\nwhen = \"args.n >\"\nallow = true\n",
            ":8:17: error: CEL syntax error",
        ),
        (
            "[[policies.p.rules]]\nwhen = \"labels.env + 1 == 2\"\nallow = true\n",
            ":8:20: error: cannot apply `+` to a string and a number",
        ),
        (
            "[[policies.p.rules]]\nallow = true\n[[policies.p.rules]]\nwhen = \"args.n > 1\"\nrequire = [{ group = \"sre\" }]\n",
            ":9:1: error: rule `p#2` can never match",
        ),
    ];
    for (i, (body, want)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("case{i}.toml"));
        std::fs::write(&path, format!("{head}{body}")).unwrap();
        let out = approvals(&["policy", "check", path.to_str().unwrap()]);
        assert!(!out.status.success(), "case {i} passed:\n{body}");
        let t = text(&out);
        assert!(
            t.contains(&format!("case{i}.toml{want}")),
            "case {i}: want {want:?} in:\n{t}"
        );
    }
}

#[test]
fn check_reports_every_error_as_json_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[defaults]\nexpire_in = \"1h\"\n[[policies.p.rules]]\nwhen = \"nope.x\"\nallow = true\n",
    )
    .unwrap();
    let out = approvals(&["--json", "policy", "check", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let first = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(first.lines().next().unwrap()).unwrap();
    assert_eq!(v["ok"], false);
    let errors = v["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{v}");
    assert_eq!(errors[0]["line"], 2);
    assert_eq!(errors[1]["line"], 4);
    assert_eq!(errors[1]["column"], 9);
}

#[test]
fn explain_names_the_rule_and_the_possible_approvers() {
    let out = approvals(&[
        "policy",
        "explain",
        EXAMPLE,
        "--action",
        "export_customers",
        "--args",
        r#"{"limit": 5000}"#,
        "--requester",
        "ops-bot",
        "--on-behalf-of",
        "dana",
    ]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("REQUIRE APPROVAL by rule `exports-need-a-data-owner`"),
        "{t}"
    );
    assert!(
        t.contains(
            "1 from data-owners: alice, bob (not dana: the person the request is made on behalf of)"
        ),
        "{t}"
    );
    // The rules were tried deny-first: the bulk-export deny did not match 5000.
    assert!(
        t.contains("no-bulk-exports") && t.contains("no match"),
        "{t}"
    );

    let json = approvals(&[
        "--json",
        "policy",
        "explain",
        EXAMPLE,
        "--action",
        "export_customers",
        "--args",
        r#"{"limit": 5000}"#,
        "--requester",
        "ops-bot",
        "--on-behalf-of",
        "dana",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["outcome"], "require_approval");
    assert_eq!(
        v["approvers"][0]["eligible"],
        serde_json::json!(["alice", "bob"])
    );
    assert_eq!(v["approvers"][0]["excluded"][0]["id"], "dana");
}

#[test]
fn explain_shows_denials_and_allows() {
    let deny = approvals(&[
        "policy",
        "explain",
        EXAMPLE,
        "--action",
        "export_customers",
        "--args",
        r#"{"limit": 500000}"#,
        "--requester",
        "ops-bot",
    ]);
    let t = text(&deny);
    assert!(
        t.contains("DENY by rule `no-bulk-exports`: bulk exports go through"),
        "{t}"
    );
    assert!(t.contains("`args.limit > 100000` holds"), "{t}");

    let allow = approvals(&[
        "policy",
        "explain",
        EXAMPLE,
        "--action",
        "deploy",
        "--args",
        r#"{"env": "staging"}"#,
        "--requester",
        "ops-bot",
    ]);
    assert!(
        text(&allow).contains("ALLOW by rule `staging-runs`"),
        "{}",
        text(&allow)
    );

    let missing = approvals(&[
        "policy",
        "explain",
        EXAMPLE,
        "--action",
        "export_customers",
        "--args",
        "{}",
        "--requester",
        "ops-bot",
    ]);
    let t = text(&missing);
    assert!(t.contains("DENY by rule `no-bulk-exports`"), "{t}");
    assert!(t.contains("No such key: limit"), "{t}");

    let bad = approvals(&[
        "policy",
        "explain",
        EXAMPLE,
        "--action",
        "nothing_like_it",
        "--requester",
        "x",
    ]);
    assert!(!bad.status.success());
    assert!(text(&bad).contains("no policy is named like action `nothing_like_it`"));
}

/// Issue 14, hole 9: `policy check` on a condition nested 100 parentheses deep died with
/// "overflowed its stack" (exit 134). It is refused like any other error, with its place.
#[test]
fn a_condition_nested_too_deep_is_an_error_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deep.toml");
    let cond = format!("{}args.n{} > 1", "(".repeat(100), ")".repeat(100));
    std::fs::write(
        &path,
        format!(
            "[[people]]\nid = \"alice\"\n[[policies.p.rules]]\nwhen = \"{cond}\"\nallow = true\n"
        ),
    )
    .unwrap();
    let out = approvals(&["policy", "check", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(":4:") && text(&out).contains("nested more than 32 levels deep"),
        "{}",
        text(&out)
    );
}

#[test]
fn check_with_the_programs_functions_finds_a_misspelt_argument() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("approvals.toml");
    std::fs::write(
        &policy,
        "[[policies.deploy.rules]]\nname = \"staging\"\nwhen = \"args.enviroment == 'staging'\"\nallow = true\n",
    )
    .unwrap();
    // As `approvals::registry::manifest()` writes it.
    let manifest = dir.path().join("functions.json");
    std::fs::write(
        &manifest,
        r#"[{"policy": "deploy", "function": "ops::deploy", "params": ["environment", "replicas"]}]"#,
    )
    .unwrap();
    // Alone, the file is fine: nothing tells it what the functions record.
    assert!(
        approvals(&["policy", "check", policy.to_str().unwrap()])
            .status
            .success()
    );
    let out = approvals(&[
        "policy",
        "check",
        policy.to_str().unwrap(),
        "--functions",
        manifest.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains(
            "rule `staging` (line 1): reads `args.enviroment`, which no function gated by it records (ops::deploy(environment, replicas)); did you mean `args.environment`?"
        ),
        "{}",
        text(&out)
    );
}

#[test]
fn explain_judges_as_at_a_given_time() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("approvals.toml");
    std::fs::write(
        &policy,
        "[[policies.restart.rules]]\nname = \"office-hours\"\nwhen = \"now.getHours() >= 9 && now.getHours() < 17\"\nallow = true\n",
    )
    .unwrap();
    let explain = |at: &str| {
        let out = approvals(&[
            "policy",
            "explain",
            policy.to_str().unwrap(),
            "--action",
            "restart",
            "--requester",
            "ops-bot",
            "--at",
            at,
        ]);
        assert!(out.status.success(), "{}", text(&out));
        text(&out)
    };
    assert!(explain("2026-12-04T10:00:00Z").contains("ALLOW by rule `office-hours`"));
    assert!(explain("2026-12-04T20:00:00Z").contains("DENY"));
}
