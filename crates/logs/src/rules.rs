//! Rules for logs, in a file Falco users recognise: a YAML list of `rule`
//! and `list` entries with `id`, `desc`, `priority`, `output` (fields
//! interpolated as `{path}`), `tags`, `exceptions` and `enabled`. Instead
//! of Falco's expression grammar a rule `match`es fields by dotted path,
//! Sigma-style:
//!
//! ```yaml
//! - list: trusted_admins
//!   items: [system:serviceaccount:argocd:argocd-application-controller]
//! - rule: NetworkPolicy deleted
//!   id: AUDIT-001
//!   source: k8s_audit
//!   match:
//!     verb: delete
//!     objectRef.resource: networkpolicies
//!   priority: high
//!   output: "{user.username} deleted {objectRef.namespace}/{objectRef.name}"
//!   exceptions:
//!   - {name: admins, fields: [user.username], values: trusted_admins}
//! - rule: Forbidden burst
//!   id: AUDIT-020
//!   source: k8s_audit
//!   match: {responseStatus.code: [401, 403]}
//!   rate: {count: 20, within: 60, by: [user.username]}
//!   priority: medium
//!   output: "{user.username} was refused {count} times in {within} s"
//! ```
//!
//! A field key may carry a modifier: `path|contains` (`|icontains`
//! ignoring case), `|startswith`, `|endswith`, `|re` (a regular
//! expression), `|cidr` (an address inside a CIDR), `|exists` (`true` or
//! `false`), `|gt`, `|gte`, `|lt`, `|lte` (numbers); without one the value must equal
//! (one of) the listed values. A list value matches if any item does; an
//! array field matches if any element does; a `$name` value stands for the
//! items of list `name`. All keys of a `match` must hold. `rate` makes a
//! rule fire when `count` matching records arrive within `within` seconds,
//! counted per the `by` fields. A later rule with the same `id` replaces
//! an earlier one (users override built-ins by id), and `enabled: false`
//! turns one off. Lists are shared across files: a later one replaces (or,
//! with `append: true`, extends) a list of its name before rules compile.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;

use palisade_inventory::Cidr;
use regex::{Regex, RegexSet};
use serde::Deserialize;
use serde_json::Value;

