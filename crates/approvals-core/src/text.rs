//! Values kept as their JSON text while they wait: one allocation, a third the room of the
//! value (whose every string and map node is an allocation of its own), for what is kept
//! long and read once or rarely.

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
}
