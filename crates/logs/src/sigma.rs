//! Sigma rules (the SigmaHQ format) for Kubernetes audit logs, loaded
//! unchanged beside Palisade's own with `--rules FILE`.
//!
//! Supported, which is what SigmaHQ's `rules/application/kubernetes`
//! rules use and the common rest of the specification:
//! - `logsource` with `product: kubernetes` and `service: audit`; others
//!   are refused with the reason.
//! - `detection`: named selections, each a map (all fields hold) or a
//!   list of maps (any holds); a list of values under a field matches if
//!   any does. Values are case-insensitive with `*` and `?` wildcards
//!   (`\` escapes them), as the specification says; `null` means absent.
//! - Modifiers `contains`, `startswith`, `endswith`, `all`, `re`, `cidr`,
//!   `exists`. Others (`base64`, `windash`, ...) are refused by name.
//! - `condition`: selection names, `and`, `or`, `not`, parentheses,
//!   `1 of`/`all of` a name pattern or `them`. Aggregations (`| count`)
//!   are refused: use a Palisade rule with `rate`.
//! - The field names Sigma's Kubernetes rules use that are not paths in
//!   the audit event are mapped: `apiGroup` to `objectRef.apiGroup`,
//!   `hostPath` to the pod's volumes, `capabilities` to its containers'
//!   security contexts (the mapping a Sigma processing pipeline does).

use regex::Regex;
use serde_json::Value;

use crate::rules::{Path, Test, holds, path_of};

/// A Sigma rule's detection, compiled.
#[derive(Debug)]
pub struct Detection {
    selections: Vec<(String, Selection)>,
    condition: Condition,
}

/// Any of these conjunctions.
type Selection = Vec<Vec<FieldTest>>;

/// All `tests` hold, each at any of `paths`.
#[derive(Debug)]
struct FieldTest {
    paths: Vec<Path>,
    tests: Vec<Test>,
}

#[derive(Debug)]
enum Condition {
    Selection(usize),
    Not(Box<Condition>),
    And(Vec<Condition>),
    Or(Vec<Condition>),
}

/// What a Sigma file gives a Palisade rule.
pub struct SigmaRule {
    pub id: String,
    pub title: String,
    pub description: String,
    pub level: String,
    pub tags: Vec<String>,
    pub detection: Detection,
}

impl Detection {
    pub fn matches(&self, record: &Value) -> bool {
        self.holds(&self.condition, record)
    }

    fn holds(&self, condition: &Condition, record: &Value) -> bool {
        match condition {
            Condition::Selection(i) => self.selections[*i].1.iter().any(|conjunction| {
                conjunction.iter().all(|field| {
                    field
                        .tests
                        .iter()
                        .all(|test| field.paths.iter().any(|path| holds(record, path, test)))
                })
            }),
            Condition::Not(inner) => !self.holds(inner, record),
            Condition::And(all) => all.iter().all(|c| self.holds(c, record)),
            Condition::Or(any) => any.iter().any(|c| self.holds(c, record)),
        }
    }
}

/// Whether a parsed YAML document is a Sigma rule rather than a list of
/// Palisade rules.
pub fn is_sigma(document: &Value) -> bool {
    document.get("detection").is_some() && document.get("logsource").is_some()
}

pub fn compile(document: &Value) -> Result<SigmaRule, String> {
    let text = |key: &str| document.get(key).and_then(Value::as_str).unwrap_or("");
    let title = text("title").to_string();
    let id = match text("id") {
        "" => title.clone(),
        id => id.to_string(),
    };
    if id.is_empty() {
        return Err("a Sigma rule needs an id or a title".into());
    }
    let logsource = &document["logsource"];
    let (product, service) = (
        logsource.get("product").and_then(Value::as_str),
        logsource.get("service").and_then(Value::as_str),
    );
    if product != Some("kubernetes") || service != Some("audit") {
        return Err(format!(
            "Sigma rule {id}: logsource {logsource} is not read here (only product kubernetes, service audit)"
        ));
    }
    let detection =
        detection(&document["detection"]).map_err(|e| format!("Sigma rule {id}: {e}"))?;
    let tags = match document.get("tags") {
        Some(Value::Array(tags)) => tags
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    };
    Ok(SigmaRule {
        id,
        title,
        description: text("description").trim().to_string(),
        level: text("level").to_string(),
        tags,
        detection,
    })
}

