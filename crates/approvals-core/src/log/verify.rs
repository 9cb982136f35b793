//! Verifying an audit log offline: every record, its links, and the signed checkpoints.
//!
//! The checks, in order, each failing with the sequence number it concerns:
//! 1. every line is one canonical JSON record ending in a newline (a torn last line is
//!    reported, never skipped);
//! 2. line `n` holds record `seq = n` (catches deleted, inserted, duplicated and swapped
//!    records);
//! 3. record `n`'s `prev` is the leaf hash of record `n - 1` (pins a changed byte to the
//!    record that holds it);
//! 4. every checkpoint is signed by the given key, no checkpoint is smaller than the one
//!    before it, none covers more records than the log holds (catches a truncated tail), and
//!    each one's root is the Merkle root of the records it covers.

use crate::action::Digest;
use crate::audit::AuditRecord;
use crate::canonical::check_object;
use crate::merkle::{self, Hash};
use crate::note::{Checkpoint, NoteVerifier};

/// What a verified log holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogReport {
    /// How many records.
    pub records: u64,
    /// The largest verified checkpoint, if any.
    pub checkpoint: Option<Checkpoint>,
    /// Records after the latest checkpoint: intact as far as the chain shows, not yet
    /// covered by a signature.
    pub unsigned_tail: u64,
    /// The Merkle tree of every record, to continue appending from.
    pub tree: merkle::Frontier,
    /// The leaf hash of the last record (the `prev` of the next one).
    pub head: Option<Hash>,
}

/// Where verification failed, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// A record is malformed, out of place, or changed.
    #[error("record {seq}: {what}")]
    Record {
        /// The sequence number concerned.
        seq: u64,
        /// What is wrong.
        what: String,
    },
    /// A checkpoint is malformed, badly signed, or does not match the records.
    #[error("checkpoint {index} (size {size}): {what}")]
    Checkpoint {
        /// Its position among the checkpoints, from 0.
        index: usize,
        /// The size it claims (0 if unreadable).
        size: u64,
        /// What is wrong.
        what: String,
    },
}

impl VerifyError {
    /// The record sequence number the failure points at, if it points at one.
    pub fn seq(&self) -> Option<u64> {
        match self {
            VerifyError::Record { seq, .. } => Some(*seq),
            VerifyError::Checkpoint { .. } => None,
        }
    }
}

/// Reads and checks the records of a JSONL log (`bytes` is the whole file). Returns the
/// records and their leaf hashes.
pub fn read_records(bytes: &[u8]) -> Result<(Vec<AuditRecord>, Vec<Hash>), VerifyError> {
    let mut records = Vec::new();
    let scanned = scan(bytes, Start::Beginning, |n, line| {
        let record: AuditRecord =
            serde_json::from_slice(line).map_err(|e| VerifyError::Record {
                seq: n,
                what: format!("line {} is not an audit record: {e}", n + 1),
            })?;
        records.push(record);
        Ok(())
    })?;
    Ok((records, scanned.leaves))
}

/// Where a [`scan`] begins: at the log's first line, or at any line of it (a share of the
/// log scanned on its own thread, whose first line's number and link are checked when the
/// shares are joined).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    Beginning,
    Anywhere,
}

/// What a [`scan`] found.
struct Scanned<'a> {
    /// The sequence number of the first line.
    first: u64,
    /// The first line's `prev` as written, when the scan began [`Start::Anywhere`].
    first_prev: Option<&'a [u8]>,
    /// Each line's leaf hash.
    leaves: Vec<Hash>,
}

/// Logs smaller than this are scanned on one thread: a thread costs more than it saves.
const SHARE: usize = 1 << 20;

/// How many threads to scan `len` bytes with: the machine's cores, at most 8, each share at
/// least [`SHARE`] bytes.
fn shares_for(len: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    cores.min(len / SHARE).max(1)
}

