//! A small interpreter for the JSONPath flavour of the Amazon States Language, so that
//! the local server runs the very ASL files that Step Functions runs in production.
//!
//! Only the subset the project's workflows need is accepted. Everything else is
//! rejected when the definition is parsed, naming the state and field: a silently
//! ignored field would let local and AWS behaviour drift apart unnoticed.

use crate::clock::Clock;
use crate::ports::{ExecutionRecord, ExecutionStatus, ExecutionStore, StoreError};
use async_trait::async_trait;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

const ALL: &str = "States.ALL";
const TASK_FAILED: &str = "States.TaskFailed";
const TIMEOUT: &str = "States.Timeout";
const RUNTIME: &str = "States.Runtime";
/// Where top-level problems are reported, in place of a state name.
const TOP: &str = "(state machine)";
/// A definition that loops forever must not hold a worker forever.
const MAX_TRANSITIONS: usize = 10_000;
/// AWS's default for a Task without `TimeoutSeconds` is far longer; a local run that
/// hangs for a year helps nobody, and the project's tasks finish in milliseconds.
const DEFAULT_TASK_TIMEOUT: u64 = 60;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AslError {
    #[error("no value for substitution ${{{0}}}")]
    UnknownSubstitution(String),
    #[error("definition is not valid JSON: {0}")]
    Json(String),
    #[error("invalid definition at {state}: {message}")]
    Invalid { state: String, message: String },
    #[error("unsupported ASL at {state}: {field}")]
    Unsupported { state: String, field: String },
}

fn invalid(state: &str, message: impl Into<String>) -> AslError {
    AslError::Invalid { state: state.into(), message: message.into() }
}

fn unsupported(state: &str, field: impl Into<String>) -> AslError {
    AslError::Unsupported { state: state.into(), field: field.into() }
}

/// An error raised inside a workflow, named as Step Functions names it so that
/// `ErrorEquals` lists written for AWS match the same failures locally.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskFailure {
    pub error: String,
    pub cause: String,
}

impl TaskFailure {
    pub fn new(error: impl Into<String>, cause: impl Into<String>) -> Self {
        TaskFailure { error: error.into(), cause: cause.into() }
    }
}

impl fmt::Display for TaskFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.cause.is_empty() {
            f.write_str(&self.error)
        } else {
            write!(f, "{}: {}", self.error, self.cause)
        }
    }
}

impl std::error::Error for TaskFailure {}

#[async_trait]
pub trait TaskInvoker: Send + Sync {
    /// `resource` is the Task's Resource after substitution.
    async fn invoke(&self, resource: &str, input: Value) -> Result<Value, TaskFailure>;
}

/// CloudFormation's `DefinitionSubstitutions`: a plain textual replacement, done in one
/// pass so that a value containing `${` is never substituted again.
fn substitute(text: &str, substitutions: &HashMap<String, String>) -> Result<String, AslError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let key = &after[..end];
        let value = substitutions.get(key).ok_or_else(|| AslError::UnknownSubstitution(key.into()))?;
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// A JSONPath that names one node: `$`, `$.a.b`, `$.a[0]`.
#[derive(Debug, Clone, PartialEq)]
struct Path {
    text: String,
    segs: Vec<Seg>,
}

impl Path {
    fn root() -> Path {
        Path { text: "$".into(), segs: Vec::new() }
    }

    fn parse(text: &str, state: &str, field: &str) -> Result<Path, AslError> {
        let unsupported = || unsupported(state, format!("{field}: JSONPath {text:?}"));
        let invalid = |why: &str| invalid(state, format!("{field}: {text:?} {why}"));
        if text.starts_with("$$") {
            return Err(unsupported()); // the context object
        }
        let Some(mut rest) = text.strip_prefix('$') else {
            return Err(invalid("is not a path starting with $"));
        };
        let mut segs = Vec::new();
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('.') {
                let end = r.find(['.', '[']).unwrap_or(r.len());
                let key = &r[..end];
                if key.is_empty() && !r.starts_with('.') {
                    return Err(invalid("has an empty field name"));
                }
                if key.is_empty() || key.contains(['*', '?', '@', '(', ')', '\'', '"', ',', ':', ']', ' ']) {
                    return Err(unsupported());
                }
                segs.push(Seg::Key(key.into()));
                rest = &r[end..];
            } else if let Some(r) = rest.strip_prefix('[') {
                let end = r.find(']').ok_or_else(|| invalid("has an unclosed ["))?;
                segs.push(Seg::Index(r[..end].parse().map_err(|_| unsupported())?));
                rest = &r[end + 1..];
            } else {
                return Err(invalid("is not a simple dotted path"));
            }
        }
        Ok(Path { text: text.into(), segs })
    }

    fn get<'v>(&self, mut value: &'v Value) -> Option<&'v Value> {
        for seg in &self.segs {
            value = match seg {
                Seg::Key(k) => value.get(k.as_str())?,
                Seg::Index(i) => value.get(*i)?,
            };
        }
        Some(value)
    }

    fn missing(&self, field: &str) -> TaskFailure {
        TaskFailure::new(RUNTIME, format!("Invalid path '{}' in {field}: no such value in the input", self.text))
    }

    fn select(&self, value: &Value, field: &str) -> Result<Value, TaskFailure> {
        self.get(value).cloned().ok_or_else(|| self.missing(field))
    }

    /// Writes `value` at this path, creating missing objects on the way as AWS does.
    fn set(&self, target: &mut Value, value: Value) -> Result<(), TaskFailure> {
        let mismatch = || TaskFailure::new("States.ResultPathMatchFailure", format!("Unable to apply ResultPath '{}' to the input", self.text));
        let mut slot = target;
        for seg in &self.segs {
            slot = match seg {
                Seg::Key(k) => slot.as_object_mut().ok_or_else(mismatch)?.entry(k.clone()).or_insert_with(|| json!({})),
                Seg::Index(i) => slot.as_array_mut().and_then(|a| a.get_mut(*i)).ok_or_else(mismatch)?,
            };
        }
        *slot = value;
        Ok(())
    }
}

/// `InputPath`/`OutputPath`: `None` stands for an explicit `null`, which AWS reads as `{}`.
type Filter = Option<Path>;

fn filter(path: &Filter, value: &Value, field: &str) -> Result<Value, TaskFailure> {
    match path {
        Some(p) => p.select(value, field),
        None => Ok(json!({})),
    }
}

#[derive(Debug)]
enum ResultPath {
    Discard,
    At(Path),
}

fn apply_result(path: &ResultPath, mut input: Value, result: Value) -> Result<Value, TaskFailure> {
    match path {
        ResultPath::Discard => Ok(input),
        ResultPath::At(p) => {
            p.set(&mut input, result)?;
            Ok(input)
        }
    }
}

/// A payload template (`Parameters`, `ResultSelector`), with its `.$` paths parsed once.
#[derive(Debug)]
enum Template {
    Literal(Value),
    Path(Path),
    Object(Vec<(String, Template)>),
    Array(Vec<Template>),
}

impl Template {
    fn parse(value: &Value, state: &str, field: &str) -> Result<Template, AslError> {
        match value {
            Value::Object(map) => {
                let mut fields = Vec::with_capacity(map.len());
                let mut seen = HashSet::new();
                for (key, v) in map {
                    let at = format!("{field}.{key}");
                    let (name, template) = match key.strip_suffix(".$") {
                        Some(name) => {
                            let expr = v.as_str().ok_or_else(|| invalid(state, format!("{at} must be a path string")))?;
                            if expr.starts_with("States.") {
                                return Err(unsupported(state, format!("{at}: intrinsic function {expr}")));
                            }
                            (name, Template::Path(Path::parse(expr, state, &at)?))
                        }
                        None => (key.as_str(), Template::parse(v, state, &at)?),
                    };
                    if !seen.insert(name) {
                        return Err(invalid(state, format!("{at} duplicates field {name}")));
                    }
                    fields.push((name.to_string(), template));
                }
                Ok(Template::Object(fields))
            }
            Value::Array(items) => {
                Ok(Template::Array(items.iter().enumerate().map(|(i, v)| Template::parse(v, state, &format!("{field}[{i}]"))).collect::<Result<_, _>>()?))
            }
            other => Ok(Template::Literal(other.clone())),
        }
    }

