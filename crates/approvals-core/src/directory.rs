//! Who belongs to which group: the source of reviewer eligibility.

use std::collections::{BTreeMap, BTreeSet};

/// Answers which groups a principal belongs to, at the moment of asking.
///
/// The gate asks when a review arrives and keeps the answer with the review, so eligibility
/// is judged "at the time of review" even if membership changes later.
pub trait Directory: Send + Sync + std::fmt::Debug {
    /// The groups `principal_id` belongs to now.
    fn groups_of(&self, principal_id: &str) -> BTreeSet<String>;
}

/// A directory held in memory.
///
/// ```
/// use approvals_core::{Directory, StaticDirectory};
/// let dir = StaticDirectory::new()
///     .group("data-owners", ["alice", "bob", "dana"])
///     .group("sre", ["alice"]);
/// assert_eq!(dir.groups_of("alice").len(), 2);
/// assert!(dir.groups_of("mallory").is_empty());
/// ```
#[derive(Debug, Clone, Default)]
pub struct StaticDirectory {
    groups: BTreeMap<String, BTreeSet<String>>,
}

impl StaticDirectory {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds members to a group (creating it if needed).
    pub fn group<I, S>(mut self, name: &str, members: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.groups
            .entry(name.to_owned())
            .or_default()
            .extend(members.into_iter().map(Into::into));
        self
    }

    /// The members of a group, if it exists.
    pub fn members(&self, group: &str) -> Option<&BTreeSet<String>> {
        self.groups.get(group)
    }
}

impl Directory for StaticDirectory {
    fn groups_of(&self, principal_id: &str) -> BTreeSet<String> {
        self.groups
            .iter()
            .filter(|(_, members)| members.contains(principal_id))
            .map(|(name, _)| name.clone())
            .collect()
    }
}

/// A shared directory (for instance one a test changes while requests wait).
impl<T: Directory + ?Sized> Directory for std::sync::Arc<T> {
    fn groups_of(&self, principal_id: &str) -> BTreeSet<String> {
        (**self).groups_of(principal_id)
    }
}
