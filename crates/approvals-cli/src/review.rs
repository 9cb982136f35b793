//! Operator commands: `pending`, `show`, `approve`, `deny`, against a server (decisions
//! signed with the reviewer's key) or directly against the database.

use std::path::PathBuf;

use approvals_backends::file::load_signer;
use approvals_backends::sql::Database;
use approvals_core::signed::SignedDecision;
use approvals_core::view::{RequestView, Status};
use approvals_core::{RequestId, ReviewDecision, StaticDirectory, Timestamp};
use serde_json::{Value, json};

use crate::output::{Failure, Output};

/// Where the requests are: a server, or a database.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct Target {
    /// The approvals server, e.g. http://127.0.0.1:8080.
    #[arg(long, conflicts_with = "db")]
    server: Option<String>,
    /// A bearer token for reading from the server.
    #[arg(long, env = "APPROVALS_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The database, instead of a server.
    #[arg(long)]
    db: Option<String>,
    /// With --db, to decide: the policy file (people, groups, keys).
    #[arg(long)]
    config: Option<PathBuf>,
    /// With --db, to decide: the audit log's checkpoint signing key.
    #[arg(long)]
    audit_key: Option<PathBuf>,
}

/// A request, read from wherever it lives, as the API shows it.
async fn read(t: &Target, id: Option<RequestId>) -> Result<Vec<RequestView>, Failure> {
    match (&t.server, &t.db) {
        (Some(server), _) => {
            let token = t.token.as_deref().ok_or_else(|| {
                Failure::from("reading from a server needs --token (or APPROVALS_TOKEN)")
            })?;
            let url = match id {
                Some(id) => format!("{}/api/v1/requests/{id}", server.trim_end_matches('/')),
                None => format!("{}/api/v1/requests", server.trim_end_matches('/')),
            };
            let v = call(reqwest::Client::new().get(url).bearer_auth(token)).await?;
            let views = match id {
                Some(_) => vec![v],
                None => v["requests"].as_array().cloned().unwrap_or_default(),
            };
            views
                .into_iter()
                .map(|v| {
                    serde_json::from_value(v).map_err(|e| {
                        Failure::from(format!("the server's answer is not a request: {e}"))
                    })
                })
                .collect()
        }
        (None, Some(db)) => {
            let db = Database::open_existing(db)
                .await
                .map_err(|e| e.to_string())?;
            let store = db.store();
            let found = match id {
                Some(id) => vec![
                    store
                        .get(id)
                        .await
                        .map_err(|e| e.to_string())?
                        .ok_or_else(|| format!("no approval request {id}"))?,
                ],
                None => store.list_open().await.map_err(|e| e.to_string())?,
            };
            db.close().await;
            // Read straight from the database there is no directory: who may approve is
            // the server's to say.
            let dir = StaticDirectory::new();
            Ok(found
                .iter()
                .map(|r| RequestView::of(r, &dir, Timestamp::now(), None))
                .collect())
        }
        (None, None) => Err("give --server URL or --db URL".into()),
    }
}

async fn call(req: reqwest::RequestBuilder) -> Result<Value, Failure> {
    let r = req.send().await.map_err(|e| e.to_string())?;
    let status = r.status();
    let v: Value = r.json().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!(
            "{status}: {} ({})",
            v["error"]["message"].as_str().unwrap_or("?"),
            v["error"]["code"].as_str().unwrap_or("?")
        )
        .into());
    }
    Ok(v)
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string().into())
}

pub(crate) fn pending(out: &Output, t: &Target) -> Result<(), Failure> {
    let list = runtime()?.block_on(read(t, None))?;
    if out.json() {
        out.line(&json!({ "requests": list }).to_string());
        return Ok(());
    }
    if list.is_empty() {
        out.line("no pending requests");
    }
    for v in &list {
        let r = &v.request;
        out.line(&format!(
            "{}  {}  by {}{}  needs {}  expires {}",
            r.id,
            r.action.name,
            r.context.requester.id,
            r.context
                .on_behalf_of
                .as_ref()
                .map_or_else(String::new, |p| format!(" for {}", p.id)),
            v.still_needed,
            r.expires_at,
        ));
    }
    Ok(())
}

pub(crate) fn show(out: &Output, t: &Target, id: &str) -> Result<(), Failure> {
    let id = parse_id(id)?;
    let v = runtime()?.block_on(read(t, Some(id)))?.remove(0);
    if out.json() {
        out.line(&json!(v).to_string());
        return Ok(());
    }
    print_request(out, &v);
    Ok(())
}