fn detection(detection: &Value) -> Result<Detection, String> {
    let Value::Object(entries) = detection else {
        return Err("detection is not a map".into());
    };
    let mut selections = Vec::new();
    for (name, body) in entries {
        if name == "condition" || name == "timeframe" {
            continue;
        }
        selections.push((
            name.clone(),
            selection(body).map_err(|e| format!("{name}: {e}"))?,
        ));
    }
    let condition = match entries.get("condition") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(many)) if many.len() == 1 => many[0].as_str().unwrap_or("").to_string(),
        _ => return Err("detection needs one condition".into()),
    };
    let names: Vec<&str> = selections.iter().map(|(n, _)| n.as_str()).collect();
    let condition = ConditionParser::new(&condition, &names).parse()?;
    Ok(Detection {
        selections,
        condition,
    })
}

fn selection(body: &Value) -> Result<Selection, String> {
    match body {
        Value::Object(fields) => Ok(vec![conjunction(fields)?]),
        Value::Array(maps) if maps.iter().all(Value::is_object) => maps
            .iter()
            .map(|m| conjunction(m.as_object().expect("checked")))
            .collect(),
        _ => Err("keyword selections (plain values matched anywhere) are not supported".into()),
    }
}

fn conjunction(fields: &serde_json::Map<String, Value>) -> Result<Vec<FieldTest>, String> {
    fields
        .iter()
        .map(|(key, values)| field_test(key, values))
        .collect()
}

/// Sigma's Kubernetes field names that are not paths in the event.
fn paths_of(field: &str) -> Vec<Path> {
    let mapped: &[&str] = match field {
        "apiGroup" => &["objectRef.apiGroup"],
        "hostPath" => &["requestObject.spec.volumes.hostPath"],
        "capabilities" => &[
            "requestObject.spec.containers.securityContext.capabilities",
            "requestObject.spec.initContainers.securityContext.capabilities",
            "requestObject.spec.ephemeralContainers.securityContext.capabilities",
        ],
        other => return vec![path_of(other)],
    };
    mapped.iter().map(|p| path_of(p)).collect()
}