    fn render(&self, input: &Value, field: &str) -> Result<Value, TaskFailure> {
        Ok(match self {
            Template::Literal(v) => v.clone(),
            Template::Path(p) => p.select(input, field)?,
            Template::Object(fields) => {
                Value::Object(fields.iter().map(|(k, t)| Ok((k.clone(), t.render(input, field)?))).collect::<Result<Map<_, _>, TaskFailure>>()?)
            }
            Template::Array(items) => Value::Array(items.iter().map(|t| t.render(input, field)).collect::<Result<_, _>>()?),
        })
    }
}

#[derive(Debug)]
enum Test {
    StringEquals(String),
    StringEqualsPath(Path),
    Numeric(fn(f64, f64) -> bool, f64),
    BooleanEquals(bool),
    IsPresent(bool),
    IsNull(bool),
}

#[derive(Debug)]
enum Rule {
    And(Vec<Rule>),
    Or(Vec<Rule>),
    Not(Box<Rule>),
    Test(Path, Test),
}

impl Rule {
    /// Returns the rule and, for a top-level rule, its `Next`.
    fn parse(value: &Value, state: &str, at: &str, top: bool) -> Result<(Rule, Option<String>), AslError> {
        let obj = value.as_object().ok_or_else(|| invalid(state, format!("{at} must be an object")))?;
        let (mut next, mut variable, mut op) = (None, None, None);
        for (key, v) in obj {
            match key.as_str() {
                "Comment" => {}
                "Next" if top => next = Some(v.as_str().ok_or_else(|| invalid(state, format!("{at}.Next must be a string")))?),
                "Next" => return Err(invalid(state, format!("{at}: Next is only allowed at the top level of a choice"))),
                "Variable" => {
                    let text = v.as_str().ok_or_else(|| invalid(state, format!("{at}.Variable must be a string")))?;
                    variable = Some(Path::parse(text, state, &format!("{at}.Variable"))?);
                }
                "And"
                | "Or"
                | "Not"
                | "StringEquals"
                | "StringEqualsPath"
                | "NumericEquals"
                | "NumericLessThan"
                | "NumericGreaterThan"
                | "NumericGreaterThanEquals"
                | "NumericLessThanEquals"
                | "BooleanEquals"
                | "IsPresent"
                | "IsNull" => {
                    if op.replace((key.as_str(), v)).is_some() {
                        return Err(invalid(state, format!("{at} has more than one comparison")));
                    }
                }
                _ => return Err(unsupported(state, format!("{at}.{key}"))),
            }
        }
        let (name, v) = op.ok_or_else(|| invalid(state, format!("{at} has no comparison")))?;
        let bad = |what: &str| invalid(state, format!("{at}.{name} must be {what}"));
        let rule = match name {
            "And" | "Or" | "Not" => {
                if variable.is_some() {
                    return Err(invalid(state, format!("{at}: Variable is not allowed with {name}")));
                }
                let nested = |v: &Value, at: String| Rule::parse(v, state, &at, false).map(|(r, _)| r);
                match name {
                    "Not" => Rule::Not(Box::new(nested(v, format!("{at}.Not"))?)),
                    _ => {
                        let items = v.as_array().filter(|a| !a.is_empty()).ok_or_else(|| bad("a non-empty array"))?;
                        let rules = items.iter().enumerate().map(|(i, r)| nested(r, format!("{at}.{name}[{i}]")));
                        let rules = rules.collect::<Result<_, _>>()?;
                        if name == "And" {
                            Rule::And(rules)
                        } else {
                            Rule::Or(rules)
                        }
                    }
                }
            }
            _ => {
                let variable = variable.ok_or_else(|| invalid(state, format!("{at} needs a Variable")))?;
                let number = |op: fn(f64, f64) -> bool| v.as_f64().map(|n| Test::Numeric(op, n)).ok_or_else(|| bad("a number"));
                let boolean = || v.as_bool().ok_or_else(|| bad("a boolean"));
                let test = match name {
                    "StringEquals" => Test::StringEquals(v.as_str().ok_or_else(|| bad("a string"))?.into()),
                    "StringEqualsPath" => Test::StringEqualsPath(Path::parse(v.as_str().ok_or_else(|| bad("a path"))?, state, &format!("{at}.{name}"))?),
                    "NumericEquals" => number(|x, n| x == n)?,
                    "NumericLessThan" => number(|x, n| x < n)?,
                    "NumericGreaterThan" => number(|x, n| x > n)?,
                    "NumericGreaterThanEquals" => number(|x, n| x >= n)?,
                    "NumericLessThanEquals" => number(|x, n| x <= n)?,
                    "BooleanEquals" => Test::BooleanEquals(boolean()?),
                    "IsPresent" => Test::IsPresent(boolean()?),
                    _ => Test::IsNull(boolean()?),
                };
                Rule::Test(variable, test)
            }
        };
        Ok((rule, next.map(str::to_string)))
    }

    /// Type mismatches are simply false, as on AWS; a missing Variable is an error
    /// except for `IsPresent`.
    fn eval(&self, input: &Value) -> Result<bool, TaskFailure> {
        let (variable, test) = match self {
            Rule::And(rules) => return Ok(!any_is(rules, false, input)?),
            Rule::Or(rules) => return any_is(rules, true, input),
            Rule::Not(rule) => return Ok(!rule.eval(input)?),
            Rule::Test(variable, test) => (variable, test),
        };
        let Some(v) = variable.get(input) else {
            return match test {
                Test::IsPresent(want) => Ok(!want),
                _ => Err(variable.missing("Choice Variable")),
            };
        };
        Ok(match test {
            Test::StringEquals(s) => v.as_str() == Some(s.as_str()),
            Test::StringEqualsPath(p) => v.is_string() && v == p.get(input).ok_or_else(|| p.missing("StringEqualsPath"))?,
            Test::Numeric(holds, n) => v.as_f64().is_some_and(|x| holds(x, *n)),
            Test::BooleanEquals(b) => v.as_bool() == Some(*b),
            Test::IsPresent(want) => *want,
            Test::IsNull(want) => v.is_null() == *want,
        })
    }
}

/// Short-circuits like AWS, so a rule after the deciding one may name a missing path.
fn any_is(rules: &[Rule], wanted: bool, input: &Value) -> Result<bool, TaskFailure> {
    for rule in rules {
        if rule.eval(input)? == wanted {
            return Ok(true);
        }
    }
    Ok(false)
}

#[derive(Debug)]
struct Retrier {
    errors: Vec<String>,
    interval: f64,
    max_attempts: u64,
    backoff: f64,
    max_delay: Option<f64>,
}

impl Retrier {
    fn delay(&self, retries_so_far: u64) -> Duration {
        let exponent = i32::try_from(retries_so_far).unwrap_or(i32::MAX);
        let seconds = self.interval * self.backoff.powi(exponent);
        let seconds = self.max_delay.map_or(seconds, |max| seconds.min(max));
        Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX)
    }
}

#[derive(Debug)]
struct Catcher {
    errors: Vec<String>,
    result_path: ResultPath,
    next: String,
}

/// `States.Runtime` is never retried nor caught, even by `States.ALL`, as on AWS.
fn matches(errors: &[String], error: &str) -> bool {
    error != RUNTIME && errors.iter().any(|e| e == error || e == ALL || (e == TASK_FAILED && error != TIMEOUT))
}