use crate::sigma::{self, Detection};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListFile {
    list: String,
    items: Vec<Value>,
    /// Falco's: add the items to the list of that name loaded before,
    /// instead of replacing it.
    #[serde(default)]
    append: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    rule: String,
    id: String,
    #[serde(default)]
    desc: String,
    #[serde(default)]
    source: Option<String>,
    #[serde(rename = "match")]
    matches: BTreeMap<String, Value>,
    #[serde(default)]
    priority: Option<String>,
    #[serde(default)]
    output: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    exceptions: Vec<ExceptionFile>,
    #[serde(default)]
    rate: Option<Rate>,
    #[serde(default = "yes")]
    enabled: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExceptionFile {
    name: String,
    fields: Vec<String>,
    /// One value (or `$list`) per field, or a list of such rows.
    values: Value,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    pub count: u32,
    /// Seconds.
    pub within: u64,
    #[serde(default)]
    pub by: Vec<String>,
}

/// A dotted path, split once when the rule is loaded.
pub(crate) type Path = Vec<String>;

pub(crate) fn path_of(text: &str) -> Path {
    text.split('.').map(str::to_string).collect()
}

/// One field test.
#[derive(Debug)]
pub(crate) enum Test {
    Equals(Vec<Value>),
    /// The literals as one alternation: the regex engine searches for all
    /// of them at once (Teddy, memchr).
    Contains(Regex),
    StartsWith(Vec<String>),
    EndsWith(Vec<String>),
    Regex(Vec<Regex>),
    Cidr(Vec<Cidr>),
    Exists(bool),
    /// A number (or a string that reads as one) compared with a bound:
    /// `|gt`, `|gte`, `|lt`, `|lte`.
    Compare(Bound, f64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Bound {
    Above,
    AtLeast,
    Below,
    AtMost,
}

impl Bound {
    fn holds(self, value: f64, bound: f64) -> bool {
        match self {
            Bound::Above => value > bound,
            Bound::AtLeast => value >= bound,
            Bound::Below => value < bound,
            Bound::AtMost => value <= bound,
        }
    }
}

impl Test {
    /// Whether the test can hold only when its field is there.
    fn needs_field(&self) -> bool {
        match self {
            Test::Equals(values) => !values.iter().any(Value::is_null),
            Test::Exists(wanted) => *wanted,
            _ => true,
        }
    }
}

#[derive(Debug)]
pub struct Rule {
    pub id: String,
    pub name: String,
    pub desc: String,
    pub source: Option<String>,
    pub priority: String,
    pub output: String,
    pub tags: Vec<String>,
    pub rate: Option<Rate>,
    tests: Vec<(Path, Test)>,
    /// Rows of (field, test) that, all holding, exempt a record.
    exceptions: Vec<Vec<(Path, Test)>>,
    /// A Sigma rule's detection, in place of `tests`.
    sigma: Option<Detection>,
}

/// A rule that fired on a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Firing {
    pub rule_id: String,
    pub name: String,
    pub priority: String,
    /// The output with the record's fields put in.
    pub output: String,
}

/// One pass over a field for many rules: the first text test of every
/// rule on `path`, as one regex set, so a line that matches none of them
/// costs one search instead of one per rule.
#[derive(Debug)]
struct Prefilter {
    path: Path,
    set: RegexSet,
    /// The rule of each pattern of the set.
    rules: Vec<usize>,
}

#[derive(Debug, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
    prefilters: Vec<Prefilter>,
    /// Per rule, during `evaluate`: whether its prefilter let it through.
    through: Vec<bool>,
    /// Per rate rule and `by` key: the times of recent matches.
    windows: HashMap<(usize, String), VecDeque<i64>>,
}

impl RuleSet {
    /// Rules from one or more files, in order: later ids replace earlier.
    /// Lists are shared by all files, as Falco's are: a later `list` of a
    /// name replaces the earlier one (or, with `append: true`, adds to it),
    /// and every rule sees the lists as they stand after the last file, so
    /// a user's file can change a built-in list without copying its rules.
    pub fn load(files: &[(&str, &str)]) -> Result<RuleSet, String> {
        let mut loading = Loading::default();
        for (name, text) in files {
            loading.add(name, text)?;
        }
        let mut set = RuleSet::default();
        for (name, pending) in loading.rules {
            set.rules.push(match pending {
                Pending::Ready(rule) => *rule,
                Pending::File(file) => {
                    let id = file.id.clone();
                    compile(*file, &loading.lists).map_err(|e| format!("{name}: rule {id}: {e}"))?
                }
            });
        }
        set.prefilters = prefilters(&set.rules)?;
        Ok(set)
    }

    /// Per rule of `source`, one test the text its record was read from
    /// must pass for it to fire: the field the test is on, and a pattern
    /// the text then matches. A rule's tests must all hold, so any one of
    /// them will do. `text_of_field` says how a field stands in the text:
    /// as all of it (`Whole`), as a verbatim piece of it (`Piece`: a value
    /// equal to `v` means the text contains `v`), or not at all (`None`).
    /// `None` when some rule has no such test: then every record must be
    /// looked at.
    pub fn text_conditions(
        &self,
        source: &str,
        text_of_field: &dyn Fn(&[String]) -> Option<InText>,
    ) -> Option<Vec<(String, String)>> {
        self.per_rule(source, |tests| {
            tests.iter().find_map(|(path, test)| {
                let pattern = text_condition(text_of_field(path)?, test)?;
                Some((path[0].clone(), pattern))
            })
        })
    }

    /// `condition` of each rule of `source` (from its tests), or `None` when
    /// one rule has none or is a Sigma rule (whose detection no text test
    /// summarises).
    fn per_rule<T>(
        &self,
        source: &str,
        condition: impl Fn(&[(Path, Test)]) -> Option<T>,
    ) -> Option<Vec<T>> {
        self.rules
            .iter()
            .filter(|rule| rule.source.as_deref().is_none_or(|s| s == source))
            .map(|rule| match rule.sigma {
                Some(_) => None,
                None => condition(&rule.tests),
            })
            .collect()
    }

    /// For records read from JSON text, per rule of `source`, patterns
    /// the text matches, all of them, whenever the rule fires: for each
    /// test, the key it looks at (a field that must exist stands in the
    /// text as its key, [`key_pattern`]) and what its value makes the text
    /// contain. `None`
    /// when some rule yields none (a Sigma rule, or only tests on absence).
    /// Each pattern comes with whether it is a key's (the quotes around it
    /// are JSON's, not the value's).
    pub fn json_conditions(&self, source: &str) -> Option<Vec<Vec<(String, bool)>>> {
        self.per_rule(source, |tests| {
            let mut all = Vec::new();
            for (path, test) in tests {
                if test.needs_field() {
                    let key = path.last()?;
                    all.push((key_pattern(key), true));
                }
                all.extend(text_condition(InText::Piece, test).map(|p| (p, false)));
            }
            (!all.is_empty()).then_some(all)
        })
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The rules of `source` that fire on `record` (a JSON value; time in
    /// microseconds, for rate rules).
    pub fn evaluate(&mut self, source: &str, record: &Value, micros: i64) -> Vec<Firing> {
        let mut firings = Vec::new();
        self.through.clear();
        self.through.resize(self.rules.len(), true);
        for prefilter in &self.prefilters {
            let mut matched = vec![false; prefilter.rules.len()];
            visit(record, &prefilter.path, &mut |value| {
                for i in prefilter.set.matches(&text_of(value)).iter() {
                    matched[i] = true;
                }
                false
            });
            for (i, &rule) in prefilter.rules.iter().enumerate() {
                self.through[rule] = matched[i];
            }
        }
        for (index, rule) in self.rules.iter().enumerate() {
            if !self.through[index] || rule.source.as_deref().is_some_and(|s| s != source) {
                continue;
            }
            let matched = match &rule.sigma {
                Some(detection) => detection.matches(record),
                None => rule
                    .tests
                    .iter()
                    .all(|(path, test)| holds(record, path, test)),
            };
            if !matched {
                continue;
            }
            let exempt = rule
                .exceptions
                .iter()
                .any(|row| row.iter().all(|(path, test)| holds(record, path, test)));
            if exempt {
                continue;
            }
            let mut extra = BTreeMap::new();
            if let Some(rate) = &rule.rate {
                let key: Vec<String> = rate.by.iter().map(|p| text_at(record, p)).collect();
                let window = self.windows.entry((index, key.join("\u{1f}"))).or_default();
                window.push_back(micros);
                let within = i64::try_from(rate.within).unwrap_or(i64::MAX / 2_000_000) * 1_000_000;
                while window.front().is_some_and(|t| micros - t > within) {
                    window.pop_front();
                }
                if window.len() < rate.count as usize {
                    continue;
                }
                // Fires once per burst: the window starts again.
                window.clear();
                extra.insert("count", rate.count.to_string());
                extra.insert("within", rate.within.to_string());
            }
            firings.push(Firing {
                rule_id: rule.id.clone(),
                name: rule.name.clone(),
                priority: rule.priority.clone(),
                output: interpolate(&rule.output, record, &extra),
            });
        }
        firings
    }
}

/// Rule files being read: their rules (compiled once every list is known)
/// and their lists.
#[derive(Default)]
struct Loading {
    /// (file name, rule), in the order of their last definition.
    rules: Vec<(String, Pending)>,
    lists: HashMap<String, Vec<Value>>,
}

enum Pending {
    /// A Sigma rule, which names no list.
    Ready(Box<Rule>),
    File(Box<RuleFile>),
}

impl Pending {
    fn id(&self) -> &str {
        match self {
            Pending::Ready(rule) => &rule.id,
            Pending::File(file) => &file.id,
        }
    }
}

impl Loading {
    fn add(&mut self, name: &str, text: &str) -> Result<(), String> {
        let document: Value =
            palisade_inventory::yaml::from_str(text).map_err(|e| format!("{name}: {e}"))?;
        if sigma::is_sigma(&document) {
            let rule = sigma::compile(&document).map_err(|e| format!("{name}: {e}"))?;
            self.define(
                name,
                Pending::Ready(Box::new(Rule {
                    output: sigma::output(&rule.title),
                    priority: sigma::priority(&rule.level),
                    id: rule.id,
                    name: rule.title,
                    desc: rule.description,
                    source: Some("k8s_audit".into()),
                    tags: rule.tags,
                    rate: None,
                    tests: Vec::new(),
                    exceptions: Vec::new(),
                    sigma: Some(rule.detection),
                })),
            );
            return Ok(());
        }
        let Value::Array(entries) = document else {
            return Err(format!(
                "{name}: neither a list of rules and lists nor a Sigma rule"
            ));
        };
        for (n, entry) in entries.into_iter().enumerate() {
            let what = |kind: &str| {
                let title = entry.get(kind).map(as_text).unwrap_or_default();
                format!("{name}: entry {} ({kind} {title})", n + 1)
            };
            if entry.get("list").is_some() {
                let context = what("list");
                let list: ListFile =
                    serde_json::from_value(entry).map_err(|e| format!("{context}: {e}"))?;
                let items = self.lists.entry(list.list).or_default();
                if !list.append {
                    items.clear();
                }
                items.extend(list.items);
                continue;
            }
            let context = what("rule");
            let file: RuleFile =
                serde_json::from_value(entry).map_err(|e| format!("{context}: {e}"))?;
            // Every `$name` must be a list by the end; one that is not yet
            // is checked when the rule is compiled.
            self.define(name, Pending::File(Box::new(file)));
        }
        Ok(())
    }

    /// A rule (re)defined: a later id replaces an earlier one, and
    /// `enabled: false` leaves it out.
    fn define(&mut self, name: &str, rule: Pending) {
        self.rules.retain(|(_, r)| r.id() != rule.id());
        let enabled = match &rule {
            Pending::Ready(_) => true,
            Pending::File(file) => file.enabled,
        };
        if enabled {
            self.rules.push((name.to_string(), rule));
        }
    }
}

/// The regex-set prefilters, one per field path that rules search.
fn prefilters(rules: &[Rule]) -> Result<Vec<Prefilter>, String> {
    let mut by_path: BTreeMap<&Path, (Vec<String>, Vec<usize>)> = BTreeMap::new();
    for (index, rule) in rules.iter().enumerate() {
        let first = rule.tests.iter().find_map(|(path, test)| match test {
            Test::Contains(r) => Some((path, r.as_str().to_string())),
            Test::Regex(any) if !any.is_empty() => Some((
                path,
                any.iter()
                    .map(|r| format!("(?:{})", r.as_str()))
                    .collect::<Vec<_>>()
                    .join("|"),
            )),
            _ => None,
        });
        if let Some((path, pattern)) = first {
            let entry = by_path.entry(path).or_default();
            entry.0.push(pattern);
            entry.1.push(index);
        }
    }
    by_path
        .into_iter()
        .filter(|(_, (patterns, _))| patterns.len() > 1)
        .map(|(path, (patterns, rules))| {
            let set = RegexSet::new(&patterns).map_err(|e| format!("rule prefilter: {e}"))?;
            Ok(Prefilter {
                path: path.clone(),
                set,
                rules,
            })
        })
        .collect()
}

/// What a key makes JSON text contain: its name (a plain literal, the
/// fastest to search for; its quotes are left out because an event that
/// is itself a JSON string, as AKS wraps it, writes them `\"`).
pub fn key_pattern(key: &str) -> String {
    regex::escape(key)
}

/// How a record's field stands in the text the record was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InText {
    Whole,
    Piece,
}

/// A pattern the text matches whenever `test` on a field standing in it
/// as `in_text` holds, if the text decides it.
fn text_condition(in_text: InText, test: &Test) -> Option<String> {
    let whole = in_text == InText::Whole;
    let literals = |values: &[String]| -> String {
        match values.is_empty() {
            true => "[^\\s\\S]".to_string(),
            false => values
                .iter()
                .map(|v| regex::escape(v))
                .collect::<Vec<_>>()
                .join("|"),
        }
    };
    match test {
        Test::Contains(re) => Some(re.as_str().to_string()),
        Test::StartsWith(values) | Test::EndsWith(values) => Some(literals(values)),
        Test::Equals(values) => {
            let texts: Option<Vec<String>> = values
                .iter()
                .map(|v| match v {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .collect();
            texts.map(|t| literals(&t))
        }
        // A regex decides the message itself exactly; on a piece of it only
        // when nothing in it looks at the piece's edges.
        Test::Regex(any) if !any.is_empty() => {
            // Anchors and word boundaries look at the piece's edges.
            let edges = |r: &Regex| {
                regex_syntax::parse(r.as_str())
                    .map_or(true, |hir| !hir.properties().look_set().is_empty())
            };
            (whole || !any.iter().any(edges)).then(|| {
                any.iter()
                    .map(|r| format!("(?:{})", r.as_str()))
                    .collect::<Vec<_>>()
                    .join("|")
            })
        }
        _ => None,
    }
}

fn compile(file: RuleFile, lists: &HashMap<String, Vec<Value>>) -> Result<Rule, String> {
    let mut tests = Vec::new();
    for (key, value) in file.matches {
        tests.push(test_of(&key, value, lists)?);
    }
    let mut exceptions = Vec::new();
    for exception in file.exceptions {
        let rows = match exception.values {
            Value::Array(rows) if rows.iter().all(Value::is_array) => rows,
            single => vec![single],
        };
        for row in rows {
            let values = match row {
                Value::Array(values) => values,
                one => vec![one],
            };
            if values.len() != exception.fields.len() {
                return Err(format!(
                    "exception {}: {} fields but {} values",
                    exception.name,
                    exception.fields.len(),
                    values.len()
                ));
            }
            let row = exception
                .fields
                .iter()
                .zip(values)
                .map(|(field, value)| test_of(field, value, lists))
                .collect::<Result<Vec<_>, _>>()?;
            exceptions.push(row);
        }
    }
    Ok(Rule {
        id: file.id,
        name: file.rule,
        desc: file.desc,
        source: file.source,
        priority: file.priority.unwrap_or_else(|| "medium".into()),
        output: file.output.unwrap_or_default(),
        tags: file.tags,
        rate: file.rate,
        tests,
        exceptions,
        sigma: None,
    })
}

/// The values a rule names: a list's items for `$name`, a list, or one.
fn values_of(value: Value, lists: &HashMap<String, Vec<Value>>) -> Result<Vec<Value>, String> {
    let expand = |v: Value| -> Result<Vec<Value>, String> {
        // `$name` names a list when `name` is made of the characters list
        // names use (a misspelt one is an error, not text); other text
        // that starts with `$` (`${jndi:`) is itself.
        let list = v.as_str().and_then(|s| s.strip_prefix('$')).filter(|name| {
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        });
        match list {
            Some(name) => lists
                .get(name)
                .cloned()
                .ok_or_else(|| format!("no list {name}")),
            None => Ok(vec![v]),
        }
    };
    match value {
        Value::Array(items) => {
            let mut out = Vec::new();
            for item in items {
                out.extend(expand(item)?);
            }
            Ok(out)
        }
        one => expand(one),
    }
}

fn test_of(
    key: &str,
    value: Value,
    lists: &HashMap<String, Vec<Value>>,
) -> Result<(Path, Test), String> {
    let (path, modifier) = key.split_once('|').unwrap_or((key, ""));
    let values = values_of(value, lists)?;
    let strings = || -> Vec<String> { values.iter().map(as_text).collect() };
    let test = match modifier {
        "" => Test::Equals(values.clone()),
        "contains" | "icontains" => {
            let literals: Vec<String> = strings().iter().map(|s| regex::escape(s)).collect();
            // ASCII case only: a keyword is text, and Unicode folding (`s` as `ſ`)
            // would multiply the spellings the log prefilter searches for.
            let case = if modifier == "icontains" {
                "(?i-u)"
            } else {
                ""
            };
            // No literal matches nothing (an empty alternation would match all).
            let pattern = match literals.is_empty() {
                true => "[^\\s\\S]".to_string(),
                false => format!("{case}{}", literals.join("|")),
            };
            Test::Contains(Regex::new(&pattern).map_err(|e| format!("{key}: {e}"))?)
        }
        "startswith" => Test::StartsWith(strings()),
        "endswith" => Test::EndsWith(strings()),
        "re" => Test::Regex(
            strings()
                .iter()
                .map(|r| Regex::new(r).map_err(|e| format!("{key}: {e}")))
                .collect::<Result<_, _>>()?,
        ),
        "cidr" => Test::Cidr(
            strings()
                .iter()
                .map(|c| c.parse::<Cidr>().map_err(|e| format!("{key}: {e}")))
                .collect::<Result<_, _>>()?,
        ),
        "exists" => Test::Exists(values.first().and_then(Value::as_bool).unwrap_or(true)),
        "gt" | "gte" | "lt" | "lte" => {
            let bound = match modifier {
                "gt" => Bound::Above,
                "gte" => Bound::AtLeast,
                "lt" => Bound::Below,
                _ => Bound::AtMost,
            };
            match values.as_slice() {
                [one] => match number(one) {
                    Some(n) => Test::Compare(bound, n),
                    None => return Err(format!("{key}: {one} is not a number")),
                },
                _ => return Err(format!("{key}: takes one number")),
            }
        }
        other => return Err(format!("{key}: unknown modifier {other}")),
    };
    Ok((path_of(path), test))
}

fn as_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The values at a dotted path; arrays on the way are looked into.
fn at<'v>(record: &'v Value, path: &[String], out: &mut Vec<&'v Value>) {
    visit(record, path, &mut |v| {
        out.push(v);
        false
    });
}

/// Calls `found` on each value at a dotted path (arrays on the way looked
/// into) until it returns true; whether it did. Allocates nothing: rules
/// run on every log line.
fn visit<'v>(record: &'v Value, path: &[String], found: &mut dyn FnMut(&'v Value) -> bool) -> bool {
    let Some((head, rest)) = path.split_first() else {
        return false;
    };
    match record {
        Value::Array(items) => items.iter().any(|item| visit(item, path, found)),
        Value::Object(map) => match map.get(head) {
            Some(next) if rest.is_empty() => match next {
                Value::Array(items) => items.iter().any(&mut *found),
                one => found(one),
            },
            Some(next) => visit(next, rest, found),
            None => false,
        },
        _ => false,
    }
}

/// A value's text, borrowed when it is a string.
fn text_of(value: &Value) -> Cow<'_, str> {
    match value {
        Value::String(s) => Cow::Borrowed(s),
        other => Cow::Owned(other.to_string()),
    }
}

pub(crate) fn holds(record: &Value, path: &[String], test: &Test) -> bool {
    if let Test::Exists(wanted) = test {
        return visit(record, path, &mut |v| !v.is_null()) == *wanted;
    }
    visit(record, path, &mut |value| {
        let text = text_of(value);
        match test {
            Test::Equals(options) => options.iter().any(|o| o == value || text_of(o) == text),
            Test::Contains(finder) => finder.is_match(&text),
            Test::StartsWith(options) => options.iter().any(|o| text.starts_with(o.as_str())),
            Test::EndsWith(options) => options.iter().any(|o| text.ends_with(o.as_str())),
            Test::Regex(options) => options.iter().any(|r| r.is_match(&text)),
            Test::Cidr(options) => text
                .parse::<IpAddr>()
                .is_ok_and(|ip| options.iter().any(|c| c.contains(ip))),
            Test::Compare(bound, limit) => number(value).is_some_and(|n| bound.holds(n, *limit)),
            Test::Exists(_) => false,
        }
    })
}

/// A number, or a string that reads as one (`"3.5"`).
fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        // `inf` and `NaN` read as floats but are not numbers a log means.
        Value::String(s) => s.trim().parse().ok().filter(|n: &f64| n.is_finite()),
        _ => None,
    }
}

