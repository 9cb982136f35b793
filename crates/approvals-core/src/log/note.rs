//! Signed notes and checkpoints, in the C2SP `signed-note` and `tlog-checkpoint` formats
//! with Ed25519, as Go's `golang.org/x/mod/sumdb/note` and every transparency log use them.
//!
//! A note is a text ending in a newline, a blank line, then one line per signature:
//! `— <key name> base64(key id[4] || signature[64])`. The key id is the first four bytes of
//! `SHA-256(name || 0x0A || 0x01 || public key)`. A verifier key is written
//! `<name>+<hex key id>+base64(0x01 || public key)`; a signer key
//! `PRIVATE+KEY+<name>+<hex key id>+base64(0x01 || seed)`.
//!
//! ```
//! use approvals_core::note::{NoteSigner, verify_note};
//! let signer = NoteSigner::generate("audit.example.com").unwrap();
//! let note = signer.sign("hello\n").unwrap();
//! let text = verify_note(&note, &signer.verifier()).unwrap();
//! assert_eq!(text, "hello\n");
//! ```

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use sha2::{Digest as _, Sha256};

use crate::merkle::Hash;

/// The algorithm byte of Ed25519 keys in signed notes.
const ED25519: u8 = 0x01;
/// The separator before a signature line (an em dash and a space).
const DASH: &str = "\u{2014} ";
/// More signatures than this on one note is refused as malformed.
const MAX_SIGNATURES: usize = 100;

/// A key, note or checkpoint could not be read, or a signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    /// A key string is malformed.
    #[error("malformed key: {0}")]
    Key(String),
    /// A note is malformed.
    #[error("malformed note: {0}")]
    Malformed(String),
    /// No signature by the expected key is on the note.
    #[error("the note carries no signature by {0}")]
    Unsigned(String),
    /// A signature by the expected key does not verify.
    #[error("the signature by {0} does not verify: the note was changed or signed by another key")]
    BadSignature(String),
    /// A checkpoint is malformed.
    #[error("malformed checkpoint: {0}")]
    Checkpoint(String),
}

/// The key id of an Ed25519 key: `SHA-256(name || 0x0A || 0x01 || public key)[..4]`.
pub fn key_id(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ED25519]);
    h.update(public);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

fn check_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty() || name.contains('+') || name.chars().any(char::is_whitespace) {
        return Err(NoteError::Key(format!(
            "a key name must be non-empty, without `+` or spaces: {name:?}"
        )));
    }
    Ok(())
}

/// Splits `name+hexid+base64` and checks the id against the key it names.
fn parse_key(s: &str) -> Result<(String, [u8; 4], [u8; 32]), NoteError> {
    let mut parts = s.splitn(3, '+');
    let (Some(name), Some(id_hex), Some(key_b64)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(NoteError::Key(
            "expected <name>+<hex key id>+<base64 key>".into(),
        ));
    };
    check_name(name)?;
    let mut id = [0u8; 4];
    if id_hex.len() != 8 || hex::decode_to_slice(id_hex, &mut id).is_err() {
        return Err(NoteError::Key(format!(
            "key id {id_hex:?} is not 8 hex digits"
        )));
    }
    let raw = B64
        .decode(key_b64)
        .map_err(|e| NoteError::Key(format!("key is not base64: {e}")))?;
    let [alg, key @ ..] = raw.as_slice() else {
        return Err(NoteError::Key("empty key".into()));
    };
    if *alg != ED25519 {
        return Err(NoteError::Key(format!(
            "unsupported key algorithm {alg:#04x} (only Ed25519, 0x01)"
        )));
    }
    let key: [u8; 32] = key
        .try_into()
        .map_err(|_| NoteError::Key(format!("an Ed25519 key is 32 bytes, got {}", key.len())))?;
    Ok((name.to_owned(), id, key))
}

/// Signs notes with an Ed25519 key.
#[derive(Clone)]
pub struct NoteSigner {
    name: String,
    id: [u8; 4],
    key: SigningKey,
}