fn print_request(out: &Output, v: &RequestView) {
    let r = &v.request;
    let a = &r.action;
    let c = &r.context;
    out.line(&format!("request   {}", r.id));
    out.line(&format!("status    {}", v.status));
    out.line(&format!("action    {} (policy {})", a.name, a.policy));
    out.line(&format!("args      {}", a.args));
    if !a.editable.is_empty() {
        out.line(&format!(
            "editable  {} (approve --set NAME=VALUE)",
            a.editable.join(", ")
        ));
    }
    if let Some(e) = &r.edit_of {
        let changes: Vec<String> = e.changes.iter().map(ToString::to_string).collect();
        out.line(&format!(
            "edit of   {} by {}: {}",
            e.original,
            e.by.id,
            changes.join(", ")
        ));
    }
    if let Some(into) = v.edited_into {
        out.line(&format!("edited    into request {into}"));
    }
    out.line(&format!("digest    {}", a.digest));
    out.line(&format!("requester {}", c.requester.id));
    if let Some(p) = &c.on_behalf_of {
        out.line(&format!("for       {}", p.id));
    }
    if let Some(x) = &c.trigger {
        out.line(&format!("trigger   {x}"));
    }
    if let Some(x) = &c.reason {
        out.line(&format!("reason    {x}"));
    }
    out.line(&format!("rule      {}", r.requirement.rule));
    if v.status == Status::Pending {
        out.line(&format!("needs     {}", v.still_needed));
        if !v.may_approve.is_empty() {
            out.line(&format!("approvers {}", v.may_approve.join(", ")));
        }
    }
    out.line(&format!(
        "expires   {} (in {} s)",
        r.expires_at, v.expires_in_secs
    ));
    if let Some(url) = &v.console_url {
        out.line(&format!("console   {url}"));
    }
    for rv in &r.reviews {
        let rv = &rv.review;
        out.line(&format!(
            "review    {} {} at {}{}",
            rv.reviewer.id,
            rv.decision.verb(),
            rv.at,
            rv.comment
                .as_deref()
                .map_or_else(String::new, |c| format!(": {c}"))
        ));
    }
}

fn parse_id(id: &str) -> Result<RequestId, Failure> {
    id.parse()
        .map_err(|_| Failure::from(format!("`{id}` is not a request id")))
}

/// What `approve` and `deny` share: which request, and whose key signs.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct Decision {
    /// The request id.
    id: String,
    /// The reviewer's key (from `approvals keygen --name <reviewer>`).
    #[arg(long)]
    key: PathBuf,
    /// The reviewer's id, if it is not the key's name.
    #[arg(long = "as")]
    reviewer: Option<String>,
    #[command(flatten)]
    target: Target,
}

/// `NAME=VALUE` of `approve --set`: the value as JSON if it reads as JSON, else as text.
pub(crate) fn parse_set(s: &str) -> Result<(String, Value), String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not NAME=VALUE (e.g. limit=500)"))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(format!(
            "`{s}` names no argument: NAME=VALUE (e.g. limit=500)"
        ));
    }
    let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
    Ok((name.to_owned(), value))
}

pub(crate) fn decide(
    out: &Output,
    d: &Decision,
    verdict: ReviewDecision,
    comment: Option<String>,
    set: Option<serde_json::Map<String, Value>>,
) -> Result<(), Failure> {
    let t = &d.target;
    let id = parse_id(&d.id)?;
    let signer = load_signer(&d.key).map_err(|e| format!("{}: {e}", d.key.display()))?;
    // A reviewer's key is named after them (`approvals keygen --name alice`).
    let reviewer = d.reviewer.as_deref().unwrap_or(signer.name()).to_owned();
    let rt = runtime()?;
    let v = rt.block_on(async {
        let current = read(t, Some(id)).await?.remove(0);
        let digest = current.request.action.digest;
        let mut signed = SignedDecision::sign(
            signer.signing_key(),
            id,
            digest,
            &reviewer,
            verdict,
            comment,
            Timestamp::now(),
        );
        if let Some(set) = set.clone() {
            signed = signed.with_set(signer.signing_key(), set);
        }
        match (&t.server, &t.db) {
            (Some(server), _) => {
                let url = format!(
                    "{}/api/v1/requests/{id}/reviews",
                    server.trim_end_matches('/')
                );
                let v = call(
                    reqwest::Client::new()
                        .post(url)
                        .json(&json!({ "signed": signed })),
                )
                .await?;
                serde_json::from_value::<RequestView>(v).map_err(|e| {
                    Failure::from(format!("the server's answer is not a request: {e}"))
                })
            }
            (None, Some(db)) => {
                let (config, key) = t.config.as_deref().zip(t.audit_key.as_deref()).ok_or(
                    "deciding on a database needs --config (people and keys) and --audit-key",
                )?;
                let setup = crate::serve::setup(config, db, key, false).await?;
                let gate = &setup.gate;
                let person = gate
                    .directory()
                    .person(&reviewer)
                    .ok_or_else(|| format!("{reviewer} is not in the approvers directory"))?;
                let known = person.ed25519.ok_or_else(|| {
                    format!("{reviewer} has no ed25519 key in {}", config.display())
                })?;
                signed.verify(&known).map_err(|_| {
                    format!(
                        "this key is not the one {} holds for {reviewer}",
                        config.display()
                    )
                })?;
                let review = signed.into_review(person.principal(), &known, "cli");
                let result = gate.submit_review(review).await;
                gate.shutdown().await.map_err(|e| e.to_string())?;
                setup.db.close().await;
                let r = result.map_err(|e| e.to_string())?;
                Ok(RequestView::of(
                    &r,
                    gate.directory(),
                    Timestamp::now(),
                    None,
                ))
            }
            (None, None) => Err("give --server URL or --db URL".into()),
        }
    })?;
    let standing = match v.status {
        Status::Pending => format!("pending, needs {}", v.still_needed),
        other => other.to_string(),
    };
    if out.json() {
        out.line(&json!(v).to_string());
    } else if let Some(edit) = v.request.edit_of.as_ref().filter(|e| e.original == id) {
        let changes: Vec<String> = edit.changes.iter().map(ToString::to_string).collect();
        out.line(&format!(
            "approved {id} with {}: the edited call is request {}, {standing}",
            changes.join(", "),
            v.request.id
        ));
    } else {
        out.line(&format!("{} {}: {standing}", verdict.past(), id));
    }
    Ok(())
}
