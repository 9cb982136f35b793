//! Reading `approvals.toml`: the format, checked key by key with positions.
//!
//! The file is parsed into TOML's spanned tree and walked by hand rather than through
//! `serde`, so that every problem in it is reported (serde stops at the first) with its own
//! line, column and hint.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::time::Duration;

use approvals_core::{
    Factor, GrantCaps, IfUndelivered, Person, PrincipalKind, Reminders, Requirement,
    StaticDirectory,
};
use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::condition::Condition;
use crate::diagnostic::{Diagnostics, Reporter, did_you_mean};
use crate::model::{Outcome, Policy, PolicySet, Rule};

type Value<'i> = Spanned<DeValue<'i>>;

/// `server` holds `approvals serve`'s settings; the CLI reads it, the policy ignores it.
const TOP: &[&str] = &["defaults", "people", "groups", "policies", "server"];
const DEFAULTS: &[&str] = &[
    "expires_in",
    "channels",
    "if_undelivered",
    "max_grant_duration",
    "max_grant_uses",
];
const PERSON: &[&str] = &["id", "kind", "name", "email", "slack", "teams", "ed25519"];
const POLICY: &[&str] = &[
    "description",
    "mode",
    "rules",
    "max_grant_duration",
    "max_grant_uses",
];
const RULE: &[&str] = &[
    "name",
    "description",
    "mode",
    "when",
    "allow",
    "deny",
    "require",
    "expires_in",
    "channels",
    "if_undelivered",
    "escalate",
    "remind",
    "max_grant_duration",
    "max_grant_uses",
];
const FACTOR: &[&str] = &["group", "people", "count"];
const ESCALATE: &[&str] = &["after", "notify"];
const REMIND: &[&str] = &["every", "max"];

/// Parses and checks a policy file. `file` names it in messages.
///
/// The whole file is read on one thread with a stack of known size (the CEL parser recurses
/// on nested conditions), so a hostile file is refused with its errors, never a crash.
pub fn parse(file: &str, src: &str) -> Result<PolicySet, Diagnostics> {
    parse_with::<Ignored>(file, src).map(|(set, _)| set)
}

/// What is not read: the `[server]` table, for [`parse`].
#[derive(Default)]
struct Ignored;

impl<'de> serde::Deserialize<'de> for Ignored {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d).map(|_| Ignored)
    }
}

/// [`parse`], and the `[server]` table read as `T` in the same parse of the same bytes
/// (`T::default()` when the file has none). A `[server]` that does not fit `T` is reported
/// like any other error of the file, with its line and column.
pub fn parse_with<T: serde::de::DeserializeOwned + Default + Send>(
    file: &str,
    src: &str,
) -> Result<(PolicySet, T), Diagnostics> {
    crate::condition::on_parser_stack(|| parse_here(file, src)).unwrap_or_else(|message| {
        Err(Diagnostics {
            file: file.to_owned(),
            errors: vec![crate::diagnostic::Diagnostic {
                line: 1,
                column: 1,
                span: 0..0,
                message,
                hint: None,
            }],
        })
    })
}

fn parse_here<T: serde::de::DeserializeOwned + Default + Send>(
    file: &str,
    src: &str,
) -> Result<(PolicySet, T), Diagnostics> {
    let mut w = Walker {
        r: Reporter::new(src),
    };
    let (doc, errors) = DeTable::parse_recoverable(src);
    for e in &errors {
        let span = e.span().unwrap_or(0..0);
        w.r.error(span, format!("TOML syntax: {}", e.message().trim_end()));
    }
    // After a syntax error the recovered tree is a guess; checking it would only add noise.
    let (set, server) = if errors.is_empty() {
        let set = w.document(doc.get_ref(), src);
        (set, w.server::<T>(doc.get_ref()))
    } else {
        (None, None)
    };
    w.r.finish(file)?;
    // Only reached when no error was reported, and then the walker built both.
    match (set, server) {
        (Some(set), Some(server)) => Ok((set, server)),
        _ => Err(Diagnostics {
            file: file.to_owned(),
            errors: Vec::new(),
        }),
    }
}

/// The policy version: SHA-256 of the file's bytes, in hex.
pub fn version_of(src: &str) -> String {
    hex::encode(Sha256::digest(src.as_bytes()))
}

struct Walker<'s> {
    r: Reporter<'s>,
}

/// A rule as read, before the cross-checks.
struct RawRule {
    rule: Rule,
    span: Range<usize>,
    unconditional: bool,
    is_deny: bool,
}

