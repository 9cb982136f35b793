//! `approvals init`: a new deployment's files, ready to check and serve.

use std::path::Path;

use approvals_backends::file::write_new_signer;
use approvals_backends::http::generate_token;

use crate::output::{Failure, Output};
use crate::serve::DEFAULT_ORIGIN;

const POLICY: &str = r#"# approvals.toml: who may do what, and who must approve it.
# Check it with `approvals policy check approvals.toml`; the format is in docs/policy.md.

[defaults]
expires_in = "1h"           # how long a request waits for its reviewers

# ---- the directory: people (and agents), and groups ----------------------------------------
# A person is the same person under every identity listed here (email, Slack, Teams), and
# may never approve a request they made or that is made on their behalf.

[[people]]
id = "alice"
name = "Alice"
# email = "alice@example.com"
# slack = "U0123ALICE"      # to approve in Slack
# ed25519 = "..."           # to sign decisions (`approvals keygen`)

[[people]]
id = "bob"
name = "Bob"

[[people]]
id = "deploy-bot"
kind = "agent"

[groups]
reviewers = ["alice", "bob"]

# ---- policies: one per name in #[requires_approval(policy = "...")] or a request's "policy" --

# Allowed outright.
[[policies.read.rules]]
name = "reads-run"
allow = true

# Refused outright, with the reason the caller is told.
[[policies.drop-table.rules]]
name = "never"
deny = "agents never drop tables"

# Waits for one reviewer; staging runs at once (a CEL condition on the call's arguments).
[[policies.deploy.rules]]
name = "staging-runs"
when = "args.env == 'staging'"
allow = true

[[policies.deploy.rules]]
name = "one-reviewer"
require = [{ group = "reviewers", count = 1 }]
expires_in = "30m"

# ---- approvals serve ------------------------------------------------------------------------

[server]
origin = "approvals/audit"  # the audit log's name in its signed checkpoints
# public_url = "https://approvals.example.com"   # where reviewers reach the console

# Tokens are kept as hashes; `approvals token` makes more. Each secret was printed once by
# `approvals init`.
"#;

/// Writes `approvals.toml`, `audit.key` (0600) and `audit.vkey` into `dir`, and prints the
/// tokens' secrets once and what to run next. Writes nothing if any of them exists.
pub(crate) fn init(out: &Output, dir: &Path) -> Result<(), Failure> {
    let config = dir.join("approvals.toml");
    let key = dir.join("audit.key");
    let vkey = dir.join("audit.vkey");
    let existing: Vec<String> = [&config, &key, &vkey]
        .iter()
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if !existing.is_empty() {
        return Err(format!(
            "{} already there; approvals init changes nothing (move it away, or start in an empty directory)",
            existing.join(", ")
        )
        .into());
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (reviewer, reviewer_hash) = generate_token();
    let (requester, requester_hash) = generate_token();
    let text = format!(
        "{POLICY}
[[server.tokens]]           # alice reviews: the console, the API, `approvals approve`
principal = \"alice\"
sha256 = \"{reviewer_hash}\"

[[server.tokens]]           # deploy-bot asks for approval over the API
principal = \"deploy-bot\"
sha256 = \"{requester_hash}\"
role = \"request\"
"
    );
    // The key first: it is the one file that must not be left half-made.
    let signer = write_new_signer(&key, DEFAULT_ORIGIN)?;
    std::fs::write(&vkey, format!("{}\n", signer.verifier().to_vkey()))
        .map_err(|e| format!("{}: {e}", vkey.display()))?;
    std::fs::write(&config, text).map_err(|e| format!("{}: {e}", config.display()))?;
    let d = dir.display();
    out.line(&format!(
        "wrote {d}/approvals.toml, {d}/audit.key (0600) and {d}/audit.vkey

tokens (shown once; only their hashes are in approvals.toml):
  alice (reviewer):        {reviewer}
  deploy-bot (requester):  {requester}

next:
  approvals policy check {d}/approvals.toml
  approvals serve --config {d}/approvals.toml --db sqlite:{d}/approvals.db --audit-key {d}/audit.key
  # in another terminal: deploy-bot asks to deploy to prod (it waits for a reviewer)
  curl -s -X POST http://127.0.0.1:8080/api/v1/requests \\
    -H 'Authorization: Bearer {requester}' -H 'Content-Type: application/json' \\
    -d '{{\"action\": \"deploy\", \"policy\": \"deploy\", \"args\": {{\"env\": \"prod\"}}}}'
  # alice approves in the console (http://127.0.0.1:8080/console/, sign in with her token)
  # or: approvals pending --server http://127.0.0.1:8080 --token {reviewer}
  approvals audit verify --db sqlite:{d}/approvals.db --vkey {d}/audit.vkey"
    ));
    Ok(())
}
