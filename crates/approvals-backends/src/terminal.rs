//! A yes/no prompt at the terminal, for local development.

use std::io::{BufRead, Write};
use std::sync::{Arc, Mutex};

use approvals_core::principal::same_id;
use approvals_core::tally::progress;
use approvals_core::{
    ApprovalRequest, Approver, ApproverError, Delivery, Evidence, Gate, Principal, RequestView,
    Review,
};
use async_trait::async_trait;

type Input = Box<dyn BufRead + Send>;
type Output = Box<dyn Write + Send>;

/// Shows each request with its full context at a terminal and asks for a decision.
///
/// The reviewer is the one named with [`TerminalApprover::reviewer`], else the
/// operating-system user (`$USER`); with neither, the prompt asks who is reviewing. A
/// reviewer who may not approve the request (the requester, the person it is made for, or
/// someone its requirement does not name) is told so and not prompted: the request is left
/// to other channels.
///
/// Prompts run on a blocking thread; several pending requests are asked one after another.
///
/// ```no_run
/// use approvals_backends::terminal::TerminalApprover;
/// let approver = TerminalApprover::new().reviewer("alice");
/// ```
#[derive(Clone)]
pub struct TerminalApprover {
    reviewer: Option<String>,
    io: Arc<Mutex<(Input, Output)>>,
}

impl std::fmt::Debug for TerminalApprover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TerminalApprover")
            .field("reviewer", &self.reviewer)
            .finish_non_exhaustive()
    }
}

impl Default for TerminalApprover {
    fn default() -> Self {
        Self::new()
    }
}

impl TerminalApprover {
    /// Prompts on standard input and output, as the OS user.
    pub fn new() -> Self {
        Self::with_io(std::io::BufReader::new(std::io::stdin()), std::io::stderr())
    }

    /// Prompts on the given reader and writer (for tests and embedded consoles).
    pub fn with_io(
        input: impl BufRead + Send + 'static,
        output: impl Write + Send + 'static,
    ) -> Self {
        Self {
            reviewer: None,
            io: Arc::new(Mutex::new((Box::new(input), Box::new(output)))),
        }
    }

    /// Names the reviewer instead of taking the OS user.
    pub fn reviewer(mut self, id: &str) -> Self {
        self.reviewer = Some(id.to_owned());
        self
    }

    fn reviewer_id(&self) -> Option<String> {
        self.reviewer.clone().or_else(os_user)
    }
}

fn os_user() -> Option<String> {
    ["USER", "USERNAME", "LOGNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
}

#[async_trait]
impl Approver for TerminalApprover {
    fn name(&self) -> &str {
        "terminal"
    }

    async fn notify(
        &self,
        request: &ApprovalRequest,
        gate: &Gate,
    ) -> Result<Delivery, ApproverError> {
        let reviewer = self.reviewer_id();
        let (gate, request, io) = (gate.clone(), request.clone(), self.io.clone());
        let id = request.id;
        tokio::spawn(async move {
            // Prompt only after the delivery is recorded, and skip it if decided meanwhile.
            match gate.delivered(id, "terminal").await {
                Ok(r) if r.is_pending() => {}
                _ => return,
            }
            let may =
                RequestView::of(&request, gate.directory(), gate.clock().now(), None).may_approve;
            let answer = tokio::task::spawn_blocking({
                let (request, reviewer) = (request.clone(), reviewer.clone());
                move || prompt(&io, &request, reviewer, &may)
            })
            .await;
            if let Ok(Some((reviewer, approve, comment))) = answer {
                let reviewer = Principal::human(reviewer);
                let at = gate.clock().now();
                let mut review = if approve {
                    Review::approve(&request, reviewer, at)
                } else {
                    Review::deny(&request, reviewer, at)
                };
                review.comment = comment;
                review.evidence = Evidence::Terminal { os_user: os_user() };
                // Accepted or refused, the gate audits it.
                let _ = gate.submit_review(review).await;
            }
        });
        Ok(Delivery {
            channel: "terminal".into(),
            id: format!("terminal-{id}"),
            data: serde_json::Value::Null,
        })
    }
}

/// Shows the request and reads a decision: `Some((reviewer, approve, comment))`, or `None`
/// when the reviewer may not review it or the input ended. Without a named reviewer (no
/// `$USER` either), it asks who is reviewing, among `may` (who may approve it now).
fn prompt(
    io: &Mutex<(Input, Output)>,
    request: &ApprovalRequest,
    reviewer: Option<String>,
    may: &[String],
) -> Option<(String, bool, Option<String>)> {
    let mut guard = io.lock().unwrap_or_else(|e| e.into_inner());
    let (input, out) = &mut *guard;
    let _ = write_request(out, request);
    let reviewer = match reviewer {
        Some(r) => r,
        None => {
            let _ = write!(out, "  Review as (one of: {}): ", may.join(", "));
            let _ = out.flush();
            read_line(input)?.trim().to_owned()
        }
    };
    if let Some(role) = request.context.is_party(&Principal::human(&reviewer)) {
        let _ = writeln!(
            out,
            "  {reviewer} is {role}: they cannot approve their own request. Waiting for another reviewer."
        );
        return None;
    }
    if !may.iter().any(|m| same_id(m, &reviewer)) {
        let who = if may.is_empty() {
            "nobody else".to_owned()
        } else {
            may.join(", ")
        };
        let _ = writeln!(
            out,
            "  {reviewer} may not approve this request (it needs {}; who may: {who}). Waiting for another reviewer.",
            progress(request).still_needed()
        );
        return None;
    }
    loop {
        let _ = write!(out, "  Approve as {reviewer}? [y/n] ");
        let _ = out.flush();
        let answer = read_line(input)?;
        let approve = match answer.trim().to_ascii_lowercase().as_str() {
            "y" | "yes" => true,
            "n" | "no" => false,
            _ => continue,
        };
        let _ = write!(
            out,
            "  {} (optional): ",
            if approve { "Comment" } else { "Reason" }
        );
        let _ = out.flush();
        let comment = read_line(input).map(|c| c.trim().to_owned());
        return Some((reviewer, approve, comment.filter(|c| !c.is_empty())));
    }
}

fn read_line(input: &mut Input) -> Option<String> {
    let mut line = String::new();
    match input.read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line),
    }
}

fn write_request(out: &mut Output, r: &ApprovalRequest) -> std::io::Result<()> {
    let ctx = &r.context;
    writeln!(out)?;
    writeln!(out, "  ── approval request {} ──", r.id)?;
    writeln!(
        out,
        "  action     {}  (policy {}, rule {})",
        r.action.name, r.action.policy, r.requirement.rule
    )?;
    writeln!(out, "  arguments  {}", r.action.args)?;
    writeln!(out, "  digest     {}…", r.action.digest.short(16))?;
    writeln!(out, "  requester  {}", ctx.requester)?;
    if let Some(p) = &ctx.on_behalf_of {
        writeln!(out, "  for        {p}")?;
    }
    if let Some(t) = &ctx.trigger {
        writeln!(out, "  trigger    {t}")?;
    }
    if let Some(reason) = &ctx.reason {
        writeln!(out, "  reason     {reason}")?;
    }
    for (k, v) in &ctx.labels {
        writeln!(out, "  label      {k}={v}")?;
    }
    writeln!(out, "  needs      {}", progress(r).still_needed())?;
    writeln!(out, "  expires    {}", r.expires_at)?;
    Ok(())
}
