//! Canonical JSON: the one byte form that digests and audit records are computed over.
//!
//! Rules: object keys sorted by Unicode code point (byte order of their UTF-8), no
//! whitespace, strings escaped minimally (`\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, other
//! control characters as `\u00xx`, everything else literal UTF-8), integers in plain decimal,
//! other numbers in their shortest round-trip form.
//!
//! Written here rather than taken from a crate because `serde_json`'s key order depends on a
//! cargo feature (`preserve_order`) that any crate in a build may switch on; the digest of a
//! call must not change because an unrelated dependency was added.

use serde_json::Value;

/// Appends the canonical encoding of `value` to `out`.
///
/// ```
/// use approvals_core::canonical::to_canonical_string;
/// let v = serde_json::json!({"b": 1, "a": [true, null, "x\n"]});
/// assert_eq!(to_canonical_string(&v), r#"{"a":[true,null,"x\n"],"b":1}"#);
/// ```
pub fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            use std::fmt::Write as _;
            // Writing to a `String` cannot fail.
            let _ = write!(out, "{n}");
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            // `serde_json`'s map is sorted unless a crate in the build turns on its
            // `preserve_order`; sort only then.
            let sorted = map.keys().zip(map.keys().skip(1)).all(|(a, b)| a < b);
            if sorted {
                write_members(map.iter(), out);
            } else {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
                write_members(entries.into_iter(), out);
            }
        }
    }
}

fn write_members<'a>(members: impl Iterator<Item = (&'a String, &'a Value)>, out: &mut String) {
    out.push('{');
    for (i, (k, v)) in members.enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(k, out);
        out.push(':');
        write_canonical(v, out);
    }
    out.push('}');
}

/// Appends `s` as a canonical JSON string, quotes included: what [`write_canonical`] writes
/// for `Value::String(s)`, without building one.
///
/// ```
/// let mut out = String::new();
/// approvals_core::canonical::write_str("a\"b\n", &mut out);
/// assert_eq!(out, r#""a\"b\n""#);
/// ```
pub fn write_str(s: &str, out: &mut String) {
    write_string(s, out);
}

