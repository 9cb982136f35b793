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

use crate::action::{Digest, lower_hex};
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

/// The height of the blocks of leaves a share's thread hashes into subtrees ahead: 2^6 = 64
/// leaves, whose 63 inner nodes are then not hashed again on the thread that joins them.
const BLOCK_HEIGHT: u32 = 6;

/// What the shares of a log found, joined: every line's leaf hash, the roots of the aligned
/// blocks of leaves the shares hashed ahead (by block number; `None` for a block that spans
/// two shares), and the checkpoints whose signatures the shares verified (by position).
struct Joined {
    leaves: Vec<Hash>,
    blocks: Vec<Option<Hash>>,
    signed: Vec<Option<Checkpoint>>,
}

impl Joined {
    /// Takes in what a share (the next one) found after its scan: the roots of its whole
    /// blocks from block number `at`, and its verified checkpoints.
    fn add(&mut self, (at, roots): (u64, Vec<Hash>), signed: Vec<(usize, Checkpoint)>) {
        if let Ok(at) = usize::try_from(at)
            && at >= self.blocks.len()
        {
            self.blocks.resize(at, None);
            self.blocks.extend(roots.into_iter().map(Some));
        }
        for (i, cp) in signed {
            if let Some(slot) = self.signed.get_mut(i) {
                *slot = Some(cp);
            }
        }
    }
}

/// The roots of the whole aligned blocks (of `2^BLOCK_HEIGHT` leaves) among `leaves`, the
/// first of which is leaf number `first`: the number of the first whole block, and the
/// roots.
fn block_roots(first: u64, leaves: &[Hash]) -> (u64, Vec<Hash>) {
    let width = 1u64 << BLOCK_HEIGHT;
    let Some(start) = first.div_ceil(width).checked_mul(width) else {
        return (0, Vec::new());
    };
    let skip = usize::try_from(start - first).unwrap_or(usize::MAX);
    let roots = leaves
        .get(skip..)
        .unwrap_or_default()
        .chunks_exact(1 << BLOCK_HEIGHT)
        .map(merkle::root)
        .collect();
    (start / width, roots)
}

/// The checkpoints among `checkpoints` whose positions are `k` modulo `of`, each verified
/// against its signature: those that verify, with their positions. One that does not is
/// left for the join, which reports it in its turn.
fn sign_share(
    checkpoints: &[String],
    verifier: &NoteVerifier,
    k: usize,
    of: usize,
) -> Vec<(usize, Checkpoint)> {
    checkpoints
        .iter()
        .enumerate()
        .skip(k)
        .step_by(of)
        .filter_map(|(i, note)| Checkpoint::verify(note, verifier).ok().map(|c| (i, c)))
        .collect()
}

