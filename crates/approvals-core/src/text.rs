//! Values kept as their JSON text while they wait: one allocation, a third the room of the
//! value (whose every string and map node is an allocation of its own), for what is kept
//! long and read once or rarely; and such texts packed against one another ([`Packer`]),
//! a sixth of the text's room again when they are alike.

use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// `value` as JSON text, if that text reads back as an equal value, so that keeping the
/// text in its place loses nothing; `None` if it does not (keep the value then).
///
/// ```
/// use approvals_core::text::written;
/// let text = written(&("export".to_owned(), 1.5_f64, u64::MAX)).unwrap();
/// assert_eq!(&*text, r#"["export",1.5,18446744073709551615]"#);
/// let back: (String, f64, u64) = serde_json::from_str(&text).unwrap();
/// assert_eq!(back, ("export".to_owned(), 1.5, u64::MAX));
/// ```
pub fn written<T: Serialize + DeserializeOwned + PartialEq>(value: &T) -> Option<Box<str>> {
    let text = serde_json::to_string(value).ok()?;
    let back: T = serde_json::from_str(&text).ok()?;
    (back == *value).then(|| text.into_boxed_str())
}

/// Packs texts kept long in memory against a reference text: the first it packs, until
/// one comes that is unlike it.
///
/// Texts kept side by side are mostly alike: 100,000 waiting requests from one agent's call
/// differ in their ids, times, digests and arguments, while their keys, names, requester
/// and requirement repeat. LZ4 with a dictionary writes what a text shares with the
/// reference as a few bytes each, so a 640-byte request keeps about 140 (about a microsecond
/// to pack, a tenth of that to unpack). A text that does not pack to half its size
/// is unlike the reference, and becomes the new one (packed against itself, so that it too
/// is small); what was packed against the old reference keeps it alive until it goes. So a
/// packed text never costs much more than the text: at worst it is its own reference.
///
/// The compression is LZ4's (the `lz4_flex` crate, pure Rust); the choice of reference is
/// ours, as no crate keeps a reference for a stream of separate small texts.
///
/// ```
/// use approvals_core::text::Packer;
/// let packer = Packer::default();
/// let first = r#"{"id":"01J0000000000000000000000A","action":{"name":"export","args":{"customer":1}},"state":"pending"}"#;
/// let second = r#"{"id":"01J0000000000000000000000B","action":{"name":"export","args":{"customer":2}},"state":"pending"}"#;
/// let (a, b) = (packer.pack(first), packer.pack(second));
/// assert_eq!(a.unpack().unwrap(), first);
/// assert_eq!(b.unpack().unwrap(), second);
/// assert!(b.size() * 4 < second.len());
/// ```
#[derive(Debug, Default)]
pub struct Packer {
    reference: Mutex<Option<Arc<Reference>>>,
}

/// A text that others are packed against.
#[derive(Debug)]
struct Reference(Box<[u8]>);

/// A text packed by a [`Packer`]: shared, so a clone is two counts, not a copy.
#[derive(Debug, Clone)]
pub struct Packed {
    /// `None` for a text packed alone (one too long to be a reference).
    reference: Option<Arc<Reference>>,
    /// LZ4's block, after the text's length (four bytes, little-endian).
    bytes: Arc<[u8]>,
}

/// A packed text that did not unpack. Not expected: a [`Packed`] is only ever made by
/// [`Packer::pack`]; a reader fails closed with this rather than panicking.
#[derive(Debug, thiserror::Error)]
#[error("a packed text did not unpack: {0}")]
pub struct UnpackError(String);

/// A text packs well against a reference if it takes at most this fraction of its length.
const WELL: usize = 2;

/// The longest text that becomes a reference: packing hashes the whole reference each time.
const MAX_REFERENCE: usize = 4096;