/// [`scan`] with the lines shared out among `shares` threads: each share is checked and its
/// leaves hashed on its own thread, then the shares are joined, each one's first line checked
/// to follow the share before (its number, its link to that share's last leaf). Any fault
/// found this way is found again by one scan from the start, which reports it exactly as it
/// always has: the threads only speed up a log that verifies.
fn scan_shared(bytes: &[u8], shares: usize) -> Result<Vec<Hash>, VerifyError> {
    let sequential = || scan(bytes, Start::Beginning, |_, _| Ok(())).map(|s| s.leaves);
    if shares == 1 {
        return sequential();
    }
    // Cut after the newline nearest each share's end.
    let mut parts = Vec::with_capacity(shares);
    let mut from = 0;
    for k in 1..shares {
        let target = (bytes.len() * k / shares).max(from);
        match memchr::memchr(b'\n', &bytes[target..]) {
            Some(at) if target + at + 1 < bytes.len() => {
                parts.push(&bytes[from..target + at + 1]);
                from = target + at + 1;
            }
            _ => break,
        }
    }
    parts.push(&bytes[from..]);
    let joined = std::thread::scope(|s| {
        let mut threads = Vec::with_capacity(parts.len());
        for part in &parts[1..] {
            let thread = std::thread::Builder::new()
                .name("approvals-verify".into())
                .spawn_scoped(s, move || scan(part, Start::Anywhere, |_, _| Ok(())));
            threads.push(thread);
        }
        let first = scan(parts[0], Start::Beginning, |_, _| Ok(())).ok()?;
        let mut leaves = first.leaves;
        leaves.reserve(bytes.len() / 256);
        for thread in threads {
            // A thread that could not start, a share with a fault, or one that does not
            // follow the share before: scan again from the start.
            let next = thread.ok()?.join().ok()?.ok()?;
            let follows = next.first == leaves.len() as u64
                && next.first_prev.is_some_and(|p| links_to(p, leaves.last()));
            if !follows {
                return None;
            }
            leaves.extend(next.leaves);
        }
        Some(leaves)
    });
    joined.map_or_else(sequential, Ok)
}

/// Whether `prev`, as written in a record, is the writer's spelling of `last` (64 lowercase
/// hex digits, quoted): one comparison of bytes on the path every intact log takes.
fn links_to(prev: &[u8], last: Option<&Hash>) -> bool {
    last.is_some_and(|h| {
        prev.len() == 66 && prev[0] == b'"' && prev[65] == b'"' && prev[1..65] == lower_hex(h)
    })
}

