//! `when` conditions: CEL expressions over the call, compiled and checked at load.
//!
//! The `cel` crate parses and evaluates CEL but has no type checker, so a condition like
//! `requester.id > 5` or `labels.env + 1` would only fail when a call is made. `check`
//! walks the parsed expression with what is known of each variable's shape and refuses
//! unknown variables, unknown fields of the known objects, unknown functions, operators on
//! types they do not apply to, and conditions that cannot be a boolean. `args` is the one
//! dynamic input (its shape is the gated function's), so expressions over it are checked only
//! as far as their other side is known; at run time an error there denies the call.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use approvals_core::{Action, Context, Directory};
use cel::common::ast::{EntryExpr, Expr, IdedExpr, LiteralValue, operators};
use cel::common::value::{CowVal, Val};
use cel::{Program, Value};

/// The variables a condition can use, and what each holds.
pub const VARIABLES: &[(&str, &str)] = &[
    ("action", "the call: action.name, action.policy"),
    (
        "args",
        "the call's recorded arguments, by parameter name (redacted ones as {redacted_hmac, key_id})",
    ),
    (
        "requester",
        "who calls: requester.id, requester.kind, requester.groups",
    ),
    (
        "on_behalf_of",
        "the person the requester acts for (same fields), or null",
    ),
    ("trigger", "what started the work (a string), or null"),
    (
        "reason",
        "the requester's stated reason (a string), or null",
    ),
    ("labels", "the context's labels, a map of strings"),
    ("now", "the time of the call, a timestamp"),
];

/// The longest condition accepted, in bytes.
pub const MAX_CONDITION_BYTES: usize = 4096;

/// How deep brackets (`(`, `[`, `{`) and prefix operators (`!`, `-`) may nest in a
/// condition's text. Checked before parsing: the parser recurses once per level.
pub const MAX_NESTING: usize = 32;

/// How deep a parsed condition may be. Arithmetic chains into depth (`a + b + c` is two
/// levels; `&&` and `||` chains are balanced by the parser), and evaluation recurses once
/// per level on the thread that judges the call, at up to 35 KiB a level in a debug build:
/// the deepest condition accepted evaluates within half of a tokio worker's 2 MiB stack.
pub const MAX_EXPRESSION_DEPTH: usize = 24;

/// How many comprehensions (`all`, `exists`, `exists_one`, `map`, `filter`) may nest inside
/// each other. Each level multiplies the work by the length of what it iterates over.
pub const MAX_COMPREHENSION_NESTING: usize = 2;

/// The most iterations a condition may need for one call: the length of the longest list
/// or map in the call's arguments, raised to the condition's comprehension nesting. A call
/// over it is denied ("evaluation budget") rather than evaluated.
pub const MAX_ITERATIONS: u64 = 1_000_000;

/// The longest `matches` pattern accepted, in bytes.
pub const MAX_PATTERN_BYTES: usize = 512;

/// The stack the parser runs on. Conditions are bounded in length and nesting first; this
/// is the margin for the parser's own depth, which grows with both.
const PARSER_STACK: usize = 64 * 1024 * 1024;

/// A compiled condition.
#[derive(Clone)]
pub struct Condition {
    source: String,
    program: Arc<Program>,
    /// How deep its comprehensions nest (0 for none).
    comprehensions: usize,
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Condition").field(&self.source).finish()
    }
}

/// A condition that did not compile or check: where (a byte offset into the condition's
/// source) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionError {
    /// Byte offset into the condition text.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

impl fmt::Display for ConditionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(h) = &self.hint {
            write!(f, " ({h})")?;
        }
        Ok(())
    }
}

impl Condition {
    /// Parses and checks `source`. Every problem found is returned.
    ///
    /// Hostile text is refused, never a crash: a condition longer than
    /// [`MAX_CONDITION_BYTES`] or nested deeper than [`MAX_NESTING`] is refused before it is
    /// parsed, and parsing runs on a thread with a stack of known size.
    ///
    /// ```
    /// use approvals_policy::condition::Condition;
    /// assert!(Condition::compile("args.limit > 100").is_ok());
    /// let deep = format!("{}true{}", "(".repeat(100), ")".repeat(100));
    /// let err = Condition::compile(&deep).unwrap_err();
    /// assert!(err[0].message.contains("nested"), "{}", err[0].message);
    /// ```
    pub fn compile(source: &str) -> Result<Self, Vec<ConditionError>> {
        on_parser_stack(|| Self::compile_here(source)).unwrap_or_else(|message| {
            Err(vec![ConditionError {
                offset: 0,
                message,
                hint: None,
            }])
        })
    }

