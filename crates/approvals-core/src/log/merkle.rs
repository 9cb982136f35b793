//! RFC 6962 (RFC 9162 §2.1) Merkle trees: the structure that makes the audit trail
//! tamper-evident.
//!
//! Each audit record is a leaf: `SHA-256(0x00 || record bytes)`; an interior node is
//! `SHA-256(0x01 || left || right)`. A signed root commits to every record before it. An
//! inclusion proof shows one record is in the log without handing over the rest; a
//! consistency proof shows a later log extends an earlier one, dropping and changing nothing.
//!
//! ```
//! use approvals_core::merkle::{leaf_hash, root, inclusion_proof, verify_inclusion};
//! let leaves: Vec<_> = [b"a".as_slice(), b"b", b"c"].iter().map(|d| leaf_hash(d)).collect();
//! let r = root(&leaves);
//! let proof = inclusion_proof(&leaves, 1).unwrap();
//! verify_inclusion(1, 3, &leaves[1], &proof, &r).unwrap();
//! ```

use sha2::{Digest as _, Sha256};

/// A 32-byte SHA-256 hash.
pub type Hash = [u8; 32];

/// `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of a tree of no leaves: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The largest power of two smaller than `n` (n ≥ 2).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// The Merkle tree hash of a list of leaf hashes.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// The right edge of a growing tree: the roots of its perfect subtrees, largest first.
///
/// Appending a leaf and computing the root are O(log n), so a log can sign a checkpoint of
/// a million records without keeping or rehashing them. The root equals [`root`] of all the
/// leaves pushed.
///
/// ```
/// use approvals_core::merkle::{Frontier, leaf_hash, root};
/// let leaves: Vec<_> = (0..5u8).map(|i| leaf_hash(&[i])).collect();
/// let mut f = Frontier::default();
/// leaves.iter().for_each(|l| f.push(*l));
/// assert_eq!(f.root(), root(&leaves));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// One hash per set bit of `size`, from the most significant.
    peaks: Vec<Hash>,
}

impl Frontier {
    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        // A leaf is a perfect subtree of height 0, which fits at any size.
        self.push_subtree(0, leaf);
    }

    /// Appends a perfect subtree of `2^height` leaves whose root is `hash`: what pushing
    /// its leaves one by one would give, without hashing its inner nodes again. The tree's
    /// size must be a multiple of `2^height` (the subtree starts where one of its height
    /// may), else this returns `false` and changes nothing.
    pub(crate) fn push_subtree(&mut self, height: u32, hash: Hash) -> bool {
        let leaves = 1u64 << height;
        if self.size % leaves != 0 {
            return false;
        }
        // Two perfect subtrees of equal size merge into one, one level up per merge,
        // starting at the subtree's height.
        let mut h = hash;
        let mut s = self.size >> height;
        while s & 1 == 1 {
            if let Some(left) = self.peaks.pop() {
                h = node_hash(&left, &h);
            }
            s >>= 1;
        }
        self.peaks.push(h);
        self.size += leaves;
        true
    }

    /// How many leaves were pushed.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The frontier as bytes, for a store to keep beside its log: the size (8 bytes, big
    /// endian), then one 32-byte hash per set bit of the size.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + 32 * self.peaks.len());
        out.extend_from_slice(&self.size.to_be_bytes());
        for p in &self.peaks {
            out.extend_from_slice(p);
        }
        out
    }

    /// Reads [`Frontier::to_bytes`] back; `None` if the bytes are not a frontier.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let (size, rest) = bytes.split_first_chunk::<8>()?;
        let size = u64::from_be_bytes(*size);
        if rest.len() != 32 * size.count_ones() as usize {
            return None;
        }
        let peaks = rest
            .chunks_exact(32)
            .map(|c| <Hash>::try_from(c).ok())
            .collect::<Option<Vec<Hash>>>()?;
        Some(Self { size, peaks })
    }

    /// The root of the tree of every leaf pushed so far.
    pub fn root(&self) -> Hash {
        let mut peaks = self.peaks.iter().rev();
        let Some(last) = peaks.next() else {
            return empty_root();
        };
        peaks.fold(*last, |right, left| node_hash(left, &right))
    }
}

/// Why a proof could not be made or did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The index or sizes are outside the tree.
    #[error("{0}")]
    OutOfRange(String),
    /// A hash is not 32 bytes long.
    #[error("a hash in the proof is {0} bytes long, not 32")]
    BadHashLength(usize),
    /// The proof has too few or too many hashes for these sizes.
    #[error("the proof has the wrong number of hashes for these tree sizes")]
    WrongLength,
    /// The proof does not lead to the expected root.
    #[error("the proof does not match the root")]
    Mismatch,
}

/// The audit path of leaf `index`: the sibling hashes from the leaf up to the root.
pub fn inclusion_proof(leaves: &[Hash], index: usize) -> Result<Vec<Hash>, ProofError> {
    if index >= leaves.len() {
        return Err(ProofError::OutOfRange(format!(
            "leaf {index} is not in a tree of {} leaves",
            leaves.len()
        )));
    }
    let mut proof = Vec::new();
    path(leaves, index, &mut proof);
    Ok(proof)
}

fn path(leaves: &[Hash], m: usize, out: &mut Vec<Hash>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split(n);
    if m < k {
        path(&leaves[..k], m, out);
        out.push(root(&leaves[k..]));
    } else {
        path(&leaves[k..], m - k, out);
        out.push(root(&leaves[..k]));
    }
}