/// The canonical encoding of `value` as a string.
pub fn to_canonical_string(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

/// Whether `s` is written in JSON as it is, between quotes, with no escape: no control
/// character, quote or backslash. A `const fn`, so that a name known at compile time is
/// checked then ([`crate::action::ArgName`]).
pub(crate) const fn needs_no_escape(s: &str) -> bool {
    bytes_need_no_escape(s.as_bytes())
}

/// [`needs_no_escape`] for bytes of a string.
const fn bytes_need_no_escape(b: &[u8]) -> bool {
    let mut i = 0;
    while i < b.len() {
        if b[i] < 0x20 || b[i] == b'"' || b[i] == b'\\' {
            return false;
        }
        i += 1;
    }
    true
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    // Most strings (names, ids, ordinary text) need no escape: copy them whole. Plain
    // ASCII is passed over a word at a time; from a byte above 0x7f, or in the last few,
    // one at a time.
    let bytes = s.as_bytes();
    let rest = &bytes[plain_ascii(bytes)..];
    if bytes_need_no_escape(rest) {
        out.push_str(s);
        out.push('"');
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends the canonical encoding of `value`'s serialisation to `out`: the same bytes as
/// [`write_canonical`] over `serde_json::to_value(value)`, without building the value.
///
/// Building a `Value` to sort its keys allocates every key and string again and a B-tree
/// node for every object; an audit record took about 25,000 instructions that way. Here
/// each object's members are written straight to `out` while their keys come in order,
/// and copied once and written again sorted if they do not. Written by hand: no crate writes this form (RFC 8785's JCS orders keys by
/// UTF-16 units and formats numbers as ECMAScript does). Anything the value path would
/// treat otherwise (a repeated key, a map key that is not a string or an integer, a 128-bit
/// integer) is refused, and the caller writes through a value instead; `out` then holds
/// what was written before the refusal.
///
/// ```
/// use approvals_core::canonical::{to_canonical_string, write_serialized};
/// let v = serde_json::json!({"b": [1.5, -2, "x\n"], "a": {"d": null, "c": true}});
/// let mut out = String::new();
/// write_serialized(&v, &mut out).unwrap();
/// assert_eq!(out, to_canonical_string(&v));
/// ```
pub fn write_serialized<T: serde::Serialize + ?Sized>(
    value: &T,
    out: &mut String,
) -> Result<(), Unsupported> {
    value.serialize(Writer { out })
}

/// Why [`write_serialized`] could not write a value (the value path can, or says why not).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not written directly as canonical JSON: {0}")]
pub struct Unsupported(String);

impl serde::ser::Error for Unsupported {
    fn custom<M: std::fmt::Display>(msg: M) -> Self {
        Self(msg.to_string())
    }
}

fn unsupported<T>(what: &str) -> Result<T, Unsupported> {
    Err(Unsupported(what.to_owned()))
}

/// The eight integer methods of a serializer that writes an integer as its decimal digits
/// (`Self::int`): the same for values and for map keys.
macro_rules! integers {
    () => {
        integers!(serialize_i8 i8, serialize_i16 i16, serialize_i32 i32, serialize_i64 i64,
            serialize_u8 u8, serialize_u16 u16, serialize_u32 u32, serialize_u64 u64);
    };
    ($($method:ident $t:ty),*) => {
        $(fn $method(self, v: $t) -> Result<(), Unsupported> {
            self.int(v)
        })*
    };
}

/// Writes one value into `out`.
struct Writer<'a> {
    out: &'a mut String,
}

impl Writer<'_> {
    fn int(self, n: impl itoa::Integer) -> Result<(), Unsupported> {
        self.out.push_str(itoa::Buffer::new().format(n));
        Ok(())
    }
}

impl<'a> serde::Serializer for Writer<'a> {
    type Ok = ();
    type Error = Unsupported;
    type SerializeSeq = Items<'a>;
    type SerializeTuple = Items<'a>;
    type SerializeTupleStruct = Items<'a>;
    type SerializeTupleVariant = Items<'a>;
    type SerializeMap = Members<'a>;
    type SerializeStruct = Members<'a>;
    type SerializeStructVariant = Members<'a>;

    fn serialize_bool(self, v: bool) -> Result<(), Unsupported> {
        self.out.push_str(if v { "true" } else { "false" });
        Ok(())
    }
    integers!();
    fn serialize_i128(self, _: i128) -> Result<(), Unsupported> {
        unsupported("a 128-bit integer")
    }
    fn serialize_u128(self, _: u128) -> Result<(), Unsupported> {
        unsupported("a 128-bit integer")
    }
    fn serialize_f32(self, v: f32) -> Result<(), Unsupported> {
        // As `serde_json` does: the same number as a double.
        self.serialize_f64(f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result<(), Unsupported> {
        match serde_json::Number::from_f64(v) {
            // Written as the value path writes it: `serde_json`'s own form of the number.
            Some(n) => {
                use std::fmt::Write as _;
                let _ = write!(self.out, "{n}");
            }
            // Not a JSON number: `serde_json` makes it null.
            None => self.out.push_str("null"),
        }
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), Unsupported> {
        write_string(v.encode_utf8(&mut [0; 4]), self.out);
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), Unsupported> {
        write_string(v, self.out);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Unsupported> {
        use serde::ser::SerializeSeq as _;
        let mut items = self.serialize_seq(Some(v.len()))?;
        for b in v {
            items.serialize_element(b)?;
        }
        items.end()
    }
    fn serialize_none(self) -> Result<(), Unsupported> {
        self.serialize_unit()
    }
    fn serialize_some<T: serde::Serialize + ?Sized>(self, v: &T) -> Result<(), Unsupported> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Unsupported> {
        self.out.push_str("null");
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Unsupported> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), Unsupported> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: serde::Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<(), Unsupported> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: serde::Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<(), Unsupported> {
        // `{"variant": value}`: one member, so already in order.
        self.out.push('{');
        write_string(variant, self.out);
        self.out.push(':');
        v.serialize(Writer { out: self.out })?;
        self.out.push('}');
        Ok(())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Items<'a>, Unsupported> {
        self.out.push('[');
        Ok(Items {
            out: self.out,
            first: true,
            variant: false,
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<Items<'a>, Unsupported> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Items<'a>, Unsupported> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Items<'a>, Unsupported> {
        self.out.push('{');
        write_string(variant, self.out);
        self.out.push_str(":[");
        Ok(Items {
            out: self.out,
            first: true,
            variant: true,
        })
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Members<'a>, Unsupported> {
        Ok(Members::new(self.out, len.unwrap_or(0), false))
    }
    fn serialize_struct(self, _: &'static str, len: usize) -> Result<Members<'a>, Unsupported> {
        Ok(Members::new(self.out, len, false))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Members<'a>, Unsupported> {
        self.out.push('{');
        write_string(variant, self.out);
        self.out.push(':');
        Ok(Members::new(self.out, len, true))
    }
}

/// An array being written: its items go straight to the output, in order.
struct Items<'a> {
    out: &'a mut String,
    first: bool,
    /// Inside `{"variant": [...]}`: one more brace to close.
    variant: bool,
}

impl Items<'_> {
    fn item<T: serde::Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Unsupported> {
        if !std::mem::take(&mut self.first) {
            self.out.push(',');
        }
        v.serialize(Writer { out: self.out })
    }
    fn close(self) -> Result<(), Unsupported> {
        self.out.push(']');
        if self.variant {
            self.out.push('}');
        }
        Ok(())
    }
}

impl serde::ser::SerializeSeq for Items<'_> {
    type Ok = ();
    type Error = Unsupported;
    fn serialize_element<T: serde::Serialize + ?Sized>(
        &mut self,
        v: &T,
    ) -> Result<(), Unsupported> {
        self.item(v)
    }
    fn end(self) -> Result<(), Unsupported> {
        self.close()
    }
}

impl serde::ser::SerializeTuple for Items<'_> {
    type Ok = ();
    type Error = Unsupported;
    fn serialize_element<T: serde::Serialize + ?Sized>(
        &mut self,
        v: &T,
    ) -> Result<(), Unsupported> {
        self.item(v)
    }
    fn end(self) -> Result<(), Unsupported> {
        self.close()
    }
}

impl serde::ser::SerializeTupleStruct for Items<'_> {
    type Ok = ();
    type Error = Unsupported;
    fn serialize_field<T: serde::Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Unsupported> {
        self.item(v)
    }
    fn end(self) -> Result<(), Unsupported> {
        self.close()
    }
}

impl serde::ser::SerializeTupleVariant for Items<'_> {
    type Ok = ();
    type Error = Unsupported;
    fn serialize_field<T: serde::Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Unsupported> {
        self.item(v)
    }
    fn end(self) -> Result<(), Unsupported> {
        self.close()
    }
}

/// An object being written. Its members go straight to the output as they come, in
/// canonical form (`{"key":value,...`), while each key sorts after the one before, as a
/// struct's fields declared in key order do; the first that does not sends the object to
/// [`Members::reorder`] when it closes, which copies the members written out and writes
/// them again sorted by key. Writing into a scratch buffer first and copying every member
/// out cost a reallocation of that buffer per doubling for every object, in order or not.
struct Members<'a> {
    out: &'a mut String,
    /// Where the object's members begin in `out` (after its `{`).
    start: usize,
    /// Each member's key (as given, unescaped) and value (as canonical JSON, a range of
    /// `out`), in the order written.
    spans: Vec<(MemberKey, std::ops::Range<usize>)>,
    /// The keys of a map's members, which a map gives as values (a struct's are static).
    keys: String,
    /// The key given by `serialize_key`, awaiting its value.
    key: Option<MemberKey>,
    /// Whether every key so far sorted after the one before.
    sorted: bool,
    /// Inside `{"variant": {...}}`: one more brace to close.
    variant: bool,
}