    /// [`Condition::compile`] on the current thread, which must be a parser thread.
    pub(crate) fn compile_here(source: &str) -> Result<Self, Vec<ConditionError>> {
        precheck(source)?;
        // The parser is generated code; a panic in it on hostile input must become an error,
        // not take the process down.
        let parsed = std::panic::catch_unwind(|| Program::compile(source)).map_err(|_| {
            vec![ConditionError {
                offset: 0,
                message: "the CEL parser failed on this expression".into(),
                hint: None,
            }]
        })?;
        let program = parsed.map_err(|e| {
            e.errors
                .iter()
                .map(|pe| ConditionError {
                    offset: offset_of(source, pe.pos),
                    message: format!("CEL syntax error: {}", first_line(&pe.msg)),
                    hint: None,
                })
                .collect::<Vec<_>>()
        })?;
        let mut checker = Checker {
            program: &program,
            errors: Vec::new(),
            scopes: Vec::new(),
            depth: 0,
            too_deep: false,
            comprehensions: 0,
            deepest_comprehension: 0,
        };
        let ty = checker.check(program.expression());
        if !matches!(ty, Ty::Bool | Ty::Dyn) {
            checker.error(
                program.expression(),
                format!("a condition must be true or false, but this is {ty}"),
                Some("compare it with something, e.g. `args.limit > 100`".into()),
            );
        }
        if !checker.errors.is_empty() {
            return Err(checker.errors);
        }
        let comprehensions = checker.deepest_comprehension;
        Ok(Self {
            source: source.to_owned(),
            program: Arc::new(program),
            comprehensions,
        })
    }

    /// The condition's text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The names of the call's arguments the condition reads: every `args.NAME` and
    /// `args["NAME"]` outside string literals.
    ///
    /// ```
    /// use approvals_policy::condition::Condition;
    /// let c = Condition::compile(r#"args.env == 'prod' && has(args.limit) && args["team"] != "args.x""#).unwrap();
    /// assert_eq!(c.arguments().into_iter().collect::<Vec<_>>(), ["env", "limit", "team"]);
    /// ```
    pub fn arguments(&self) -> std::collections::BTreeSet<String> {
        arguments_in(&self.source)
    }

    /// Whether the condition holds for this input. An error (a missing argument, a value of
    /// the wrong type) is returned as text; the caller denies the call.
    pub fn eval(&self, input: &Input<'_>) -> Result<bool, String> {
        if self.comprehensions > 0 {
            let longest = input.longest_collection() as u64;
            let exponent = u32::try_from(self.comprehensions).unwrap_or(u32::MAX);
            let work = longest.checked_pow(exponent).unwrap_or(u64::MAX);
            if work > MAX_ITERATIONS {
                return Err(format!(
                    "condition `{}` is over its evaluation budget: comprehensions nested {} deep over {longest} items would take up to {work} iterations; the most is {MAX_ITERATIONS}",
                    self.source, self.comprehensions
                ));
            }
        }
        let mut ctx = cel::Context::with_env(env());
        ctx.set_variable_resolver(input);
        match self.program.execute(&ctx) {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!(
                "condition `{}` gave {:?}, not true or false",
                self.source,
                other.type_of()
            )),
            Err(e) => Err(format!("condition `{}` failed: {e}", self.source)),
        }
    }
}

/// Runs `f` on a thread with a stack of [`PARSER_STACK`] bytes, or right here if this is
/// already such a thread. `Err` if the thread could not be started or `f` panicked.
pub(crate) fn on_parser_stack<R: Send>(f: impl FnOnce() -> R + Send) -> Result<R, String> {
    thread_local! {
        static PARSER_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    if PARSER_THREAD.get() {
        return Ok(f());
    }
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("approvals-policy-parser".into())
            .stack_size(PARSER_STACK)
            .spawn_scoped(scope, || {
                PARSER_THREAD.set(true);
                f()
            })
            .map_err(|e| format!("could not start the policy parser's thread: {e}"))?;
        handle
            .join()
            .map_err(|_| "the policy parser failed on this input".to_owned())
    })
}

/// Refuses a condition that is too long, or nested too deeply for the parser, before it is
/// parsed: brackets and runs of prefix operators, counted outside string literals.
fn precheck(source: &str) -> Result<(), Vec<ConditionError>> {
    let refuse = |offset: usize, message: String, hint: &str| {
        Err(vec![ConditionError {
            offset,
            message,
            hint: Some(hint.to_owned()),
        }])
    };
    if source.len() > MAX_CONDITION_BYTES {
        return refuse(
            0,
            format!(
                "the condition is {} bytes long; the most is {MAX_CONDITION_BYTES}",
                source.len()
            ),
            "split it across rules",
        );
    }
    let bytes = source.as_bytes();
    let mut depth = 0usize;
    let mut prefix_run = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'\'' | b'"' => {
                // Skip the literal: triple-quoted or not, with backslash escapes.
                let triple = bytes.get(i..i + 3) == Some(&[b, b, b][..]);
                let close: &[u8] = if triple {
                    &bytes[i..i + 3]
                } else {
                    &bytes[i..=i]
                };
                i += close.len();
                while i < bytes.len() && !bytes[i..].starts_with(close) {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += close.len();
                prefix_run = 0;
                continue;
            }
            b'(' | b'[' | b'{' => {
                depth += 1;
                prefix_run = 0;
            }
            b')' | b']' | b'}' => {
                depth = depth.saturating_sub(1);
                prefix_run = 0;
            }
            b'!' if bytes.get(i + 1) != Some(&b'=') => prefix_run += 1,
            b'-' => prefix_run += 1,
            b' ' | b'\t' | b'\n' | b'\r' => {}
            _ => prefix_run = 0,
        }
        if depth > MAX_NESTING || prefix_run > MAX_NESTING {
            return refuse(
                i,
                format!("the condition is nested more than {MAX_NESTING} levels deep"),
                "flatten it, or split it across rules",
            );
        }
        i += 1;
    }
    Ok(())
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// CEL reports (line, column) within the expression, both 1-based, column in characters.
fn offset_of(source: &str, (line, col): (isize, isize)) -> usize {
    let line = usize::try_from(line.max(1)).unwrap_or(1);
    let col = usize::try_from(col.max(1)).unwrap_or(1);
    let start: usize = source
        .split_inclusive('\n')
        .take(line - 1)
        .map(str::len)
        .sum();
    let rest = source.get(start..).unwrap_or("");
    start
        + rest
            .char_indices()
            .nth(col - 1)
            .map_or(rest.len(), |(i, _)| i)
}