/// The first value at a path, as text (`-` when absent).
fn text_at(record: &Value, path: &str) -> String {
    let mut found = Vec::new();
    at(record, &path_of(path), &mut found);
    found.first().map_or("-".to_string(), |v| as_text(v))
}

/// `{path}` replaced by the record's value there (`{count}` and `{within}`
/// by a rate rule's figures).
fn interpolate(output: &str, record: &Value, extra: &BTreeMap<&str, String>) -> String {
    let mut out = String::with_capacity(output.len());
    let mut rest = output;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            out.push_str(&rest[open..]);
            return out;
        };
        let path = &rest[open + 1..open + close];
        match extra.get(path) {
            Some(value) => out.push_str(value),
            None => out.push_str(&text_at(record, path)),
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const RULES: &str = r#"
- list: trusted_admins
  items: [system:serviceaccount:argocd:argocd-application-controller]
- rule: NetworkPolicy deleted
  id: AUDIT-001
  source: k8s_audit
  match:
    verb: delete
    objectRef.resource: networkpolicies
  priority: high
  output: "{user.username} deleted {objectRef.namespace}/{objectRef.name}"
  exceptions:
  - {name: admins, fields: [user.username], values: $trusted_admins}
- rule: Forbidden burst
  id: AUDIT-020
  source: k8s_audit
  match: {responseStatus.code: [401, 403]}
  rate: {count: 3, within: 60, by: [user.username]}
  output: "{user.username} refused {count} times in {within} s"
- rule: Exec from outside
  id: AUDIT-030
  match:
    objectRef.subresource: [exec, attach]
    sourceIPs|cidr: 203.0.113.0/24
    userAgent|re: "^kubectl/"
    user.groups|contains: authenticated
"#;

    fn event(verb: &str, user: &str) -> Value {
        json!({
            "verb": verb, "user": {"username": user, "groups": ["system:authenticated"]},
            "objectRef": {"resource": "networkpolicies", "namespace": "shop", "name": "db"},
            "sourceIPs": ["203.0.113.9"], "userAgent": "kubectl/v1.30", "responseStatus": {"code": 200}
        })
    }

    /// Whether no rule fires on an event of `verb` by `user`.
    fn quiet(rules: &mut RuleSet, source: &str, verb: &str, user: &str) -> bool {
        rules.evaluate(source, &event(verb, user), 0).is_empty()
    }

    #[test]
    fn a_rule_fires_on_its_event_and_not_on_others_or_exceptions() {
        let mut rules = RuleSet::load(&[("rules.yaml", RULES)]).unwrap();
        let fired = rules.evaluate("k8s_audit", &event("delete", "mallory"), 0);
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].rule_id, "AUDIT-001");
        assert_eq!(fired[0].output, "mallory deleted shop/db");
        assert!(quiet(&mut rules, "k8s_audit", "get", "mallory"));
        let admin = "system:serviceaccount:argocd:argocd-application-controller";
        assert!(quiet(&mut rules, "k8s_audit", "delete", admin));
        assert!(quiet(&mut rules, "container_log", "delete", "mallory"));
    }

    #[test]
    fn rate_rules_fire_once_per_burst_per_key() {
        let mut rules = RuleSet::load(&[("rules.yaml", RULES)]).unwrap();
        let mut refused = event("list", "eve");
        refused["responseStatus"]["code"] = json!(403);
        let mut fired = Vec::new();
        for second in 0..7 {
            fired.extend(rules.evaluate("k8s_audit", &refused, second * 1_000_000));
        }
        assert_eq!(fired.len(), 2, "six refusals: two bursts of three");
        assert_eq!(fired[0].output, "eve refused 3 times in 60 s");
        let mut slow = RuleSet::load(&[("rules.yaml", RULES)]).unwrap();
        let spread: Vec<Firing> = (0..3)
            .flat_map(|i| slow.evaluate("k8s_audit", &refused, i * 61_000_000))
            .collect();
        assert!(spread.is_empty(), "not within the window");
    }

    #[test]
    fn modifiers_match_by_path_into_arrays() {
        let mut rules = RuleSet::load(&[("rules.yaml", RULES)]).unwrap();
        let mut exec = event("create", "dev");
        exec["objectRef"]["subresource"] = json!("exec");
        assert_eq!(rules.evaluate("any", &exec, 0)[0].rule_id, "AUDIT-030");
        exec["sourceIPs"] = json!(["10.0.0.1"]);
        assert!(
            rules.evaluate("any", &exec, 0).is_empty(),
            "outside the CIDR"
        );
    }

    #[test]
    fn later_files_override_and_disable_by_id() {
        let local = "- rule: mine\n  id: AUDIT-001\n  match: {verb: patch}\n  output: patched\n- rule: off\n  id: AUDIT-030\n  match: {verb: x}\n  enabled: false\n";
        let mut rules = RuleSet::load(&[("built-in", RULES), ("local", local)]).unwrap();
        let ids: Vec<&str> = rules.rules().iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["AUDIT-020", "AUDIT-001"]);
        assert_eq!(
            rules.evaluate("k8s_audit", &event("patch", "a"), 0)[0].output,
            "patched"
        );
    }

    #[test]
    fn a_later_file_replaces_or_appends_to_a_list_every_rule_sees() {
        let replaced = "- list: trusted_admins\n  items: [alice]\n";
        let mut rules = RuleSet::load(&[("built-in", RULES), ("local", replaced)]).unwrap();
        let admin = "system:serviceaccount:argocd:argocd-application-controller";
        assert_eq!(
            rules
                .evaluate("k8s_audit", &event("delete", admin), 0)
                .len(),
            1
        );
        assert!(quiet(&mut rules, "k8s_audit", "delete", "alice"));
        let appended = "- list: trusted_admins\n  items: [alice]\n  append: true\n";
        let mut rules = RuleSet::load(&[("built-in", RULES), ("local", appended)]).unwrap();
        assert!(quiet(&mut rules, "k8s_audit", "delete", admin));
        assert!(quiet(&mut rules, "k8s_audit", "delete", "alice"));
        assert_eq!(
            rules
                .evaluate("k8s_audit", &event("delete", "bob"), 0)
                .len(),
            1
        );
    }

    #[test]
    fn numbers_compare_with_bounds_and_icontains_ignores_case() {
        let text =
            "- rule: r\n  id: X\n  match: {n|gte: 3.5, m|lt: 10, word|icontains: [Secret]}\n";
        let mut rules = RuleSet::load(&[("rules.yaml", text)]).unwrap();
        let fires =
            |rules: &mut RuleSet, record: Value| !rules.evaluate("any", &record, 0).is_empty();
        assert!(fires(
            &mut rules,
            json!({"n": 3.5, "m": 9, "word": "a SECRET b"})
        ));
        assert!(
            fires(&mut rules, json!({"n": "4", "m": "9.9", "word": "secret"})),
            "numeric strings"
        );
        assert!(!fires(
            &mut rules,
            json!({"n": 3.49, "m": 9, "word": "secret"})
        ));
        assert!(!fires(
            &mut rules,
            json!({"n": 4, "m": 10, "word": "secret"})
        ));
        assert!(!fires(
            &mut rules,
            json!({"n": "four", "m": 9, "word": "secret"})
        ));
        assert!(!fires(&mut rules, json!({"n": 4, "m": 9, "word": "secre"})));
        assert!(!fires(
            &mut rules,
            json!({"n": "inf", "m": 9, "word": "secret"})
        ));
        let bounds = "- rule: r\n  id: X\n  match: {a|gt: 1, b|lte: -2}\n";
        let mut rules = RuleSet::load(&[("rules.yaml", bounds)]).unwrap();
        assert!(fires(&mut rules, json!({"a": 2, "b": -2})));
        assert!(!fires(&mut rules, json!({"a": 1, "b": -2})));
        assert!(!fires(&mut rules, json!({"a": 2, "b": -1})));
    }

    #[test]
    fn bad_rule_files_are_errors_naming_the_rule() {
        for (text, wanted) in [
            (
                "- rule: r\n  id: X\n  match: {a|nope: 1}\n",
                "unknown modifier",
            ),
            ("- rule: r\n  id: X\n  match: {a|re: \"(\"}\n", "rule X"),
            (
                "- rule: r\n  id: X\n  match: {a|cidr: 10.0.0.0/99}\n",
                "rule X",
            ),
            (
                "- rule: r\n  id: X\n  match: {a: $missing}\n",
                "no list missing",
            ),
            (
                "- rule: r\n  id: X\n  match: {a|gte: many}\n",
                "rule X: a|gte: \"many\" is not a number",
            ),
            (
                "- rule: r\n  id: X\n  match: {a|lt: [1, 2]}\n",
                "a|lt: takes one number",
            ),
            (
                "- rule: r\n  match: {a: 1}\n",
                "entry 1 (rule r): missing field `id`",
            ),
            ("- {list: l}\n", "entry 1 (list l): missing field `items`"),
            (
                "- rule: r\n  id: X\n  match: {a: 1}\n  exceptions: [{name: e, fields: [a, b], values: [1]}]\n",
                "2 fields but 1 values",
            ),
        ] {
            let error = RuleSet::load(&[("rules.yaml", text)]).unwrap_err();
            assert!(error.contains(wanted), "{error}");
        }
    }
}