/// A member's key: a struct's field name, or a range of [`Members::keys`].
#[derive(Clone)]
enum MemberKey {
    Field(&'static str),
    Given(std::ops::Range<usize>),
}

impl<'a> Members<'a> {
    fn new(out: &'a mut String, len: usize, variant: bool) -> Self {
        out.push('{');
        let start = out.len();
        Self {
            out,
            start,
            spans: Vec::with_capacity(len),
            keys: String::new(),
            key: None,
            sorted: true,
            variant,
        }
    }

    fn text<'k>(keys: &'k str, key: &'k MemberKey) -> &'k str {
        match key {
            MemberKey::Field(name) => name,
            MemberKey::Given(range) => &keys[range.clone()],
        }
    }

    fn value<T: serde::Serialize + ?Sized>(
        &mut self,
        key: MemberKey,
        v: &T,
    ) -> Result<(), Unsupported> {
        if self.sorted {
            if let Some((last, _)) = self.spans.last() {
                self.sorted = Self::text(&self.keys, last) < Self::text(&self.keys, &key);
            }
        }
        if !self.spans.is_empty() {
            self.out.push(',');
        }
        write_string(Self::text(&self.keys, &key), self.out);
        self.out.push(':');
        let start = self.out.len();
        v.serialize(Writer {
            out: &mut *self.out,
        })?;
        self.spans.push((key, start..self.out.len()));
        Ok(())
    }

    fn close(mut self) -> Result<(), Unsupported> {
        if !self.sorted {
            self.reorder()?;
        }
        self.out.push('}');
        if self.variant {
            self.out.push('}');
        }
        Ok(())
    }

