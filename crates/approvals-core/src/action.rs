//! The call itself: name, policy, canonical arguments and the digest that binds reviews to it.

use std::fmt;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use crate::canonical::{to_canonical_string, write_canonical};
pub use smol_str::SmolStr;

/// A SHA-256 digest, shown and serialised as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// SHA-256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }
    /// The lowercase hex form.
    pub fn to_hex(&self) -> String {
        self.hex().to_owned()
    }

    /// The lowercase hex form, on the stack: what a record is written with, twice a record.
    /// (`hex::encode` collects an iterator of `char`s into a `String`, about 2,000
    /// instructions a digest.)
    fn hex(&self) -> HexDigest {
        HexDigest(lower_hex(&self.0))
    }
    /// The first `n` hex characters, as reviewers are shown to compare.
    pub fn short(&self, n: usize) -> String {
        let mut h = self.to_hex();
        h.truncate(n.min(64));
        h
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

/// A digest's 64 lowercase hex digits.
struct HexDigest([u8; 64]);

impl std::ops::Deref for HexDigest {
    type Target = str;
    fn deref(&self) -> &str {
        // Hex digits are ASCII: never the empty fallback.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// `hash` in lowercase hex, as `hex::encode` spells it.
pub(crate) fn lower_hex(hash: &[u8; 32]) -> [u8; 64] {
    // Arithmetic rather than a table, so that the compiler does all 64 digits with vector
    // instructions.
    let digit = |n: u8| n + b'0' + u8::from(n > 9) * (b'a' - b'0' - 10);
    let mut out = [0u8; 64];
    for (pair, b) in out.chunks_exact_mut(2).zip(hash) {
        pair[0] = digit(b >> 4);
        pair[1] = digit(b & 0x0f);
    }
    out
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.short(12))
    }
}

/// The text was not 64 hex characters.
#[derive(Debug, Clone, thiserror::Error)]
#[error("a digest is 64 hex characters, got {0:?}")]
pub struct DigestParseError(String);

impl std::str::FromStr for Digest {
    type Err = DigestParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| DigestParseError(s.to_owned()))?;
        Ok(Self(out))
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.hex())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One privileged call: what is called, under which policy, with which arguments.
///
/// `args` is a JSON object of the recorded arguments in canonical form. `digest` is SHA-256
/// over the canonical JSON of `{"args":…,"name":…,"policy":…}`; every review and the permit
/// are bound to it, so an approval of one call never approves another.
///
/// ```
/// use approvals_core::Action;
/// let action = Action::builder("billing::export_customers", "export")
///     .arg("limit", &500)
///     .redact("api_token", &"s3cr3t")
///     .build()
///     .unwrap();
/// assert_eq!(action.args["limit"], 500);
/// assert!(action.args["api_token"]["redacted_hmac"].is_string());
/// // The same call has the same digest; a different argument does not.
/// let again = Action::builder("billing::export_customers", "export")
///     .arg("limit", &500).redact("api_token", &"s3cr3t").build().unwrap();
/// assert_eq!(action.digest, again.digest);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    /// Module path and function, or the name given with `name = "..."`. Shared, not
    /// copied: the macro's static name is never allocated, a short one is kept inline, and
    /// the call's records take it without a copy.
    pub name: SmolStr,
    /// The policy that judges this call.
    pub policy: SmolStr,
    /// Recorded arguments, as a JSON object: read it as a [`Value`] (`action.args["limit"]`,
    /// `action.args.get("limit")`), or as the canonical JSON the digest covers
    /// ([`Args::text`]).
    pub args: Args,
    /// SHA-256 over the canonical encoding of name, policy and args.
    pub digest: Digest,
    /// The arguments a reviewer may change when approving (`editable(..)` of the macro):
    /// an approval with new values for them is a new call, judged and approved afresh (see
    /// [`Review::set`](crate::Review::set)). Not part of the digest: it says what may be
    /// proposed, and every proposal is judged on its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub editable: Vec<String>,
}

impl Action {
    /// Starts recording an action.
    pub fn builder(name: impl Into<SmolStr>, policy: impl Into<SmolStr>) -> ActionBuilder {
        ActionBuilder::new(name.into(), policy.into(), None)
    }

    /// [`Action::builder`] for a name and a policy known when the program was compiled
    /// ([`StaticNames`], which `#[requires_approval]` makes in a constant): when neither
    /// needs an escape, the call's digest hashes its arguments and the encoding's end
    /// written at compile time, and writes neither name again on every call.
    #[doc(hidden)]
    pub fn builder_static(names: StaticNames) -> ActionBuilder {
        let StaticNames { name, policy, tail } = names;
        if let Some(tail) = tail {
            debug_assert_eq!(tail, Self::tail_of(name, policy), "a static name's tail");
        }
        ActionBuilder::new(SmolStr::new_static(name), SmolStr::new_static(policy), tail)
    }

