//! One tool call through the gate: which policy judges it, the verdict, the wait for people,
//! and the words the model reads when the call does not run.

use std::collections::BTreeSet;
use std::time::Duration;

use approvals_core::{
    Action, ApprovalRequest, Context, Error, Gate, Permit, RequestView, SubmitOptions, Submitted,
};
use rmcp::ErrorData as McpError;
use rmcp::model::{
    CallToolResult, ContentBlock, JsonObject, ProgressNotificationParam, ProgressToken,
};
use rmcp::service::{Peer, RoleServer};
use tokio_util::sync::CancellationToken;

use super::Shared;

/// The policy that judges tool `tool` of server `server`: the first of `mcp.SERVER.TOOL`,
/// `mcp.SERVER` and `mcp` that `names` defines.
///
/// ```
/// # use approvals_backends::mcp::policy_for;
/// let names: std::collections::BTreeSet<String> =
///     ["mcp".to_string(), "mcp.fs.write_file".to_string()].into();
/// assert_eq!(policy_for(&names, "fs", "write_file").as_deref(), Some("mcp.fs.write_file"));
/// assert_eq!(policy_for(&names, "fs", "read_file").as_deref(), Some("mcp"));
/// assert_eq!(policy_for(&Default::default(), "fs", "read_file"), None);
/// ```
pub fn policy_for(names: &BTreeSet<String>, server: &str, tool: &str) -> Option<String> {
    candidates(server, tool)
        .into_iter()
        .find(|p| names.contains(p))
}

fn candidates(server: &str, tool: &str) -> [String; 3] {
    [
        format!("mcp.{server}.{tool}"),
        format!("mcp.{server}"),
        "mcp".to_owned(),
    ]
}

/// What to do with a call once judged.
pub(crate) enum Judged {
    /// Forward it; then record its end.
    Run(Run),
    /// Answer the client with this; the upstream never sees the call.
    Answer(CallToolResult),
}

/// Leave to forward one call, and how its end is recorded.
// One per forwarded call, moved once or twice: an allocation would cost more than the room.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Run {
    /// The policy allowed it outright: its end is audited as `finished` with no request.
    Allowed { action: Action, context: Context },
    /// People approved it: the permit is taken; its end finishes the request.
    Approved(Permit),
}

impl Run {
    /// Records how the forwarded call ended: `Ok` with a summary, or `Err` with why it failed
    /// (the tool's error, or the upstream's). A failure to record is logged: the call ran.
    pub(crate) async fn finish(self, gate: &Gate, outcome: Result<Option<String>, String>) {
        match self {
            Run::Allowed { action, context } => {
                if let Err(e) = gate.finish_allowed(&action, &context, outcome).await {
                    tracing::error!(action = %action.name, error = %e, "mcp: could not audit the end of an allowed call");
                }
            }
            Run::Approved(permit) => permit.finish(outcome.map(drop)).await,
        }
    }
}

/// Where a held call reports its progress: the client's peer and the token it gave.
pub(crate) struct Progress {
    pub(crate) peer: Peer<RoleServer>,
    pub(crate) token: ProgressToken,
}

/// Judges the call of `tool` with `args` made in `context`: refuses it, or lets it run,
/// holding it while people decide (up to the gateway's wait, or until `cancelled`).
pub(crate) async fn judge(
    shared: &Shared,
    tool: &str,
    args: Option<JsonObject>,
    context: Context,
    progress: Option<Progress>,
    cancelled: &CancellationToken,
) -> Result<Judged, McpError> {
    let gate = &shared.gate;
    let name = format!("{}.{tool}", shared.server);
    let names = gate.policy_names().unwrap_or_default();
    let Some(policy) = policy_for(&names, &shared.server, tool) else {
        let [a, b, c] = candidates(&shared.server, tool);
        let why =
            format!("no policy governs `{name}` (the policy file has none of `{a}`, `{b}`, `{c}`)");
        let refused = Action::builder(&name, "")
            .args(&args.clone().unwrap_or_default())
            .build();
        if let Ok(action) = refused {
            if let Err(e) = gate.record_refused_call(&action, &context, &why).await {
                tracing::error!(error = %e, "mcp: could not audit a refused call");
            }
        }
        return Ok(answer(format!("Refused: {why}. The call was not run.")));
    };
    let action = match Action::builder(&name, &policy)
        .args(&args.unwrap_or_default())
        .build()
    {
        Ok(a) => a,
        Err(e) => return Ok(answer(format!("Refused: {e}. The call was not run."))),
    };
    let submitted = gate
        .submit(action.clone(), context.clone(), SubmitOptions::default())
        .await;
    let request = match submitted {
        Ok(Submitted::Allowed { .. }) => return Ok(Judged::Run(Run::Allowed { action, context })),
        Ok(Submitted::Requested { request, .. }) => *request,
        Ok(_) => {
            return Ok(answer(
                "Not run: the gate gave an answer this gateway does not know.".into(),
            ));
        }
        Err(e) => return Ok(answer(e.model_text())),
    };
    let request = match hold(shared, request, progress, cancelled).await {
        Held::Decided(r) => r,
        Held::Open(r) => return Ok(answer(awaits(shared, &r))),
        Held::Failed(e) => return Ok(answer(e.model_text())),
        Held::Gone => {
            return Err(McpError::internal_error(
                "the client cancelled the call while it waited for approval; the request stays open",
                None,
            ));
        }
    };
    match gate.conclude(request).await {
        Ok(permit) => Ok(Judged::Run(Run::Approved(permit))),
        // A tool's arguments are the model's: the gateway does not run a call a reviewer
        // changed, it tells the model what was approved, so the model makes that call.
        Err(Error::Edited { edit, by, .. }) => Ok(answer(edited(gate, edit, &by).await)),
        Err(e) => Ok(answer(e.model_text())),
    }
}