    /// Writes the members again, sorted by key: copies what was written of them, then
    /// writes each key and value from that copy in key order.
    fn reorder(&mut self) -> Result<(), Unsupported> {
        let keys = &self.keys;
        self.spans
            .sort_unstable_by(|a, b| Self::text(keys, &a.0).cmp(Self::text(keys, &b.0)));
        if self
            .spans
            .windows(2)
            .any(|w| Self::text(keys, &w[0].0) == Self::text(keys, &w[1].0))
        {
            // The value path keeps the last of repeated keys; leave that to it.
            return unsupported("a repeated key");
        }
        let written = self.out.split_off(self.start);
        for (i, (key, value)) in self.spans.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            write_string(Self::text(keys, key), self.out);
            self.out.push(':');
            self.out
                .push_str(&written[value.start - self.start..value.end - self.start]);
        }
        Ok(())
    }
}

impl serde::ser::SerializeMap for Members<'_> {
    type Ok = ();
    type Error = Unsupported;
    fn serialize_key<T: serde::Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Unsupported> {
        let start = self.keys.len();
        key.serialize(Key {
            out: &mut self.keys,
        })?;
        self.key = Some(MemberKey::Given(start..self.keys.len()));
        Ok(())
    }
    fn serialize_value<T: serde::Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Unsupported> {
        match self.key.take() {
            Some(key) => self.value(key, v),
            None => unsupported("a map value without its key"),
        }
    }
    fn end(self) -> Result<(), Unsupported> {
        self.close()
    }
}

impl serde::ser::SerializeStruct for Members<'_> {
    type Ok = ();
    type Error = Unsupported;
    fn serialize_field<T: serde::Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), Unsupported> {
        self.value(MemberKey::Field(key), v)
    }
    fn end(self) -> Result<(), Unsupported> {
        self.close()
    }
}

impl serde::ser::SerializeStructVariant for Members<'_> {
    type Ok = ();
    type Error = Unsupported;
    fn serialize_field<T: serde::Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), Unsupported> {
        self.value(MemberKey::Field(key), v)
    }
    fn end(self) -> Result<(), Unsupported> {
        self.close()
    }
}

/// Writes a map key as its text, unescaped, as `serde_json` takes keys: strings, chars and
/// integers (as decimal); anything else is refused.
struct Key<'a> {
    out: &'a mut String,
}

impl Key<'_> {
    fn int(self, n: impl itoa::Integer) -> Result<(), Unsupported> {
        self.out.push_str(itoa::Buffer::new().format(n));
        Ok(())
    }
}