/// The standard CEL environment (functions, macros), built once: building it costs far more
/// than evaluating a condition.
fn env() -> Arc<cel::Env> {
    static ENV: std::sync::OnceLock<Arc<cel::Env>> = std::sync::OnceLock::new();
    ENV.get_or_init(|| Arc::new(cel::Env::stdlib())).clone()
}

/// The variables of one call, each converted to a CEL value the first time a condition uses
/// it and then shared by every condition evaluated for the call.
pub struct Input<'a> {
    action: &'a Action,
    context: &'a Context,
    directory: &'a dyn Directory,
    now: approvals_core::Timestamp,
    values: [std::sync::OnceLock<Box<dyn Val>>; 8],
}

impl fmt::Debug for Input<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Input")
            .field("action", &self.action.name)
            .finish_non_exhaustive()
    }
}

impl<'a> Input<'a> {
    /// The input for `action` made in `context` at `now`; groups come from `directory`.
    pub fn new(
        action: &'a Action,
        context: &'a Context,
        directory: &'a dyn Directory,
        now: approvals_core::Timestamp,
    ) -> Self {
        Self {
            action,
            context,
            directory,
            now,
            values: Default::default(),
        }
    }

    /// The length of the longest list or map (or string) anywhere in the call's arguments
    /// and labels: what one level of comprehension can iterate over at most.
    fn longest_collection(&self) -> usize {
        let mut longest = self.context.labels.len();
        let mut stack = vec![self.action.args.value()];
        while let Some(v) = stack.pop() {
            match v {
                serde_json::Value::Array(a) => {
                    longest = longest.max(a.len());
                    stack.extend(a);
                }
                serde_json::Value::Object(o) => {
                    longest = longest.max(o.len());
                    stack.extend(o.values());
                }
                _ => {}
            }
        }
        longest
    }

    fn value(&self, index: usize) -> Value {
        let principal = |p: &approvals_core::Principal| {
            let mut m = BTreeMap::new();
            m.insert("id", Value::from(p.id.as_str()));
            m.insert("kind", Value::from(kind_str(p.kind)));
            let groups: Vec<Value> = self
                .directory
                .groups_of(&p.id)
                .into_iter()
                .map(Value::from)
                .collect();
            m.insert("groups", Value::List(Arc::new(groups)));
            map(m)
        };
        let opt = |s: &Option<String>| s.as_deref().map_or(Value::Null, Value::from);
        match VARIABLES.get(index).map(|(n, _)| *n) {
            Some("action") => map(BTreeMap::from([
                ("name", Value::from(self.action.name.as_str())),
                ("policy", Value::from(self.action.policy.as_str())),
            ])),
            Some("args") => json(&self.action.args),
            Some("requester") => principal(&self.context.requester),
            Some("on_behalf_of") => self
                .context
                .on_behalf_of
                .as_ref()
                .map_or(Value::Null, principal),
            Some("trigger") => opt(&self.context.trigger),
            Some("reason") => opt(&self.context.reason),
            Some("labels") => Value::Map(cel::objects::Map {
                map: Arc::new(
                    self.context
                        .labels
                        .iter()
                        .map(|(k, v)| (cel::objects::Key::from(k.clone()), Value::from(v.as_str())))
                        .collect(),
                ),
            }),
            Some("now") => chrono::DateTime::from_timestamp_micros(self.now.unix_micros())
                .map_or(Value::Null, |t| Value::Timestamp(t.fixed_offset())),
            _ => Value::Null,
        }
    }
}

impl cel::context::VariableResolver for Input<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        let index = VARIABLES.iter().position(|(n, _)| *n == variable)?;
        let cell = self.values.get(index)?;
        let value = cell.get_or_init(|| {
            // The values built here are plain data; conversion cannot fail for them.
            let converted: Result<Box<dyn Val>, _> = self.value(index).try_into();
            converted.unwrap_or_else(|_| Box::new(cel::common::types::CelNull))
        });
        Some(CowVal::Borrowed(&**value))
    }
}

fn kind_str(k: approvals_core::PrincipalKind) -> &'static str {
    match k {
        approvals_core::PrincipalKind::Agent => "agent",
        approvals_core::PrincipalKind::Human => "human",
        approvals_core::PrincipalKind::Service => "service",
    }
}

fn map(m: BTreeMap<&str, Value>) -> Value {
    Value::Map(cel::objects::Map {
        map: Arc::new(
            m.into_iter()
                .map(|(k, v)| (cel::objects::Key::from(k.to_owned()), v))
                .collect(),
        ),
    })
}