/// A proof that the first `old_size` leaves are a prefix of `leaves`.
pub fn consistency_proof(leaves: &[Hash], old_size: usize) -> Result<Vec<Hash>, ProofError> {
    if old_size == 0 || old_size > leaves.len() {
        return Err(ProofError::OutOfRange(format!(
            "no consistency proof from size {old_size} to size {}",
            leaves.len()
        )));
    }
    let mut proof = Vec::new();
    subproof(leaves, old_size, true, &mut proof);
    Ok(proof)
}

fn subproof(leaves: &[Hash], m: usize, complete: bool, out: &mut Vec<Hash>) {
    let n = leaves.len();
    if m == n {
        if !complete {
            out.push(root(leaves));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        subproof(&leaves[..k], m, complete, out);
        out.push(root(&leaves[k..]));
    } else {
        subproof(&leaves[k..], m - k, false, out);
        out.push(root(&leaves[..k]));
    }
}

fn hash32(bytes: &[u8]) -> Result<Hash, ProofError> {
    bytes
        .try_into()
        .map_err(|_| ProofError::BadHashLength(bytes.len()))
}

/// Verifies that `leaf` is leaf `index` of the tree of `size` leaves with root `root`
/// (RFC 9162 §2.1.3.2). Hashes may be given as any byte slices; wrong lengths are refused.
pub fn verify_inclusion<P: AsRef<[u8]>>(
    index: u64,
    size: u64,
    leaf: &[u8],
    proof: &[P],
    root: &[u8],
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::OutOfRange(format!(
            "leaf {index} is not in a tree of {size} leaves"
        )));
    }
    let leaf = hash32(leaf)?;
    let root = hash32(root)?;
    let proof = proof
        .iter()
        .map(|p| hash32(p.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    let (mut f, mut s) = (index, size - 1);
    let mut r = leaf;
    for p in &proof {
        if s == 0 {
            return Err(ProofError::WrongLength);
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::WrongLength);
    }
    if r != root {
        return Err(ProofError::Mismatch);
    }
    Ok(())
}

/// Verifies that the tree of `size1` leaves with root `root1` is a prefix of the tree of
/// `size2` leaves with root `root2` (RFC 9162 §2.1.4.2). A proof from the empty tree is
/// refused: it proves nothing.
pub fn verify_consistency<P: AsRef<[u8]>>(
    size1: u64,
    size2: u64,
    proof: &[P],
    root1: &[u8],
    root2: &[u8],
) -> Result<(), ProofError> {
    if size1 == 0 {
        return Err(ProofError::OutOfRange(
            "a consistency proof from the empty tree proves nothing".into(),
        ));
    }
    if size1 > size2 {
        return Err(ProofError::OutOfRange(format!(
            "the old size {size1} is larger than the new size {size2}"
        )));
    }
    if size1 == size2 {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        return if root1 == root2 {
            Ok(())
        } else {
            Err(ProofError::Mismatch)
        };
    }
    if proof.is_empty() {
        return Err(ProofError::WrongLength);
    }
    let root1 = hash32(root1)?;
    let root2 = hash32(root2)?;
    let mut path = proof
        .iter()
        .map(|p| hash32(p.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    if size1.is_power_of_two() {
        path.insert(0, root1);
    }
    let (mut f, mut s) = (size1 - 1, size2 - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if s == 0 {
            return Err(ProofError::WrongLength);
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::WrongLength);
    }
    if fr != root1 || sr != root2 {
        return Err(ProofError::Mismatch);
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_pushed_subtree_is_its_leaves_pushed_one_by_one() {
        let leaves: Vec<Hash> = (0u8..40).map(|i| leaf_hash(&[i])).collect();
        for height in 0..4u32 {
            let width = 1usize << height;
            for start in 0..=leaves.len() - width {
                let mut f = Frontier::default();
                leaves[..start].iter().for_each(|l| f.push(*l));
                // Independent answer: the recursive definition's root of the same leaves.
                let subtree = root(&leaves[start..start + width]);
                let aligned = start % width == 0;
                assert_eq!(
                    f.push_subtree(height, subtree),
                    aligned,
                    "{height} at {start}"
                );
                if aligned {
                    assert_eq!(f.size(), (start + width) as u64);
                    assert_eq!(
                        f.root(),
                        root(&leaves[..start + width]),
                        "{height} at {start}"
                    );
                    leaves[start + width..].iter().for_each(|l| f.push(*l));
                    assert_eq!(f.root(), root(&leaves));
                } else {
                    assert_eq!(f.size(), start as u64, "nothing changes");
                }
            }
        }
    }

    #[test]
    fn a_frontier_survives_its_bytes_and_keeps_the_same_root() {
        let leaves: Vec<Hash> = (0u8..13).map(|i| leaf_hash(&[i])).collect();
        let mut f = Frontier::default();
        for (n, leaf) in leaves.iter().enumerate() {
            f.push(*leaf);
            let back = Frontier::from_bytes(&f.to_bytes()).expect("round trip");
            assert_eq!(back, f);
            // Independent answer: the root recomputed from all the leaves so far.
            assert_eq!(back.root(), root(&leaves[..=n]));
        }
        let empty = Frontier::from_bytes(&Frontier::default().to_bytes()).expect("empty");
        assert_eq!(empty.root(), empty_root());
    }

    #[test]
    fn malformed_frontier_bytes_are_refused() {
        let mut f = Frontier::default();
        f.push(leaf_hash(b"a"));
        f.push(leaf_hash(b"b"));
        f.push(leaf_hash(b"c"));
        let bytes = f.to_bytes();
        assert!(Frontier::from_bytes(&bytes[..7]).is_none(), "short size");
        assert!(
            Frontier::from_bytes(&bytes[..bytes.len() - 1]).is_none(),
            "short peak"
        );
        let mut wrong = bytes.clone();
        wrong[7] = 4; // size 4 has one peak, the bytes hold two
        assert!(Frontier::from_bytes(&wrong).is_none());
    }
}