impl serde::Serializer for Key<'_> {
    type Ok = ();
    type Error = Unsupported;
    type SerializeSeq = serde::ser::Impossible<(), Unsupported>;
    type SerializeTuple = serde::ser::Impossible<(), Unsupported>;
    type SerializeTupleStruct = serde::ser::Impossible<(), Unsupported>;
    type SerializeTupleVariant = serde::ser::Impossible<(), Unsupported>;
    type SerializeMap = serde::ser::Impossible<(), Unsupported>;
    type SerializeStruct = serde::ser::Impossible<(), Unsupported>;
    type SerializeStructVariant = serde::ser::Impossible<(), Unsupported>;

    fn serialize_str(self, v: &str) -> Result<(), Unsupported> {
        self.out.push_str(v);
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), Unsupported> {
        self.out.push(v);
        Ok(())
    }
    integers!();
    fn serialize_newtype_struct<T: serde::Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<(), Unsupported> {
        v.serialize(self)
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), Unsupported> {
        self.serialize_str(variant)
    }
    fn serialize_bool(self, _: bool) -> Result<(), Unsupported> {
        unsupported("a map key that is not a string")
    }
    fn serialize_i128(self, _: i128) -> Result<(), Unsupported> {
        unsupported("a 128-bit map key")
    }
    fn serialize_u128(self, _: u128) -> Result<(), Unsupported> {
        unsupported("a 128-bit map key")
    }
    fn serialize_f32(self, _: f32) -> Result<(), Unsupported> {
        unsupported("a map key that is not a string")
    }
    fn serialize_f64(self, _: f64) -> Result<(), Unsupported> {
        unsupported("a map key that is not a string")
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), Unsupported> {
        unsupported("a map key that is not a string")
    }
    fn serialize_none(self) -> Result<(), Unsupported> {
        unsupported("a map key that is not a string")
    }
    fn serialize_some<T: serde::Serialize + ?Sized>(self, _: &T) -> Result<(), Unsupported> {
        unsupported("a map key that is not a string")
    }
    fn serialize_unit(self) -> Result<(), Unsupported> {
        unsupported("a map key that is not a string")
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Unsupported> {
        unsupported("a map key that is not a string")
    }
    fn serialize_newtype_variant<T: serde::Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), Unsupported> {
        unsupported("a map key that is not a string")
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Unsupported> {
        unsupported("a map key that is not a string")
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Unsupported> {
        unsupported("a map key that is not a string")
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Unsupported> {
        unsupported("a map key that is not a string")
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Unsupported> {
        unsupported("a map key that is not a string")
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Unsupported> {
        unsupported("a map key that is not a string")
    }
    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, Unsupported> {
        unsupported("a map key that is not a string")
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Unsupported> {
        unsupported("a map key that is not a string")
    }
}

/// Why bytes are not canonical JSON: what is wrong, and at which byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotCanonical {
    /// The byte offset of the fault.
    pub at: usize,
    /// What is wrong.
    pub what: &'static str,
}

impl std::fmt::Display for NotCanonical {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}", self.what, self.at)
    }
}

/// How many levels of arrays and objects a checked document may hold, the outer object
/// included: as many as `serde_json` reads.
pub const MAX_DEPTH: usize = 127;

/// Checks that `bytes` are exactly one JSON object in canonical form (what
/// [`write_canonical`] writes, and nothing else), in one pass over the bytes and without
/// building a value; hands each top-level member to `member` as its key (as written, between
/// the quotes) and the bytes of its value.
///
/// This is what a verifier runs over every line of a log, so it is written to run at about
/// the speed of hashing the same bytes.
///
/// ```
/// use approvals_core::canonical::check_object;
/// let mut seq = None;
/// check_object(br#"{"a":[1,"x"],"seq":7}"#, |k, v| if k == b"seq" { seq = Some(v.to_vec()) }).unwrap();
/// assert_eq!(seq.as_deref(), Some(&b"7"[..]));
/// assert!(check_object(br#"{"seq":7,"a":1}"#, |_, _| {}).is_err(), "keys out of order");
/// assert!(check_object(br#"{"a": 1}"#, |_, _| {}).is_err(), "whitespace");
/// ```
pub fn check_object<'a>(
    bytes: &'a [u8],
    mut member: impl FnMut(&'a [u8], &'a [u8]),
) -> Result<(), NotCanonical> {
    // UTF-8 is checked where it can occur, inside strings: everything else must be ASCII.
    let mut c = Checker { b: bytes, i: 0 };
    if c.peek() != Some(b'{') {
        return Err(c.fault("not a JSON object"));
    }
    c.object(0, Some(&mut member))?;
    if c.i != bytes.len() {
        return Err(c.fault("bytes after the object"));
    }
    Ok(())
}

/// Strings up to this long are scanned byte by byte; longer ones with memchr.
const SHORT: usize = 24;

/// The bytes that end a plain run inside a string: `"`, `\` and control characters.
static SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// How many bytes at the start of `b` are plain ASCII inside a string (none of `"`, `\`, a
/// control character or a byte above 0x7f), counted eight at a time; fewer than eight left
/// are the caller's.
///
/// Written by hand: a scan for four kinds of byte at once, which memchr (at most three
/// given bytes) does not do.
#[inline]
fn plain_ascii(b: &[u8]) -> usize {
    let mut i = 0;
    while let Some(word) = b.get(i..).and_then(<[u8]>::first_chunk::<8>) {
        let marks = word_stops(u64::from_le_bytes(*word));
        if marks != 0 {
            return i + (marks.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    i
}

/// The bytes of a word that end a plain run, as the high bit of each: a byte below 0x20
/// (`x - 0x20` borrows, `!x` keeps it), equal to `"` or `\` (`y - 1` borrows where
/// `y = x ^ c` is zero), or above 0x7f. A borrow carries only into the bytes above a
/// marked one, so the lowest mark is exact.
fn word_stops(x: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |y: u64| y.wrapping_sub(ONES) & !y;
    let control = x.wrapping_sub(ONES * 0x20) & !x;
    let quote = zero(x ^ (ONES * u64::from(b'"')));
    let backslash = zero(x ^ (ONES * u64::from(b'\\')));
    (control | quote | backslash | x) & HIGH
}

/// The value of a run of decimal digits, if it is one (not empty, digits only) and fits in
/// a `u64`: what an integer of a canonical document holds, read without a `str`.
pub(crate) fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        let d = d.checked_sub(b'0').filter(|d| *d <= 9)?;
        n.checked_mul(10)?.checked_add(u64::from(d))
    })
}

/// The canonical-form checker: a cursor over UTF-8 bytes.
struct Checker<'a> {
    b: &'a [u8],
    i: usize,
}