impl fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the private key.
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .field("id", &hex::encode(self.id))
            .finish_non_exhaustive()
    }
}

impl NoteSigner {
    /// A new random key named `name` (for instance the log's origin).
    pub fn generate(name: &str) -> Result<Self, NoteError> {
        check_name(name)?;
        let key = SigningKey::generate(&mut rand_core::OsRng);
        Ok(Self::from_parts(name, key))
    }

    fn from_parts(name: &str, key: SigningKey) -> Self {
        let id = key_id(name, key.verifying_key().as_bytes());
        Self {
            name: name.to_owned(),
            id,
            key,
        }
    }

    /// Reads a signer key string `PRIVATE+KEY+<name>+<hex id>+<base64 0x01||seed>`.
    pub fn from_skey(s: &str) -> Result<Self, NoteError> {
        let rest = s
            .trim()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or_else(|| NoteError::Key("a signer key starts with PRIVATE+KEY+".into()))?;
        let (name, id, seed) = parse_key(rest)?;
        let signer = Self::from_parts(&name, SigningKey::from_bytes(&seed));
        if signer.id != id {
            return Err(NoteError::Key(format!(
                "key id {} does not match the key (expected {})",
                hex::encode(id),
                hex::encode(signer.id)
            )));
        }
        Ok(signer)
    }

    /// The signer key string; keep it secret.
    pub fn to_skey(&self) -> String {
        let mut raw = vec![ED25519];
        raw.extend_from_slice(self.key.as_bytes());
        format!(
            "PRIVATE+KEY+{}+{}+{}",
            self.name,
            hex::encode(self.id),
            B64.encode(raw)
        )
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The Ed25519 key itself, for signing other things with the same identity (a
    /// reviewer's [`SignedDecision`](crate::signed::SignedDecision)).
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// The matching verifier.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            id: self.id,
            key: self.key.verifying_key(),
        }
    }

    /// The signature line for `text` (without its newline).
    pub fn signature_line(&self, text: &str) -> String {
        let sig = self.key.sign(text.as_bytes());
        let mut raw = self.id.to_vec();
        raw.extend_from_slice(&sig.to_bytes());
        format!("{DASH}{} {}", self.name, B64.encode(raw))
    }

    /// A signed note: `text` (which must end in a newline), a blank line, the signature.
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        check_text(text)?;
        Ok(format!("{text}\n{}\n", self.signature_line(text)))
    }
}

fn check_text(text: &str) -> Result<(), NoteError> {
    if !text.ends_with('\n') {
        return Err(NoteError::Malformed(
            "the text must end in a newline".into(),
        ));
    }
    if text.contains("\n\n") || text.starts_with('\n') {
        return Err(NoteError::Malformed(
            "the text must not contain a blank line".into(),
        ));
    }
    Ok(())
}

/// Verifies notes signed by one Ed25519 key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    id: [u8; 4],
    key: VerifyingKey,
}

impl NoteVerifier {
    /// Reads a verifier key string `<name>+<hex id>+<base64 0x01||public key>`.
    pub fn from_vkey(s: &str) -> Result<Self, NoteError> {
        let (name, id, public) = parse_key(s.trim())?;
        if key_id(&name, &public) != id {
            return Err(NoteError::Key(format!(
                "key id {} does not match the key",
                hex::encode(id)
            )));
        }
        let key = VerifyingKey::from_bytes(&public)
            .map_err(|e| NoteError::Key(format!("not an Ed25519 public key: {e}")))?;
        Ok(Self { name, id, key })
    }