/// Checks every line's form, sequence number and link, in one pass over each line's bytes
/// without building a value (see [`check_object`]), handing each line to `each`; returns the
/// leaf hashes.
fn scan<'a>(
    bytes: &'a [u8],
    start: Start,
    mut each: impl FnMut(u64, &[u8]) -> Result<(), VerifyError>,
) -> Result<Scanned<'a>, VerifyError> {
    let mut leaves: Vec<Hash> = Vec::with_capacity(bytes.len() / 256);
    let mut rest = bytes;
    let mut n: u64 = 0;
    let (mut first, mut first_prev) = (0, None);
    while !rest.is_empty() {
        let bad = |what: String| VerifyError::Record { seq: n, what };
        let Some(end) = memchr::memchr(b'\n', rest) else {
            return Err(bad(format!(
                "torn: the last {} bytes have no newline (a crash during append?); the record is not accepted",
                rest.len()
            )));
        };
        let line = &rest[..end];
        rest = &rest[end + 1..];
        let (mut seq_text, mut prev_text): (Option<&[u8]>, Option<&[u8]>) = (None, None);
        check_object(line, |key, value| match key {
            b"seq" => seq_text = Some(value),
            b"prev" => prev_text = Some(value),
            _ => {}
        })
        .map_err(|e| {
            bad(
                if serde_json::from_slice::<serde::de::IgnoredAny>(line).is_err() {
                    format!("line {} is not JSON ({e})", n + 1)
                } else {
                    format!("line {} is not in canonical form ({e})", n + 1)
                },
            )
        })?;
        // Canonical, so an integer is plain decimal digits.
        let seq = seq_text
            .and_then(|t| std::str::from_utf8(t).ok())
            .and_then(|t| t.parse::<u64>().ok());
        // A share's first line: its number and link are checked when the shares are joined.
        let unlinked = start == Start::Anywhere && leaves.is_empty();
        if unlinked {
            first = seq.unwrap_or(0);
            n = first;
            first_prev = prev_text;
        }
        let bad = |what: String| VerifyError::Record { seq: n, what };
        if seq != Some(n) {
            let what = match seq {
                None => format!("line {} has no sequence number", n + 1),
                Some(s) if s > n => format!(
                    "missing: line {} holds record {s} (records deleted or out of order)",
                    n + 1
                ),
                Some(s) => format!(
                    "line {} holds record {s} again or out of order (a record inserted, duplicated or swapped)",
                    n + 1
                ),
            };
            return Err(bad(what));
        }
        let linked = match prev_text {
            None => leaves.is_empty(),
            Some(p) => unlinked || links_to(p, leaves.last()),
        };
        if !linked {
            let prev = match prev_text {
                None => None,
                // Exactly 64 lowercase hex digits, quoted: the one spelling a writer produces.
                Some(p) => Some(
                    p.strip_prefix(b"\"")
                        .and_then(|p| p.strip_suffix(b"\""))
                        .filter(|h| {
                            h.len() == 64
                                && h.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                        })
                        .and_then(|h| {
                            let mut out = [0u8; 32];
                            hex::decode_to_slice(h, &mut out).ok().map(|()| Digest(out))
                        })
                        .ok_or_else(|| bad(format!("line {} has a malformed prev", n + 1)))?,
                ),
            };
            if prev != leaves.last().map(|h| Digest(*h)) {
                // The link in record n vouches for record n - 1.
                return Err(VerifyError::Record {
                    seq: n.saturating_sub(1),
                    what: format!(
                        "changed: its hash does not match the one record {n} holds for it"
                    ),
                });
            }
        }
        each(n, line)?;
        leaves.push(merkle::leaf_hash(line));
        n += 1;
    }
    Ok(Scanned {
        first,
        first_prev,
        leaves,
    })
}

/// `hash` in lowercase hex.
fn lower_hex(hash: &Hash) -> [u8; 64] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 64];
    for (i, b) in hash.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 0x0f)];
    }
    out
}

/// Verifies a whole log against its checkpoints (signed notes, oldest first).
///
/// A log with records but no checkpoint is refused: nothing vouches for it.
pub fn verify_log(
    bytes: &[u8],
    checkpoints: &[String],
    verifier: &NoteVerifier,
) -> Result<LogReport, VerifyError> {
    let report = check_log(bytes, checkpoints, verifier)?;
    if report.records > 0 && report.checkpoint.is_none() {
        return Err(VerifyError::Checkpoint {
            index: 0,
            size: 0,
            what: "no signed checkpoint: nothing vouches for these records".into(),
        });
    }
    Ok(report)
}