#[derive(Debug)]
enum Next {
    State(String),
    End,
}

impl Next {
    fn step(&self, output: Value) -> Step {
        match self {
            Next::State(name) => Step::Goto(name.clone(), output),
            Next::End => Step::End(output),
        }
    }
}

#[derive(Debug)]
struct Task {
    resource: String,
    parameters: Option<Template>,
    result_selector: Option<Template>,
    result_path: ResultPath,
    retry: Vec<Retrier>,
    catch: Vec<Catcher>,
    timeout: Duration,
    next: Next,
}

#[derive(Debug)]
enum Kind {
    Task(Box<Task>),
    Choice { rules: Vec<(Rule, String)>, default: Option<String> },
    Pass { parameters: Option<Template>, result: Option<Value>, result_path: ResultPath, next: Next },
    Wait { seconds: u64, next: Next },
    Succeed,
    Fail { error: String, cause: String },
}

#[derive(Debug)]
struct State {
    input_path: Filter,
    output_path: Filter,
    kind: Kind,
}

enum Step {
    Goto(String, Value),
    End(Value),
}

/// Reads the fields of one JSON object of the definition; `at` prefixes field names
/// in errors (e.g. `Retry[0].`).
struct Fields<'a> {
    state: &'a str,
    at: String,
    obj: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    fn new(state: &'a str, at: String, value: &'a Value) -> Result<Self, AslError> {
        let what = format!("{} must be a JSON object", at.trim_end_matches('.'));
        let obj = value.as_object().ok_or_else(|| invalid(state, what.trim_start()))?;
        Ok(Fields { state, at, obj })
    }
    fn allow(&self, allowed: &[&str]) -> Result<(), AslError> {
        match self.obj.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(k) => Err(unsupported(self.state, format!("{}{k}", self.at))),
            None => Ok(()),
        }
    }
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.obj.get(key)
    }
    fn bad(&self, key: &str, what: &str) -> AslError {
        invalid(self.state, format!("{}{key} must be {what}", self.at))
    }
    fn str(&self, key: &str) -> Result<Option<&'a str>, AslError> {
        self.get(key).map(|v| v.as_str().ok_or_else(|| self.bad(key, "a string"))).transpose()
    }
    fn req_str(&self, key: &str) -> Result<&'a str, AslError> {
        self.str(key)?.ok_or_else(|| self.bad(key, "present"))
    }
    fn uint(&self, key: &str, min: u64) -> Result<Option<u64>, AslError> {
        let what = if min == 0 { "a non-negative integer" } else { "a positive integer" };
        self.get(key).map(|v| v.as_u64().filter(|n| *n >= min).ok_or_else(|| self.bad(key, what))).transpose()
    }
    fn filter(&self, key: &str) -> Result<Filter, AslError> {
        match self.get(key) {
            None => Ok(Some(Path::root())),
            Some(Value::Null) => Ok(None),
            Some(v) => Ok(Some(Path::parse(v.as_str().ok_or_else(|| self.bad(key, "a path"))?, self.state, &format!("{}{key}", self.at))?)),
        }
    }
    fn result_path(&self) -> Result<ResultPath, AslError> {
        Ok(self.filter("ResultPath")?.map_or(ResultPath::Discard, ResultPath::At))
    }
    fn template(&self, key: &str) -> Result<Option<Template>, AslError> {
        self.get(key).map(|v| Template::parse(v, self.state, &format!("{}{key}", self.at))).transpose()
    }
    fn list(&self, key: &str) -> Result<&'a [Value], AslError> {
        match self.get(key) {
            None => Ok(&[]),
            Some(v) => v.as_array().map(Vec::as_slice).ok_or_else(|| self.bad(key, "an array")),
        }
    }
    fn errors(&self) -> Result<Vec<String>, AslError> {
        let list = self.list("ErrorEquals")?;
        let errors = list.iter().filter_map(Value::as_str).map(String::from).collect::<Vec<_>>();
        if errors.is_empty() || errors.len() != list.len() {
            return Err(self.bad("ErrorEquals", "a non-empty array of strings"));
        }
        if errors.len() > 1 && errors.iter().any(|e| e == ALL) {
            return Err(self.bad("ErrorEquals", "States.ALL alone"));
        }
        Ok(errors)
    }
    fn next(&self) -> Result<Next, AslError> {
        match (self.str("Next")?, self.get("End")) {
            (Some(next), None) => Ok(Next::State(next.into())),
            (None, Some(Value::Bool(true))) => Ok(Next::End),
            (Some(_), Some(_)) => Err(invalid(self.state, "has both Next and End")),
            _ => Err(invalid(self.state, "needs Next or \"End\": true")),
        }
    }
}

/// `States.ALL` must come last, or the entries after it could never match.
fn check_all_last<T>(items: &[T], errors: impl Fn(&T) -> &[String], state: &str, field: &str) -> Result<(), AslError> {
    match items.iter().rev().skip(1).any(|item| errors(item).iter().any(|e| e == ALL)) {
        true => Err(invalid(state, format!("{field}: States.ALL must be in the last entry"))),
        false => Ok(()),
    }
}

impl State {
    fn parse(name: &str, value: &Value) -> Result<State, AslError> {
        let f = Fields::new(name, String::new(), value)?;
        let kind = f.req_str("Type")?;
        let allowed: &[&str] = match kind {
            "Task" => &["Resource", "Parameters", "ResultSelector", "ResultPath", "Retry", "Catch", "TimeoutSeconds", "Next", "End"],
            "Pass" => &["Result", "Parameters", "ResultPath", "Next", "End"],
            "Choice" => &["Choices", "Default"],
            "Wait" => &["Seconds", "Next", "End"],
            "Succeed" => &[],
            "Fail" => &["Error", "Cause"],
            other => return Err(unsupported(name, format!("Type {other}"))),
        };
        let io: &[&str] = if kind == "Fail" { &[] } else { &["InputPath", "OutputPath"] };
        f.allow(&[&["Type", "Comment"], io, allowed].concat())?;
        let kind = match kind {
            "Task" => Kind::Task(Box::new(Task::parse(&f)?)),
            "Pass" => Kind::Pass { parameters: f.template("Parameters")?, result: f.get("Result").cloned(), result_path: f.result_path()?, next: f.next()? },
            "Choice" => {
                let choices = f.list("Choices")?;
                if choices.is_empty() {
                    return Err(f.bad("Choices", "a non-empty array"));
                }
                let mut rules = Vec::with_capacity(choices.len());
                for (i, choice) in choices.iter().enumerate() {
                    let (rule, next) = Rule::parse(choice, name, &format!("Choices[{i}]"), true)?;
                    rules.push((rule, next.ok_or_else(|| invalid(name, format!("Choices[{i}] needs Next")))?));
                }
                Kind::Choice { rules, default: f.str("Default")?.map(String::from) }
            }
            "Wait" => Kind::Wait { seconds: f.uint("Seconds", 0)?.ok_or_else(|| f.bad("Seconds", "present"))?, next: f.next()? },
            "Succeed" => Kind::Succeed,
            _ => Kind::Fail { error: f.str("Error")?.unwrap_or_default().into(), cause: f.str("Cause")?.unwrap_or_default().into() },
        };
        Ok(State { input_path: f.filter("InputPath")?, output_path: f.filter("OutputPath")?, kind })
    }

