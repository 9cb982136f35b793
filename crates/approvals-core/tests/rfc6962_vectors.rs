//! The Merkle tree against independent answers: every inclusion and consistency case of
//! transparency-dev/merkle (commit 417fb0c, Apache-2.0, copied under `tests/vectors/` with
//! its LICENSE), and the published roots of the first n test leaves.

use std::path::{Path, PathBuf};

use approvals_core::merkle::{
    consistency_proof, inclusion_proof, leaf_hash, root, verify_consistency, verify_inclusion,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

fn b64(s: &str) -> Vec<u8> {
    STANDARD.decode(s).expect("vector base64")
}

fn cases(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors/rfc6962")
        .join(kind);
    let mut out = Vec::new();
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("vector dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "json") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Inclusion {
    leaf_idx: u64,
    tree_size: u64,
    root: String,
    leaf_hash: String,
    proof: Option<Vec<String>>,
    want_err: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Consistency {
    size1: u64,
    size2: u64,
    root1: String,
    root2: String,
    proof: Option<Vec<String>>,
    want_err: bool,
}

#[test]
fn every_inclusion_case() {
    let files = cases("inclusion");
    assert!(
        files.len() > 90,
        "found only {} inclusion cases",
        files.len()
    );
    for f in &files {
        let c: Inclusion = serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
        let proof: Vec<Vec<u8>> = c.proof.unwrap_or_default().iter().map(|p| b64(p)).collect();
        let got = verify_inclusion(
            c.leaf_idx,
            c.tree_size,
            &b64(&c.leaf_hash),
            &proof,
            &b64(&c.root),
        );
        assert_eq!(got.is_err(), c.want_err, "{}: {got:?}", f.display());
    }
}

#[test]
fn every_consistency_case() {
    let files = cases("consistency");
    assert!(
        files.len() > 90,
        "found only {} consistency cases",
        files.len()
    );
    for f in &files {
        let c: Consistency = serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
        let proof: Vec<Vec<u8>> = c.proof.unwrap_or_default().iter().map(|p| b64(p)).collect();
        let got = verify_consistency(c.size1, c.size2, &proof, &b64(&c.root1), &b64(&c.root2));
        assert_eq!(got.is_err(), c.want_err, "{}: {got:?}", f.display());
    }
}

/// The leaves behind the vectors, and the roots of their first n (from the vectors' README).
const LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];
const ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

#[test]
fn roots_of_the_reference_leaves() {
    let leaves: Vec<_> = LEAVES
        .iter()
        .map(|h| leaf_hash(&hex::decode(h).unwrap()))
        .collect();
    for (n, want) in ROOTS.iter().enumerate() {
        assert_eq!(
            hex::encode(root(&leaves[..n])),
            *want,
            "root of the first {n} leaves"
        );
    }
}

#[test]
fn proofs_we_make_verify_and_match_the_vectors() {
    let leaves: Vec<_> = LEAVES
        .iter()
        .map(|h| leaf_hash(&hex::decode(h).unwrap()))
        .collect();
    for n in 1..=leaves.len() {
        let r = root(&leaves[..n]);
        for i in 0..n {
            let p = inclusion_proof(&leaves[..n], i).unwrap();
            verify_inclusion(i as u64, n as u64, &leaves[i], &p, &r).unwrap();
        }
        for m in 1..=n {
            let p = consistency_proof(&leaves[..n], m).unwrap();
            verify_consistency(m as u64, n as u64, &p, &root(&leaves[..m]), &r).unwrap();
        }
    }
    // The happy-path vector for leaf 0 of 8 is exactly the proof we produce.
    let c: Inclusion = serde_json::from_slice(
        &std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/vectors/rfc6962/inclusion/1/happy-path.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let ours: Vec<Vec<u8>> = inclusion_proof(&leaves, c.leaf_idx as usize)
        .unwrap()
        .iter()
        .map(|h| h.to_vec())
        .collect();
    let theirs: Vec<Vec<u8>> = c.proof.unwrap().iter().map(|p| b64(p)).collect();
    assert_eq!(ours, theirs);
}

#[test]
fn the_frontier_root_is_the_tree_root_at_every_size() {
    let leaves: Vec<_> = (0..300u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    let mut f = approvals_core::merkle::Frontier::default();
    assert_eq!(f.root(), root(&[]));
    for (n, leaf) in leaves.iter().enumerate() {
        f.push(*leaf);
        assert_eq!(f.root(), root(&leaves[..=n]), "size {}", n + 1);
    }
    // And against the published table.
    let reference: Vec<_> = LEAVES
        .iter()
        .map(|h| leaf_hash(&hex::decode(h).unwrap()))
        .collect();
    let mut f = approvals_core::merkle::Frontier::default();
    for (n, leaf) in reference.iter().enumerate() {
        f.push(*leaf);
        assert_eq!(hex::encode(f.root()), ROOTS[n + 1]);
    }
}