fn field_test(key: &str, values: &Value) -> Result<FieldTest, String> {
    let mut parts = key.split('|');
    let field = parts.next().unwrap_or_default();
    let modifiers: Vec<&str> = parts.collect();
    let values: Vec<&Value> = match values {
        Value::Array(items) => items.iter().collect(),
        one => vec![one],
    };
    let all = modifiers.contains(&"all");
    let mut shape = "";
    for modifier in &modifiers {
        match *modifier {
            "all" => {}
            "contains" | "startswith" | "endswith" | "re" | "cidr" | "exists"
                if shape.is_empty() =>
            {
                shape = modifier
            }
            other => return Err(format!("{key}: modifier {other} is not supported")),
        }
    }
    let paths = paths_of(field);
    if shape == "exists" {
        let wanted = values.first().and_then(|v| v.as_bool()).unwrap_or(true);
        return Ok(FieldTest {
            paths,
            tests: vec![Test::Exists(wanted)],
        });
    }
    if values.iter().all(|v| v.is_null()) {
        return Ok(FieldTest {
            paths,
            tests: vec![Test::Exists(false)],
        });
    }
    let patterns = values
        .iter()
        .map(|v| pattern(shape, v))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{key}: {e}"))?;
    let tests = if shape == "cidr" {
        let cidrs = patterns
            .iter()
            .map(|c| c.parse().map_err(|e| format!("{key}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        vec![Test::Cidr(cidrs)]
    } else {
        let regexes = patterns
            .iter()
            .map(|p| Regex::new(p).map_err(|e| format!("{key}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        if all {
            regexes.into_iter().map(|r| Test::Regex(vec![r])).collect()
        } else {
            vec![Test::Regex(regexes)]
        }
    };
    Ok(FieldTest { paths, tests })
}

/// A value as a regular expression (or, for `cidr`, the CIDR's text).
fn pattern(shape: &str, value: &Value) -> Result<String, String> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(_) | Value::Bool(_) => value.to_string(),
        other => return Err(format!("value {other} is not a string or a number")),
    };
    Ok(match shape {
        "re" | "cidr" => text,
        "contains" => format!("(?is){}", wildcards(&text)),
        "startswith" => format!("(?is)^{}", wildcards(&text)),
        "endswith" => format!("(?is){}$", wildcards(&text)),
        _ => format!("(?is)^{}$", wildcards(&text)),
    })
}

/// Sigma's `*` and `?` wildcards (`\` escaping them) as a regular
/// expression, the rest literal.
fn wildcards(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => out.push_str(".*"),
            '?' => out.push('.'),
            '\\' if matches!(chars.peek(), Some('*' | '?' | '\\')) => {
                let next = chars.next().expect("peeked");
                out.push_str(&regex::escape(&next.to_string()));
            }
            other => out.push_str(&regex::escape(&other.to_string())),
        }
    }
    out
}

/// `or` binds loosest, then `and`, then `not`.
struct ConditionParser<'a> {
    tokens: Vec<String>,
    next: usize,
    names: &'a [&'a str],
}

impl<'a> ConditionParser<'a> {
    fn new(text: &str, names: &'a [&'a str]) -> Self {
        let spaced = text.replace('(', " ( ").replace(')', " ) ");
        ConditionParser {
            tokens: spaced.split_whitespace().map(str::to_string).collect(),
            next: 0,
            names,
        }
    }

    fn parse(mut self) -> Result<Condition, String> {
        let condition = self.or()?;
        match self.tokens.get(self.next) {
            None => Ok(condition),
            Some(t) if t == "|" => {
                Err("aggregations (`| count`) are not supported: use a rule with `rate`".into())
            }
            Some(t) => Err(format!("condition: unexpected `{t}`")),
        }
    }

    fn peek(&self) -> Option<&str> {
        self.tokens.get(self.next).map(String::as_str)
    }

    fn take(&mut self) -> Option<String> {
        let token = self.tokens.get(self.next).cloned();
        self.next += 1;
        token
    }

    fn or(&mut self) -> Result<Condition, String> {
        let mut any = vec![self.and()?];
        while self.peek() == Some("or") {
            self.next += 1;
            any.push(self.and()?);
        }
        Ok(if any.len() == 1 {
            any.remove(0)
        } else {
            Condition::Or(any)
        })
    }

    fn and(&mut self) -> Result<Condition, String> {
        let mut all = vec![self.unary()?];
        while self.peek() == Some("and") {
            self.next += 1;
            all.push(self.unary()?);
        }
        Ok(if all.len() == 1 {
            all.remove(0)
        } else {
            Condition::And(all)
        })
    }

    fn unary(&mut self) -> Result<Condition, String> {
        let token = self.take().ok_or("condition ends too soon")?;
        match token.as_str() {
            "not" => Ok(Condition::Not(Box::new(self.unary()?))),
            "(" => {
                let inner = self.or()?;
                match self.take().as_deref() {
                    Some(")") => Ok(inner),
                    _ => Err("condition: `(` without `)`".into()),
                }
            }
            "1" | "any" | "all" if self.peek() == Some("of") => {
                self.next += 1;
                let pattern = self.take().ok_or("condition: `of` what?")?;
                let chosen = self.named(&pattern)?;
                Ok(if token == "all" {
                    Condition::And(chosen)
                } else {
                    Condition::Or(chosen)
                })
            }
            name => self
                .named(name)?
                .pop()
                .ok_or_else(|| unreachable_name(name)),
        }
    }

    /// The selections a name, a `prefix*` pattern or `them` stands for.
    fn named(&self, pattern: &str) -> Result<Vec<Condition>, String> {
        let chosen: Vec<Condition> = self
            .names
            .iter()
            .enumerate()
            .filter(|(_, name)| match pattern {
                "them" => !name.starts_with('_'),
                p => match p.strip_suffix('*') {
                    Some(prefix) => name.starts_with(prefix),
                    None => **name == p,
                },
            })
            .map(|(i, _)| Condition::Selection(i))
            .collect();
        if chosen.is_empty() {
            return Err(unreachable_name(pattern));
        }
        if !pattern.ends_with('*') && pattern != "them" && chosen.len() != 1 {
            return Err(unreachable_name(pattern));
        }
        Ok(chosen)
    }
}

