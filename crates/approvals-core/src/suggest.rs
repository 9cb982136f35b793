//! "Did you mean": the known name nearest to a misspelt one.

/// The candidate nearest to `word`, when one is near enough to be a typo (an edit distance of
/// at most a third of the candidate's length, and at least one).
///
/// ```
/// use approvals_core::suggest::closest;
/// assert_eq!(closest("enviroment", ["env", "environment", "replicas"]), Some("environment"));
/// assert_eq!(closest("limit", ["env", "replicas"]), None);
/// ```
pub fn closest<'a, I>(word: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    candidates
        .into_iter()
        .map(|c| (strsim::levenshtein(word, c), c))
        .filter(|(d, c)| *d > 0 && *d <= c.chars().count().max(3) / 3)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}