/// [`scan`] with the lines shared out among `shares` threads: each share is checked and its
/// leaves hashed on its own thread, which then hashes its whole blocks of leaves into
/// subtrees and verifies its part of the checkpoints' signatures. The shares are then
/// joined, each one's first line checked to follow the share before (its number, its link
/// to that share's last leaf). Any fault found this way is found again by one scan from the
/// start, which reports it exactly as it always has: the threads only speed up a log that
/// verifies. A checkpoint that did not verify on a thread is verified again in its turn.
fn scan_shared(
    bytes: &[u8],
    shares: usize,
    checkpoints: &[String],
    verifier: &NoteVerifier,
) -> Result<Joined, VerifyError> {
    let sequential = || {
        scan(bytes, Start::Beginning, |_, _| Ok(())).map(|s| Joined {
            leaves: s.leaves,
            blocks: Vec::new(),
            signed: Vec::new(),
        })
    };
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
    let of = parts.len();
    // A share's work after its scan: its blocks, its signatures.
    let finish = |scanned: &Scanned<'_>, k: usize| {
        let blocks = block_roots(scanned.first, &scanned.leaves);
        (blocks, sign_share(checkpoints, verifier, k, of))
    };
    let joined = std::thread::scope(|s| {
        let mut threads = Vec::with_capacity(of);
        for (k, part) in parts.iter().enumerate().skip(1) {
            let thread = std::thread::Builder::new()
                .name("approvals-verify".into())
                .spawn_scoped(s, move || {
                    scan(part, Start::Anywhere, |_, _| Ok(())).map(|s| {
                        let (blocks, signed) = finish(&s, k);
                        (s, blocks, signed)
                    })
                });
            threads.push(thread);
        }
        let first = scan(parts[0], Start::Beginning, |_, _| Ok(())).ok()?;
        let (blocks, signed) = finish(&first, 0);
        let mut joined = Joined {
            leaves: first.leaves,
            blocks: Vec::with_capacity(bytes.len() / (256 << BLOCK_HEIGHT)),
            signed: vec![None; checkpoints.len()],
        };
        joined.leaves.reserve(bytes.len() / 256);
        joined.add(blocks, signed);
        for thread in threads {
            // A thread that could not start, a share with a fault, or one that does not
            // follow the share before: scan again from the start.
            let (next, blocks, signed) = thread.ok()?.join().ok()?.ok()?;
            let follows = next.first == joined.leaves.len() as u64
                && next
                    .first_prev
                    .is_some_and(|p| links_to(p, joined.leaves.last()));
            if !follows {
                return None;
            }
            joined.leaves.extend(next.leaves);
            joined.add(blocks, signed);
        }
        Some(joined)
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
        let seq = seq_text.and_then(crate::canonical::decimal);
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
    check_in_shares(bytes, checkpoints, verifier, shares_for(bytes.len()))
}

/// [`check_log`] with the log scanned in `shares` shares.
fn check_in_shares(
    bytes: &[u8],
    checkpoints: &[String],
    verifier: &NoteVerifier,
    shares: usize,
) -> Result<LogReport, VerifyError> {
    let Joined {
        leaves,
        blocks,
        mut signed,
    } = scan_shared(bytes, shares, checkpoints, verifier)?;
    let total = leaves.len() as u64;
    let mut latest: Option<Checkpoint> = None;
    // Roots at each checkpoint's size, computed in one pass over the leaves: a whole block
    // a share hashed ahead is taken as its root.
    let mut tree = merkle::Frontier::default();
    let grow = |tree: &mut merkle::Frontier, to: u64| {
        let width = 1u64 << BLOCK_HEIGHT;
        while tree.size() < to {
            let at = tree.size();
            let block = usize::try_from(at / width).ok().and_then(|b| blocks.get(b));
            if let Some(Some(root)) = block
                && to - at >= width
                && tree.push_subtree(BLOCK_HEIGHT, *root)
            {
                continue;
            }
            match usize::try_from(at).ok().and_then(|i| leaves.get(i)) {
                Some(leaf) => tree.push(*leaf),
                None => break,
            }
        }
    };
    for (index, note) in checkpoints.iter().enumerate() {
        let fail = |size: u64, what: String| VerifyError::Checkpoint { index, size, what };
        let cp = match signed.get_mut(index).and_then(Option::take) {
            Some(cp) => cp,
            None => Checkpoint::verify(note, verifier).map_err(|e| fail(0, e.to_string()))?,
        };
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

    fn verifier() -> NoteVerifier {
        crate::note::NoteSigner::generate("test")
            .unwrap()
            .verifier()
    }

    fn leaves_of(bytes: &[u8], shares: usize) -> Result<Vec<Hash>, VerifyError> {
        scan_shared(bytes, shares, &[], &verifier()).map(|j| j.leaves)
    }

    fn failing_seq(bytes: &[u8], shares: usize) -> Option<u64> {
        leaves_of(bytes, shares).err().and_then(|e| e.seq())
    }

    #[test]
    fn shares_give_one_scans_tree_and_checkpoint_faults() {
        let log = lines(300);
        let bytes = bytes(&log);
        // Independent answers: each line's leaf hash, and the recursive definition's roots.
        let leaves: Vec<Hash> = log
            .iter()
            .map(|l| merkle::leaf_hash(l.as_bytes()))
            .collect();
        let signer = crate::note::NoteSigner::generate("test").unwrap();
        let verifier = signer.verifier();
        let note = |size: u64, root: Hash, by: &crate::note::NoteSigner| {
            let origin = "test/log".to_owned();
            Checkpoint { origin, size, root }.sign(by).unwrap()
        };
        let good = |size: u64| note(size, merkle::root(&leaves[..size as usize]), &signer);
        // Around the edges of the first blocks of 64 leaves, then across whole blocks (which
        // shares hash ahead: two shares hash block 3, three shares block 2), and the end.
        let sizes = [1, 63, 64, 65, 128, 256, 257, 299, 300];
        let checkpoints: Vec<String> = sizes.iter().map(|&n| good(n)).collect();
        let mut wrong_root = checkpoints.clone();
        wrong_root[5] = note(256, merkle::root(&leaves[1..257]), &signer);
        let mut wrong_key = checkpoints.clone();
        let stranger = crate::note::NoteSigner::generate("test").unwrap();
        wrong_key[6] = note(257, merkle::root(&leaves[..257]), &stranger);
        let mut backwards = checkpoints.clone();
        backwards.swap(6, 7);
        let faults = [wrong_root, wrong_key, backwards];
        let expected: Vec<VerifyError> = faults
            .iter()
            .map(|cps| check_in_shares(&bytes, cps, &verifier, 1).unwrap_err())
            .collect();
        assert_eq!(expected[0].seq(), Some(255), "{}", expected[0]);
        assert!(
            matches!(expected[1], VerifyError::Checkpoint { index: 6, .. }),
            "{}",
            expected[1]
        );
        assert!(
            matches!(expected[2], VerifyError::Checkpoint { index: 7, .. }),
            "{}",
            expected[2]
        );
        for shares in [1, 2, 3, 7] {
            let report = check_in_shares(&bytes, &checkpoints, &verifier, shares).unwrap();
            assert_eq!(report.records, 300);
            assert_eq!(report.tree.root(), merkle::root(&leaves), "{shares} shares");
            assert_eq!(report.tree.size(), 300);
            assert_eq!(report.checkpoint.map(|c| c.size), Some(300));
            for (cps, expected) in faults.iter().zip(&expected) {
                let got = check_in_shares(&bytes, cps, &verifier, shares).unwrap_err();
                assert_eq!(&got, expected, "{shares} shares");
            }
        }
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
                leaves_of(&bytes(&log), shares).unwrap(),
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
