//! Running the `approvals` binary as a user would.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

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

/// An `approvals serve` process, killed when dropped.
pub struct Server {
    pub child: Child,
    pub url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `approvals keygen --name NAME` into `dir`; returns the verifier key line.
pub fn keygen(dir: &Path, name: &str) -> String {
    let key = dir.join(format!("{name}.key"));
    let o = approvals(&["keygen", "--name", name, "--out", key.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8(o.stdout).unwrap().trim().to_owned()
}

/// Starts `approvals serve` on a free loopback port; returns once it listens.
pub fn serve(config: &Path, db: &str, audit_key: &Path) -> Server {
    serve_with_env(config, db, audit_key, &[])
}

/// [`serve`], with these environment variables set.
pub fn serve_with_env(config: &Path, db: &str, audit_key: &Path, env: &[(&str, &str)]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_approvals"))
        .args(["serve", "--config", config.to_str().unwrap(), "--db", db])
        .args([
            "--listen",
            "127.0.0.1:0",
            "--audit-key",
            audit_key.to_str().unwrap(),
        ])
        .envs(env.iter().copied())
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut first)
        .unwrap();
    let url = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("serve printed {first:?}"))
        .to_owned();
    Server { child, url }
}

/// A new token and its `sha256:` hash, made by `approvals token` as an operator would.
pub fn token(args: &[&str]) -> (String, String) {
    let mut all = vec!["token"];
    all.extend_from_slice(args);
    let o = approvals(&all);
    assert!(o.status.success(), "{}", text(&o));
    let token = String::from_utf8(o.stdout).unwrap().trim().to_owned();
    let err = String::from_utf8(o.stderr).unwrap();
    let hash = err
        .lines()
        .find_map(|l| l.strip_prefix("sha256 = \""))
        .map(|h| h.trim_end_matches('"').to_owned())
        .unwrap_or_else(|| panic!("no hash in {err}"));
    (token, hash)
}