    /// Computes the digest of a name, policy and argument object.
    pub fn compute_digest(name: &str, policy: &str, args: &Value) -> Digest {
        Self::digest_of(name, policy, &to_canonical_string(args))
    }

    /// The digest over the documented encoding, given the arguments' canonical JSON. The
    /// encoding is written into a buffer kept by the thread for the next call (one
    /// allocation fewer on every gated call); a buffer grown past 16 KiB by a large call is
    /// not kept.
    fn digest_of(name: &str, policy: &str, args: &str) -> Digest {
        thread_local! {
            static CANONICAL: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
        }
        CANONICAL.with(|buffer| match buffer.try_borrow_mut() {
            Ok(mut s) => {
                s.clear();
                let digest = Self::digest_into(&mut s, name, policy, args);
                if s.capacity() > 16 * 1024 {
                    *s = String::new();
                }
                digest
            }
            Err(_) => Self::digest_into(&mut String::new(), name, policy, args),
        })
    }

    /// [`Action::digest_of`], writing the encoding into `s` (empty).
    fn digest_into(s: &mut String, name: &str, policy: &str, args: &str) -> Digest {
        s.reserve(32 + args.len() + name.len() + policy.len());
        s.push_str(ARGS_KEY);
        s.push_str(args);
        Self::write_tail(s, name, policy);
        Digest::of(s.as_bytes())
    }

    /// The digest over the documented encoding, given the arguments' canonical JSON and
    /// what follows them ([`Action::tail_of`]), hashed as they are, without a copy.
    fn digest_with_tail(args: &str, tail: &str) -> Digest {
        let mut h = Sha256::new();
        h.update(ARGS_KEY);
        h.update(args);
        h.update(tail);
        Digest(h.finalize().into())
    }

    /// What the digest's encoding ends with, after the arguments: the name and the policy.
    fn write_tail(s: &mut String, name: &str, policy: &str) {
        s.push_str(",\"name\":");
        crate::canonical::write_str(name, s);
        s.push_str(",\"policy\":");
        crate::canonical::write_str(policy, s);
        s.push('}');
    }

    /// [`Action::write_tail`], as a string of its own.
    fn tail_of(name: &str, policy: &str) -> String {
        let mut s = String::new();
        Self::write_tail(&mut s, name, policy);
        s
    }

    /// Whether `digest` matches the name, policy and args this action carries.
    pub fn digest_is_consistent(&self) -> bool {
        Self::digest_of(&self.name, &self.policy, self.args.text()) == self.digest
    }

    /// This call with the arguments in `set` replaced: a new call, with its own digest, that
    /// keeps which arguments are editable. Refused as a built action would be (too deep,
    /// too large).
    pub fn with_args(&self, set: &Map<String, Value>) -> Result<Action, ArgumentError> {
        let mut b = Action::builder(self.name.clone(), self.policy.clone());
        if let Value::Object(args) = &*self.args {
            b = b.args(args);
        }
        b = b.args(set);
        b.editable = self.editable.clone();
        b.build()
    }

    /// Whether a reviewer may propose a new value for the argument `name`: it was declared
    /// editable, was recorded, and was not redacted.
    pub fn is_editable(&self, name: &str) -> bool {
        self.editable.iter().any(|e| e == name)
            && self.args.get(name).is_some()
            && !self.is_redacted(name)
    }

    /// Whether the argument `name` was redacted.
    pub fn is_redacted(&self, name: &str) -> bool {
        self.args
            .get(name)
            .is_some_and(|v| v.get(REDACTED_KEY).is_some() || v.get(LEGACY_REDACTED_KEY).is_some())
    }
}

