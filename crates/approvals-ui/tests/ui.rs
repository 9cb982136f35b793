//! Compile-fail tests: each misuse of `#[requires_approval]` is an error at the offending
//! token. Regenerate the expected output with `TRYBUILD=overwrite cargo test -p approvals-ui --test ui`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    // Every body shape compiles in a crate with `#![deny(warnings)]`.
    t.pass("tests/ui-pass/*.rs");
}
