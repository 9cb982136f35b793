//! Who reviews: people, their identities on each channel, and the groups they belong to.

use std::collections::{BTreeMap, BTreeSet};

use crate::principal::{Principal, PrincipalKind, id_key, same_id};

/// A person (or agent, or service) the directory knows, with their identity on each channel.
///
/// Channels map who clicked to a principal only through these identities: a Slack user id, a
/// Teams object id, an email address, or the Ed25519 key that signs their decisions.
///
/// ```
/// use approvals_core::{Person, PrincipalKind};
/// let alice = Person::new("alice", PrincipalKind::Human)
///     .display_name("Alice Example")
///     .slack("U012AB3CD")
///     .email("alice@example.com");
/// assert_eq!(alice.principal().to_string(), "human:alice");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// The principal id used everywhere else (requests, reviews, groups).
    pub id: String,
    /// Agent, human or service.
    pub kind: PrincipalKind,
    /// A name to show, if different from the id.
    pub name: Option<String>,
    /// Slack user id (`U…`/`W…`).
    pub slack: Option<String>,
    /// Microsoft Entra (Azure AD) object id, as Teams reports it.
    pub teams: Option<String>,
    /// Email address.
    pub email: Option<String>,
    /// The Ed25519 public key that verifies this person's signed decisions.
    pub ed25519: Option<ed25519_dalek::VerifyingKey>,
}

impl Person {
    /// A person with only an id and a kind.
    pub fn new(id: impl Into<String>, kind: PrincipalKind) -> Self {
        Self {
            id: id.into(),
            kind,
            name: None,
            slack: None,
            teams: None,
            email: None,
            ed25519: None,
        }
    }
    /// Sets the display name.
    pub fn display_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
    /// Sets the Slack user id.
    pub fn slack(mut self, id: impl Into<String>) -> Self {
        self.slack = Some(id.into());
        self
    }
    /// Sets the Teams (Entra) object id.
    pub fn teams(mut self, id: impl Into<String>) -> Self {
        self.teams = Some(id.into());
        self
    }
    /// Sets the email address.
    pub fn email(mut self, email: impl Into<String>) -> Self {
        self.email = Some(email.into());
        self
    }
    /// Sets the decision-signing key.
    pub fn ed25519(mut self, key: ed25519_dalek::VerifyingKey) -> Self {
        self.ed25519 = Some(key);
        self
    }
    /// The principal this person acts as.
    pub fn principal(&self) -> Principal {
        Principal::new(self.id.clone(), self.kind)
    }
}