/// The recorded arguments of an [`Action`]: a JSON object, kept as its canonical JSON (the
/// text the digest is taken over) and read as a [`Value`] when first asked for one.
///
/// A gated call records its arguments straight into canonical JSON, without building a
/// value: a call whose policy never reads them (a rule in code that allows it, a policy
/// file's rule without conditions on them) makes no map, no string per argument, and frees
/// none. Reading it as a value (`Deref`, so `args["limit"]`, `args.get("limit")` and every
/// other method of [`Value`] work on it) decodes the text once and keeps what it decoded.
///
/// Equal when their canonical JSON is equal, which is when their values are; compared with
/// a [`Value`], by value. Serialised as the value it holds, by any serializer.
///
/// ```
/// use approvals_core::Action;
/// let a = Action::builder("billing::export", "export")
///     .arg("tables", &["users", "orders"])
///     .arg("limit", &500)
///     .build()
///     .unwrap();
/// assert_eq!(a.args.text(), r#"{"limit":500,"tables":["users","orders"]}"#);
/// assert_eq!(a.args["limit"], 500);
/// assert_eq!(a.args, serde_json::json!({"limit": 500, "tables": ["users", "orders"]}));
/// ```
#[derive(Clone)]
pub struct Args {
    /// Canonical JSON (`canonical::write_canonical` of the value, byte for byte).
    text: String,
    /// The value, once read (or as given, for arguments made from one): shared, so that a
    /// copy of the call (a request read from a store is copied several times on the way
    /// from a review to the resumed call) does not copy its tree.
    value: OnceLock<Arc<Value>>,
}

impl Args {
    /// Arguments that are `value` (normally an object), written as canonical JSON now.
    pub fn from_value(value: Value) -> Self {
        let text = to_canonical_string(&value);
        Self {
            text,
            value: OnceLock::from(Arc::new(value)),
        }
    }

    /// Arguments kept as `text`, which the caller has just written as canonical JSON: by
    /// this module's own writers, or checked to be canonical.
    fn from_canonical(text: String) -> Self {
        Self {
            text,
            value: OnceLock::new(),
        }
    }

    /// The canonical JSON of the arguments, as the digest covers it.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The arguments as a value: decoded from the text the first time it is asked for.
    pub fn value(&self) -> &Value {
        self.value.get_or_init(|| Arc::new(decode(&self.text)))
    }

    /// The arguments as an owned value.
    pub fn into_value(self) -> Value {
        match self.value.into_inner() {
            Some(value) => Arc::unwrap_or_clone(value),
            None => decode(&self.text),
        }
    }
}

/// The value of arguments' canonical JSON, which this module wrote or checked, of at most
/// `MAX_ARG_DEPTH + 1` levels: it always reads back.
fn decode(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| {
        unreachable!("recorded arguments are canonical JSON, which reads back: {e}")
    })
}

impl Default for Args {
    /// No arguments: `{}`.
    fn default() -> Self {
        Args::from_canonical("{}".to_owned())
    }
}

impl std::ops::Deref for Args {
    type Target = Value;
    fn deref(&self) -> &Value {
        self.value()
    }
}

impl PartialEq for Args {
    fn eq(&self, other: &Self) -> bool {
        // Canonical JSON is one text for one value.
        self.text == other.text
    }
}

impl Eq for Args {}

impl PartialEq<Value> for Args {
    fn eq(&self, other: &Value) -> bool {
        self.value() == other
    }
}

impl PartialEq<Args> for Value {
    fn eq(&self, other: &Args) -> bool {
        self == other.value()
    }
}

impl From<Value> for Args {
    fn from(value: Value) -> Self {
        Args::from_value(value)
    }
}

impl fmt::Debug for Args {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Args({})", self.text)
    }
}

