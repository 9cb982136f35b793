//! The policy names a program uses, collected at link time.
//!
//! Every `#[requires_approval(policy = "...")]` registers its policy name here (through the
//! `inventory` crate, which gathers statics from every crate linked into the binary). Building
//! a gate whose policy engine can list its policies checks that none is missing, so a
//! misspelt or forgotten policy shows at start-up, not when the call is first made.

/// One use of a policy name by a gated function.
#[derive(Debug)]
pub struct PolicyUse {
    /// The policy name.
    pub policy: &'static str,
    /// The gated function, as `module::path::function`.
    pub function: &'static str,
    /// The names of the arguments it records (its parameters, less those skipped): what the
    /// policy's conditions can read as `args.NAME`.
    pub params: &'static [&'static str],
}

inventory::collect!(PolicyUse);

/// Every policy use registered in this program, in no particular order.
///
/// ```
/// for u in approvals_core::registry::policy_uses() {
///     println!("{} uses policy {}", u.function, u.policy);
/// }
/// ```
pub fn policy_uses() -> impl Iterator<Item = &'static PolicyUse> {
    inventory::iter::<PolicyUse>.into_iter()
}

/// The uses whose policy is not in `known`, sorted by policy then function.
pub fn missing_from(known: &std::collections::BTreeSet<String>) -> Vec<&'static PolicyUse> {
    let mut missing: Vec<&'static PolicyUse> = policy_uses()
        .filter(|u| !known.contains(u.policy))
        .collect();
    missing.sort_by_key(|u| (u.policy, u.function));
    missing
}

/// A gated function as the manifest lists it: its policy, its name and the arguments it
/// records. The owned form of [`PolicyUse`], for `approvals policy check --functions`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FunctionUse {
    /// The policy name.
    pub policy: String,
    /// The gated function.
    pub function: String,
    /// The arguments it records.
    pub params: Vec<String>,
}

/// Every gated function of this program, sorted by policy then function.
pub fn functions() -> Vec<FunctionUse> {
    let mut all: Vec<FunctionUse> = policy_uses()
        .map(|u| FunctionUse {
            policy: u.policy.to_owned(),
            function: u.function.to_owned(),
            params: u.params.iter().map(|p| (*p).to_owned()).collect(),
        })
        .collect();
    all.sort_by(|a, b| (&a.policy, &a.function).cmp(&(&b.policy, &b.function)));
    all
}

/// This program's gated functions as JSON, for `approvals policy check FILE --functions
/// MANIFEST`: write it from a test or a flag of your program, so the policy file is checked
/// against the arguments the functions really record.
///
/// ```
/// let manifest = approvals_core::registry::manifest();
/// let parsed: Vec<approvals_core::registry::FunctionUse> = serde_json::from_str(&manifest).unwrap();
/// assert_eq!(parsed, approvals_core::registry::functions());
/// ```
pub fn manifest() -> String {
    serde_json::to_string_pretty(&functions()).unwrap_or_else(|_| "[]".into())
}

/// A condition that reads an argument no function gated by its policy records: it would
/// fail at run time, and deny every call it judges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownArgument {
    /// The policy.
    pub policy: String,
    /// The rule whose condition reads it.
    pub rule: String,
    /// The rule's line in the policy file (0 when unknown).
    pub line: usize,
    /// The argument it reads (`args.NAME`).
    pub argument: String,
    /// The functions gated by the policy, and the arguments each records.
    pub functions: Vec<(String, Vec<String>)>,
    /// The recorded argument nearest in spelling, if one is near.
    pub closest: Option<String>,
}

impl std::fmt::Display for UnknownArgument {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let line = if self.line > 0 {
            format!(" (line {})", self.line)
        } else {
            String::new()
        };
        let fns: Vec<String> = self
            .functions
            .iter()
            .map(|(f, p)| format!("{f}({})", p.join(", ")))
            .collect();
        write!(
            f,
            "policy `{}`, rule `{}`{line}: reads `args.{}`, which no function gated by it records ({})",
            self.policy,
            self.rule,
            self.argument,
            fns.join("; ")
        )?;
        if let Some(c) = &self.closest {
            write!(f, "; did you mean `args.{c}`?")?;
        }
        Ok(())
    }
}

/// The arguments `engine`'s conditions read that no function in `uses` gated by the same
/// policy records. Policies the engine cannot describe, and policies no function uses, are
/// not checked (calls from outside the program may carry other arguments).
pub fn unknown_arguments(
    uses: &[FunctionUse],
    engine: &dyn crate::policy::PolicyEngine,
) -> Vec<UnknownArgument> {
    let mut by_policy: std::collections::BTreeMap<&str, Vec<&FunctionUse>> = Default::default();
    for u in uses {
        by_policy.entry(u.policy.as_str()).or_default().push(u);
    }
    let mut out = Vec::new();
    for (policy, fns) in by_policy {
        let Some(reads) = engine.arguments_read(policy) else {
            continue;
        };
        let known: std::collections::BTreeSet<&str> = fns
            .iter()
            .flat_map(|f| f.params.iter().map(String::as_str))
            .collect();
        for r in reads {
            if known.contains(r.argument.as_str()) {
                continue;
            }
            out.push(UnknownArgument {
                policy: policy.to_owned(),
                rule: r.rule,
                line: r.line,
                closest: crate::suggest::closest(&r.argument, known.iter().copied())
                    .map(str::to_owned),
                argument: r.argument,
                functions: {
                    let mut f: Vec<(String, Vec<String>)> = fns
                        .iter()
                        .map(|f| (f.function.clone(), f.params.clone()))
                        .collect();
                    f.dedup();
                    f
                },
            });
        }
    }
    out
}