struct Defaults {
    expires_in: Duration,
    channels: Vec<String>,
    if_undelivered: IfUndelivered,
    grants: (Option<Duration>, Option<u32>),
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            expires_in: approvals_core::policy::DEFAULT_EXPIRY,
            channels: Vec::new(),
            if_undelivered: IfUndelivered::Fail,
            grants: (None, None),
        }
    }
}

impl Walker<'_> {
    /// The `[server]` table as `T`; `None` (with the error reported) when it does not fit.
    fn server<T: serde::de::DeserializeOwned + Default>(&mut self, doc: &DeTable<'_>) -> Option<T> {
        use serde::de::IntoDeserializer as _;
        let Some(value) = doc.get("server") else {
            return Some(T::default());
        };
        let span = value.span();
        match T::deserialize(value.clone().into_deserializer()) {
            Ok(t) => Some(t),
            Err(e) => {
                self.r.error(
                    e.span().unwrap_or(span),
                    format!("[server]: {}", e.message().trim_end()),
                );
                None
            }
        }
    }

    fn document(&mut self, doc: &DeTable<'_>, src: &str) -> Option<PolicySet> {
        self.keys(doc, TOP, "the file");
        let defaults = match get(doc, "defaults") {
            Some(v) => self.defaults(v),
            None => Defaults::default(),
        };
        let people = get(doc, "people").map_or_else(Vec::new, |v| self.people(v));
        let known: BTreeSet<String> = people.iter().map(|(p, _)| p.id.clone()).collect();
        let groups = get(doc, "groups").map_or_else(BTreeMap::new, |v| self.groups(v, &known));
        let mut dir = StaticDirectory::new();
        for (p, _) in &people {
            dir = dir.person(p.clone());
        }
        for (g, (members, _)) in &groups {
            dir = dir.group(g, members.iter().cloned());
        }
        let version = version_of(src);
        let mut policies = BTreeMap::new();
        match get(doc, "policies") {
            None => self.r.hint(
                0..0,
                "the file defines no policies",
                "add a [policies.<name>] table with [[policies.<name>.rules]]",
            ),
            Some(v) => {
                if let Some(t) = self.table(v, "`policies`") {
                    for (name, pv) in t.iter() {
                        let ctx = PolicyCtx {
                            name: name.get_ref(),
                            name_span: name.span(),
                            known: &known,
                            groups: &groups,
                            dir: &dir,
                            defaults: &defaults,
                            version: &version,
                        };
                        if let Some(p) = self.policy(&ctx, pv) {
                            policies.insert(name.get_ref().to_string(), p);
                        }
                    }
                }
            }
        }
        if self.r.has_errors() {
            return None;
        }
        Some(PolicySet {
            version: version.into(),
            directory: dir,
            policies,
        })
    }

    fn defaults(&mut self, v: &Value<'_>) -> Defaults {
        let mut d = Defaults::default();
        let Some(t) = self.table(v, "`defaults`") else {
            return d;
        };
        self.keys(t, DEFAULTS, "`defaults`");
        if let Some(x) = get(t, "expires_in").and_then(|x| self.duration(x, "expires_in")) {
            d.expires_in = x;
        }
        if let Some(x) = get(t, "channels").and_then(|x| self.strings(x, "channels")) {
            d.channels = x.into_iter().map(|(s, _)| s).collect();
        }
        if let Some(x) = get(t, "if_undelivered").and_then(|x| self.if_undelivered(x)) {
            d.if_undelivered = x;
        }
        d.grants = self.grant_caps(t);
        d
    }

    fn grant_caps(&mut self, t: &DeTable<'_>) -> (Option<Duration>, Option<u32>) {
        let duration = get(t, "max_grant_duration").and_then(|x| self.duration_or_zero(x));
        let uses = get(t, "max_grant_uses").and_then(|x| self.count(x, "max_grant_uses", true));
        (duration, uses)
    }

    fn people(&mut self, v: &Value<'_>) -> Vec<(Person, Range<usize>)> {
        let Some(items) = self.array(v, "`people`", "[[people]] tables") else {
            return Vec::new();
        };
        let mut out: Vec<(Person, Range<usize>)> = Vec::new();
        // Every id and identity by the key the gate compares them by (case, width and
        // compatibility forms folded): two that collide would name one person twice, or
        // let a look-alike pass review, so both are refused.
        let mut seen_keys: BTreeMap<String, (String, String, Range<usize>)> = BTreeMap::new();
        for item in items {
            let Some(t) = self.table(item, "a person") else {
                continue;
            };
            self.keys(t, PERSON, "a person");
            let Some((id, id_span)) = self.required_string(t, "id", item.span(), "a person") else {
                continue;
            };
            if let Err(e) = approvals_core::principal::check_id(&id) {
                self.r.hint(
                    id_span.clone(),
                    format!("person id {}", e.to_string().trim_start_matches("principal id ")),
                    "ids are compared as written by people and tools; use letters, digits, `.`, `-`, `_` or `@`",
                );
                continue;
            }
            let key = approvals_core::principal::id_key(&id).into_owned();
            if let Some((first_id, what, first)) = seen_keys.get(&key) {
                let line = self.r.line_col(first.start).0;
                let message = if *first_id == id && what == "id" {
                    format!("person `{id}` is defined twice")
                } else if what == "id" {
                    format!(
                        "person `{id}` differs from person `{first_id}` only by case, width or look-alike characters"
                    )
                } else {
                    format!("person id `{id}` is also the {what} identity of `{first_id}`")
                };
                self.r.hint(
                    id_span.clone(),
                    message,
                    format!("the first is on line {line}; give each person an id no other id or identity folds to"),
                );
                continue;
            }
            seen_keys.insert(key, (id.clone(), "id".to_owned(), id_span.clone()));
            let kind = match get(t, "kind") {
                None => PrincipalKind::Human,
                Some(k) => match self.string(k, "kind").as_deref() {
                    Some("human") | None => PrincipalKind::Human,
                    Some("agent") => PrincipalKind::Agent,
                    Some("service") => PrincipalKind::Service,
                    Some(other) => {
                        self.r.hint(
                            k.span(),
                            format!("unknown kind `{other}`"),
                            "kind is one of human, agent, service",
                        );
                        PrincipalKind::Human
                    }
                },
            };
            let mut person = Person::new(id.clone(), kind);
            person.name = get(t, "name").and_then(|x| self.string(x, "name"));
            for key in ["email", "slack", "teams"] {
                let Some(x) = get(t, key) else { continue };
                let Some(value) = self.string(x, key) else {
                    continue;
                };
                let norm = approvals_core::principal::id_key(&value).into_owned();
                match seen_keys.get(&norm) {
                    Some((other, _, _)) if *other != id => {
                        self.r.hint(
                            x.span(),
                            format!("{key} identity `{value}` is also given to `{other}`"),
                            "an identity must name one person, or clicks could not be told apart",
                        );
                    }
                    Some(_) => {}
                    None => {
                        seen_keys.insert(norm, (id.clone(), key.to_owned(), x.span()));
                    }
                }
                match key {
                    "email" => person.email = Some(value),
                    "slack" => person.slack = Some(value),
                    _ => person.teams = Some(value),
                }
            }
            if let Some(x) = get(t, "ed25519") {
                if let Some(s) = self.string(x, "ed25519") {
                    match parse_key(&s) {
                        Ok(k) => person.ed25519 = Some(k),
                        Err(e) => self.r.hint(
                            x.span(),
                            format!("ed25519 key of `{id}` is not valid: {e}"),
                            "give the 32-byte public key in base64 or hex, or an `approvals keygen` .vkey line",
                        ),
                    }
                }
            }
            out.push((person, id_span));
        }
        out
    }

    fn groups(
        &mut self,
        v: &Value<'_>,
        known: &BTreeSet<String>,
    ) -> BTreeMap<String, (BTreeSet<String>, Range<usize>)> {
        let mut out = BTreeMap::new();
        let Some(t) = self.table(v, "`groups`") else {
            return out;
        };
        for (name, members) in t.iter() {
            let Some(list) = self.strings(members, "a group's members") else {
                continue;
            };
            let mut set = BTreeSet::new();
            for (m, span) in list {
                if !known.contains(&m) {
                    let hint = did_you_mean(&m, known.iter().map(String::as_str))
                        .unwrap_or_else(|| "declare them in a [[people]] table".into());
                    self.r.hint(
                        span,
                        format!("group `{}` lists unknown person `{m}`", name.get_ref()),
                        hint,
                    );
                }
                set.insert(m);
            }
            if set.is_empty() {
                self.r.error(
                    members.span(),
                    format!("group `{}` has no members", name.get_ref()),
                );
            }
            out.insert(name.get_ref().to_string(), (set, name.span()));
        }
        out
    }

    fn policy(&mut self, ctx: &PolicyCtx<'_>, v: &Value<'_>) -> Option<Policy> {
        let what = format!("policy `{}`", ctx.name);
        let t = self.table(v, &what)?;
        self.keys(t, POLICY, &what);
        let (pd, pu) = self.grant_caps(t);
        let caps = (pd.or(ctx.defaults.grants.0), pu.or(ctx.defaults.grants.1));
        let Some(rules_v) = get(t, "rules") else {
            self.r.hint(
                ctx.name_span.clone(),
                format!("{what} has no rules"),
                format!("add rules as [[policies.{}.rules]] tables", ctx.name),
            );
            return None;
        };
        let items = self.array(rules_v, "`rules`", "[[rules]] tables")?;
        if items.is_empty() {
            self.r.hint(
                rules_v.span(),
                format!("{what} has no rules"),
                "a policy with no rules denies every call; say so with a `deny` rule",
            );
        }
        let mut raw: Vec<RawRule> = Vec::new();
        let mut names = BTreeMap::new();
        for (i, item) in items.iter().enumerate() {
            if let Some(r) = self.rule(ctx, caps, i, item) {
                if let Some(first) = names.insert(r.rule.name.clone(), r.span.clone()) {
                    let line = self.r.line_col(first.start).0;
                    self.r.hint(
                        r.span.clone(),
                        format!("{what} has two rules named `{}`", r.rule.name),
                        format!("the first is on line {line}; rule names identify rules in the audit trail"),
                    );
                }
                raw.push(r);
            }
        }
        let shadow = self.mode(t)?;
        // Shadow rules are not tried when enforcing: they make no enforced rule unreachable.
        let enforced: Vec<&RawRule> = raw.iter().filter(|r| !r.rule.shadow).collect();
        self.unreachable(&enforced);
        Some(Policy {
            name: ctx.name.to_owned(),
            shadow,
            rules: raw.into_iter().map(|r| r.rule).collect(),
        })
    }

    /// Deny rules are tried first, then the others in order; a rule that can never be
    /// reached because an unconditional one comes first in that order is an error.
    fn unreachable(&mut self, raw: &[&RawRule]) {
        let order = raw
            .iter()
            .copied()
            .filter(|r| r.is_deny)
            .chain(raw.iter().copied().filter(|r| !r.is_deny));
        let mut shadow: Option<&RawRule> = None;
        for r in order {
            if let Some(s) = shadow {
                let line = self.r.line_col(s.span.start).0;
                let why = if s.is_deny && !r.is_deny {
                    "deny rules are tried before all others"
                } else {
                    "rules are tried in order"
                };
                self.r.hint(
                    r.span.clone(),
                    format!("rule `{}` can never match", r.rule.name),
                    format!(
                        "rule `{}` on line {line} has no `when`, so it matches every call first ({why}); add a `when` to it or remove this rule",
                        s.rule.name
                    ),
                );
            } else if r.unconditional {
                shadow = Some(r);
            }
        }
    }

    fn rule(
        &mut self,
        ctx: &PolicyCtx<'_>,
        caps: (Option<Duration>, Option<u32>),
        index: usize,
        v: &Value<'_>,
    ) -> Option<RawRule> {
        let t = self.table(v, "a rule")?;
        self.keys(t, RULE, "a rule");
        let name = match get(t, "name") {
            Some(n) => self.string(n, "name")?,
            None => format!("{}#{}", ctx.name, index + 1),
        };
        // A bad condition is reported, and the rest of the rule is still checked.
        let mut condition_failed = false;
        let when = match get(t, "when") {
            None => None,
            Some(w) => match self.string(w, "when") {
                None => {
                    condition_failed = true;
                    None
                }
                Some(src) => match Condition::compile_here(&src) {
                    Ok(c) => Some(c),
                    Err(errors) => {
                        for e in errors {
                            let span = self.inside_string(w, &src, e.offset);
                            match e.hint {
                                Some(h) => self.r.hint(span, e.message, h),
                                None => self.r.error(span, e.message),
                            }
                        }
                        condition_failed = true;
                        None
                    }
                },
            },
        };
        let unconditional =
            !condition_failed && when.as_ref().is_none_or(|c| c.source().trim() == "true");
        let outcomes: Vec<&str> = ["allow", "deny", "require"]
            .into_iter()
            .filter(|k| get(t, k).is_some())
            .collect();
        let outcome = match outcomes.as_slice() {
            ["allow"] => {
                let a = get(t, "allow")?;
                if !matches!(a.get_ref(), DeValue::Boolean(true)) {
                    self.r.hint(
                        a.span(),
                        "`allow` must be `true`",
                        "to refuse calls write `deny = \"reason\"`",
                    );
                }
                self.only_for_require(t, &name);
                Outcome::Allow
            }
            ["deny"] => {
                let d = get(t, "deny")?;
                let reason = self.string(d, "deny (the reason)")?;
                if reason.trim().is_empty() {
                    self.r.hint(
                        d.span(),
                        "`deny` needs a reason",
                        "the reason is what the agent and the audit trail see",
                    );
                }
                self.only_for_require(t, &name);
                Outcome::Deny(reason)
            }
            ["require"] => Outcome::Require(self.requirement(ctx, caps, t, &name)?),
            [] => {
                self.r.hint(
                    v.span(),
                    format!("rule `{name}` has no outcome"),
                    "give it exactly one of `allow = true`, `deny = \"reason\"` or `require = [...]`",
                );
                return None;
            }
            _ => {
                self.r.hint(
                    v.span(),
                    format!(
                        "rule `{name}` has more than one outcome ({})",
                        outcomes.join(", ")
                    ),
                    "a rule does one thing; split it into several rules",
                );
                return None;
            }
        };
        let shadow = self.mode(t)?;
        if condition_failed {
            return None;
        }
        let is_deny = matches!(outcome, Outcome::Deny(_));
        Some(RawRule {
            rule: Rule {
                name: name.into(),
                line: self.r.line_col(v.span().start).0,
                when,
                outcome,
                shadow,
            },
            span: v.span(),
            unconditional,
            is_deny,
        })
    }

    /// `mode = "enforce"` (the default) or `"shadow"`: whether the table is in shadow mode.
    fn mode(&mut self, t: &DeTable<'_>) -> Option<bool> {
        let Some(m) = get(t, "mode") else {
            return Some(false);
        };
        match self.string(m, "mode")?.as_str() {
            "enforce" => Some(false),
            "shadow" => Some(true),
            other => {
                let hint = did_you_mean(other, ["enforce", "shadow"])
                    .unwrap_or_else(|| "`enforce` (the default) or `shadow`".to_owned());
                self.r
                    .hint(m.span(), format!("unknown mode `{other}`"), hint);
                None
            }
        }
    }

    fn only_for_require(&mut self, t: &DeTable<'_>, name: &str) {
        for key in [
            "expires_in",
            "channels",
            "if_undelivered",
            "escalate",
            "remind",
            "max_grant_duration",
            "max_grant_uses",
        ] {
            if let Some((k, _)) = entry(t, key) {
                self.r.hint(
                    k.span(),
                    format!("`{key}` only applies to rules that require approval (rule `{name}`)"),
                    "remove it, or make the rule `require = [...]`",
                );
            }
        }
    }

    fn requirement(
        &mut self,
        ctx: &PolicyCtx<'_>,
        caps: (Option<Duration>, Option<u32>),
        t: &DeTable<'_>,
        name: &str,
    ) -> Option<Requirement> {
        let rv = get(t, "require")?;
        let items = self.array(
            rv,
            "`require`",
            "factors like { group = \"sre\", count = 1 }",
        )?;
        let mut req = Requirement::new(name).policy_version(ctx.version);
        req.expires_in = ctx.defaults.expires_in;
        req.channels = ctx.defaults.channels.clone();
        req.if_undelivered = ctx.defaults.if_undelivered;
        if items.is_empty() {
            self.r.hint(
                rv.span(),
                format!("rule `{name}` requires approval from nobody"),
                "name at least one factor, e.g. require = [{ group = \"sre\", count = 1 }]",
            );
        }
        let errors_before = self.r.count();
        for f in items {
            if let Some(f) = self.factor(ctx, f) {
                req.factors.push(f);
            }
        }
        let factors_ok = self.r.count() == errors_before;
        if let Some(x) = get(t, "expires_in").and_then(|x| self.duration(x, "expires_in")) {
            req.expires_in = x;
        }
        if let Some(x) = get(t, "channels").and_then(|x| self.strings(x, "channels")) {
            req.channels = x.into_iter().map(|(s, _)| s).collect();
        }
        if let Some(x) = get(t, "if_undelivered").and_then(|x| self.if_undelivered(x)) {
            req.if_undelivered = x;
        }
        if let Some(ev) = get(t, "escalate") {
            for step in self.array(
                ev,
                "`escalate`",
                "steps like { after = \"30m\", notify = [\"slack\"] }",
            )? {
                let Some(st) = self.table(step, "an escalation step") else {
                    continue;
                };
                self.keys(st, ESCALATE, "an escalation step");
                let after = self
                    .required(st, "after", step.span(), "an escalation step")
                    .and_then(|a| self.duration(a, "after"));
                let notify = self
                    .required(st, "notify", step.span(), "an escalation step")
                    .and_then(|n| self.strings(n, "notify"));
                if let (Some(after), Some(notify)) = (after, notify) {
                    if after >= req.expires_in {
                        self.r.hint(
                            step.span(),
                            format!(
                                "escalation after {} never happens: the request expires after {}",
                                approvals_core::clock::human(after),
                                approvals_core::clock::human(req.expires_in)
                            ),
                            "escalate before `expires_in`",
                        );
                    }
                    if notify.is_empty() {
                        self.r.error(
                            step.span(),
                            "an escalation step must notify at least one channel",
                        );
                    }
                    req = req.escalate(after, notify.into_iter().map(|(s, _)| s));
                }
            }
        }
        if let Some(rv) = get(t, "remind") {
            if let Some(rt) = self.table(rv, "`remind`") {
                self.keys(rt, REMIND, "`remind`");
                let every = self
                    .required(rt, "every", rv.span(), "`remind`")
                    .and_then(|e| self.duration(e, "every"));
                let max = get(rt, "max").and_then(|m| self.count(m, "max", false));
                if let Some(every) = every {
                    if every >= req.expires_in {
                        self.r.hint(
                            rv.span(),
                            "this reminder never fires: the request expires first",
                            "remind more often than `expires_in`",
                        );
                    }
                    req.reminders = Some(Reminders { every, max });
                }
            }
        }
        let (rd, ru) = self.grant_caps(t);
        req.grants = GrantCaps {
            max_duration: rd.or(caps.0).unwrap_or_default(),
            max_uses: ru.or(caps.1).unwrap_or_default(),
        };
        // Each factor can be filled on its own; can they all be, by distinct people?
        let candidates: BTreeMap<String, BTreeSet<String>> = ctx
            .known
            .iter()
            .map(|id| {
                (
                    id.clone(),
                    approvals_core::Directory::groups_of(ctx.dir, id),
                )
            })
            .collect();
        let nobody = approvals_core::Context::new(approvals_core::Principal::agent("\u{0}"));
        if factors_ok && !req.factors.is_empty() {
            if let Err(reason) = approvals_core::tally::feasible(&req, &nobody, &candidates) {
                self.r.hint(
                    rv.span(),
                    reason.replace(
                        " can never be approved",
                        " asks for more approvers than exist",
                    ),
                    "lower the count, or add people to the group",
                );
            }
        }
        Some(req)
    }

    fn factor(&mut self, ctx: &PolicyCtx<'_>, v: &Value<'_>) -> Option<Factor> {
        let t = self.table(v, "a factor")?;
        self.keys(t, FACTOR, "a factor");
        let count = match get(t, "count") {
            Some(c) => self.count(c, "count", false)?,
            None => 1,
        };
        match (get(t, "group"), get(t, "people")) {
            (Some(g), None) => {
                let name = self.string(g, "group")?;
                match ctx.groups.get(&name) {
                    None => {
                        let hint = did_you_mean(&name, ctx.groups.keys().map(String::as_str))
                            .unwrap_or_else(|| "define it under [groups]".into());
                        self.r
                            .hint(g.span(), format!("unknown group `{name}`"), hint);
                        None
                    }
                    Some((members, _)) => {
                        if count as usize > members.len() {
                            self.r.hint(
                                v.span(),
                                format!(
                                    "count {count} is more than the {} member(s) of group `{name}`",
                                    members.len()
                                ),
                                "lower the count, or add people to the group",
                            );
                        }
                        Some(Factor::group(name, count))
                    }
                }
            }
            (None, Some(p)) => {
                let list = self.strings(p, "people")?;
                let mut ids = BTreeSet::new();
                for (id, span) in list {
                    if !ctx.known.contains(&id) {
                        let hint = did_you_mean(&id, ctx.known.iter().map(String::as_str))
                            .unwrap_or_else(|| "declare them in a [[people]] table".into());
                        self.r.hint(span, format!("unknown person `{id}`"), hint);
                    }
                    ids.insert(id);
                }
                if count as usize > ids.len() {
                    self.r.hint(
                        v.span(),
                        format!("count {count} is more than the {} people listed", ids.len()),
                        "lower the count, or list more people",
                    );
                }
                Some(Factor::people(ids, count))
            }
            (Some(_), Some(_)) => {
                self.r.hint(
                    v.span(),
                    "a factor names either a `group` or `people`, not both",
                    "write two factors if both must approve",
                );
                None
            }
            (None, None) => {
                self.r.hint(
                    v.span(),
                    "a factor must name a `group` or `people`",
                    "e.g. { group = \"sre\", count = 1 } or { people = [\"alice\", \"bob\"] }",
                );
                None
            }
        }
    }

    // ---- typed accessors ------------------------------------------------------------

    fn src(&self) -> &str {
        self.r.source()
    }

    fn keys(&mut self, t: &DeTable<'_>, allowed: &[&str], what: &str) {
        for (k, _) in t.iter() {
            let key = k.get_ref();
            if !allowed.contains(&key.as_ref()) {
                let hint = did_you_mean(key, allowed.iter().copied())
                    .unwrap_or_else(|| format!("allowed keys: {}", allowed.join(", ")));
                self.r
                    .hint(k.span(), format!("unknown key `{key}` in {what}"), hint);
            }
        }
    }

    fn table<'a, 'i>(&mut self, v: &'a Value<'i>, what: &str) -> Option<&'a DeTable<'i>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            other => {
                self.r.error(
                    v.span(),
                    format!("{what} must be a table, found {}", type_name(other)),
                );
                None
            }
        }
    }

    fn array<'a, 'i>(&mut self, v: &'a Value<'i>, what: &str, of: &str) -> Option<&'a [Value<'i>]> {
        match v.get_ref() {
            DeValue::Array(a) => Some(a),
            other => {
                self.r.hint(
                    v.span(),
                    format!("{what} must be an array, found {}", type_name(other)),
                    format!("write it as an array of {of}"),
                );
                None
            }
        }
    }

    fn if_undelivered(&mut self, v: &Value<'_>) -> Option<IfUndelivered> {
        match self.string(v, "if_undelivered")?.as_str() {
            "fail" => Some(IfUndelivered::Fail),
            "wait" => Some(IfUndelivered::Wait),
            other => {
                self.r.hint(
                    v.span(),
                    format!("unknown `if_undelivered` value `{other}`"),
                    "use \"fail\" (cancel the request if any channel fails) or \"wait\" (keep it open on the channels that delivered)",
                );
                None
            }
        }
    }

    fn string(&mut self, v: &Value<'_>, what: &str) -> Option<String> {
        match v.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            other => {
                self.r.error(
                    v.span(),
                    format!("`{what}` must be a string, found {}", type_name(other)),
                );
                None
            }
        }
    }

    fn strings(&mut self, v: &Value<'_>, what: &str) -> Option<Vec<(String, Range<usize>)>> {
        let DeValue::Array(a) = v.get_ref() else {
            self.r.hint(
                v.span(),
                format!(
                    "`{what}` must be an array of strings, found {}",
                    type_name(v.get_ref())
                ),
                "e.g. [\"alice\", \"bob\"]",
            );
            return None;
        };
        let mut out = Vec::new();
        for x in a.iter() {
            if let Some(s) = self.string(x, what) {
                out.push((s, x.span()));
            }
        }
        Some(out)
    }

    fn required<'a, 'i>(
        &mut self,
        t: &'a DeTable<'i>,
        key: &str,
        at: Range<usize>,
        what: &str,
    ) -> Option<&'a Value<'i>> {
        let v = get(t, key);
        if v.is_none() {
            self.r.error(at, format!("{what} needs `{key}`"));
        }
        v
    }

    fn required_string(
        &mut self,
        t: &DeTable<'_>,
        key: &str,
        at: Range<usize>,
        what: &str,
    ) -> Option<(String, Range<usize>)> {
        let v = self.required(t, key, at, what)?;
        let s = self.string(v, key)?;
        if s.trim().is_empty() {
            self.r.error(v.span(), format!("`{key}` must not be empty"));
            return None;
        }
        Some((s, v.span()))
    }

    fn count(&mut self, v: &Value<'_>, what: &str, zero_ok: bool) -> Option<u32> {
        let n = match v.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).ok(),
            _ => None,
        };
        match n.and_then(|n| u32::try_from(n).ok()) {
            Some(0) if !zero_ok => {
                self.r.hint(
                    v.span(),
                    format!("`{what}` must be at least 1"),
                    "a count of zero would approve with nobody's approval",
                );
                None
            }
            Some(n) => Some(n),
            None => {
                self.r.error(
                    v.span(),
                    format!(
                        "`{what}` must be a whole number from {} to {}",
                        u32::from(!zero_ok),
                        u32::MAX
                    ),
                );
                None
            }
        }
    }

    fn duration(&mut self, v: &Value<'_>, what: &str) -> Option<Duration> {
        let d = self.duration_or_zero(v)?;
        if d.is_zero() {
            self.r.hint(
                v.span(),
                format!("`{what}` must be longer than zero"),
                "e.g. \"30s\", \"10m\", \"1h\"",
            );
            return None;
        }
        Some(d)
    }

    fn duration_or_zero(&mut self, v: &Value<'_>) -> Option<Duration> {
        let s = match v.get_ref() {
            DeValue::String(s) => s.to_string(),
            other => {
                self.r.hint(
                    v.span(),
                    format!("a duration must be a string, found {}", type_name(other)),
                    "write it with a unit: \"90s\", \"10m\", \"1h30m\", \"2d\"",
                );
                return None;
            }
        };
        if s.trim() == "0" {
            return Some(Duration::ZERO);
        }
        match humantime::parse_duration(&s) {
            Ok(d) => Some(d),
            Err(e) => {
                self.r.hint(
                    v.span(),
                    format!("bad duration `{s}`: {e}"),
                    "write it with a unit: \"90s\", \"10m\", \"1h30m\", \"2d\"",
                );
                None
            }
        }
    }

    /// The span of a byte offset inside a string value: exact for one-line basic and
    /// literal strings without escapes, else the string's start.
    fn inside_string(&self, v: &Value<'_>, text: &str, offset: usize) -> Range<usize> {
        let span = v.span();
        let raw = self.src().get(span.clone()).unwrap_or("");
        let quote = if raw.starts_with("\"\"\"") || raw.starts_with("'''") {
            3
        } else {
            1
        };
        let body = raw
            .get(quote..raw.len().saturating_sub(quote))
            .unwrap_or("");
        if body == text {
            let at = span.start + quote + offset.min(text.len());
            at..at + 1
        } else {
            span
        }
    }
}