/// The canonical JSON.
impl fmt::Display for Args {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Args {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Args {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Value::deserialize(d).map(Args::from_value)
    }
}

/// The deepest an argument may nest (arrays and objects inside it), counting the argument
/// itself as depth 1. Deeper arguments are refused when the action is built: a stored
/// request and its audit record must always be readable back, by this library and by any
/// JSON reader with the usual nesting limits.
pub const MAX_ARG_DEPTH: usize = 32;

/// The most bytes a call's recorded arguments may take in canonical JSON.
pub const MAX_ARGS_BYTES: usize = 256 * 1024;

/// The most bytes of an action's name or policy name.
pub const MAX_NAME_BYTES: usize = 256;

/// How deep `v` nests: 1 for a scalar, one more per array or object around it. Counted
/// without recursion, so any value the caller built can be measured.
pub fn depth(v: &Value) -> usize {
    let scalar = |v: &Value| !matches!(v, Value::Array(_) | Value::Object(_));
    // Most arguments are scalars, or flat lists and objects of them: no stack needed.
    match v {
        Value::Array(items) if items.iter().all(scalar) => return 2,
        Value::Object(m) if m.values().all(scalar) => return 2,
        v if scalar(v) => return 1,
        _ => {}
    }
    let mut deepest = 0;
    let mut stack = vec![(v, 1usize)];
    while let Some((v, d)) = stack.pop() {
        deepest = deepest.max(d);
        match v {
            Value::Array(items) => stack.extend(items.iter().map(|x| (x, d + 1))),
            Value::Object(m) => stack.extend(m.values().map(|x| (x, d + 1))),
            _ => {}
        }
    }
    deepest
}

/// The key of the object that replaces a redacted argument:
/// `{"redacted_hmac": "<hex HMAC-SHA256>", "key_id": "<hex>"}` (see [`crate::redaction`]).
pub const REDACTED_KEY: &str = "redacted_hmac";

/// The key of a redacted argument in records written before redaction was keyed
/// (`{"redacted_sha256": "<hex>"}`), still recognised.
pub const LEGACY_REDACTED_KEY: &str = "redacted_sha256";

/// Records the arguments of an [`Action`]; returned by [`Action::builder`].
#[derive(Debug)]
pub struct ActionBuilder {
    name: SmolStr,
    policy: SmolStr,
    args: Recording,
    editable: Vec<String>,
    error: Option<ArgumentError>,
    /// What the digest's encoding ends with, written at compile time
    /// ([`Action::builder_static`]).
    tail: Option<&'static str>,
}

/// An argument's name as a gated function's code records it: known at compile time, and
/// checked then for whether JSON writes it as it is, so that recording it on every call
/// need not look at it again.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct ArgName<'a> {
    name: &'a str,
    /// The name needs no escape ([`crate::canonical::needs_no_escape`]).
    plain: bool,
}

impl<'a> ArgName<'a> {
    /// `name`, checked: `#[requires_approval]` makes each in a constant, so the check is
    /// done once, by the compiler.
    pub const fn new(name: &'a str) -> Self {
        Self {
            name,
            plain: crate::canonical::needs_no_escape(name),
        }
    }
}

/// A gated function's name and policy, and what the digest's encoding ends with for them
/// (`,"name":"..","policy":".."}`) as the macro writes it at compile time: kept only if
/// neither name needs an escape, which the `const fn` checks, so the compiler does, by
/// the same rule as the escaping path ([`crate::canonical::needs_no_escape`]).
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct StaticNames {
    name: &'static str,
    policy: &'static str,
    tail: Option<&'static str>,
}

impl StaticNames {
    /// `tail` must be `,"name":"<name>","policy":"<policy>"}` with the names as they are
    /// (checked in debug builds); it is dropped if either name needs an escape.
    pub const fn new(name: &'static str, policy: &'static str, tail: &'static str) -> Self {
        let plain =
            crate::canonical::needs_no_escape(name) && crate::canonical::needs_no_escape(policy);
        Self {
            name,
            policy,
            tail: if plain { Some(tail) } else { None },
        }
    }
}

/// Any name, not yet checked: written through the escaping path.
impl<'a> From<&'a str> for ArgName<'a> {
    fn from(name: &'a str) -> Self {
        Self { name, plain: false }
    }
}

/// What the digest's encoding starts with, before the arguments.
const ARGS_KEY: &str = "{\"args\":";

/// The arguments recorded so far.
#[derive(Debug)]
enum Recording {
    /// Written as the canonical JSON of the object so far, without its closing brace (empty
    /// before the first argument): what arguments given in order of their names, each name
    /// needing no escape, make. `#[requires_approval]` gives them in that order.
    Text {
        text: String,
        /// Where the last name is in `text`, to compare the next one with.
        last_key: std::ops::Range<usize>,
    },
    /// Kept as a map once an argument came out of order (or a name came again, or needs an
    /// escape): sorted, the last of a repeated name kept, written out at the end.
    Map(Map<String, Value>),
}

/// An argument could not be recorded as JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("argument `{arg}` of `{action}` cannot be recorded as JSON: {message}")]
pub struct ArgumentError {
    /// The action being recorded.
    pub action: String,
    /// The argument that failed.
    pub arg: String,
    /// What serde said.
    pub message: String,
}

impl ActionBuilder {
    #[inline]
    fn new(name: SmolStr, policy: SmolStr, tail: Option<&'static str>) -> Self {
        ActionBuilder {
            name,
            policy,
            args: Recording::Text {
                // Room for a few small arguments at once, rather than growing from nothing.
                text: String::with_capacity(64),
                last_key: 0..0,
            },
            editable: Vec::new(),
            error: None,
            tail,
        }
    }

    /// Records an argument as JSON.
    pub fn arg<T: Serialize + ?Sized>(mut self, name: &str, value: &T) -> Self {
        if self.error.is_none() {
            self.record(name, value, false);
        }
        self
    }

