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
