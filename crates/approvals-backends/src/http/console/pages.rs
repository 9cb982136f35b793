//! The console's pages, as maud templates: checked when the crate compiles (a tag left open
//! or a value of the wrong type does not build), and every interpolated value escaped by
//! the template itself, so no handler writes HTML by hand.
//!
//! The ids and classes here are the console's contract with its browser test
//! (`tests/browser/console.mjs`) and with anyone who scripts it: keep them.

use approvals_core::log::RequestProof;
use approvals_core::store::Session;
use approvals_core::view::RequestView;
use approvals_core::{ApprovalRequest, ReviewDecision};
use maud::{DOCTYPE, Markup, html};
use serde_json::Value;

/// A whole page: the header (with the signed-in reviewer and a sign-out form, when there is
/// one) around `body`.
pub(super) fn layout(title: &str, who: Option<&Session>, body: &Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · approvals" }
                link rel="stylesheet" href="/console/style.css";
            }
            body {
                header {
                    nav {
                        a href="/console" class="brand" { "approvals" } " "
                        a href="/console" id="pending-link" { "Waiting" } " "
                        a href="/console/history" id="history-link" { "History" }
                    }
                    @if let Some(s) = who {
                        form method="post" action="/console/logout" class="who" {
                            span { "signed in as " b id="whoami" { (s.principal.id) } }
                            input type="hidden" name="csrf" value=(s.csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// An error paragraph.
pub(super) fn error(text: &str) -> Markup {
    html! { p class="error" { (text) } }
}

/// The sign-in form; `csrf` is its double-submit token, `next` where to go after.
pub(super) fn login(error: Option<&str>, csrf: &str, next: &str) -> Markup {
    html! {
        h1 { "Sign in" }
        @if let Some(e) = error {
            p class="error" { (e) }
        }
        form method="post" action="/console/login" {
            p {
                label for="token" { "Reviewer token" }
                br;
                input id="token" name="token" type="password" autocomplete="off" size="60" required;
            }
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="next" value=(next);
            button type="submit" id="sign-in" { "Sign in" }
        }
    }
}

/// What waits for review; `reviewer` is who is looking (to mark what they may approve).
pub(super) fn waiting(views: &[RequestView], reviewer: &str) -> Markup {
    html! {
        h1 { "Waiting for review" }
        @if views.is_empty() {
            p id="none" { "Nothing is waiting." }
        } @else {
            table id="pending" {
                tr { th { "Action" } th { "Requested by" } th { "Still needed" } th { "Expires" } }
                @for v in views {
                    @let r = &v.request;
                    tr {
                        td {
                            a href={ "/console/requests/" (r.id) } class="request" { (r.action.name) }
                            @if v.may_approve.iter().any(|m| m == reviewer) {
                                " " span class="status" { "you may approve" }
                            }
                        }
                        td {
                            (r.context.requester.id)
                            @if let Some(p) = &r.context.on_behalf_of { " for " (p.id) }
                        }
                        td { (v.still_needed) }
                        td { (r.expires_at) }
                    }
                }
            }
        }
    }
}

/// The decided requests, latest first.
pub(super) fn history(decided: &[ApprovalRequest]) -> Markup {
    html! {
        h1 { "History" }
        @if decided.is_empty() {
            p { "Nothing has been decided yet." }
        } @else {
            table id="decided" {
                tr { th { "Action" } th { "Decision" } th { "Requested by" } th { "Requested at" } }
                @for r in decided {
                    @let word = r.decision().map_or("pending", |d| d.word());
                    tr {
                        td { a href={ "/console/requests/" (r.id) } class="request" { (r.action.name) } }
                        td {
                            span class={ "status " (word) } { (word) } " "
                            @if let Some(d) = r.decision() { (d) }
                        }
                        td { (r.context.requester.id) }
                        td { (r.created_at) }
                    }
                }
            }
        }
    }
}

/// One argument's value as shown: a redacted one masked, anything else as JSON.
fn argument(v: &Value) -> Markup {
    let keyed = v
        .get(approvals_core::action::REDACTED_KEY)
        .map(|h| ("hmac", h));
    let legacy = v
        .get(approvals_core::action::LEGACY_REDACTED_KEY)
        .map(|h| ("sha256", h));
    match keyed
        .or(legacy)
        .and_then(|(k, h)| h.as_str().map(|h| (k, h)))
    {
        Some((kind, h)) => html! {
            span class="redacted" { "•••••• redacted (" (kind) " " (&h[..h.len().min(12)]) "…)" }
        },
        None => html! { code { (v) } },
    }
}

/// What the request page shows besides the request itself.
pub(super) struct Detail<'a> {
    /// A notice or an error, as `(class, text)`.
    pub(super) message: Option<(&'a str, &'a str)>,
    /// The audit trail, when the service has a log to read.
    pub(super) audit: Option<Markup>,
    /// A form shown instead of the review form (a link's confirmation), while pending.
    pub(super) confirm: Option<Markup>,
    /// The session's CSRF token, for the review form, shown while pending.
    pub(super) review_csrf: Option<&'a str>,
}

/// One request in full: its context, arguments, reviews, audit trail, and the review form.
pub(super) fn request(v: &RequestView, detail: Detail<'_>) -> Markup {
    let r = &v.request;
    let state = v.status.word();
    let digest = r.action.digest.to_hex();
    let pending = r.is_pending();
    html! {
        h1 { (r.action.name) }
        p { span class={ "status " (state) } id="status" { (state) } }
        @if let Some((class, text)) = detail.message {
            p class=(class) id="message" { (text) }
        }
        table id="context" {
            tr { th { "Policy" } td { (r.action.policy) } }
            tr { th { "Rule" } td { (r.requirement.rule) } }
            tr { th { "Requested by" } td { (r.context.requester.id) } }
            @if let Some(p) = &r.context.on_behalf_of {
                tr { th { "On behalf of" } td { (p.id) } }
            }
            @if let Some(t) = &r.context.trigger {
                tr { th { "Trigger" } td { (t) } }
            }
            @if let Some(t) = &r.context.reason {
                tr { th { "Reason" } td { (t) } }
            }
            tr {
                th { "Digest" }
                td { span class="mono" { b { (&digest[..12]) } (&digest[12..]) } }
            }
            @if let Some(args) = r.action.args.as_object() {
                @for (k, val) in args {
                    tr { th { "Argument " code { (k) } } td { (argument(val)) } }
                }
            }
            @if pending {
                tr { th { "Still needed" } td { (v.still_needed) } }
                tr { th { "May approve" } td { (v.may_approve.join(", ")) } }
            }
            tr { th { "Requested at" } td { (r.created_at) } }
            tr { th { "Expires" } td { (r.expires_at) } }
            @if let Some(d) = r.decision() {
                tr { th { "Decision" } td { (d) } }
            }
            @if let Some(into) = v.edited_into {
                tr {
                    th { "Edited into" }
                    td { a href={ "/console/requests/" (into) } id="edited-into" { (into) } }
                }
            }
            @if let Some(e) = &r.edit_of {
                tr {
                    th { "Edit of" }
                    td id="edit-of" {
                        a href={ "/console/requests/" (e.original) } { (e.original) }
                        ", by " (e.by.id) ": "
                        @for (i, c) in e.changes.iter().enumerate() {
                            @if i > 0 { ", " }
                            code { (c.arg) } " " (c.from) " → " b { (c.to) }
                        }
                    }
                }
            }
            @for rv in &r.reviews {
                @let verb = rv.review.decision.past();
                tr {
                    th { "Review" }
                    td {
                        (rv.review.reviewer.id) " " (verb) " at " (rv.review.at)
                        @if let Some(c) = &rv.review.comment { ": " (c) }
                    }
                }
            }
        }
        @if let Some(audit) = detail.audit { (audit) }
        @if pending {
            @if let Some(confirm) = detail.confirm { (confirm) }
            @if let Some(csrf) = detail.review_csrf {
                form method="post" action={ "/console/requests/" (r.id) "/review" } class="review" {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="digest" value=(digest);
                    p {
                        label for="comment" { "Comment (required to deny, or to ask for changes: say what to change)" }
                        br;
                        textarea id="comment" name="comment" {}
                    }
                    button type="submit" name="verdict" value="approve" class="approve" id="approve" { "Approve" }
                    " "
                    button type="submit" name="verdict" value="request_changes" class="changes" id="request-changes" { "Request changes" }
                    " "
                    button type="submit" name="verdict" value="deny" class="deny" id="deny" { "Deny" }
                    @let editable = crate::shown::editable_args(r);
                    @if !editable.is_empty() {
                        fieldset id="edit" {
                            legend { "Or approve it changed" }
                            p class="hint" { (crate::shown::EDIT_HINT) }
                            @for k in editable {
                                p {
                                    label for={ "set-" (k) } { code { (k) } }
                                    " "
                                    input type="text" id={ "set-" (k) } name={ "set:" (k) } value=(crate::shown::edit_text(&r.action.args[k]));
                                }
                            }
                            button type="submit" name="verdict" value="edit" class="approve" id="approve-edited" { "Approve with changes" }
                        }
                    }
                }
            }
        }
    }
}

/// The request's audit records, and how each is proven in the signed log.
pub(super) fn audit(proof: Result<&RequestProof, &str>) -> Markup {
    let proof = match proof {
        Ok(p) => p,
        Err(e) => return error(&format!("The audit log could not be read: {e}")),
    };
    let size = proof.tree_size;
    let root = &proof.root[..proof.root.len().min(16)];
    html! {
        h2 { "Audit trail" }
        p id="audit-summary" {
            @if proof.checkpoint.is_some() {
                "Proven against the signed checkpoint of the first " (records(size)) " (root "
                code { (root) "…" } ")."
            } @else {
                "No checkpoint is signed yet; the log holds " (records(size)) ", each proven once one is."
            }
        }
        table id="audit" {
            tr { th { "Record" } th { "Event" } th { "Proof" } }
            @for r in &proof.records {
                @let event = serde_json::from_str::<Value>(&r.record)
                    .ok()
                    .and_then(|v| v["event"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| "?".to_owned());
                tr {
                    td { (r.seq) }
                    td { (event) }
                    td {
                        @match &r.inclusion_proof {
                            Some(p) => { "inclusion proof, " (p.len()) " hashes" }
                            None => { "not yet covered by a checkpoint" }
                        }
                    }
                }
            }
        }
    }
}

/// "1 record", "2 records".
fn records(n: u64) -> String {
    if n == 1 {
        "1 record".to_owned()
    } else {
        format!("{n} records")
    }
}

/// The confirmation a reviewer gives a signed link from a Teams card.
pub(super) fn confirm_link(
    token: &str,
    verdict: ReviewDecision,
    reviewer: &str,
    csrf: &str,
) -> Markup {
    let verb = verdict.verb();
    let needs_reason = verdict != ReviewDecision::Approve;
    let label = match verdict {
        ReviewDecision::Approve => "Comment",
        ReviewDecision::Deny => "Why (required)",
        ReviewDecision::RequestChanges => "What to change (required)",
    };
    html! {
        form method="post" action={ "/console/links/" (token) } class="review" {
            p { "You are about to " b { (verb) } " this request as " b { (reviewer) } "." }
            p {
                label for="comment" { (label) }
                br;
                textarea id="comment" name="comment" required[needs_reason] {}
            }
            input type="hidden" name="csrf" value=(csrf);
            button type="submit" id="confirm" class=(verb) { "Confirm: " (verb) }
        }
    }
}

/// Why a link cannot be used.
pub(super) fn link_error(why: &str) -> Markup {
    html! { p class="error" id="link-error" { (why) "." } }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a template interpolates is escaped: text that looks like markup stays text.
    #[test]
    fn values_are_escaped() {
        let page = login(
            Some("<script>alert(1)</script>"),
            "a\"b",
            "/console/x?a=1&b=2",
        );
        let html = page.into_string();
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        assert!(html.contains(r#"name="csrf" value="a&quot;b""#), "{html}");
        assert!(html.contains("/console/x?a=1&amp;b=2"), "{html}");
        assert!(!html.contains("<script>"));
    }

    /// A deny link's comment is required; an approve link's is not.
    #[test]
    fn a_deny_link_requires_a_reason() {
        let deny = confirm_link("t", ReviewDecision::Deny, "bob", "c").into_string();
        let approve = confirm_link("t", ReviewDecision::Approve, "bob", "c").into_string();
        assert!(
            deny.contains(r#"<textarea id="comment" name="comment" required>"#),
            "{deny}"
        );
        assert!(
            approve.contains(r#"<textarea id="comment" name="comment">"#),
            "{approve}"
        );
    }
}