    /// Records every member of a JSON object as an argument: what a call made from outside
    /// the process (the HTTP API, `approvals exec`, an MCP tool call) carries.
    ///
    /// ```
    /// use approvals_core::Action;
    /// let args = serde_json::json!({"path": "/tmp/x", "mode": 420});
    /// let a = Action::builder("fs.write_file", "mcp.fs")
    ///     .args(args.as_object().unwrap())
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(a.args, args);
    /// ```
    pub fn args(mut self, args: &Map<String, Value>) -> Self {
        for (k, v) in args {
            self = self.arg(k, v);
        }
        self
    }

    /// Lets a reviewer propose a new value for the argument `name` when approving (see
    /// [`Action::editable`]). The argument must be recorded, not redacted.
    ///
    /// ```
    /// use approvals_core::Action;
    /// let a = Action::builder("billing::export", "export")
    ///     .arg("limit", &50_000)
    ///     .editable("limit")
    ///     .build()
    ///     .unwrap();
    /// assert!(a.is_editable("limit"));
    /// ```
    pub fn editable(mut self, name: &str) -> Self {
        if !self.editable.iter().any(|e| e == name) {
            self.editable.push(name.to_owned());
        }
        self
    }

    /// Records only a keyed digest (HMAC-SHA256, [`crate::redaction`]) of an argument's
    /// canonical JSON, so that the value never reaches a reviewer, a channel or the audit
    /// trail, and cannot be guessed back from it, while the digest still binds it.
    pub fn redact<T: Serialize + ?Sized>(mut self, name: &str, value: &T) -> Self {
        if self.error.is_none() {
            self.record(name, value, true);
        }
        self
    }

    /// [`ActionBuilder::arg`] (or [`ActionBuilder::redact`] if `redact`) in place: what a
    /// gated function's code calls, so that the builder (184 bytes) is not moved in and out
    /// of each argument's call.
    pub(crate) fn record_in_place<T: Serialize + ?Sized>(
        &mut self,
        name: ArgName<'_>,
        value: &T,
        redact: bool,
    ) {
        if self.error.is_none() {
            self.record(name, value, redact);
        }
    }