/// JSON to CEL: integers become `int` (as written in conditions: `args.limit > 100`),
/// other numbers `double`.
fn json(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => n
            .as_i64()
            .map(Value::Int)
            .or_else(|| n.as_u64().map(Value::UInt))
            .unwrap_or_else(|| Value::Float(n.as_f64().unwrap_or(f64::NAN))),
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(a) => Value::List(Arc::new(a.iter().map(json).collect())),
        serde_json::Value::Object(o) => Value::Map(cel::objects::Map {
            map: Arc::new(
                o.iter()
                    .map(|(k, v)| (cel::objects::Key::from(k.clone()), json(v)))
                    .collect(),
            ),
        }),
    }
}

/// What the checker knows of a value's type.
#[derive(Debug, Clone, PartialEq)]
enum Ty {
    Bool,
    Int,
    Double,
    String,
    Bytes,
    Null,
    Timestamp,
    Duration,
    List(Box<Ty>),
    Map(Box<Ty>),
    /// A known object: its fields.
    Object(&'static str, &'static [(&'static str, Known)]),
    /// `T` or null.
    Nullable(Box<Ty>),
    /// Anything (args, comprehension variables, results we do not track).
    Dyn,
}

/// Field types of the known objects, as constructors (statics cannot hold boxes).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Known {
    String,
    StringList,
}

impl Known {
    fn ty(self) -> Ty {
        match self {
            Known::String => Ty::String,
            Known::StringList => Ty::List(Box::new(Ty::String)),
        }
    }
}

const ACTION: &[(&str, Known)] = &[("name", Known::String), ("policy", Known::String)];
const PRINCIPAL: &[(&str, Known)] = &[
    ("id", Known::String),
    ("kind", Known::String),
    ("groups", Known::StringList),
];

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ty::Bool => f.write_str("a bool"),
            Ty::Int => f.write_str("a number"),
            Ty::Double => f.write_str("a double"),
            Ty::String => f.write_str("a string"),
            Ty::Bytes => f.write_str("bytes"),
            Ty::Null => f.write_str("null"),
            Ty::Timestamp => f.write_str("a timestamp"),
            Ty::Duration => f.write_str("a duration"),
            Ty::List(_) => f.write_str("a list"),
            Ty::Map(_) => f.write_str("a map"),
            Ty::Object(name, _) => write!(f, "the object `{name}`"),
            Ty::Nullable(t) => write!(f, "{t} or null"),
            Ty::Dyn => f.write_str("a value"),
        }
    }
}

impl Ty {
    fn numeric(&self) -> bool {
        matches!(self, Ty::Int | Ty::Double)
    }
    /// Strip `Nullable`: operations on a nullable value are checked as on the value (null
    /// fails at run time and denies).
    fn base(&self) -> &Ty {
        match self {
            Ty::Nullable(t) => t,
            t => t,
        }
    }
    /// Whether values of the two types can ever be equal.
    fn comparable_eq(&self, other: &Ty) -> bool {
        let (a, b) = (self, other);
        if matches!(a, Ty::Dyn) || matches!(b, Ty::Dyn) {
            return true;
        }
        if matches!(a, Ty::Null) || matches!(b, Ty::Null) {
            return matches!(a, Ty::Null | Ty::Nullable(_))
                || matches!(b, Ty::Null | Ty::Nullable(_));
        }
        let (a, b) = (a.base(), b.base());
        if a.numeric() && b.numeric() {
            return true;
        }
        match (a, b) {
            (Ty::List(_), Ty::List(_)) | (Ty::Map(_), Ty::Map(_)) => true,
            (Ty::Object(x, _), Ty::Object(y, _)) => x == y,
            _ => std::mem::discriminant(a) == std::mem::discriminant(b),
        }
    }
    fn ordered_with(&self, other: &Ty) -> bool {
        let (a, b) = (self.base(), other.base());
        if matches!(a, Ty::Dyn) || matches!(b, Ty::Dyn) {
            return true;
        }
        if a.numeric() && b.numeric() {
            return true;
        }
        matches!(
            (a, b),
            (Ty::String, Ty::String)
                | (Ty::Bytes, Ty::Bytes)
                | (Ty::Bool, Ty::Bool)
                | (Ty::Timestamp, Ty::Timestamp)
                | (Ty::Duration, Ty::Duration)
        )
    }
}

/// Functions of the CEL standard library the `cel` crate provides, as (name, result).
const FUNCTIONS: &[(&str, Option<Ty>)] = &[
    ("size", Some(Ty::Int)),
    ("contains", Some(Ty::Bool)),
    ("startsWith", Some(Ty::Bool)),
    ("endsWith", Some(Ty::Bool)),
    ("matches", Some(Ty::Bool)),
    ("int", Some(Ty::Int)),
    ("uint", Some(Ty::Int)),
    ("double", Some(Ty::Double)),
    ("string", Some(Ty::String)),
    ("bool", Some(Ty::Bool)),
    ("bytes", Some(Ty::Bytes)),
    ("timestamp", Some(Ty::Timestamp)),
    ("duration", Some(Ty::Duration)),
    ("dyn", None),
    ("type", None),
    ("max", None),
    ("min", None),
    ("getFullYear", Some(Ty::Int)),
    ("getMonth", Some(Ty::Int)),
    ("getDate", Some(Ty::Int)),
    ("getDayOfMonth", Some(Ty::Int)),
    ("getDayOfWeek", Some(Ty::Int)),
    ("getDayOfYear", Some(Ty::Int)),
    ("getHours", Some(Ty::Int)),
    ("getMinutes", Some(Ty::Int)),
    ("getSeconds", Some(Ty::Int)),
    ("getMilliseconds", Some(Ty::Int)),
];