/// Every check of [`verify_log`], but a log whose records are not yet covered by any
/// checkpoint passes: what a writer reopening its own log after a crash needs.
pub fn check_log(
    bytes: &[u8],
    checkpoints: &[String],
    verifier: &NoteVerifier,
) -> Result<LogReport, VerifyError> {
    let leaves = scan_shared(bytes, shares_for(bytes.len()))?;
    let total = leaves.len() as u64;
    let mut latest: Option<Checkpoint> = None;
    // Roots at each checkpoint's size, computed in one pass over the leaves.
    let mut tree = merkle::Frontier::default();
    let grow = |tree: &mut merkle::Frontier, to: u64| {
        for leaf in leaves
            .iter()
            .take(usize::try_from(to).unwrap_or(usize::MAX))
            .skip(usize::try_from(tree.size()).unwrap_or(usize::MAX))
        {
            tree.push(*leaf);
        }
    };
    for (index, note) in checkpoints.iter().enumerate() {
        let fail = |size: u64, what: String| VerifyError::Checkpoint { index, size, what };
        let cp = Checkpoint::verify(note, verifier).map_err(|e| fail(0, e.to_string()))?;
        if let Some(prev) = &latest {
            if cp.origin != prev.origin {
                return Err(fail(
                    cp.size,
                    format!("origin {:?} differs from {:?}", cp.origin, prev.origin),
                ));
            }
            if cp.size < prev.size {
                return Err(fail(
                    cp.size,
                    format!("the size goes backwards from {}", prev.size),
                ));
            }
        }
        if cp.size > total {
            return Err(VerifyError::Record {
                seq: total,
                what: format!(
                    "missing: checkpoint {index} covers {} records but the log ends after {total} (truncated)",
                    cp.size
                ),
            });
        }
        grow(&mut tree, cp.size);
        if tree.root() != cp.root {
            // The chain holds, so the last record the checkpoint covers is the one that
            // changed, or the records since the previous checkpoint were rewritten.
            let since = latest.as_ref().map_or(0, |c| c.size);
            return Err(VerifyError::Record {
                seq: cp.size.saturating_sub(1),
                what: format!(
                    "does not match the signed checkpoint at size {} (changed, or records {since}..{} rewritten)",
                    cp.size,
                    cp.size.saturating_sub(1)
                ),
            });
        }
        latest = Some(cp);
    }
    grow(&mut tree, total);
    Ok(LogReport {
        records: total,
        unsigned_tail: total - latest.as_ref().map_or(0, |c| c.size),
        checkpoint: latest,
        tree,
        head: leaves.last().copied(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` linked records, each `{"prev":..,"seq":..,"what":..}` in canonical form.
    fn lines(n: u64) -> Vec<String> {
        let mut prev: Option<Hash> = None;
        (0..n)
            .map(|seq| {
                let link = prev.map_or(String::new(), |h| {
                    format!("\"prev\":\"{}\",", hex::encode(h))
                });
                let line = format!("{{{link}\"seq\":{seq},\"what\":\"record number {seq}\"}}");
                prev = Some(merkle::leaf_hash(line.as_bytes()));
                line
            })
            .collect()
    }

    fn bytes(lines: &[String]) -> Vec<u8> {
        lines
            .iter()
            .flat_map(|l| format!("{l}\n").into_bytes())
            .collect()
    }

    fn failing_seq(bytes: &[u8], shares: usize) -> Option<u64> {
        scan_shared(bytes, shares).err().and_then(|e| e.seq())
    }

    #[test]
    fn shared_scans_find_every_fault_where_one_scan_does() {
        let log = lines(40);
        let leaves: Vec<Hash> = log
            .iter()
            .map(|l| merkle::leaf_hash(l.as_bytes()))
            .collect();
        for shares in [1, 2, 3, 7] {
            assert_eq!(
                scan_shared(&bytes(&log), shares).unwrap(),
                leaves,
                "{shares} shares"
            );
            // Every line, so every cut between shares: a changed record is pinned by the
            // next one's link, a deleted one by the number of the line that takes its place,
            // a duplicated one by its second copy.
            for i in 0..39 {
                let mut t = log.clone();
                t[i] = t[i].replace("record", "recorc");
                assert_eq!(
                    failing_seq(&bytes(&t), shares),
                    Some(i as u64),
                    "changed {i}, {shares} shares"
                );
                let mut t = log.clone();
                t.remove(i);
                assert_eq!(
                    failing_seq(&bytes(&t), shares),
                    Some(i as u64),
                    "deleted {i}, {shares} shares"
                );
                let mut t = log.clone();
                t.insert(i, log[i].clone());
                assert_eq!(
                    failing_seq(&bytes(&t), shares),
                    Some(i as u64 + 1),
                    "duplicated {i}, {shares} shares"
                );
            }
            let mut torn = bytes(&log);
            torn.pop();
            assert_eq!(
                failing_seq(&torn, shares),
                Some(39),
                "torn, {shares} shares"
            );
        }
    }
}