    /// Records `value` as the argument `name` (its keyed digest if `redact`), or the error
    /// that refuses the whole action.
    fn record<'a, T: Serialize + ?Sized>(
        &mut self,
        name: impl Into<ArgName<'a>>,
        value: &T,
        redact: bool,
    ) {
        let ArgName { name, plain } = name.into();
        let (text, last_key) = match &mut self.args {
            Recording::Text { text, last_key }
                if text.is_empty() || name > &text[last_key.clone()] =>
            {
                (text, last_key)
            }
            _ => return self.record_in_map(name, value, redact),
        };
        let mark = text.len();
        if mark == 0 {
            text.push('{');
        } else {
            text.push(',');
        }
        if plain {
            text.push('"');
            text.push_str(name);
            text.push('"');
        } else {
            crate::canonical::write_str(name, text);
        }
        if text.len() != mark + name.len() + 3 {
            // The name needed an escape: the text could not compare it with the next one.
            text.truncate(mark);
            return self.record_in_map(name, value, redact);
        }
        let key = mark + 2..text.len() - 1;
        text.push(':');
        let start = text.len();
        let written = if redact {
            let mut plain = String::new();
            write_value(value, &mut plain).map(|()| {
                let d = text_depth(&plain);
                write_redacted(&plain, text);
                d
            })
        } else {
            write_value(value, text).map(|()| text_depth(&text[start..]))
        };
        match written {
            Ok(d) if d <= MAX_ARG_DEPTH => *last_key = key,
            refused => {
                text.truncate(mark);
                self.refuse_arg(name, refused);
            }
        }
    }

    /// [`ActionBuilder::record`] into the map, which the text becomes first.
    fn record_in_map<T: Serialize + ?Sized>(&mut self, name: &str, value: &T, redact: bool) {
        if let Recording::Text { text, .. } = &self.args {
            let object = if text.is_empty() {
                Ok(Map::new())
            } else {
                serde_json::from_str::<Map<String, Value>>(&format!("{text}}}"))
            };
            match object {
                Ok(m) => self.args = Recording::Map(m),
                Err(e) => return self.refuse_arg(name, Err(e.to_string())),
            }
        }
        let v = match serde_json::to_value(value) {
            Ok(v) => v,
            Err(e) => return self.refuse_arg(name, Err(e.to_string())),
        };
        let d = depth(&v);
        if d > MAX_ARG_DEPTH {
            return self.refuse_arg(name, Ok(d));
        }
        let v = if redact {
            // What `write_redacted` writes, as a value.
            let mac = crate::redaction::digest(to_canonical_string(&v).as_bytes());
            let mut m = Map::new();
            m.insert(REDACTED_KEY.to_owned(), Value::String(mac));
            m.insert(
                "key_id".to_owned(),
                Value::String(crate::redaction::key_id().to_owned()),
            );
            Value::Object(m)
        } else {
            v
        };
        if let Recording::Map(m) = &mut self.args {
            m.insert(name.to_owned(), v);
        }
    }

    /// Refuses the action for its argument `name`: too deep (`Ok(depth)`) or not recordable.
    fn refuse_arg(&mut self, name: &str, why: Result<usize, String>) {
        let message = match why {
            Ok(d) => format!("it nests {d} levels deep; the most is {MAX_ARG_DEPTH}"),
            Err(message) => message,
        };
        self.error = Some(ArgumentError {
            action: self.name.to_string(),
            arg: name.to_owned(),
            message,
        });
    }

    /// Finishes the action, computing its digest. Fails if any argument failed to
    /// serialise, nests deeper than [`MAX_ARG_DEPTH`], or the arguments together take more
    /// than [`MAX_ARGS_BYTES`] of canonical JSON, or a name is longer than
    /// [`MAX_NAME_BYTES`].
    ///
    /// ```
    /// use approvals_core::Action;
    /// let mut deep = serde_json::json!(1);
    /// for _ in 0..100 {
    ///     deep = serde_json::json!([deep]);
    /// }
    /// let err = Action::builder("f", "p").arg("deep", &deep).build().unwrap_err();
    /// assert_eq!(err.arg, "deep");
    /// assert!(err.message.contains("nests 101 levels deep"));
    /// ```
    pub fn build(self) -> Result<Action, ArgumentError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let refuse = |arg: &str, message: String| ArgumentError {
            action: self.name.chars().take(64).collect(),
            arg: arg.to_owned(),
            message,
        };
        for (what, n) in [
            ("the action name", &self.name),
            ("the policy name", &self.policy),
        ] {
            if n.len() > MAX_NAME_BYTES {
                return Err(refuse(
                    "",
                    format!("{what} is {} bytes; the most is {MAX_NAME_BYTES}", n.len()),
                ));
            }
        }
        let args = match self.args {
            Recording::Text { mut text, .. } => {
                if text.is_empty() {
                    text.push('{');
                }
                text.push('}');
                Args::from_canonical(text)
            }
            Recording::Map(m) => Args::from_value(Value::Object(m)),
        };
        let size = args.text().len();
        if size > MAX_ARGS_BYTES {
            let largest = match args.value() {
                Value::Object(m) => m
                    .iter()
                    .max_by_key(|(_, v)| to_canonical_string(v).len())
                    .map(|(k, _)| k.clone())
                    .unwrap_or_default(),
                _ => String::new(),
            };
            return Err(refuse(
                &largest,
                format!(
                    "the arguments take {size} bytes of JSON (the largest is `{largest}`); the most is {MAX_ARGS_BYTES}"
                ),
            ));
        }
        if let Some(e) = self.editable.iter().find(|e| match args.get(e.as_str()) {
            None => true,
            Some(v) => v.get(REDACTED_KEY).is_some(),
        }) {
            return Err(refuse(
                e,
                "an editable argument must be recorded, and not redacted: a reviewer edits the value they see".into(),
            ));
        }
        let digest = match self.tail {
            Some(tail) => Action::digest_with_tail(args.text(), tail),
            None => Action::digest_of(&self.name, &self.policy, args.text()),
        };
        Ok(Action {
            name: self.name,
            policy: self.policy,
            args,
            digest,
            editable: self.editable,
        })
    }
}

/// Appends the canonical JSON of `value` to `out`: straight from its serialisation, or,
/// where that is refused (a repeated key, a map key that is not a string or an integer, a
/// 128-bit integer, an error of the value's own), through a [`Value`] as before, which
/// writes the same bytes or says why it cannot.
fn write_value<T: Serialize + ?Sized>(value: &T, out: &mut String) -> Result<(), String> {
    let start = out.len();
    if crate::canonical::write_serialized(value, out).is_ok() {
        return Ok(());
    }
    out.truncate(start);
    let v = serde_json::to_value(value).map_err(|e| e.to_string())?;
    write_canonical(&v, out);
    Ok(())
}