struct Checker<'p> {
    program: &'p Program,
    errors: Vec<ConditionError>,
    /// Comprehension variables in scope.
    scopes: Vec<String>,
    /// How deep the walk is now.
    depth: usize,
    /// Whether the expression was found too deep (reported once).
    too_deep: bool,
    /// Comprehensions around the node being checked, and the most seen.
    comprehensions: usize,
    deepest_comprehension: usize,
}

impl Checker<'_> {
    fn error(&mut self, e: &IdedExpr, message: String, hint: Option<String>) {
        let offset = self
            .program
            .source_info()
            .offset_for(e.id)
            .map_or(0, |(start, _)| start as usize);
        self.errors.push(ConditionError {
            offset,
            message,
            hint,
        });
    }

    fn check(&mut self, e: &IdedExpr) -> Ty {
        if self.depth >= MAX_EXPRESSION_DEPTH {
            if !self.too_deep {
                self.too_deep = true;
                self.error(
                    e,
                    format!("the condition is nested more than {MAX_EXPRESSION_DEPTH} levels deep"),
                    Some(
                        "split a long chain of `&&` or `||` across rules, or use `in [...]`".into(),
                    ),
                );
            }
            return Ty::Dyn;
        }
        self.depth += 1;
        let ty = self.check_node(e);
        self.depth -= 1;
        ty
    }

    fn check_node(&mut self, e: &IdedExpr) -> Ty {
        match &e.expr {
            Expr::Unspecified => Ty::Dyn,
            Expr::Literal(l) => match l {
                LiteralValue::Boolean(_) => Ty::Bool,
                LiteralValue::Bytes(_) => Ty::Bytes,
                LiteralValue::Double(_) => Ty::Double,
                LiteralValue::Int(_) | LiteralValue::UInt(_) => Ty::Int,
                LiteralValue::Null => Ty::Null,
                LiteralValue::String(_) => Ty::String,
            },
            Expr::Ident(name) => self.ident(e, name),
            Expr::Select(sel) => {
                let operand = self.check(&sel.operand);
                let field = self.field(e, &operand, &sel.field);
                if sel.test { Ty::Bool } else { field }
            }
            Expr::List(l) => {
                let mut elem: Option<Ty> = None;
                for x in &l.elements {
                    let t = self.check(x);
                    elem = Some(match elem {
                        None => t,
                        Some(prev) if prev == t => prev,
                        Some(_) => Ty::Dyn,
                    });
                }
                Ty::List(Box::new(elem.unwrap_or(Ty::Dyn)))
            }
            Expr::Map(m) => {
                for entry in &m.entries {
                    match &entry.expr {
                        EntryExpr::MapEntry(me) => {
                            self.check(&me.key);
                            self.check(&me.value);
                        }
                        EntryExpr::StructField(sf) => {
                            self.check(&sf.value);
                        }
                    }
                }
                Ty::Map(Box::new(Ty::Dyn))
            }
            Expr::Struct(_) => {
                self.error(
                    e,
                    "message construction is not available in policy conditions".into(),
                    None,
                );
                Ty::Dyn
            }
            Expr::Comprehension(c) => {
                self.comprehensions += 1;
                self.deepest_comprehension = self.deepest_comprehension.max(self.comprehensions);
                if self.comprehensions == MAX_COMPREHENSION_NESTING + 1 {
                    self.error(
                        e,
                        format!(
                            "comprehensions (all, exists, map, filter) nest more than {MAX_COMPREHENSION_NESTING} deep"
                        ),
                        Some("each level multiplies the work by the length of a list the caller sends; flatten the condition".into()),
                    );
                }
                let ty = self.comprehension(c);
                self.comprehensions -= 1;
                ty
            }
            Expr::Call(call) => self.call(e, &call.func_name, call.target.as_deref(), &call.args),
        }
    }

    fn comprehension(&mut self, c: &cel::common::ast::ComprehensionExpr) -> Ty {
        {
            {
                let range = self.check(&c.iter_range);
                if !matches!(range.base(), Ty::List(_) | Ty::Map(_) | Ty::Dyn) {
                    self.error(
                        &c.iter_range,
                        format!("cannot iterate over {range}"),
                        Some("all(), exists() and friends take a list or a map".into()),
                    );
                }
                self.check(&c.accu_init);
                self.scopes.push(c.iter_var.clone());
                if let Some(v2) = &c.iter_var2 {
                    self.scopes.push(v2.clone());
                }
                self.scopes.push(c.accu_var.clone());
                self.check(&c.loop_cond);
                self.check(&c.loop_step);
                let result = self.check(&c.result);
                self.scopes.pop();
                if c.iter_var2.is_some() {
                    self.scopes.pop();
                }
                self.scopes.pop();
                match result {
                    Ty::Bool => Ty::Bool,
                    _ => Ty::Dyn,
                }
            }
        }
    }

    fn ident(&mut self, e: &IdedExpr, name: &str) -> Ty {
        if self.scopes.iter().any(|s| s == name) {
            return Ty::Dyn;
        }
        match name {
            "action" => Ty::Object("action", ACTION),
            "args" => Ty::Map(Box::new(Ty::Dyn)),
            "requester" => Ty::Object("requester", PRINCIPAL),
            "on_behalf_of" => Ty::Nullable(Box::new(Ty::Object("on_behalf_of", PRINCIPAL))),
            "trigger" | "reason" => Ty::Nullable(Box::new(Ty::String)),
            "labels" => Ty::Map(Box::new(Ty::String)),
            "now" => Ty::Timestamp,
            _ => {
                let names = VARIABLES.iter().map(|(n, _)| *n);
                let hint = crate::diagnostic::did_you_mean(name, names).unwrap_or_else(|| {
                    let all: Vec<&str> = VARIABLES.iter().map(|(n, _)| *n).collect();
                    format!("the variables are {}", all.join(", "))
                });
                self.error(e, format!("unknown variable `{name}`"), Some(hint));
                Ty::Dyn
            }
        }
    }

    fn field(&mut self, e: &IdedExpr, operand: &Ty, field: &str) -> Ty {
        match operand.base() {
            Ty::Object(name, fields) => {
                if let Some((_, t)) = fields.iter().find(|(f, _)| *f == field) {
                    t.ty()
                } else {
                    let names: Vec<&str> = fields.iter().map(|(f, _)| *f).collect();
                    let hint = crate::diagnostic::did_you_mean(field, names.iter().copied())
                        .unwrap_or_else(|| format!("its fields are {}", names.join(", ")));
                    self.error(e, format!("`{name}` has no field `{field}`"), Some(hint));
                    Ty::Dyn
                }
            }
            Ty::Map(v) => (**v).clone(),
            Ty::Dyn => Ty::Dyn,
            other => {
                self.error(e, format!("cannot take field `{field}` of {other}"), None);
                Ty::Dyn
            }
        }
    }

    fn call(
        &mut self,
        e: &IdedExpr,
        func: &str,
        target: Option<&IdedExpr>,
        args: &[IdedExpr],
    ) -> Ty {
        let target_ty = target.map(|t| self.check(t));
        let tys: Vec<Ty> = args.iter().map(|a| self.check(a)).collect();
        let arg = |i: usize| tys.get(i).cloned().unwrap_or(Ty::Dyn);
        match func {
            operators::LOGICAL_AND | operators::LOGICAL_OR | operators::LOGICAL_NOT => {
                for (a, t) in args.iter().zip(&tys) {
                    if !matches!(t.base(), Ty::Bool | Ty::Dyn) {
                        let op = match func {
                            operators::LOGICAL_AND => "&&",
                            operators::LOGICAL_OR => "||",
                            _ => "!",
                        };
                        self.error(a, format!("`{op}` needs true or false, not {t}"), None);
                    }
                }
                Ty::Bool
            }
            operators::NOT_STRICTLY_FALSE => Ty::Bool,
            operators::EQUALS | operators::NOT_EQUALS => {
                let (a, b) = (arg(0), arg(1));
                if !a.comparable_eq(&b) {
                    self.error(
                        e,
                        format!("comparing {a} with {b} is never true"),
                        Some("compare values of the same type".into()),
                    );
                }
                Ty::Bool
            }
            operators::LESS
            | operators::LESS_EQUALS
            | operators::GREATER
            | operators::GREATER_EQUALS => {
                let (a, b) = (arg(0), arg(1));
                if !a.ordered_with(&b) {
                    self.error(e, format!("cannot order {a} against {b}"), None);
                }
                Ty::Bool
            }
            operators::ADD => self.arith(e, "+", arg(0), arg(1)),
            operators::SUBSTRACT => self.arith(e, "-", arg(0), arg(1)),
            operators::MULTIPLY | operators::DIVIDE | operators::MODULO => {
                let (a, b) = (arg(0), arg(1));
                let ok = |t: &Ty| t.numeric() || matches!(t.base(), Ty::Dyn);
                if !(ok(&a) && ok(&b)) {
                    self.error(
                        e,
                        format!("arithmetic needs numbers, not {a} and {b}"),
                        None,
                    );
                }
                if a == b { a } else { Ty::Dyn }
            }
            operators::NEGATE => {
                let a = arg(0);
                if !(a.numeric() || matches!(a.base(), Ty::Dyn | Ty::Duration)) {
                    self.error(e, format!("cannot negate {a}"), None);
                }
                a
            }
            operators::CONDITIONAL => {
                let c = arg(0);
                if !matches!(c.base(), Ty::Bool | Ty::Dyn) {
                    self.error(e, format!("`? :` needs true or false first, not {c}"), None);
                }
                let (a, b) = (arg(1), arg(2));
                if a == b { a } else { Ty::Dyn }
            }
            operators::INDEX | operators::OPT_INDEX => match arg(0).base() {
                Ty::List(t) => {
                    if !matches!(arg(1).base(), Ty::Int | Ty::Dyn) {
                        self.error(
                            e,
                            format!("a list index must be a number, not {}", arg(1)),
                            None,
                        );
                    }
                    (**t).clone()
                }
                Ty::Map(t) => (**t).clone(),
                Ty::Dyn => Ty::Dyn,
                Ty::Object(..) => Ty::Dyn,
                other => {
                    self.error(e, format!("cannot index {other}"), None);
                    Ty::Dyn
                }
            },
            operators::IN => {
                let c = arg(1);
                if !matches!(c.base(), Ty::List(_) | Ty::Map(_) | Ty::Dyn) {
                    self.error(
                        e,
                        format!("`in` needs a list or a map on its right, not {c}"),
                        None,
                    );
                }
                Ty::Bool
            }
            operators::OPT_SELECT => Ty::Dyn,
            "contains" | "startsWith" | "endsWith" | "matches" => {
                let on = target_ty.clone().unwrap_or_else(|| arg(0));
                if !matches!(on.base(), Ty::String | Ty::Dyn | Ty::List(_) | Ty::Map(_)) {
                    self.error(e, format!("`{func}` applies to strings, not {on}"), None);
                }
                if func == "matches" {
                    let pattern = if target.is_some() {
                        args.first()
                    } else {
                        args.get(1)
                    };
                    self.pattern(e, pattern);
                }
                Ty::Bool
            }
            "size" => {
                let on = target_ty.clone().unwrap_or_else(|| arg(0));
                if !matches!(
                    on.base(),
                    Ty::String | Ty::Bytes | Ty::List(_) | Ty::Map(_) | Ty::Dyn
                ) {
                    self.error(
                        e,
                        format!("`size` applies to strings, lists and maps, not {on}"),
                        None,
                    );
                }
                Ty::Int
            }
            _ => match FUNCTIONS.iter().find(|(n, _)| *n == func) {
                Some((_, Some(t))) => t.clone(),
                Some((_, None)) => Ty::Dyn,
                None => {
                    let names = FUNCTIONS.iter().map(|(n, _)| *n);
                    let hint = crate::diagnostic::did_you_mean(func, names);
                    self.error(e, format!("unknown function `{func}`"), hint);
                    Ty::Dyn
                }
            },
        }
    }

    /// A `matches` pattern must be a string literal the regex engine accepts (linear-time
    /// matching, no back-references), of at most [`MAX_PATTERN_BYTES`]: a pattern taken from
    /// the call would let the caller choose what is compiled.
    fn pattern(&mut self, call: &IdedExpr, pattern: Option<&IdedExpr>) {
        let Some(p) = pattern else {
            self.error(call, "`matches` needs a pattern".into(), None);
            return;
        };
        let Expr::Literal(LiteralValue::String(text)) = &p.expr else {
            self.error(
                p,
                "the pattern of `matches` must be a string literal".into(),
                Some("write the regular expression in the condition, e.g. `args.branch.matches('^release/')`".into()),
            );
            return;
        };
        let text: &str = text;
        if text.len() > MAX_PATTERN_BYTES {
            self.error(
                p,
                format!(
                    "the pattern is {} bytes long; the most is {MAX_PATTERN_BYTES}",
                    text.len()
                ),
                None,
            );
            return;
        }
        if let Err(err) = regex::RegexBuilder::new(text).size_limit(1 << 20).build() {
            let first = err.to_string();
            let first = first.lines().last().unwrap_or("").trim().to_owned();
            self.error(
                p,
                format!("the pattern of `matches` is not a valid regular expression: {first}"),
                Some(
                    "patterns use Rust's regex syntax (RE2): no look-around, no back-references"
                        .into(),
                ),
            );
        }
    }

    fn arith(&mut self, e: &IdedExpr, op: &str, a: Ty, b: Ty) -> Ty {
        use Ty::{Double, Duration, Dyn, Int, List, String, Timestamp};
        let result = match (a.base(), b.base(), op) {
            (Dyn, _, _) | (_, Dyn, _) => Some(Dyn),
            (Int, Int, _) => Some(Int),
            (x, y, _) if x.numeric() && y.numeric() => Some(Double),
            (String, String, "+") => Some(String),
            (List(t), List(_), "+") => Some(List(t.clone())),
            (Timestamp, Duration, _) | (Duration, Timestamp, "+") => Some(Timestamp),
            (Duration, Duration, _) | (Timestamp, Timestamp, "-") => Some(Duration),
            _ => None,
        };
        result.unwrap_or_else(|| {
            self.error(e, format!("cannot apply `{op}` to {a} and {b}"), None);
            Dyn
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(src: &str) -> Vec<String> {
        match Condition::compile(src) {
            Ok(_) => Vec::new(),
            Err(es) => es.into_iter().map(|e| e.message).collect(),
        }
    }

    #[test]
    fn good_conditions_compile() {
        for src in [
            "args.limit > 100",
            "args.env == 'prod' && labels.env == 'prod'",
            "'sre' in requester.groups",
            "requester.groups.exists(g, g == 'sre')",
            "on_behalf_of != null && on_behalf_of.id == 'dana'",
            "trigger == null || trigger.startsWith('slack:')",
            "now.getHours() >= 9 && now.getHours() < 17",
            "now - timestamp('2026-01-01T00:00:00Z') > duration('1h')",
            "size(args.tables) <= 3",
            "action.name.endsWith('::export_customers')",
            "has(args.limit)",
            "args.ratio * 2.0 > 1.5",
        ] {
            assert_eq!(errors(src), Vec::<String>::new(), "{src}");
        }
    }

    #[test]
    fn type_and_name_errors_are_found_before_any_call() {
        let cases = [
            ("requester.id > 5", "cannot order a string against a number"),
            (
                "labels.env + 1",
                "cannot apply `+` to a string and a number",
            ),
            ("args.limit", ""),
            ("requester.name == 'x'", "`requester` has no field `name`"),
            ("requestor.id == 'x'", "unknown variable `requestor`"),
            ("lenght(args.x) > 1", "unknown function `lenght`"),
            (
                "'x'",
                "a condition must be true or false, but this is a string",
            ),
            ("now > 5", "cannot order a timestamp against a number"),
            (
                "requester.kind == 1",
                "comparing a string with a number is never true",
            ),
            (
                "args.limit > 1 && 'yes'",
                "`&&` needs true or false, not a string",
            ),
        ];
        for (src, want) in cases {
            let got = errors(src);
            if want.is_empty() {
                assert!(got.is_empty(), "{src}: {got:?}");
            } else {
                assert!(got.iter().any(|m| m == want), "{src}: {got:?}");
            }
        }
    }

    #[test]
    fn syntax_errors_carry_their_offset() {
        let err = Condition::compile("args.limit >").unwrap_err();
        assert!(err[0].message.starts_with("CEL syntax error"), "{err:?}");
        assert_eq!(err[0].offset, 12);
        let err = Condition::compile("args.x == 1 && nope.y").unwrap_err();
        assert_eq!(err[0].offset, 15, "{err:?}");
    }
}

#[cfg(test)]
mod depth_tests {
    use super::*;

    /// The deepest condition the checker accepts is evaluated on a thread with half of
    /// tokio's default worker stack (1 of 2 MiB), in this (unoptimised) build: evaluation
    /// recurses once per level on whatever thread judges the call.
    #[test]
    fn the_deepest_accepted_condition_evaluates_on_a_worker_sized_stack() {
        let sum = |terms: usize| vec!["args.n"; terms].join(" + ") + " > 0";
        // The longest sum the checker accepts: one more term is one level too deep.
        let mut terms = 1;
        while Condition::compile(&sum(terms + 1)).is_ok() {
            terms += 1;
        }
        assert!(terms >= MAX_EXPRESSION_DEPTH - 2, "{terms}");
        let c = Condition::compile(&sum(terms)).unwrap();
        let ok = std::thread::Builder::new()
            .stack_size(1024 * 1024)
            .spawn(move || {
                let action = Action::builder("f", "p").arg("n", &1).build().unwrap();
                let ctx = Context::new(approvals_core::Principal::agent("bot"));
                let dir = approvals_core::StaticDirectory::new();
                let input = Input::new(&action, &ctx, &dir, approvals_core::Timestamp::now());
                c.eval(&input)
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(ok, Ok(true));
    }
}

/// The `args.NAME` and `args["NAME"]` of a condition's source, skipping string literals.
/// Scanned by hand: the `cel` crate's parser keeps its syntax tree to itself.
fn arguments_in(src: &str) -> std::collections::BTreeSet<String> {
    let b = src.as_bytes();
    let mut out = std::collections::BTreeSet::new();
    let ident = |i: usize| {
        let end = b[i..]
            .iter()
            .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
            .map_or(b.len(), |n| i + n);
        (src[i..end].to_owned(), end)
    };
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            q @ (b'"' | b'\'') => {
                // A string literal (triple-quoted too): skip it whole.
                let triple = b[i..].starts_with(&[q, q, q]);
                let close: &[u8] = if triple { &b[i..i + 3] } else { &b[i..=i] };
                let mut j = i + close.len();
                while j < b.len() && !b[j..].starts_with(close) {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                i = j + close.len();
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let (word, end) = ident(i);
                let before = i.checked_sub(1).map(|p| b[p]);
                i = end;
                if word != "args" || before == Some(b'.') {
                    continue;
                }
                let mut j = end;
                while j < b.len() && b[j].is_ascii_whitespace() {
                    j += 1;
                }
                match b.get(j) {
                    Some(b'.') => {
                        let mut k = j + 1;
                        while k < b.len() && b[k].is_ascii_whitespace() {
                            k += 1;
                        }
                        if k < b.len() && (b[k].is_ascii_alphabetic() || b[k] == b'_') {
                            out.insert(ident(k).0);
                        }
                    }
                    Some(b'[') => {
                        let rest = &src[j + 1..];
                        let rest = rest.trim_start();
                        if let Some(q) = rest.chars().next().filter(|c| *c == '"' || *c == '\'') {
                            if let Some(end) = rest[1..].find(q) {
                                out.insert(rest[1..=end].to_owned());
                            }
                        }
                    }
                    _ => {}
                }
            }
            _ => i += 1,
        }
    }
    out
}