fn unreachable_name(name: &str) -> String {
    format!("condition names `{name}`, which no selection is")
}

/// Sigma levels are Palisade priorities already, but for `informational`.
pub fn priority(level: &str) -> String {
    match level {
        "informational" | "" => "info".into(),
        other => other.into(),
    }
}

/// The alert text of a Sigma rule, which has no output of its own.
pub fn output(title: &str) -> String {
    format!(
        "{title}: {{user.username}} {{verb}} {{objectRef.resource}} {{objectRef.namespace}}/{{objectRef.name}}"
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::rules::RuleSet;

    /// Written for these tests in the SigmaHQ Kubernetes rules' shape.
    const HOST_PATH: &str = r#"
title: Pod With A Host Directory
id: 0b7e1c52-3c1e-4f7a-9a55-8e7f3c2d1a10
status: test
description: A pod mounting a directory of the node.
logsource:
    category: application
    product: kubernetes
    service: audit
detection:
    selection:
        verb: 'create'
        objectRef.resource: 'pods'
        hostPath: '*'
    condition: selection
level: low
tags:
    - attack.t1611
"#;

    const SHELL_OR_TOOL: &str = r#"
title: Shell Or Scanner
id: 5d0c7a4e-1111-4b8e-8d6a-2f0b9c3e7a21
logsource:
    product: kubernetes
    service: audit
detection:
    selection_status:
        responseStatus.code: [200, 101]
    selection_request_uri:
        requestURI|contains:
            - '%2fbin%2fsh'
            - '/bin/sh'
    selection_request_agent:
        userAgent|startswith: 'TruffleHog'
    filter_admin:
        user.username: 'admin-?'
    condition: selection_status and 1 of selection_request_* and not filter_admin
level: medium
"#;

    fn set(text: &str) -> RuleSet {
        RuleSet::load(&[("rule.yml", text)]).unwrap()
    }

    fn fires(set: &mut RuleSet, event: serde_json::Value) -> Vec<String> {
        set.evaluate("k8s_audit", &event, 0)
            .into_iter()
            .map(|f| f.rule_id)
            .collect()
    }

    #[test]
    fn a_sigma_rule_loads_and_maps_its_kubernetes_field_names() {
        let mut rules = set(HOST_PATH);
        let rule = &rules.rules()[0];
        assert_eq!(rule.name, "Pod With A Host Directory");
        assert_eq!((rule.priority.as_str(), rule.tags.len()), ("low", 1));
        let pod = |volumes: serde_json::Value| {
            json!({"verb": "create", "objectRef": {"resource": "pods"},
                   "requestObject": {"spec": {"volumes": volumes}}})
        };
        let id = "0b7e1c52-3c1e-4f7a-9a55-8e7f3c2d1a10";
        assert_eq!(
            fires(
                &mut rules,
                pod(json!([{"name": "root", "hostPath": {"path": "/"}}]))
            ),
            [id]
        );
        assert!(fires(&mut rules, pod(json!([{"name": "tmp", "emptyDir": {}}]))).is_empty());
        // Sigma values are case-insensitive.
        let upper = json!({"verb": "CREATE", "objectRef": {"resource": "Pods"},
            "requestObject": {"spec": {"volumes": [{"hostPath": {"path": "/"}}]}}});
        assert_eq!(fires(&mut rules, upper), [id]);
    }

    #[test]
    fn conditions_combine_selections_by_name_pattern_and_negation() {
        let mut rules = set(SHELL_OR_TOOL);
        let event = |code: u32, uri: &str, agent: &str, user: &str| {
            json!({"responseStatus": {"code": code}, "requestURI": uri, "userAgent": agent,
                   "user": {"username": user}})
        };
        let exec = "/api/v1/namespaces/a/pods/p/exec?command=%2Fbin%2Fsh";
        assert_eq!(
            fires(&mut rules, event(101, exec, "kubectl", "bob")).len(),
            1
        );
        assert_eq!(
            fires(
                &mut rules,
                event(200, "/api/v1/secrets", "trufflehog/3.0", "bob")
            )
            .len(),
            1,
            "the second selection_request_*, case-insensitive"
        );
        assert!(
            fires(&mut rules, event(403, exec, "kubectl", "bob")).is_empty(),
            "refused"
        );
        assert!(fires(&mut rules, event(101, "/api/v1/pods", "kubectl", "bob")).is_empty());
        assert!(
            fires(&mut rules, event(101, exec, "kubectl", "admin-1")).is_empty(),
            "filtered: `?` is one character"
        );
        assert_eq!(
            fires(&mut rules, event(101, exec, "kubectl", "admin-12")).len(),
            1
        );
    }

    #[test]
    fn sigma_rules_sit_beside_palisade_rules_and_override_by_id() {
        let palisade =
            "- rule: mine\n  id: 0b7e1c52-3c1e-4f7a-9a55-8e7f3c2d1a10\n  match: {verb: never}\n";
        let rules = RuleSet::load(&[("mine.yaml", palisade), ("sigma.yml", HOST_PATH)]).unwrap();
        assert_eq!(rules.rules().len(), 1);
        assert_eq!(rules.rules()[0].name, "Pod With A Host Directory");
    }

    #[test]
    fn what_is_not_supported_is_an_error_that_says_so() {
        let with = |detection: &str| {
            let text = HOST_PATH.replace(
                "    selection:\n        verb: 'create'\n        objectRef.resource: 'pods'\n        hostPath: '*'\n    condition: selection\n",
                detection,
            );
            RuleSet::load(&[("r.yml", &text)]).unwrap_err()
        };
        let cases = [
            (
                "    sel:\n        a|base64: x\n    condition: sel\n",
                "modifier base64 is not supported",
            ),
            (
                "    sel:\n        a: x\n    condition: sel | count() > 5\n",
                "aggregations",
            ),
            (
                "    sel:\n        a: x\n    condition: other\n",
                "which no selection is",
            ),
            (
                "    sel:\n        a: x\n    condition: (sel\n",
                "without `)`",
            ),
            (
                "    sel:\n        - evil\n    condition: sel\n",
                "keyword selections",
            ),
            ("    sel:\n        a: x\n", "one condition"),
        ];
        for (detection, expected) in cases {
            let error = with(detection);
            assert!(error.contains(expected), "{detection}: {error}");
            assert!(error.starts_with("r.yml: Sigma rule 0b7e1c52"), "{error}");
        }
        let windows = HOST_PATH.replace("product: kubernetes", "product: windows");
        let error = RuleSet::load(&[("w.yml", &windows)]).unwrap_err();
        assert!(
            error.contains("only product kubernetes, service audit"),
            "{error}"
        );
    }
}