/// Appends the object that stands for a redacted argument whose canonical JSON is `plain`:
/// its keyed digest and the key's id, keys in canonical order.
fn write_redacted(plain: &str, out: &mut String) {
    out.push_str("{\"key_id\":");
    crate::canonical::write_str(crate::redaction::key_id(), out);
    out.push_str(",\"");
    out.push_str(REDACTED_KEY);
    out.push_str("\":");
    crate::canonical::write_str(&crate::redaction::digest(plain.as_bytes()), out);
    out.push('}');
}

/// How deep the value written as the canonical JSON `text` nests, as [`depth`] counts it:
/// 1 for a scalar, one more for each array or object around it. (An empty array or object
/// counts 1 here, 2 in [`depth`] at the top; either is far below the bound.)
fn text_depth(text: &str) -> usize {
    let bytes = text.as_bytes();
    if !bytes.iter().any(|&b| b == b'[' || b == b'{') {
        return 1;
    }
    let (mut level, mut deepest, mut in_string, mut escaped) = (0usize, 1usize, false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'[' | b'{' => {
                level += 1;
                deepest = deepest.max(level);
            }
            b']' | b'}' => level = level.saturating_sub(1),
            b',' | b':' => {}
            b'"' => {
                in_string = true;
                deepest = deepest.max(level + 1);
            }
            _ => deepest = deepest.max(level + 1),
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn a_digest_is_spelled_as_the_hex_crate_spells_it() {
        for b in 0..=255u8 {
            let mut bytes = [0u8; 32];
            bytes[usize::from(b) % 32] = b;
            bytes[31 - usize::from(b) % 32] = b.wrapping_mul(7);
            let hex = hex::encode(bytes);
            let d = Digest(bytes);
            assert_eq!(lower_hex(&bytes).as_slice(), hex.as_bytes());
            assert_eq!(d.to_hex(), hex);
            assert_eq!(d.to_string(), hex);
            assert_eq!(serde_json::to_string(&d).unwrap(), format!("\"{hex}\""));
        }
    }
    #[test]
    fn digest_is_sha256_of_the_documented_encoding() {
        let a = Action::builder("m::f", "p").arg("n", &1).build().unwrap();
        // Independent computation over the documented byte string.
        let expected = Sha256::digest(br#"{"args":{"n":1},"name":"m::f","policy":"p"}"#);
        assert_eq!(a.digest.0.as_slice(), expected.as_slice());
        assert!(a.digest_is_consistent());
    }

    #[test]
    fn shared_names_are_written_and_digested_as_the_strings_they_hold() {
        // A name longer than the inline room, given as a static (as the macro does), one
        // given at run time, and a short one: none of the static or short ones allocates,
        // and each reads, writes and digests as the plain string.
        let long = "billing::customers::export_everything_to_the_warehouse";
        let built = [
            Action::builder(SmolStr::new_static(long), SmolStr::new_static("export")),
            Action::builder(long.to_owned(), "export"),
        ]
        .map(|b| b.arg("n", &1).build().unwrap());
        assert!(!built[0].name.is_heap_allocated() && !built[0].policy.is_heap_allocated());
        assert!(!built[1].policy.is_heap_allocated());
        let doc = format!(r#"{{"args":{{"n":1}},"name":"{long}","policy":"export"}}"#);
        for a in &built {
            assert_eq!(
                a.digest.0.as_slice(),
                Sha256::digest(doc.as_bytes()).as_slice()
            );
            let json = serde_json::to_value(a).unwrap();
            assert_eq!(json["name"], serde_json::json!(long));
            assert_eq!(json["policy"], serde_json::json!("export"));
            let back: Action = serde_json::from_value(json).unwrap();
            assert_eq!(&back, a);
        }
        assert_eq!(built[0], built[1]);
    }

    #[test]
    fn each_digest_on_a_thread_covers_only_its_own_call() {
        // The thread's buffer is reused: a large call, then smaller ones, each digest over
        // exactly its own documented bytes.
        let long = "x".repeat(20_000);
        let calls = [
            (long.as_str(), "m::g"),
            ("", "m::f"),
            ("ab", "m::f"),
            ("", "m::f"),
        ];
        for (text, name) in calls {
            let a = Action::builder(name, "p").arg("s", text).build().unwrap();
            let doc = format!(r#"{{"args":{{"s":"{text}"}},"name":"{name}","policy":"p"}}"#);
            assert_eq!(
                a.digest.0.as_slice(),
                Sha256::digest(doc.as_bytes()).as_slice()
            );
        }
    }

    #[test]
    fn redacted_value_is_the_keyed_hash_of_its_canonical_json() {
        crate::redaction::set_key([7; 32]).unwrap();
        let a = Action::builder("f", "p")
            .redact("secret", &"hunter2")
            .build()
            .unwrap();
        // From Python's hmac module:
        // hmac.new(bytes([7]*32), b'"hunter2"', hashlib.sha256).hexdigest()
        let expected = "d0aa72ac424a9908d6691908523b9da3b811ecfa856fdfee96bbfffd858bab9c";
        assert_eq!(a.args["secret"][REDACTED_KEY], expected);
        assert_eq!(a.args["secret"]["key_id"], "06c6a22b");
        assert!(a.is_redacted("secret"));
        assert!(!a.to_owned().args.to_string().contains("hunter2"));
    }

    #[test]
    fn argument_order_does_not_change_the_digest() {
        let a = Action::builder("f", "p")
            .arg("a", &1)
            .arg("b", &2)
            .build()
            .unwrap();
        let b = Action::builder("f", "p")
            .arg("b", &2)
            .arg("a", &1)
            .build()
            .unwrap();
        assert_eq!(a.digest, b.digest);
    }

    /// A gated function's argument names, checked at compile time, are recorded as any
    /// name is: one that needs an escape takes the escaping path. The static builder's
    /// digest is the one the names give.
    #[test]
    fn compile_time_names_record_and_digest_as_any_name() {
        let names = StaticNames::new("m::f", "p", r#","name":"m::f","policy":"p"}"#);
        let mut fast = Action::builder_static(names);
        for name in ["a\"b", "b", "c\n"] {
            fast.record_in_place(ArgName::new(name), &1, false);
        }
        let fast = fast.build().unwrap();
        let slow = Action::builder("m::f", "p")
            .arg("a\"b", &1)
            .arg("b", &1)
            .arg("c\n", &1)
            .build()
            .unwrap();
        assert_eq!(fast, slow);
        assert_eq!(fast.args.text(), r#"{"a\"b":1,"b":1,"c\n":1}"#);
        assert!(fast.digest_is_consistent());
    }

    /// A name or a policy that needs an escape is written on each call, through the
    /// escaping path: the tail the macro wrote for it is not used.
    #[test]
    fn a_name_that_needs_an_escape_is_written_on_each_call() {
        for (name, policy) in [("m::f", "ex\"port"), ("back\\slash", "p"), ("m::f", "a\nb")] {
            let tail = concat!(",\"name\":\"", "unused", "\"}");
            let names = StaticNames::new(name, policy, tail);
            assert_eq!(names.tail, None, "{name:?} {policy:?}");
            let fast = Action::builder_static(names).arg("n", &1).build().unwrap();
            let slow = Action::builder(name, policy).arg("n", &1).build().unwrap();
            assert_eq!(fast.digest, slow.digest);
            assert!(fast.digest_is_consistent());
        }
        assert!(
            StaticNames::new("m::f", "p", r#","name":"m::f","policy":"p"}"#)
                .tail
                .is_some()
        );
    }

    /// Hole 3 of the attack (issue 14): an argument nested 126 deep was accepted, and its
    /// stored request and audit record could never be read back.
    #[test]
    fn deeply_nested_or_oversized_arguments_are_refused_when_built() {
        let mut deep = serde_json::json!("leaf");
        for _ in 0..125 {
            deep = serde_json::json!({ "x": deep });
        }
        let err = Action::builder("f", "p")
            .arg("cfg", &deep)
            .build()
            .unwrap_err();
        assert_eq!(err.arg, "cfg");
        assert!(err.message.contains("126 levels"), "{err}");

        // At the limit it is accepted, and it can be read back by serde_json.
        let mut ok = serde_json::json!(1);
        for _ in 1..MAX_ARG_DEPTH {
            ok = serde_json::json!([ok]);
        }
        let a = Action::builder("f", "p").arg("cfg", &ok).build().unwrap();
        let text = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Action>(&text).unwrap(), a);

        let big = "x".repeat(MAX_ARGS_BYTES);
        let err = Action::builder("f", "p")
            .arg("small", &1)
            .arg("blob", &big)
            .build()
            .unwrap_err();
        assert_eq!(err.arg, "blob");
        let err = Action::builder("f".repeat(1000), "p").build().unwrap_err();
        assert!(err.message.contains("action name"), "{err}");
    }

    #[test]
    fn unserialisable_argument_is_an_error_not_a_panic() {
        let mut m = HashMap::new();
        m.insert((1, 2), "tuple keys are not JSON object keys");
        let err = Action::builder("f", "p").arg("m", &m).build().unwrap_err();
        assert_eq!(err.arg, "m");
    }
}