    /// Every state name this state can move to, with the field that names it.
    fn targets(&self) -> Vec<(&'static str, &str)> {
        fn next(n: &Next) -> Vec<(&'static str, &str)> {
            match n {
                Next::State(s) => vec![("Next", s.as_str())],
                Next::End => vec![],
            }
        }
        match &self.kind {
            Kind::Task(task) => {
                let mut targets = next(&task.next);
                targets.extend(task.catch.iter().map(|c| ("Catch.Next", c.next.as_str())));
                targets
            }
            Kind::Choice { rules, default } => {
                let mut targets = rules.iter().map(|(_, n)| ("Choices.Next", n.as_str())).collect::<Vec<_>>();
                targets.extend(default.iter().map(|d| ("Default", d.as_str())));
                targets
            }
            Kind::Pass { next: n, .. } | Kind::Wait { next: n, .. } => next(n),
            Kind::Succeed | Kind::Fail { .. } => vec![],
        }
    }
}

impl Task {
    fn parse(f: &Fields) -> Result<Task, AslError> {
        let mut retry = Vec::new();
        for (i, value) in f.list("Retry")?.iter().enumerate() {
            let r = Fields::new(f.state, format!("Retry[{i}]."), value)?;
            r.allow(&["ErrorEquals", "IntervalSeconds", "MaxAttempts", "BackoffRate", "MaxDelaySeconds", "Comment"])?;
            let backoff = match r.get("BackoffRate") {
                None => 2.0,
                Some(v) => v.as_f64().filter(|b| *b >= 1.0).ok_or_else(|| r.bad("BackoffRate", "a number >= 1.0"))?,
            };
            retry.push(Retrier {
                errors: r.errors()?,
                interval: r.uint("IntervalSeconds", 1)?.unwrap_or(1) as f64,
                max_attempts: r.uint("MaxAttempts", 0)?.unwrap_or(3),
                backoff,
                max_delay: r.uint("MaxDelaySeconds", 1)?.map(|s| s as f64),
            });
        }
        let mut catch = Vec::new();
        for (i, value) in f.list("Catch")?.iter().enumerate() {
            let c = Fields::new(f.state, format!("Catch[{i}]."), value)?;
            c.allow(&["ErrorEquals", "ResultPath", "Next", "Comment"])?;
            catch.push(Catcher { errors: c.errors()?, result_path: c.result_path()?, next: c.req_str("Next")?.into() });
        }
        check_all_last(&retry, |r| &r.errors, f.state, "Retry")?;
        check_all_last(&catch, |c| &c.errors, f.state, "Catch")?;
        Ok(Task {
            resource: f.req_str("Resource")?.into(),
            parameters: f.template("Parameters")?,
            result_selector: f.template("ResultSelector")?,
            result_path: f.result_path()?,
            retry,
            catch,
            timeout: Duration::from_secs(f.uint("TimeoutSeconds", 1)?.unwrap_or(DEFAULT_TASK_TIMEOUT)),
            next: f.next()?,
        })
    }

    /// Runs the task with its retries; a caught error becomes a transition to the
    /// catcher's `Next`, anything else fails the execution.
    async fn run(&self, input: Value, effective: Value, output_path: &Filter, invoker: &dyn TaskInvoker) -> Result<Step, TaskFailure> {
        let args = match &self.parameters {
            Some(t) => t.render(&effective, "Parameters")?,
            None => effective,
        };
        let mut retries = vec![0u64; self.retry.len()];
        let failure = loop {
            let outcome = match tokio::time::timeout(self.timeout, invoker.invoke(&self.resource, args.clone())).await {
                Ok(outcome) => outcome,
                Err(_) => Err(TaskFailure::new(TIMEOUT, format!("Task did not finish within {} seconds", self.timeout.as_secs()))),
            };
            let failure = match outcome {
                Ok(result) => {
                    let result = match &self.result_selector {
                        Some(t) => t.render(&result, "ResultSelector")?,
                        None => result,
                    };
                    let output = apply_result(&self.result_path, input, result)?;
                    return Ok(self.next.step(filter(output_path, &output, "OutputPath")?));
                }
                Err(failure) => failure,
            };
            let Some(i) = self.retry.iter().position(|r| matches(&r.errors, &failure.error)) else { break failure };
            if retries[i] >= self.retry[i].max_attempts {
                break failure;
            }
            let delay = self.retry[i].delay(retries[i]);
            retries[i] += 1;
            tracing::debug!(resource = %self.resource, error = %failure.error, ?delay, "retrying task");
            tokio::time::sleep(delay).await;
        };
        match self.catch.iter().find(|c| matches(&c.errors, &failure.error)) {
            Some(c) => {
                let error_output = json!({ "Error": failure.error, "Cause": failure.cause });
                Ok(Step::Goto(c.next.clone(), apply_result(&c.result_path, input, error_output)?))
            }
            None => Err(failure),
        }
    }
}

#[derive(Debug)]
pub struct StateMachine {
    name: String,
    start_at: String,
    states: BTreeMap<String, State>,
}

impl StateMachine {
    pub fn parse(name: &str, asl_json: &str, substitutions: &HashMap<String, String>) -> Result<StateMachine, AslError> {
        let text = substitute(asl_json, substitutions)?;
        let root: Value = serde_json::from_str(&text).map_err(|e| AslError::Json(e.to_string()))?;
        let f = Fields::new(TOP, String::new(), &root)?;
        f.allow(&["Comment", "StartAt", "States", "Version", "QueryLanguage"])?;
        if let Some(language) = f.str("QueryLanguage")?.filter(|l| *l != "JSONPath") {
            return Err(unsupported(TOP, format!("QueryLanguage {language}")));
        }
        let start_at = f.req_str("StartAt")?.to_string();
        let definitions = f.get("States").and_then(Value::as_object).ok_or_else(|| f.bad("States", "an object"))?;
        let states = definitions.iter().map(|(n, v)| Ok((n.clone(), State::parse(n, v)?))).collect::<Result<BTreeMap<_, _>, AslError>>()?;
        if !states.contains_key(&start_at) {
            return Err(invalid(TOP, format!("StartAt names unknown state {start_at:?}")));
        }
        for (name, state) in &states {
            if let Some((field, target)) = state.targets().into_iter().find(|(_, t)| !states.contains_key(*t)) {
                return Err(invalid(name, format!("{field} names unknown state {target:?}")));
            }
        }
        // AWS rejects unreachable states; so must we, or a definition would pass here and fail to deploy.
        let mut reached = HashSet::from([start_at.as_str()]);
        let mut queue = vec![start_at.as_str()];
        while let Some(name) = queue.pop() {
            for (_, target) in states.get(name).map(State::targets).unwrap_or_default() {
                if reached.insert(target) {
                    queue.push(target);
                }
            }
        }
        if let Some(name) = states.keys().find(|n| !reached.contains(n.as_str())) {
            return Err(invalid(name, "is not reachable from StartAt"));
        }
        Ok(StateMachine { name: name.into(), start_at, states })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs one state; `Err` fails the execution.
    async fn step(&self, name: &str, input: Value, invoker: &dyn TaskInvoker) -> Result<Step, TaskFailure> {
        let state = self.states.get(name).ok_or_else(|| TaskFailure::new(RUNTIME, format!("no state named {name:?}")))?;
        let effective = filter(&state.input_path, &input, "InputPath")?;
        let output = |value: &Value| filter(&state.output_path, value, "OutputPath");
        match &state.kind {
            Kind::Task(task) => task.run(input, effective, &state.output_path, invoker).await,
            Kind::Pass { parameters, result, result_path, next } => {
                let effective = match parameters {
                    Some(t) => t.render(&effective, "Parameters")?,
                    None => effective,
                };
                let result = result.clone().unwrap_or(effective);
                Ok(next.step(output(&apply_result(result_path, input, result)?)?))
            }
            Kind::Choice { rules, default } => {
                for (rule, next) in rules {
                    if rule.eval(&effective)? {
                        return Ok(Step::Goto(next.clone(), output(&effective)?));
                    }
                }
                match default {
                    Some(next) => Ok(Step::Goto(next.clone(), output(&effective)?)),
                    None => Err(TaskFailure::new("States.NoChoiceMatched", format!("no choice rule of {name} matched"))),
                }
            }
            Kind::Wait { seconds, next } => {
                tokio::time::sleep(Duration::from_secs(*seconds)).await;
                Ok(next.step(output(&effective)?))
            }
            Kind::Succeed => Ok(Step::End(output(&effective)?)),
            Kind::Fail { error, cause } => Err(TaskFailure::new(error.clone(), cause.clone())),
        }
    }
}

/// Runs executions of one state machine, persisting each transition so that a
/// restarted server resumes where it stopped. Two concurrent `run`s of the same
/// execution are not guarded against: the caller runs each execution once.
pub struct Runner {
    machine: Arc<StateMachine>,
    invoker: Arc<dyn TaskInvoker>,
    store: Arc<dyn ExecutionStore>,
    clock: Arc<dyn Clock>,
}

impl Runner {
    pub fn new(machine: Arc<StateMachine>, invoker: Arc<dyn TaskInvoker>, store: Arc<dyn ExecutionStore>, clock: Arc<dyn Clock>) -> Self {
        Runner { machine, invoker, store, clock }
    }

