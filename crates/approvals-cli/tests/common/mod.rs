//! Running the `approvals` binary as a user would.
#![allow(dead_code, unreachable_pub)]

use std::process::{Command, Output};

/// Runs `approvals ARGS...` without colour.
pub fn approvals(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_approvals"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("the binary runs")
}

/// Standard output and standard error, together.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
