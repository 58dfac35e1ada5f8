//! Kubernetes label selectors (`metav1.LabelSelector`), with the apimachinery
//! semantics: `matchLabels` and every `matchExpressions` requirement are ANDed;
//! an empty selector matches everything.

use std::collections::BTreeMap;

pub type Labels = BTreeMap<String, String>;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    pub values: Vec<String>,
}

impl Requirement {
    /// `NotIn` and `DoesNotExist` match objects that lack the key, as in
    /// apimachinery's `labels.Requirement.Matches`.
    pub fn matches(&self, labels: &Labels) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::In => value.is_some_and(|v| self.values.contains(v)),
            Operator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct LabelSelector {
    pub match_labels: Labels,
    pub match_expressions: Vec<Requirement>,
}

impl LabelSelector {
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| r.matches(labels))
    }

    /// The selector in `kubectl` notation (`app=web,tier in (a,b)`), for
    /// explanations; the empty selector is written `{}` (all).
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .match_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        for r in &self.match_expressions {
            parts.push(match r.operator {
                Operator::In => format!("{} in ({})", r.key, r.values.join(",")),
                Operator::NotIn => format!("{} notin ({})", r.key, r.values.join(",")),
                Operator::Exists => r.key.clone(),
                Operator::DoesNotExist => format!("!{}", r.key),
            });
        }
        if parts.is_empty() {
            "{}".to_string()
        } else {
            parts.join(",")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn req(key: &str, operator: Operator, values: &[&str]) -> Requirement {
        Requirement {
            key: key.into(),
            operator,
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn empty_selector_matches_everything() {
        assert!(LabelSelector::default().matches(&labels(&[])));
        assert!(LabelSelector::default().matches(&labels(&[("a", "b")])));
    }

    #[test]
    fn match_labels_requires_every_pair() {
        let sel = LabelSelector {
            match_labels: labels(&[("app", "web"), ("tier", "fe")]),
            ..Default::default()
        };
        assert!(sel.matches(&labels(&[("app", "web"), ("tier", "fe"), ("x", "y")])));
        assert!(!sel.matches(&labels(&[("app", "web")])));
        assert!(!sel.matches(&labels(&[("app", "web"), ("tier", "be")])));
    }

    #[test]
    fn not_in_and_does_not_exist_match_missing_key() {
        let empty = labels(&[]);
        assert!(req("env", Operator::NotIn, &["prod"]).matches(&empty));
        assert!(req("env", Operator::DoesNotExist, &[]).matches(&empty));
        assert!(!req("env", Operator::In, &["prod"]).matches(&empty));
        assert!(!req("env", Operator::Exists, &[]).matches(&empty));
    }

    #[test]
    fn in_and_not_in_compare_values() {
        let prod = labels(&[("env", "prod")]);
        assert!(req("env", Operator::In, &["dev", "prod"]).matches(&prod));
        assert!(!req("env", Operator::NotIn, &["dev", "prod"]).matches(&prod));
        assert!(req("env", Operator::NotIn, &["dev"]).matches(&prod));
    }

    #[test]
    fn labels_and_expressions_are_anded() {
        let sel = LabelSelector {
            match_labels: labels(&[("app", "web")]),
            match_expressions: vec![req("env", Operator::In, &["prod"])],
        };
        assert!(sel.matches(&labels(&[("app", "web"), ("env", "prod")])));
        assert!(!sel.matches(&labels(&[("app", "web"), ("env", "dev")])));
        assert_eq!(sel.describe(), "app=web,env in (prod)");
    }
}