    /// Idempotent start (Step Functions StartExecution with a name): creates the Running
    /// record at StartAt with `input` if the name is new; `Ok(false)` if an execution with
    /// that name already exists, whatever its status. Does not run it.
    pub async fn start(&self, name: &str, input: Value) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let record = ExecutionRecord {
            name: name.into(),
            state_machine: self.machine.name.clone(),
            status: ExecutionStatus::Running,
            current_state: self.machine.start_at.clone(),
            input,
            error: None,
            started_at: now,
            updated_at: now,
        };
        self.store.create(&record).await
    }

    /// Runs the execution from its persisted state to the end and returns the final
    /// record; one that is not Running is returned unchanged. The record is persisted
    /// before each state runs, so a crash re-runs at most the state in progress
    /// (at-least-once per state, as with Step Functions retries). A failed execution
    /// keeps `input: null` (it has no output) and `error` as "Error: Cause". An unknown
    /// execution name is reported as a `StoreError`, the only error this port has.
    pub async fn run(&self, name: &str) -> Result<ExecutionRecord, StoreError> {
        let machine = &self.machine.name;
        let mut record = self.store.get(machine, name).await?.ok_or_else(|| StoreError::new(format!("no execution {name:?} of state machine {machine:?}")))?;
        let mut transitions = 0;
        while record.status == ExecutionStatus::Running {
            tracing::debug!(execution = name, state = %record.current_state, "entering state");
            let input = std::mem::take(&mut record.input);
            let step = if transitions == MAX_TRANSITIONS {
                Err(TaskFailure::new(RUNTIME, format!("more than {MAX_TRANSITIONS} state transitions in one run")))
            } else {
                self.machine.step(&record.current_state, input, self.invoker.as_ref()).await
            };
            transitions += 1;
            match step {
                Ok(Step::Goto(next, output)) => {
                    record.current_state = next;
                    record.input = output;
                }
                Ok(Step::End(output)) => {
                    record.status = ExecutionStatus::Succeeded;
                    record.input = output;
                }
                Err(failure) => {
                    tracing::debug!(execution = name, state = %record.current_state, %failure, "execution failed");
                    record.status = ExecutionStatus::Failed;
                    record.error = Some(failure.to_string());
                }
            }
            record.updated_at = self.clock.now();
            self.store.update(&record).await?;
            if record.status != ExecutionStatus::Running {
                // Succeeded executions end in a state that names the outcome (TransferCompleted, ClaimRejected…).
                let outcome = if record.status == ExecutionStatus::Failed { "ExecutionFailed" } else { record.current_state.as_str() };
                let seconds = (record.updated_at - record.started_at).num_microseconds().unwrap_or(0) as f64 / 1e6;
                crate::metrics::record(crate::metrics::Observation::SagaFinished { saga: machine, outcome, seconds });
            }
        }
        Ok(record)
    }

