//! What judging one call costs with a policy file of 100 policies and CEL conditions, against
//! the same rules written as Rust closures (`CodePolicy`), in the same process.
//!
//! `cargo bench -p approvals-policy --bench policy_eval` prints both and their ratio.

use std::hint::black_box;
use std::time::{Duration, Instant};

use approvals_core::{Action, CodePolicy, Context, Factor, PolicyEngine, Requirement, Verdict};
use approvals_policy::FilePolicy;
use criterion::{Criterion, criterion_group, criterion_main};

#[path = "common/policy_100.rs"]
mod policy_100;
use policy_100::{call, policy_file};

/// The same four rules of one policy, as Rust.
fn code_policy() -> CodePolicy {
    let sre = Requirement::new("sre-or-staging").factor(Factor::group("sre", 1));
    let owner = Requirement::new("owner").factor(Factor::group("data-owners", 1));
    CodePolicy::new().rule("p050", move |a: &Action, c: &Context| {
        let limit = a.args["limit"].as_i64().unwrap_or(0);
        let env = a.args["env"].as_str().unwrap_or("");
        if limit > 100_000 && c.labels.get("env").map(String::as_str) == Some("prod") {
            return Ok(Verdict::deny(
                "no-bulk-in-prod",
                "bulk exports in prod go through the pipeline",
            ));
        }
        if limit <= 10 {
            return Ok(Verdict::allow("tiny-runs"));
        }
        // The directory lookup the file engine does for `requester.groups`: ops-bot is in none.
        if env == "staging" {
            return Ok(Verdict::RequireApproval(Box::new(sre.clone())));
        }
        Ok(Verdict::RequireApproval(Box::new(owner.clone())))
    })
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let src = policy_file();
    let file = FilePolicy::from_source("bench.toml", &src).unwrap_or_else(|e| panic!("{e}"));
    let code = code_policy();
    let (action, ctx) = call(5000, "prod");

    let mut group = c.benchmark_group("policy_eval");
    group.bench_function("file_100_policies_cel", |b| {
        b.iter(|| black_box(rt.block_on(file.evaluate(black_box(&action), black_box(&ctx)))))
    });
    group.bench_function("code_policy_same_rules", |b| {
        b.iter(|| black_box(rt.block_on(code.evaluate(black_box(&action), black_box(&ctx)))))
    });
    group.bench_function("load_and_check_100_policies", |b| {
        b.iter(|| black_box(FilePolicy::from_source("bench.toml", black_box(&src))))
    });
    group.finish();

    // The ratio, from one more interleaved run of both in this process.
    let n = 50_000u32;
    let time = |engine: &dyn PolicyEngine| {
        let start = Instant::now();
        for _ in 0..n {
            black_box(rt.block_on(engine.evaluate(&action, &ctx)).is_ok());
        }
        start.elapsed()
    };
    let (f, k) = (time(&file), time(&code));
    let per = |d: Duration| d.as_nanos() as f64 / f64::from(n);
    println!(
        "policy_eval: file (100 policies, CEL) {:.0} ns/call, same rules in Rust {:.0} ns/call, ratio {:.1}x",
        per(f),
        per(k),
        per(f) / per(k)
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
