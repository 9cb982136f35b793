//! Nothing here: the crate holds the compile-fail tests of `#[requires_approval]` in
//! `tests/`, apart from the `approvals` crate, so that trybuild builds their cases against
//! the facade alone rather than against every backend and dev-dependency of `approvals`.
