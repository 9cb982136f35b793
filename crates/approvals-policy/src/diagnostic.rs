//! Errors in a policy file, each with its place (`file:line:column`) and a hint.

use std::fmt;
use std::ops::Range;

/// One problem found in a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// Byte range in the source.
    pub span: Range<usize>,
    /// What is wrong.
    pub message: String,
    /// How to fix it, if there is something to say.
    pub hint: Option<String>,
}

/// Every problem found in a policy file, in the order they appear in it.
///
/// Its `Display` is one block per problem, compiler-style:
///
/// ```text
/// approvals.toml:14:9: error: unknown key `expire_in` in a rule
///   hint: did you mean `expires_in`?
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostics {
    /// The file's name as shown in messages.
    pub file: String,
    /// The problems, sorted by position.
    pub errors: Vec<Diagnostic>,
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(
                f,
                "{}:{}:{}: error: {}",
                self.file, d.line, d.column, d.message
            )?;
            if let Some(h) = &d.hint {
                write!(f, "\n  hint: {h}")?;
            }
        }
        Ok(())
    }
}

/// Collects diagnostics against one source text.
#[derive(Debug)]
pub(crate) struct Reporter<'s> {
    src: &'s str,
    lines: LineIndex,
    errors: Vec<Diagnostic>,
}

impl<'s> Reporter<'s> {
    pub(crate) fn new(src: &'s str) -> Self {
        Self {
            src,
            lines: LineIndex::new(src),
            errors: Vec::new(),
        }
    }

    /// 1-based line and column of a byte offset (see [`LineIndex::line_col`]).
    pub(crate) fn line_col(&self, offset: usize) -> (usize, usize) {
        self.lines.line_col(self.src, offset)
    }

    pub(crate) fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.push(span, message.into(), None);
    }

    pub(crate) fn hint(
        &mut self,
        span: Range<usize>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.push(span, message.into(), Some(hint.into()));
    }

    fn push(&mut self, span: Range<usize>, message: String, hint: Option<String>) {
        let (line, column) = self.line_col(span.start);
        self.errors.push(Diagnostic {
            line,
            column,
            span,
            message,
            hint,
        });
    }

    pub(crate) fn source(&self) -> &'s str {
        self.src
    }

    pub(crate) fn count(&self) -> usize {
        self.errors.len()
    }

    pub(crate) fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    pub(crate) fn finish(mut self, file: &str) -> Result<(), Diagnostics> {
        if self.errors.is_empty() {
            return Ok(());
        }
        self.errors
            .sort_by(|a, b| (a.span.start, &a.message).cmp(&(b.span.start, &b.message)));
        self.errors.dedup();
        Err(Diagnostics {
            file: file.to_owned(),
            errors: self.errors,
        })
    }
}

/// Where each line of a source starts, built once per file: finding the line of an offset is
/// then a binary search, so a file's diagnostics cost what its length costs (a scan from the
/// start for each one made loading quadratic in the number of rules).
#[derive(Debug, Clone)]
pub(crate) struct LineIndex {
    /// Byte offset of the start of each line; the first is 0.
    starts: Vec<usize>,
}

impl LineIndex {
    pub(crate) fn new(src: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(src.match_indices('\n').map(|(i, _)| i + 1));
        Self { starts }
    }

    /// 1-based line and column (in characters) of a byte offset; offsets past the end or
    /// inside a character are clamped.
    pub(crate) fn line_col(&self, src: &str, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(src.len());
        while !src.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.starts.partition_point(|&s| s <= offset);
        let start = self.starts[line.saturating_sub(1)];
        (line, src[start..offset].chars().count() + 1)
    }
}

/// 1-based line and column (in characters) of a byte offset, for a one-off lookup.
#[cfg(test)]
pub(crate) fn line_col(src: &str, offset: usize) -> (usize, usize) {
    LineIndex::new(src).line_col(src, offset)
}

/// `did you mean `x`?` for the closest of `candidates` to `got`, if any is close: the same
/// measure the gate and the argument check use ([`approvals_core::suggest::closest`]).
pub(crate) fn did_you_mean<'a>(
    got: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    approvals_core::suggest::closest(got, candidates).map(|c| format!("did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns_count_characters() {
        let src = "a = 1\nbé = 2\n";
        assert_eq!(line_col(src, 0), (1, 1));
        assert_eq!(line_col(src, 6), (2, 1));
        // `=` after "bé " : b (1 byte), é (2 bytes), space.
        assert_eq!(line_col(src, 10), (2, 4));
        assert_eq!(line_col(src, 999), (3, 1));
    }

    #[test]
    fn suggestions_only_when_close() {
        assert_eq!(
            did_you_mean("expire_in", ["expires_in", "when"]).as_deref(),
            Some("did you mean `expires_in`?")
        );
        assert_eq!(did_you_mean("zzz", ["expires_in", "when"]), None);
    }
}