/// An identity on some channel, to look a person up by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity<'a> {
    /// A Slack user id.
    Slack(&'a str),
    /// A Teams (Entra) object id.
    Teams(&'a str),
    /// An email address (compared case-insensitively).
    Email(&'a str),
}

/// Answers who a principal is and which groups they belong to, at the moment of asking.
///
/// The gate asks when a review arrives and keeps the answer with the review, so eligibility
/// is judged "at the time of review" even if membership changes later. Only
/// [`Directory::groups_of`] is required; a directory that cannot list a group's members
/// (a remote one, say) leaves [`Directory::members`] at its default, and the gate then skips
/// the check that a requirement can be met at all.
pub trait Directory: Send + Sync + std::fmt::Debug {
    /// The groups `principal_id` belongs to now.
    fn groups_of(&self, principal_id: &str) -> BTreeSet<String>;

    /// The person with this principal id, if the directory knows them.
    fn person(&self, _principal_id: &str) -> Option<Person> {
        None
    }

    /// The members of `group` now; `None` if this directory cannot enumerate groups.
    /// An unknown group, in a directory that can enumerate, is `Some` of an empty set.
    fn members(&self, _group: &str) -> Option<BTreeSet<String>> {
        None
    }

    /// The person who holds this channel identity, if exactly one does.
    fn find(&self, _identity: Identity<'_>) -> Option<Person> {
        None
    }

    /// Who `name` is: the person whose principal id it is, or who holds it as their Slack
    /// id, Teams id or email, each compared as `same_id`
    /// compares ids. The gate resolves a call's requester and `on_behalf_of`, and every
    /// reviewer, through this, so a person is the same party under every identity the
    /// directory gives them.
    ///
    /// The default asks [`Directory::person`] and [`Directory::find`] with `name` as given.
    fn resolve(&self, name: &str) -> Resolution {
        let mut found: Vec<Person> = Vec::new();
        let candidates = [
            self.person(name),
            self.find(Identity::Slack(name)),
            self.find(Identity::Teams(name)),
            self.find(Identity::Email(name)),
        ];
        for p in candidates.into_iter().flatten() {
            if !found.iter().any(|f| f.id == p.id) {
                found.push(p);
            }
        }
        Resolution::from_matches(found)
    }
}

/// What [`Directory::resolve`] found for a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Exactly one person: the principal they act as.
    Known(Principal),
    /// Nobody: the name is kept as given (agents and services are often not listed).
    Unknown,
    /// More than one person holds it; the gate refuses to guess.
    Ambiguous(Vec<String>),
}

impl Resolution {
    fn from_matches(mut found: Vec<Person>) -> Self {
        match found.len() {
            0 => Resolution::Unknown,
            1 => found
                .pop()
                .map_or(Resolution::Unknown, |p| Resolution::Known(p.principal())),
            _ => Resolution::Ambiguous(found.into_iter().map(|p| p.id).collect()),
        }
    }
}

/// A directory held in memory.
///
/// ```
/// use approvals_core::{Directory, Identity, Person, PrincipalKind, StaticDirectory};
/// let dir = StaticDirectory::new()
///     .person(Person::new("alice", PrincipalKind::Human).slack("U1"))
///     .group("data-owners", ["alice", "bob", "dana"])
///     .group("sre", ["alice"]);
/// assert_eq!(dir.groups_of("alice").len(), 2);
/// assert!(dir.groups_of("mallory").is_empty());
/// assert_eq!(dir.find(Identity::Slack("U1")).unwrap().id, "alice");
/// assert_eq!(dir.members("nobody").unwrap().len(), 0);
/// ```
#[derive(Debug, Clone, Default)]
pub struct StaticDirectory {
    people: BTreeMap<String, Person>,
    groups: BTreeMap<String, BTreeSet<String>>,
    /// Every identity's [`id_key`] (principal id, Slack, Teams, email) → the ids of the
    /// people who hold it.
    by_key: BTreeMap<String, BTreeSet<String>>,
}

impl StaticDirectory {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a person.
    pub fn person(mut self, person: Person) -> Self {
        if let Some(old) = self.people.remove(&person.id) {
            for key in identity_keys(&old) {
                if let Some(ids) = self.by_key.get_mut(&key) {
                    ids.remove(&old.id);
                }
            }
        }
        for key in identity_keys(&person) {
            self.by_key
                .entry(key)
                .or_default()
                .insert(person.id.clone());
        }
        self.people.insert(person.id.clone(), person);
        self
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

    /// Every person, by id.
    pub fn people(&self) -> impl Iterator<Item = &Person> {
        self.people.values()
    }

    /// Every group and its members.
    pub fn groups(&self) -> impl Iterator<Item = (&str, &BTreeSet<String>)> {
        self.groups.iter().map(|(k, v)| (k.as_str(), v))
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

    fn person(&self, principal_id: &str) -> Option<Person> {
        self.people.get(principal_id).cloned()
    }

    fn members(&self, group: &str) -> Option<BTreeSet<String>> {
        Some(self.groups.get(group).cloned().unwrap_or_default())
    }

    fn find(&self, identity: Identity<'_>) -> Option<Person> {
        let holds = |p: &&Person| match identity {
            Identity::Slack(id) => p.slack.as_deref() == Some(id),
            Identity::Teams(id) => p.teams.as_deref() == Some(id),
            Identity::Email(e) => p.email.as_deref().is_some_and(|m| same_id(m, e)),
        };
        let mut found = self.people.values().filter(holds);
        match (found.next(), found.next()) {
            (Some(p), None) => Some(p.clone()),
            // Two people claiming one identity: trust neither.
            _ => None,
        }
    }

    fn resolve(&self, name: &str) -> Resolution {
        if let Some(p) = self.people.get(name) {
            // The exact principal id: the common case, without folding.
            return Resolution::Known(p.principal());
        }
        // A directory that lists nobody (a gate's default) knows no name in any spelling:
        // no folding for the call of every agent it does not list.
        if self.by_key.is_empty() {
            return Resolution::Unknown;
        }
        let Some(ids) = self.by_key.get(id_key(name).as_ref()) else {
            return Resolution::Unknown;
        };
        Resolution::from_matches(
            ids.iter()
                .filter_map(|id| self.people.get(id).cloned())
                .collect(),
        )
    }
}

/// The keys under which [`StaticDirectory::resolve`] finds a person.
fn identity_keys(p: &Person) -> impl Iterator<Item = String> + '_ {
    [
        Some(p.id.as_str()),
        p.slack.as_deref(),
        p.teams.as_deref(),
        p.email.as_deref(),
    ]
    .into_iter()
    .flatten()
    .map(|s| id_key(s).into_owned())
}

/// A shared directory (for instance one a test changes while requests wait).
impl<T: Directory + ?Sized> Directory for std::sync::Arc<T> {
    fn groups_of(&self, principal_id: &str) -> BTreeSet<String> {
        (**self).groups_of(principal_id)
    }
    fn person(&self, principal_id: &str) -> Option<Person> {
        (**self).person(principal_id)
    }
    fn members(&self, group: &str) -> Option<BTreeSet<String>> {
        (**self).members(group)
    }
    fn find(&self, identity: Identity<'_>) -> Option<Person> {
        (**self).find(identity)
    }
    fn resolve(&self, name: &str) -> Resolution {
        (**self).resolve(name)
    }
}

/// The people a channel may show a request to: everyone the directory lists for a factor of
/// `requirement` (group members, named people), less the requester and whom it acts for.
/// Whether a review from one of them counts is still for [`crate::tally`] to say.
pub fn reviewers_of(
    requirement: &crate::policy::Requirement,
    context: &crate::principal::Context,
    directory: &dyn Directory,
) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for f in &requirement.factors {
        match &f.from {
            crate::policy::Eligible::Group(g) => {
                ids.extend(directory.members(g).unwrap_or_default());
            }
            crate::policy::Eligible::People(p) => ids.extend(p.iter().cloned()),
        }
    }
    ids.retain(|id| context.role_of(id).is_none());
    ids
}