struct PolicyCtx<'a> {
    name: &'a str,
    name_span: Range<usize>,
    known: &'a BTreeSet<String>,
    groups: &'a BTreeMap<String, (BTreeSet<String>, Range<usize>)>,
    dir: &'a StaticDirectory,
    defaults: &'a Defaults,
    version: &'a str,
}

fn get<'a, 'i>(t: &'a DeTable<'i>, key: &str) -> Option<&'a Value<'i>> {
    entry(t, key).map(|(_, v)| v)
}

fn entry<'a, 'i>(
    t: &'a DeTable<'i>,
    key: &str,
) -> Option<(&'a Spanned<std::borrow::Cow<'i, str>>, &'a Value<'i>)> {
    t.iter().find(|(k, _)| k.get_ref() == key)
}

fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// An Ed25519 public key: 32 bytes in base64 or hex, or a signed-note verifier key
/// (`name+hash+base64(0x01 || key)`) as `approvals keygen` writes.
fn parse_key(s: &str) -> Result<ed25519_dalek::VerifyingKey, String> {
    let s = s.trim();
    // A verifier key (`name+id+base64`) may hold more `+` in its base64, and a plain base64
    // key may hold `+` too: try the verifier form first, then hex, then base64.
    let note = approvals_core::note::NoteVerifier::from_vkey(s);
    let bytes = if let Ok(v) = &note {
        v.key().to_bytes().to_vec()
    } else if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(s).map_err(|e| e.to_string())?
    } else {
        match base64::engine::general_purpose::STANDARD.decode(s) {
            Ok(b) => b,
            Err(_) if s.matches('+').count() >= 2 && s.len() != 44 => {
                return Err(note.err().map_or_else(String::new, |e| e.to_string()));
            }
            Err(e) => return Err(format!("not base64: {e}")),
        }
    };
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("{} bytes, a key is 32", b.len()))?;
    ed25519_dalek::VerifyingKey::from_bytes(&arr).map_err(|e| e.to_string())
}