    /// Names of the executions still Running (to resume after a restart).
    pub async fn running(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.store.running(&self.machine.name).await?.into_iter().map(|r| r.name).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use chrono::DateTime;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::Mutex;
    use tokio::time::Instant;

    #[derive(Default)]
    struct MemStore {
        records: Mutex<BTreeMap<(String, String), ExecutionRecord>>,
        updates: Mutex<Vec<ExecutionRecord>>,
    }

    #[async_trait]
    impl ExecutionStore for MemStore {
        async fn create(&self, record: &ExecutionRecord) -> Result<bool, StoreError> {
            let key = (record.state_machine.clone(), record.name.clone());
            let mut records = self.records.lock().unwrap();
            if records.contains_key(&key) {
                return Ok(false);
            }
            records.insert(key, record.clone());
            Ok(true)
        }
        async fn update(&self, record: &ExecutionRecord) -> Result<(), StoreError> {
            self.updates.lock().unwrap().push(record.clone());
            self.records.lock().unwrap().insert((record.state_machine.clone(), record.name.clone()), record.clone());
            Ok(())
        }
        async fn get(&self, machine: &str, name: &str) -> Result<Option<ExecutionRecord>, StoreError> {
            Ok(self.records.lock().unwrap().get(&(machine.into(), name.into())).cloned())
        }
        async fn running(&self, machine: &str) -> Result<Vec<ExecutionRecord>, StoreError> {
            let records = self.records.lock().unwrap();
            Ok(records.values().filter(|r| r.state_machine == machine && r.status == ExecutionStatus::Running).cloned().collect())
        }
    }

    type Handler = Box<dyn Fn(Value) -> Result<Value, TaskFailure> + Send + Sync>;

    /// Answers each resource with a closure, optionally after a delay, recording every call.
    #[derive(Default)]
    struct Script {
        handlers: HashMap<String, Handler>,
        delays: HashMap<String, Duration>,
        calls: Mutex<Vec<(String, Value, Instant)>>,
    }

    impl Script {
        fn on(mut self, resource: &str, handler: impl Fn(Value) -> Result<Value, TaskFailure> + Send + Sync + 'static) -> Self {
            self.handlers.insert(resource.into(), Box::new(handler));
            self
        }
        fn slow(mut self, resource: &str, delay: Duration) -> Self {
            self.delays.insert(resource.into(), delay);
            self
        }
        fn inputs(&self, resource: &str) -> Vec<Value> {
            self.calls.lock().unwrap().iter().filter(|c| c.0 == resource).map(|c| c.1.clone()).collect()
        }
        fn times(&self, resource: &str) -> Vec<Instant> {
            self.calls.lock().unwrap().iter().filter(|c| c.0 == resource).map(|c| c.2).collect()
        }
        fn resources(&self) -> Vec<String> {
            self.calls.lock().unwrap().iter().map(|c| c.0.clone()).collect()
        }
    }

    #[async_trait]
    impl TaskInvoker for Script {
        async fn invoke(&self, resource: &str, input: Value) -> Result<Value, TaskFailure> {
            self.calls.lock().unwrap().push((resource.into(), input.clone(), Instant::now()));
            if let Some(delay) = self.delays.get(resource) {
                tokio::time::sleep(*delay).await;
            }
            match self.handlers.get(resource) {
                Some(handler) => handler(input),
                None => Err(TaskFailure::new("Unscripted", resource)),
            }
        }
    }

    /// Fails `n` times with `error`, then answers `ok`.
    fn fails_then(n: usize, error: &str, ok: Value) -> impl Fn(Value) -> Result<Value, TaskFailure> + Send + Sync {
        let (count, error) = (AtomicUsize::new(0), error.to_string());
        move |_| if count.fetch_add(1, SeqCst) < n { Err(TaskFailure::new(error.clone(), "boom")) } else { Ok(ok.clone()) }
    }

    fn parse(definition: Value) -> Result<StateMachine, AslError> {
        StateMachine::parse("test", &definition.to_string(), &HashMap::new())
    }

    struct Harness {
        runner: Runner,
        store: Arc<MemStore>,
        script: Arc<Script>,
    }

    fn harness(machine: StateMachine, script: Script) -> Harness {
        let (store, script) = (Arc::new(MemStore::default()), Arc::new(script));
        let clock = Arc::new(ManualClock::at(DateTime::from_timestamp(1_700_000_000, 0).unwrap()));
        let runner = Runner::new(Arc::new(machine), script.clone(), store.clone(), clock);
        Harness { runner, store, script }
    }

    async fn run(definition: Value, script: Script, input: Value) -> (ExecutionRecord, Harness) {
        let h = harness(parse(definition).unwrap(), script);
        assert!(h.runner.start("e1", input).await.unwrap());
        (h.runner.run("e1").await.unwrap(), h)
    }

    fn task(resource: &str, extra: Value) -> Value {
        let mut state = json!({"Type": "Task", "Resource": resource, "End": true});
        state.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        state
    }

    /// One task `T` on resource `r`, plus a `Caught` state when it has a Catch.
    fn one_task(extra: Value) -> Value {
        let mut definition = json!({"StartAt": "T", "States": {"T": task("r", extra.clone())}});
        if extra.get("Catch").is_some() {
            definition["States"]["Caught"] = json!({"Type": "Succeed"});
        }
        definition
    }

    fn succeeded(record: &ExecutionRecord, state: &str, output: Value) {
        assert_eq!((record.status, record.current_state.as_str(), &record.input), (ExecutionStatus::Succeeded, state, &output));
    }

    fn failed(record: &ExecutionRecord, error: &str) {
        assert_eq!(record.status, ExecutionStatus::Failed, "{record:?}");
        assert!(record.error.as_deref().unwrap_or_default().starts_with(error), "{:?}", record.error);
    }

    #[test]
    fn substitutions_are_replaced_and_unknown_keys_rejected() {
        let subs = HashMap::from([("Arn".to_string(), "arn:aws:lambda:x".to_string())]);
        let text = r#"{"StartAt":"T","States":{"T":{"Type":"Task","Resource":"${Arn}","End":true}}}"#;
        let machine = StateMachine::parse("m", text, &subs).unwrap();
        assert_eq!(machine.name(), "m");
        assert!(matches!(&machine.states["T"].kind, Kind::Task(t) if t.resource == "arn:aws:lambda:x"));
        let err = StateMachine::parse("m", &text.replace("${Arn}", "${Other}"), &subs).unwrap_err();
        assert_eq!(err, AslError::UnknownSubstitution("Other".into()));
        assert_eq!(substitute("a${A}b${A}", &HashMap::from([("A".into(), "${A}".into())])).unwrap(), "a${A}b${A}");
    }

    #[test]
    fn invalid_definitions_are_rejected() {
        let pass_to = |next: &str| json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": next}, "B": {"Type": "Succeed"}}});
        assert!(parse(pass_to("B")).is_ok());
        let cases = [
            (pass_to("Nope"), "A"),
            (json!({"States": {"A": {"Type": "Succeed"}}}), TOP),
            (json!({"StartAt": "X", "States": {"A": {"Type": "Succeed"}}}), TOP),
            (json!({"StartAt": "A", "States": {"A": {"Type": "Pass"}}}), "A"),
            (json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "B", "End": true}, "B": {"Type": "Succeed"}}}), "A"),
            (json!({"StartAt": "A", "States": {"A": {"Type": "Succeed"}, "B": {"Type": "Succeed"}}}), "B"),
            (json!({"StartAt": "A", "States": {"A": {"Type": "Choice", "Choices": [{"Variable": "$.x", "IsNull": true, "Next": "Z"}]}}}), "A"),
            (json!({"StartAt": "A", "States": {"A": {"Type": "Choice", "Choices": [{"Variable": "$.x", "IsNull": true}], "Default": "A"}}}), "A"),
            (one_task(json!({"Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Nope"}]})), "T"),
            (one_task(json!({"Retry": [{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["X"]}]})), "T"),
            (one_task(json!({"Retry": [{"ErrorEquals": ["States.ALL", "X"]}]})), "T"),
            (one_task(json!({"Retry": [{"ErrorEquals": ["X"], "BackoffRate": 0.5}]})), "T"),
            (one_task(json!({"Parameters": {"a.$": "no-dollar"}})), "T"),
            (
                json!({"StartAt": "C", "States": {"C": {"Type": "Choice", "Choices": [{"Not": {"Variable": "$.x", "IsNull": true, "Next": "D"},
                "Next": "D"}]}, "D": {"Type": "Succeed"}}}),
                "C",
            ),
        ];
        for (definition, at) in cases {
            match parse(definition.clone()) {
                Err(AslError::Invalid { state, .. }) => assert_eq!(state, at, "{definition}"),
                other => panic!("{definition} gave {other:?}"),
            }
        }
        assert!(matches!(StateMachine::parse("m", "{", &HashMap::new()), Err(AslError::Json(_))));
    }

    #[test]
    fn unsupported_features_are_named() {
        let unsupported = |definition: Value| match parse(definition) {
            Err(AslError::Unsupported { state, field }) => format!("{state} {field}"),
            other => panic!("{other:?}"),
        };
        assert_eq!(unsupported(one_task(json!({"HeartbeatSeconds": 5}))), "T HeartbeatSeconds");
        assert_eq!(unsupported(one_task(json!({"Retry": [{"ErrorEquals": ["X"], "JitterStrategy": "FULL"}]}))), "T Retry[0].JitterStrategy");
        assert_eq!(unsupported(json!({"StartAt": "M", "States": {"M": {"Type": "Map", "End": true}}})), "M Type Map");
        assert_eq!(unsupported(json!({"StartAt": "A", "TimeoutSeconds": 5, "States": {"A": {"Type": "Succeed"}}})), format!("{TOP} TimeoutSeconds"));
        assert!(unsupported(one_task(json!({"Parameters": {"x": {"id.$": "States.UUID()"}}}))).contains("intrinsic"));
        assert!(unsupported(one_task(json!({"InputPath": "$.items[*]"}))).contains("JSONPath"));
        assert!(unsupported(one_task(json!({"Parameters": {"id.$": "$$.Execution.Id"}}))).contains("JSONPath"));
        let choice = json!({"StartAt": "C", "States": {"C": {"Type": "Choice", "Default": "D",
            "Choices": [{"Variable": "$.x", "StringMatches": "a*", "Next": "D"}]}, "D": {"Type": "Succeed"}}});
        assert_eq!(unsupported(choice), "C Choices[0].StringMatches");
    }

    #[tokio::test]
    async fn pass_choice_and_succeed_flow() {
        let definition = json!({"StartAt": "Init", "States": {
            "Init": {"Type": "Pass", "Result": {"n": 5}, "ResultPath": "$.counter", "Next": "Big?"},
            "Big?": {"Type": "Choice", "Choices": [{"Variable": "$.counter.n", "NumericGreaterThan": 3, "Next": "Big"}], "Default": "Small"},
            "Big": {"Type": "Pass", "Parameters": {"size": "big", "n.$": "$.counter.n"}, "Next": "Done"},
            "Small": {"Type": "Fail", "Error": "TooSmall", "Cause": "n <= 3"},
            "Done": {"Type": "Succeed"}}});
        let (record, h) = run(definition, Script::default(), json!({"id": 1})).await;
        succeeded(&record, "Done", json!({"size": "big", "n": 5}));
        let states: Vec<_> = h.store.updates.lock().unwrap().iter().map(|r| r.current_state.clone()).collect();
        assert_eq!(states, ["Big?", "Big", "Done", "Done"]);
        assert_eq!(h.store.updates.lock().unwrap()[0].input, json!({"id": 1, "counter": {"n": 5}}));
    }

    #[tokio::test]
    async fn fail_state_fails_the_execution() {
        let definition = json!({"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "Rejected", "Cause": "no funds"}}});
        let (record, _) = run(definition, Script::default(), json!({})).await;
        assert_eq!((record.status, record.error.as_deref(), record.current_state.as_str()), (ExecutionStatus::Failed, Some("Rejected: no funds"), "F"));
    }

    #[tokio::test]
    async fn choice_operators() {
        let input = json!({"s": "a", "t": "a", "n": 2, "b": true, "z": null, "list": [{"v": 7}]});
        let cases = [
            (json!({"Variable": "$.s", "StringEquals": "a"}), true),
            (json!({"Variable": "$.n", "StringEquals": "2"}), false),
            (json!({"Variable": "$.s", "StringEqualsPath": "$.t"}), true),
            (json!({"Variable": "$.n", "NumericEquals": 2}), true),
            (json!({"Variable": "$.n", "NumericLessThan": 2}), false),
            (json!({"Variable": "$.n", "NumericLessThanEquals": 2}), true),
            (json!({"Variable": "$.n", "NumericGreaterThanEquals": 2.5}), false),
            (json!({"Variable": "$.list[0].v", "NumericGreaterThan": 6}), true),
            (json!({"Variable": "$.s", "NumericGreaterThan": 0}), false),
            (json!({"Variable": "$.b", "BooleanEquals": true}), true),
            (json!({"Variable": "$.missing", "IsPresent": false}), true),
            (json!({"Variable": "$.z", "IsPresent": true}), true),
            (json!({"Variable": "$.z", "IsNull": true}), true),
            (json!({"Variable": "$.s", "IsNull": true}), false),
            (json!({"And": [{"Variable": "$.b", "BooleanEquals": true}, {"Variable": "$.n", "NumericEquals": 3}]}), false),
            (json!({"Or": [{"Variable": "$.b", "BooleanEquals": false}, {"Variable": "$.n", "NumericEquals": 2}]}), true),
            (json!({"Not": {"Variable": "$.s", "StringEquals": "b"}}), true),
        ];
        for (rule, expected) in cases {
            let mut choice = rule.clone();
            choice["Next"] = json!("Yes");
            let definition = json!({"StartAt": "C", "States": {"C": {"Type": "Choice", "Choices": [choice], "Default": "No"},
                "Yes": {"Type": "Succeed"}, "No": {"Type": "Succeed"}}});
            let (record, _) = run(definition, Script::default(), input.clone()).await;
            assert_eq!(record.current_state, if expected { "Yes" } else { "No" }, "{rule}");
        }
        let no_default = json!({"StartAt": "C", "States": {"C": {"Type": "Choice",
            "Choices": [{"Variable": "$.n", "NumericEquals": 9, "Next": "Yes"}]}, "Yes": {"Type": "Succeed"}}});
        failed(&run(no_default, Script::default(), input.clone()).await.0, "States.NoChoiceMatched");
    }

    #[tokio::test]
    async fn task_data_flow() {
        let definition = one_task(json!({"InputPath": "$.order", "Parameters": {"fixed": 1, "nested": {"id.$": "$.id"}, "all.$": "$"},
            "ResultSelector": {"ok.$": "$.body.ok"}, "ResultPath": "$.order.result", "OutputPath": "$.order"}));
        let script = Script::default().on("r", |_| Ok(json!({"body": {"ok": true, "noise": 1}})));
        let (record, h) = run(definition, script, json!({"order": {"id": "o1"}, "other": 2})).await;
        assert_eq!(h.script.inputs("r"), [json!({"fixed": 1, "nested": {"id": "o1"}, "all": {"id": "o1"}})]);
        succeeded(&record, "T", json!({"id": "o1", "result": {"ok": true}}));

        let discard = one_task(json!({"ResultPath": null, "InputPath": null}));
        let (record, h) = run(discard, Script::default().on("r", |_| Ok(json!("ignored"))), json!({"keep": 1})).await;
        assert_eq!(h.script.inputs("r"), [json!({})]);
        succeeded(&record, "T", json!({"keep": 1}));

        let replace = one_task(json!({}));
        succeeded(&run(replace, Script::default().on("r", |_| Ok(json!([1]))), json!({"x": 1})).await.0, "T", json!([1]));
    }

    #[tokio::test]
    async fn missing_path_fails_with_states_runtime_even_when_catching_all() {
        let definition = one_task(json!({"Parameters": {"id.$": "$.nope"}, "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}]}));
        let (record, h) = run(definition, Script::default().on("r", |_| Ok(json!({}))), json!({})).await;
        failed(&record, "States.Runtime: Invalid path '$.nope'");
        assert!(h.script.resources().is_empty());
        let choice = json!({"StartAt": "C", "States": {"C": {"Type": "Choice", "Choices": [{"Variable": "$.x", "IsNull": true, "Next": "D"}],
            "Default": "D"}, "D": {"Type": "Succeed"}}});
        failed(&run(choice, Script::default(), json!({})).await.0, "States.Runtime");
        let result_path = one_task(json!({"ResultPath": "$.a.b"}));
        failed(&run(result_path, Script::default().on("r", |_| Ok(json!(1))), json!({"a": 5})).await.0, "States.ResultPathMatchFailure");
    }

    #[tokio::test(start_paused = true)]
    async fn retry_backs_off_then_succeeds() {
        let definition = one_task(json!({"Retry": [{"ErrorEquals": ["Busy"], "IntervalSeconds": 1, "MaxAttempts": 3, "BackoffRate": 2}]}));
        let start = Instant::now();
        let (record, h) = run(definition, Script::default().on("r", fails_then(3, "Busy", json!("ok"))), json!({})).await;
        succeeded(&record, "T", json!("ok"));
        let offsets: Vec<_> = h.script.times("r").iter().map(|t| (*t - start).as_secs()).collect();
        assert_eq!(offsets, [0, 1, 3, 7]);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_delay_is_capped_and_exhaustion_fails() {
        let definition =
            one_task(json!({"Retry": [{"ErrorEquals": ["Busy"], "IntervalSeconds": 2, "MaxAttempts": 3, "BackoffRate": 10, "MaxDelaySeconds": 5}]}));
        let start = Instant::now();
        let (record, h) = run(definition, Script::default().on("r", fails_then(9, "Busy", json!("ok"))), json!({})).await;
        failed(&record, "Busy: boom");
        let offsets: Vec<_> = h.script.times("r").iter().map(|t| (*t - start).as_secs()).collect();
        assert_eq!(offsets, [0, 2, 7, 12]);
        let never = one_task(json!({"Retry": [{"ErrorEquals": ["Busy"], "MaxAttempts": 0}]}));
        let (record, h) = run(never, Script::default().on("r", fails_then(9, "Busy", json!("ok"))), json!({})).await;
        failed(&record, "Busy");
        assert_eq!(h.script.times("r").len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn catch_routes_with_error_output_at_result_path() {
        let definition = one_task(json!({"Retry": [{"ErrorEquals": ["States.TaskFailed"], "MaxAttempts": 1}],
            "Catch": [{"ErrorEquals": ["Other"], "Next": "T"}, {"ErrorEquals": ["Busy"], "ResultPath": "$.error", "Next": "Caught"}]}));
        let (record, h) = run(definition, Script::default().on("r", fails_then(9, "Busy", json!("ok"))), json!({"id": 1})).await;
        succeeded(&record, "Caught", json!({"id": 1, "error": {"Error": "Busy", "Cause": "boom"}}));
        assert_eq!(h.script.times("r").len(), 2);

        let replace = one_task(json!({"Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}]}));
        let (record, _) = run(replace, Script::default().on("r", fails_then(9, "Busy", json!("ok"))), json!({"id": 1})).await;
        succeeded(&record, "Caught", json!({"Error": "Busy", "Cause": "boom"}));
    }

    #[tokio::test(start_paused = true)]
    async fn timeout_is_caught_by_states_all_but_not_by_task_failed() {
        let start = Instant::now();
        let slow = || Script::default().on("r", |_| Ok(json!("late"))).slow("r", Duration::from_secs(100));
        let task_failed = one_task(json!({"TimeoutSeconds": 5, "Catch": [{"ErrorEquals": ["States.TaskFailed"], "Next": "Caught"}]}));
        let (record, _) = run(task_failed, slow(), json!({})).await;
        failed(&record, "States.Timeout");
        assert_eq!((Instant::now() - start).as_secs(), 5);
        let all = one_task(json!({"Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.e", "Next": "Caught"}]}));
        let (record, _) = run(all, slow(), json!({})).await;
        assert_eq!((record.current_state.as_str(), &record.input["e"]["Error"]), ("Caught", &json!("States.Timeout")));
        assert_eq!((Instant::now() - start).as_secs(), 65, "default TimeoutSeconds is 60");
    }

    #[tokio::test(start_paused = true)]
    async fn wait_sleeps_for_its_seconds() {
        let definition = json!({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 30, "End": true}}});
        let start = Instant::now();
        succeeded(&run(definition, Script::default(), json!({"a": 1})).await.0, "W", json!({"a": 1}));
        assert_eq!((Instant::now() - start).as_secs(), 30);
    }

    #[tokio::test]
    async fn endless_loops_are_stopped() {
        let definition = json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "B"}, "B": {"Type": "Pass", "Next": "A"}}});
        let (record, h) = run(definition, Script::default(), json!({})).await;
        failed(&record, "States.Runtime: more than 10000");
        assert_eq!(h.store.updates.lock().unwrap().len(), MAX_TRANSITIONS + 1);
    }

    #[tokio::test]
    async fn start_is_idempotent_and_finished_runs_are_left_alone() {
        let definition = one_task(json!({}));
        let h = harness(parse(definition).unwrap(), Script::default().on("r", Ok));
        assert!(h.runner.start("e1", json!({"first": true})).await.unwrap());
        assert!(!h.runner.start("e1", json!({"second": true})).await.unwrap());
        assert_eq!(h.runner.running().await.unwrap(), ["e1"]);
        let done = h.runner.run("e1").await.unwrap();
        succeeded(&done, "T", json!({"first": true}));
        assert!(!h.runner.start("e1", json!({})).await.unwrap());
        assert_eq!(h.runner.run("e1").await.unwrap(), done);
        assert_eq!(h.script.resources().len(), 1);
        assert!(h.runner.running().await.unwrap().is_empty());
        assert!(h.runner.run("unknown").await.is_err());
    }

    const TRANSFER_SAGA: &str = r#"{"Comment":"Transfer saga","StartAt":"DebitSource","States":{
 "DebitSource":{"Type":"Task","Resource":"${DebitSourceFunctionArn}","ResultPath":"$.debit","Retry":[{"ErrorEquals":["States.TaskFailed","States.Timeout"],"IntervalSeconds":1,"MaxAttempts":3,"BackoffRate":2}],"Catch":[{"ErrorEquals":["States.ALL"],"ResultPath":"$.error","Next":"FailTransfer"}],"Next":"WasDebited"},
 "WasDebited":{"Type":"Choice","Choices":[{"Variable":"$.debit.accepted","BooleanEquals":true,"Next":"CreditDestination"}],"Default":"TransferFailed"},
 "CreditDestination":{"Type":"Task","Resource":"${CreditDestinationFunctionArn}","ResultPath":"$.credit","Next":"WasCredited"},
 "WasCredited":{"Type":"Choice","Choices":[{"Variable":"$.credit.accepted","BooleanEquals":true,"Next":"TransferCompleted"}],"Default":"RefundSource"},
 "RefundSource":{"Type":"Task","Resource":"${RefundSourceFunctionArn}","ResultPath":"$.refund","Next":"TransferFailed"},
 "FailTransfer":{"Type":"Task","Resource":"${FailTransferFunctionArn}","ResultPath":"$.fail","Next":"TransferFailed"},
 "TransferCompleted":{"Type":"Succeed"},"TransferFailed":{"Type":"Succeed"}}}"#;

    fn saga(script: Script) -> Harness {
        let subs = ["DebitSource", "CreditDestination", "RefundSource", "FailTransfer"]
            .map(|f| (format!("{f}FunctionArn"), format!("arn:aws:lambda:eu-west-1:000000000000:function:{f}")));
        harness(StateMachine::parse("transfer", TRANSFER_SAGA, &HashMap::from(subs)).unwrap(), script)
    }

    fn arn(function: &str) -> String {
        format!("arn:aws:lambda:eu-west-1:000000000000:function:{function}")
    }

    fn accepted(ok: bool) -> impl Fn(Value) -> Result<Value, TaskFailure> + Send + Sync {
        move |_| Ok(json!({"accepted": ok}))
    }

    #[tokio::test(start_paused = true)]
    async fn transfer_saga_paths() {
        let input = json!({"transferId": "t1", "amount": 100});
        let happy = saga(Script::default().on(&arn("DebitSource"), accepted(true)).on(&arn("CreditDestination"), accepted(true)));
        happy.runner.start("t1", input.clone()).await.unwrap();
        let record = happy.runner.run("t1").await.unwrap();
        let output = json!({"transferId": "t1", "amount": 100, "debit": {"accepted": true}, "credit": {"accepted": true}});
        succeeded(&record, "TransferCompleted", output);
        assert_eq!(happy.script.inputs(&arn("CreditDestination")), [json!({"transferId": "t1", "amount": 100, "debit": {"accepted": true}})]);

        let refund = saga(
            Script::default().on(&arn("DebitSource"), accepted(true)).on(&arn("CreditDestination"), accepted(false)).on(&arn("RefundSource"), accepted(true)),
        );
        refund.runner.start("t1", input.clone()).await.unwrap();
        assert_eq!(refund.runner.run("t1").await.unwrap().current_state, "TransferFailed");
        assert_eq!(refund.script.resources(), [arn("DebitSource"), arn("CreditDestination"), arn("RefundSource")]);

        let broken =
            saga(Script::default().on(&arn("DebitSource"), fails_then(9, "Lambda.ServiceException", json!({}))).on(&arn("FailTransfer"), accepted(true)));
        broken.runner.start("t1", input.clone()).await.unwrap();
        let record = broken.runner.run("t1").await.unwrap();
        assert_eq!((record.current_state.as_str(), &record.input["error"]["Error"]), ("TransferFailed", &json!("Lambda.ServiceException")));
        assert_eq!(broken.script.inputs(&arn("DebitSource")).len(), 4);
        assert_eq!(broken.script.inputs(&arn("FailTransfer"))[0]["error"]["Cause"], "boom");
    }

    #[tokio::test]
    async fn resume_runs_only_the_remaining_states() {
        let h = saga(Script::default().on(&arn("CreditDestination"), accepted(true)));
        h.runner.start("t1", json!({"transferId": "t1"})).await.unwrap();
        let mut record = h.store.get("transfer", "t1").await.unwrap().unwrap();
        record.current_state = "CreditDestination".into();
        record.input = json!({"transferId": "t1", "debit": {"accepted": true}});
        h.store.update(&record).await.unwrap();
        assert_eq!(h.runner.running().await.unwrap(), ["t1"]);
        let done = h.runner.run("t1").await.unwrap();
        assert_eq!(done.current_state, "TransferCompleted");
        assert_eq!(h.script.resources(), [arn("CreditDestination")]);
    }
}