/// What the model is told of a call a reviewer approved with changed arguments.
async fn edited(gate: &approvals_core::Gate, edit: approvals_core::RequestId, by: &str) -> String {
    let changes = match gate.request(edit).await {
        Ok(Some(r)) => r.edit_of.map(|e| {
            e.changes
                .iter()
                .map(|c| format!("`{}` = {}", c.arg, c.to))
                .collect::<Vec<_>>()
                .join(", ")
        }),
        _ => None,
    };
    match changes {
        Some(c) => format!(
            "Not run as asked: {by} changed the call ({c}); the changed call is request {edit}. Call the tool again with those arguments to run it once it is approved."
        ),
        None => format!("Not run as asked: {by} changed the call (request {edit})."),
    }
}

enum Held {
    Decided(ApprovalRequest),
    Open(ApprovalRequest),
    Failed(Error),
    Gone,
}

/// Waits for people to decide `request`, up to the gateway's wait, reporting progress.
async fn hold(
    shared: &Shared,
    mut request: ApprovalRequest,
    progress: Option<Progress>,
    cancelled: &CancellationToken,
) -> Held {
    let gate = &shared.gate;
    let started = tokio::time::Instant::now();
    let mut reports = 0u32;
    loop {
        if !request.is_pending() {
            return Held::Decided(request);
        }
        let waited = started.elapsed();
        if waited >= shared.wait {
            return Held::Open(request);
        }
        if let Some(p) = &progress {
            reports += 1;
            let view = view(shared, &request);
            let message = format!(
                "waiting for approval of request {} ({}; {} s left to decide)",
                request.id, view.still_needed, view.expires_in_secs
            );
            let sent = p
                .peer
                .notify_progress(
                    ProgressNotificationParam::new(p.token.clone(), f64::from(reports))
                        .with_message(message),
                )
                .await;
            if let Err(e) = sent {
                tracing::debug!(error = %e, "mcp: could not report progress");
            }
        }
        let step = shared.progress_every.min(shared.wait - waited);
        tokio::select! {
            r = gate.await_decision(request.id, step) => match r {
                Ok(r) => request = r,
                Err(e) => return Held::Failed(e),
            },
            () = cancelled.cancelled() => return Held::Gone,
        }
    }
}

fn view(shared: &Shared, request: &ApprovalRequest) -> RequestView {
    let gate = &shared.gate;
    RequestView::of(
        request,
        gate.directory(),
        gate.clock().now(),
        shared.console_url.as_deref(),
    )
}

/// What the model reads when the call waits for people past the gateway's wait.
fn awaits(shared: &Shared, request: &ApprovalRequest) -> String {
    let view = view(shared, request);
    let mut text = format!(
        "Not run yet: this call needs approval by people before it runs. Approval request {} is open: it needs {}",
        request.id, view.still_needed
    );
    if !view.may_approve.is_empty() {
        text.push_str(&format!(
            " (who may approve: {})",
            view.may_approve.join(", ")
        ));
    }
    text.push_str(&format!(
        ", and expires in {}.",
        approvals_core::clock::human(Duration::from_secs(view.expires_in_secs))
    ));
    if let Some(url) = &view.console_url {
        text.push_str(&format!(" Reviewers decide at {url}."));
    }
    text.push_str(
        " Call this tool again with exactly the same arguments once it is approved: it runs then, once. Do not try to reach the same result another way.",
    );
    text
}

fn answer(text: String) -> Judged {
    Judged::Answer(CallToolResult::error(vec![ContentBlock::text(text)]))
}