    /// The verifier key string, to publish.
    pub fn to_vkey(&self) -> String {
        let mut raw = vec![ED25519];
        raw.extend_from_slice(self.key.as_bytes());
        format!("{}+{}+{}", self.name, hex::encode(self.id), B64.encode(raw))
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The Ed25519 public key.
    pub fn key(&self) -> &VerifyingKey {
        &self.key
    }
}

/// Checks that `note` carries a valid signature by `verifier`; returns the signed text.
///
/// Signatures by other keys are ignored; a signature that claims to be by this key (same
/// name and key id) but does not verify is an error, as is a note with none.
pub fn verify_note<'a>(note: &'a str, verifier: &NoteVerifier) -> Result<&'a str, NoteError> {
    let split = note
        .rfind("\n\n")
        .ok_or_else(|| NoteError::Malformed("no blank line before the signatures".into()))?;
    let (text, sigs) = (&note[..=split], &note[split + 2..]);
    check_text(text)?;
    if sigs.is_empty() || !sigs.ends_with('\n') {
        return Err(NoteError::Malformed(
            "the signature lines must end in a newline".into(),
        ));
    }
    let mut found = false;
    // Lines end in "\n" alone, as in Go's `sumdb/note`: `str::lines` would also take
    // "\r\n", and accept the same note spelt two ways.
    for (i, line) in sigs[..sigs.len() - 1].split('\n').enumerate() {
        if i >= MAX_SIGNATURES {
            return Err(NoteError::Malformed("too many signatures".into()));
        }
        let rest = line.strip_prefix(DASH).ok_or_else(|| {
            NoteError::Malformed(format!(
                "signature line {line:?} does not start with an em dash"
            ))
        })?;
        let (name, b64) = rest.split_once(' ').ok_or_else(|| {
            NoteError::Malformed(format!("signature line {line:?} has no signature"))
        })?;
        let raw = B64
            .decode(b64)
            .map_err(|_| NoteError::Malformed(format!("signature of {name} is not base64")))?;
        if raw.len() < 4 {
            return Err(NoteError::Malformed(format!(
                "signature of {name} is too short"
            )));
        }
        if name != verifier.name || raw[..4] != verifier.id {
            continue;
        }
        let sig = Signature::from_slice(&raw[4..])
            .map_err(|_| NoteError::BadSignature(verifier.name.clone()))?;
        verifier
            .key
            .verify(text.as_bytes(), &sig)
            .map_err(|_| NoteError::BadSignature(verifier.name.clone()))?;
        found = true;
    }
    if found {
        Ok(text)
    } else {
        Err(NoteError::Unsigned(verifier.name.clone()))
    }
}

/// A transparency-log checkpoint: the log's origin, its size, and its Merkle root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Names the log (for instance `audit.example.com/approvals`).
    pub origin: String,
    /// How many records the root covers.
    pub size: u64,
    /// The Merkle root of the first `size` records.
    pub root: Hash,
}

impl Checkpoint {
    /// The note text: `<origin>\n<size>\n<base64 root>\n`.
    pub fn to_text(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }

    /// Reads a checkpoint text (extension lines after the root are allowed and ignored).
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let bad = |m: &str| NoteError::Checkpoint(m.to_owned());
        let mut lines = text.split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or_else(|| bad("no origin line"))?;
        let size = lines.next().ok_or_else(|| bad("no size line"))?;
        if size.is_empty()
            || !size.bytes().all(|b| b.is_ascii_digit())
            || (size.len() > 1 && size.starts_with('0'))
        {
            return Err(bad("the size is not a decimal number"));
        }
        let size: u64 = size.parse().map_err(|_| bad("the size is too large"))?;
        let root = lines.next().ok_or_else(|| bad("no root line"))?;
        let root: Hash = B64
            .decode(root)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or_else(|| bad("the root is not a base64 SHA-256 hash"))?;
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
        })
    }

    /// Signs this checkpoint.
    pub fn sign(&self, signer: &NoteSigner) -> Result<String, NoteError> {
        signer.sign(&self.to_text())
    }

    /// Verifies a signed checkpoint and reads it.
    pub fn verify(note: &str, verifier: &NoteVerifier) -> Result<Self, NoteError> {
        Self::parse(verify_note(note, verifier)?)
    }
}