type Member<'m, 'a> = &'m mut dyn FnMut(&'a [u8], &'a [u8]);

impl<'a> Checker<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn fault(&self, what: &'static str) -> NotCanonical {
        NotCanonical { at: self.i, what }
    }

    fn expect(&mut self, byte: u8, what: &'static str) -> Result<(), NotCanonical> {
        if self.peek() == Some(byte) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.fault(what))
        }
    }

    fn value(&mut self, depth: usize) -> Result<(), NotCanonical> {
        match self.peek() {
            Some(b'{') => self.object(depth, None),
            Some(b'[') => self.array(depth),
            Some(b'"') => self.string().map(|_| ()),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            _ => Err(self.fault("not a JSON value (or whitespace)")),
        }
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<(), NotCanonical> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(self.fault("not a JSON value"))
        }
    }

    fn object(
        &mut self,
        depth: usize,
        mut member: Option<Member<'_, 'a>>,
    ) -> Result<(), NotCanonical> {
        if depth >= MAX_DEPTH {
            return Err(self.fault("nested too deeply"));
        }
        self.i += 1; // '{'
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(());
        }
        let mut previous: Option<(usize, usize, bool)> = None;
        loop {
            let start = self.i + 1;
            let escaped = self.string()?;
            let end = self.i - 1;
            if let Some((ps, pe, pescaped)) = previous
                && !self.key_after((ps, pe, pescaped), (start, end, escaped))
            {
                return Err(NotCanonical {
                    at: start - 1,
                    what: "object keys out of order, or repeated",
                });
            }
            previous = Some((start, end, escaped));
            self.expect(b':', "expected `:` (and no whitespace)")?;
            let value_start = self.i;
            self.value(depth + 1)?;
            if let Some(m) = member.as_mut() {
                m(&self.b[start..end], &self.b[value_start..self.i]);
            }
            match self.peek() {
                Some(b',') => {
                    self.i += 1;
                    if self.peek() != Some(b'"') {
                        return Err(self.fault("expected a key"));
                    }
                }
                Some(b'}') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(self.fault("expected `,` or `}` (and no whitespace)")),
            }
        }
    }

    /// Whether key `b` sorts strictly after key `a` (by code point, which is the byte order
    /// of their UTF-8), comparing decoded keys when either holds an escape.
    fn key_after(&self, a: (usize, usize, bool), b: (usize, usize, bool)) -> bool {
        let raw = |(s, e, _): (usize, usize, bool)| &self.b[s..e];
        if !a.2 && !b.2 {
            // Keys are short: compared here rather than through a call to memcmp.
            let (x, y) = (raw(a), raw(b));
            return match x.iter().zip(y).find(|(p, q)| p != q) {
                Some((p, q)) => q > p,
                None => y.len() > x.len(),
            };
        }
        let decode = |k: (usize, usize, bool)| -> String {
            let quoted = &self.b[k.0 - 1..=k.1];
            serde_json::from_slice::<String>(quoted).unwrap_or_default()
        };
        decode(b).as_bytes() > decode(a).as_bytes()
    }

    fn array(&mut self, depth: usize) -> Result<(), NotCanonical> {
        if depth >= MAX_DEPTH {
            return Err(self.fault("nested too deeply"));
        }
        self.i += 1; // '['
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.value(depth + 1)?;
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(self.fault("expected `,` or `]` (and no whitespace)")),
            }
        }
    }

    /// A string in canonical form; returns whether it holds an escape. The input is UTF-8
    /// already, so only the ASCII bytes matter here.
    ///
    /// Most strings are plain ASCII to their closing quote: that is checked here, inline
    /// where strings are read; anything else is walked by [`Checker::string_walk`].
    #[inline]
    fn string(&mut self) -> Result<bool, NotCanonical> {
        if self.peek() == Some(b'"') {
            let from = self.i + 1;
            let plain = plain_ascii(self.b.get(from..).unwrap_or_default());
            if self.b.get(from + plain) == Some(&b'"') {
                self.i = from + plain + 1;
                return Ok(false);
            }
        }
        self.string_walk()
    }

    /// [`Checker::string`] for a string that is not plain ASCII, or whose end is within a
    /// word of the end of the bytes.
    #[inline(never)]
    fn string_walk(&mut self) -> Result<bool, NotCanonical> {
        if self.peek() != Some(b'"') {
            return Err(self.fault("expected a string"));
        }
        self.i += 1;
        let mut escaped = false;
        loop {
            // Plain ASCII (most of every record) eight bytes at a time; what follows is
            // walked below from the first byte that is not.
            self.i += plain_ascii(&self.b[self.i..]);
            // The run of plain bytes up to the next `"` or `\`, which must hold no control
            // character. Short runs (most keys and values) are walked byte by byte with a
            // table; a long one is found with memchr (SIMD) and checked in one branch-free
            // pass the compiler vectorises.
            let rest = &self.b[self.i..];
            let mut run = 0;
            let mut high = 0u8;
            while run < rest.len().min(SHORT) && !SPECIAL[usize::from(rest[run])] {
                high |= rest[run];
                run += 1;
            }
            if run == SHORT {
                let more = memchr::memchr2(b'"', b'\\', &rest[SHORT..])
                    .ok_or_else(|| self.fault("unterminated string"))?;
                let segment = &rest[SHORT..SHORT + more];
                let mut control = false;
                for &x in segment {
                    control |= x < 0x20;
                    high |= x;
                }
                if control {
                    self.i += SHORT + segment.iter().position(|&x| x < 0x20).unwrap_or(0);
                    return Err(self.fault("a control character not escaped"));
                }
                run = SHORT + more;
            }
            let segment = &rest[..run];
            if run == rest.len() {
                return Err(self.fault("unterminated string"));
            }
            if rest[run] < 0x20 {
                self.i += run;
                return Err(self.fault("a control character not escaped"));
            }
            // Outside strings only ASCII is accepted; inside, a run that is not all ASCII must
            // be UTF-8 (a run ends at an ASCII byte, so no character spans two runs).
            if high >= 0x80 && std::str::from_utf8(segment).is_err() {
                return Err(self.fault("not UTF-8"));
            }
            self.i += run;
            match self.b[self.i] {
                b'"' => {
                    self.i += 1;
                    return Ok(escaped);
                }
                _ => {
                    escaped = true;
                    self.escape()?;
                }
            }
        }
    }

    /// One escape, as the writer writes it: `\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, or
    /// `\u00xx` (lowercase) for the other characters below U+0020, and nothing else.
    fn escape(&mut self) -> Result<(), NotCanonical> {
        let at = self.i;
        let bad = NotCanonical {
            at,
            what: "an escape the canonical form does not use",
        };
        match self.b.get(at + 1) {
            Some(b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.i += 2;
                Ok(())
            }
            Some(b'u') => {
                let hex = self.b.get(at + 2..at + 6).ok_or(bad.clone())?;
                let lower = |x: u8| matches!(x, b'0'..=b'9' | b'a'..=b'f');
                if hex[0] != b'0'
                    || hex[1] != b'0'
                    || !matches!(hex[2], b'0' | b'1')
                    || !lower(hex[3])
                {
                    return Err(bad);
                }
                let code = (hex[2] - b'0') * 16
                    + if hex[3] <= b'9' {
                        hex[3] - b'0'
                    } else {
                        hex[3] - b'a' + 10
                    };
                if matches!(code, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d) {
                    return Err(bad);
                }
                self.i += 6;
                Ok(())
            }
            _ => Err(bad),
        }
    }

    /// A number as the writer writes it: an integer that fits 64 bits in plain decimal, or a
    /// double in its shortest round-trip form.
    fn number(&mut self) -> Result<(), NotCanonical> {
        let start = self.i;
        let mut end = start;
        let mut float = false;
        while let Some(&x) = self.b.get(end) {
            match x {
                b'0'..=b'9' | b'-' => {}
                b'.' | b'e' | b'E' | b'+' => float = true,
                _ => break,
            }
            end += 1;
        }
        let text = &self.b[start..end];
        let canonical = if float {
            // ASCII digits and signs only: valid UTF-8.
            let text = std::str::from_utf8(text).map_err(|_| self.fault("not a number"))?;
            text.parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .is_some_and(|n| n.to_string() == text)
        } else if let Some(digits) = text.strip_prefix(b"-") {
            // `-0` reads as the double -0.0, written `-0.0`; the least is -2^63.
            !digits.starts_with(b"0") && decimal(digits).is_some_and(|n| n <= 1 << 63)
        } else {
            (text == b"0" || !text.starts_with(b"0")) && decimal(text).is_some()
        };
        if !canonical {
            return Err(self.fault("a number not in its canonical form"));
        }
        self.i = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decimal_reads_what_str_parse_reads() {
        let cases: [&[u8]; 12] = [
            b"0",
            b"7",
            b"0042",
            b"18446744073709551615",
            b"18446744073709551616",
            b"99999999999999999999",
            b"",
            b"-1",
            b"+1",
            b"1.0",
            b"1e3",
            b"12a",
        ];
        for text in cases {
            // Independent answer: the standard library's reading of the same digits (which
            // takes a leading `+`; `decimal` takes digits only).
            let std = std::str::from_utf8(text)
                .ok()
                .filter(|t| !t.starts_with('+'))
                .and_then(|t| t.parse::<u64>().ok());
            assert_eq!(decimal(text), std, "{:?}", String::from_utf8_lossy(text));
        }
        // Integers the writer writes, at the ends of i64 and u64, and one past each.
        let doc = |n: &str| check_object(format!("{{\"n\":{n}}}").as_bytes(), |_, _| {});
        assert!(doc(&i64::MIN.to_string()).is_ok());
        assert!(doc(&u64::MAX.to_string()).is_ok());
        assert!(doc("-9223372036854775809").is_err());
        assert!(doc("18446744073709551616").is_err());
        assert!(doc("-0").is_err() && doc("-").is_err() && doc("01").is_err());
    }

    /// A name checked at compile time is written as it is exactly when the escaping path
    /// would write it so: every character below U+0100, alone and between others, and a
    /// few beyond.
    #[test]
    fn needing_no_escape_is_being_written_as_it_is() {
        let chars = (0..0x100u32)
            .filter_map(char::from_u32)
            .chain(['€', '𝄞', '\u{2028}']);
        for c in chars {
            for s in [c.to_string(), format!("ab{c}cd")] {
                let mut out = String::new();
                write_str(&s, &mut out);
                assert_eq!(needs_no_escape(&s), out == format!("\"{s}\""), "{s:?}");
            }
        }
    }

    #[test]
    fn plain_ascii_stops_at_the_first_byte_a_string_must_look_at() {
        let plain = |x: u8| (0x20..0x80).contains(&x) && x != b'"' && x != b'\\';
        // Every byte value at every place of a word, after plain bytes and before others.
        for stop in 0..=255u8 {
            // Lengths that end in a whole chunk of 16, a word of 8, and a shorter tail.
            for len in [20, 29, 37, 45] {
                for at in 0..len {
                    let mut b = vec![b'a'; len];
                    b[at] = stop;
                    b.extend([b'"', 0x01, 0xff]);
                    // Whole words only: a tail shorter than a word is left to the caller.
                    let words = b.len() / 8 * 8;
                    let expected = b.iter().position(|&x| !plain(x)).unwrap().min(words);
                    assert_eq!(
                        plain_ascii(&b),
                        expected,
                        "byte {stop:#04x} at {at} of {len}"
                    );
                }
            }
        }
        assert_eq!(
            plain_ascii(b"short"),
            0,
            "fewer than eight bytes are left to the caller"
        );
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        // Every ASCII character and a few beyond, at every place of strings long enough
        // for whole words and a tail; serde_json's escaping is the same minimal one.
        let mut chars: Vec<char> = (0u8..0x80).map(char::from).collect();
        chars.extend(['\u{e9}', '\u{2028}', '\u{1f600}']);
        for c in chars {
            for len in [1, 7, 8, 9, 17, 23] {
                for at in 0..len {
                    let mut text: String = "a".repeat(len);
                    text.replace_range(at..=at, c.encode_utf8(&mut [0; 4]));
                    let mut out = String::new();
                    write_string(&text, &mut out);
                    assert_eq!(
                        out,
                        serde_json::to_string(&text).unwrap(),
                        "{c:?} at {at} of {len}"
                    );
                }
            }
        }
    }

    #[test]
    fn nested_keys_are_sorted_and_escapes_minimal() {
        let v = json!({"z": {"b": 2, "a": 1}, "é": "\u{1}", "A": -1.5});
        assert_eq!(
            to_canonical_string(&v),
            "{\"A\":-1.5,\"z\":{\"a\":1,\"b\":2},\"é\":\"\\u0001\"}"
        );
    }

    #[test]
    fn matches_serde_json_for_plain_strings() {
        for s in ["plain", "quote\"", "back\\slash", "tab\t", "ünï", "\u{7f}"] {
            assert_eq!(
                to_canonical_string(&json!(s)),
                serde_json::to_string(s).unwrap()
            );
        }
    }
}
