//! The README's first command as a new user runs it: `cargo run --example quickstart` at a
//! terminal (a pseudo-terminal here), as root, with `$USER` unset, as in a fresh container.
//! The reviewer at the terminal is alice, a person of the example's directory: `y` runs the
//! export once; `n` with a reason denies it.
#![cfg(all(
    unix,
    feature = "memory",
    feature = "terminal",
    feature = "file",
    feature = "policy",
    feature = "sqlite"
))]

use std::path::PathBuf;
use std::process::Command;

/// The quickstart example, built by `cargo test` beside this test's executable.
fn quickstart() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("examples/quickstart");
    assert!(
        bin.exists(),
        "{} is missing: `cargo test --all-features` builds it",
        bin.display()
    );
    bin
}

fn at_a_terminal() -> rexpect::session::PtySession {
    let mut cmd = Command::new(quickstart());
    cmd.env_remove("USER")
        .env_remove("LOGNAME")
        .env_remove("USERNAME")
        .env("NO_COLOR", "1");
    rexpect::session::spawn_command(cmd, Some(60_000)).unwrap()
}

#[test]
fn answering_yes_at_the_terminal_runs_the_export_once() {
    let mut p = at_a_terminal();
    p.exp_string("you review at this terminal as alice")
        .unwrap();
    p.exp_string("Approve as alice? [y/n] ").unwrap();
    p.send_line("y").unwrap();
    p.exp_string("Comment (optional): ").unwrap();
    p.send_line("for the weekly report").unwrap();
    p.exp_string("export_customers(limit: 500)   ran: exported 500")
        .unwrap();
    p.exp_string("drop_table(\"customers\")        NOT RUN: denied by policy")
        .unwrap();
    p.exp_string("bodies run: read_dashboard=1 export_customers=1 drop_table=0")
        .unwrap();
    p.exp_eof().unwrap();
}

#[test]
fn answering_no_with_a_reason_denies_it() {
    let mut p = at_a_terminal();
    p.exp_string("Approve as alice? [y/n] ").unwrap();
    p.send_line("n").unwrap();
    p.exp_string("Reason (optional): ").unwrap();
    p.send_line("not this week").unwrap();
    p.exp_string("NOT RUN: denied by alice: not this week")
        .unwrap();
    p.exp_string("bodies run: read_dashboard=1 export_customers=0 drop_table=0")
        .unwrap();
    p.exp_eof().unwrap();
}