impl Packer {
    /// `text`, packed against the reference (which it becomes if it is the first, or unlike
    /// it).
    pub fn pack(&self, text: &str) -> Packed {
        let text = text.as_bytes();
        let current = self.lock().clone();
        if let Some(reference) = current {
            let bytes = lz4_flex::block::compress_prepend_size_with_dict(text, &reference.0);
            if bytes.len() * WELL <= text.len() || text.len() > MAX_REFERENCE {
                return Packed {
                    reference: Some(reference),
                    bytes: bytes.into(),
                };
            }
        } else if text.len() > MAX_REFERENCE {
            return Packed {
                reference: None,
                bytes: lz4_flex::block::compress_prepend_size(text).into(),
            };
        }
        let reference = Arc::new(Reference(text.into()));
        let bytes = lz4_flex::block::compress_prepend_size_with_dict(text, &reference.0);
        *self.lock() = Some(Arc::clone(&reference));
        Packed {
            reference: Some(reference),
            bytes: bytes.into(),
        }
    }

    /// `value` as JSON text ([`written`]), packed, if that reads back as an equal value:
    /// what to keep in its place; `None` if it does not (keep the value then).
    pub fn written<T: Serialize + DeserializeOwned + PartialEq>(
        &self,
        value: &T,
    ) -> Option<Packed> {
        let text = written(value)?;
        let packed = self.pack(&text);
        (packed.unpack().ok()?.as_str() == &*text).then_some(packed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Arc<Reference>>> {
        // Only an `Arc` is ever written under the lock: a panic cannot leave it half-made.
        self.reference.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Packed {
    /// The text again.
    pub fn unpack(&self) -> Result<String, UnpackError> {
        let reference = self.reference.as_deref().map_or(&[][..], |r| &r.0[..]);
        let (len, block) = self
            .bytes
            .split_first_chunk::<4>()
            .ok_or_else(|| UnpackError("shorter than its length".into()))?;
        let mut text = vec![0; u32::from_le_bytes(*len) as usize];
        let written = lz4_flex::block::decompress_into_with_dict(block, &mut text, reference)
            .map_err(|e| UnpackError(e.to_string()))?;
        if written != text.len() {
            return Err(UnpackError(format!("{written} bytes, not {}", text.len())));
        }
        String::from_utf8(text).map_err(|e| UnpackError(e.to_string()))
    }

    /// The value [`Packer::written`] packed, again.
    pub fn read<T: DeserializeOwned>(&self) -> Result<T, UnpackError> {
        serde_json::from_str(&self.unpack()?).map_err(|e| UnpackError(e.to_string()))
    }

    /// The packed bytes' length (not counting the reference, which other texts share).
    pub fn size(&self) -> usize {
        self.bytes.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// Reads back as the JSON text it was written as, but not as an equal value.
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Lossy(#[serde(with = "lossy")] f64);

    mod lossy {
        pub(super) fn serialize<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_f64(v.round())
        }
        pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
            serde::Deserialize::deserialize(d)
        }
    }

    #[test]
    fn a_value_that_does_not_read_back_equal_is_not_written() {
        assert_eq!(written(&Lossy(2.0)).as_deref(), Some("2.0"));
        assert_eq!(written(&Lossy(2.5)), None);
        // NaN is written as null, which reads back as no number at all.
        assert_eq!(written(&f64::NAN), None);
    }

    /// A request as a store keeps it, with the parts that differ from call to call.
    fn request(id: &str, customer: u64, at: &str) -> String {
        format!(
            r#"{{"id":"{id}","action":{{"name":"billing::export_customer","policy":"export","args":{{"customer":{customer}}},"digest":"{:064x}"}},"context":{{"requester":{{"id":"ops-bot","kind":"agent"}}}},"requirement":{{"rule":"one-data-owner","factors":[{{"from":{{"group":"data-owners"}},"count":1}}],"expires_in_ms":3600000}},"created_at":"{at}","state":{{"state":"pending"}},"reviews":[],"version":0}}"#,
            u128::from(customer).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)
        )
    }

    /// The request the tests pack first.
    fn first_request() -> String {
        request(
            "01J9ZQ3V5X6Y7Z8A9B0C1D2E3F",
            1,
            "2026-12-06T03:00:00.000001Z",
        )
    }

    /// Whether `x` and `y` were packed against the same reference.
    fn shared(x: &Packed, y: &Packed) -> bool {
        match (&x.reference, &y.reference) {
            (Some(x), Some(y)) => Arc::ptr_eq(x, y),
            _ => false,
        }
    }

    #[test]
    fn alike_texts_pack_small_against_one_reference() {
        let packer = Packer::default();
        let first = first_request();
        let second = request(
            "01J9ZQ3V5XPQRSTVWXYZ012345",
            987_654,
            "2026-12-06T03:00:00.124518Z",
        );
        let (a, b) = (packer.pack(&first), packer.pack(&second));
        assert_eq!(a.unpack().unwrap(), first);
        assert_eq!(b.unpack().unwrap(), second);
        assert!(shared(&a, &b), "both against the first");
        // The second keeps what differs (an id, a digest, a number, a time) and little else.
        assert!(
            b.size() * 4 <= second.len(),
            "{} of {}",
            b.size(),
            second.len()
        );

        // Unlike the reference, a text becomes the next one.
        // Numbers that do not repeat: nothing in it matches the request or itself.
        let other = (1..40u64)
            .map(|i| format!("{:016x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
            .collect::<Vec<_>>()
            .join(" quarter ");
        let c = packer.pack(&other);
        assert!(!shared(&b, &c));
        let d = packer.pack(&other.replacen("quarter", "month", 1));
        assert!(shared(&c, &d));
        assert_eq!(d.unpack().unwrap(), other.replacen("quarter", "month", 1));
        // What was packed against the old reference still unpacks.
        assert_eq!(b.unpack().unwrap(), second);
    }

    #[test]
    fn a_long_text_is_packed_but_never_becomes_the_reference() {
        let packer = Packer::default();
        let long = "x".repeat(MAX_REFERENCE + 1);
        let alone = packer.pack(&long);
        assert!(alone.reference.is_none());
        assert_eq!(alone.unpack().unwrap(), long);
        let first = first_request();
        let a = packer.pack(&first);
        let b = packer.pack(&format!("{long}{first}"));
        assert!(shared(&a, &b));
        assert_eq!(b.unpack().unwrap(), format!("{long}{first}"));
    }

    #[test]
    fn damaged_bytes_are_an_error_not_a_panic() {
        let packer = Packer::default();
        let text = first_request();
        let packed = packer.pack(&text);
        for cut in 0..packed.bytes.len() {
            let damaged = Packed {
                reference: packed.reference.clone(),
                bytes: packed.bytes[..cut].into(),
            };
            assert!(damaged.unpack().is_err(), "cut at {cut}");
        }
        let mut longer = packed.bytes.to_vec();
        longer[0] = longer[0].wrapping_add(1);
        let damaged = Packed {
            reference: packed.reference.clone(),
            bytes: longer.into(),
        };
        assert!(damaged.unpack().is_err());
    }

    #[test]
    fn a_value_is_packed_only_if_it_reads_back_equal() {
        let packer = Packer::default();
        let value = ("export".to_owned(), 1.5_f64, u64::MAX);
        let packed = packer.written(&value).unwrap();
        assert_eq!(packed.read::<(String, f64, u64)>().unwrap(), value);
        assert!(packer.written(&Lossy(2.5)).is_none());
        assert!(packed.read::<Vec<u8>>().is_err(), "not what was packed");
    }

    proptest::proptest! {
        #[test]
        fn any_texts_unpack_as_they_were(texts in proptest::collection::vec(".{0,300}", 1..12)) {
            let packer = Packer::default();
            let packed: Vec<_> = texts.iter().map(|t| packer.pack(t)).collect();
            for (text, packed) in texts.iter().zip(&packed) {
                proptest::prop_assert_eq!(&packed.unpack().unwrap(), text);
            }
        }
    }
}
