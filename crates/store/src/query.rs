//! What a reader asks for, and what retention keeps, independent of the
//! database; each implementation turns them into its own SQL.

use palisade_inventory::severity::Severity;

/// The most alerts one query returns, whatever the caller asks.
pub const MAX_LIMIT: usize = 10_000;

/// Alerts matching every filter that is set, newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AlertQuery {
    /// First seen at or after, microseconds since the epoch.
    pub since_us: Option<i64>,
    /// First seen before.
    pub until_us: Option<i64>,
    /// On either side of the connection.
    pub namespace: Option<String>,
    /// `ns/name[Kind]` on either side.
    pub workload: Option<String>,
    pub rule: Option<String>,
    /// This severity and above.
    pub min_severity: Option<Severity>,
    pub class: Option<String>,
    pub origin: Option<String>,
    /// At most this many (capped at [`MAX_LIMIT`]); 100 when unset.
    pub limit: Option<usize>,
}

impl AlertQuery {
    pub fn limit(&self) -> usize {
        self.limit.unwrap_or(100).min(MAX_LIMIT)
    }

    /// The WHERE clause and its parameters, with `placeholder(n)` writing
    /// the n-th (1-based) parameter marker of the database's dialect.
    pub fn where_clause(&self, placeholder: impl Fn(usize) -> String) -> (String, Vec<Param>) {
        let mut terms = Vec::new();
        let mut params = Vec::new();
        let mut push = |sql: &str, values: Vec<Param>| {
            // Markers are written piece by piece: a dialect whose marker is
            // itself `?n` must not have it replaced again.
            let mut pieces = sql.split('?');
            let mut term = pieces.next().unwrap_or_default().to_string();
            for (value, piece) in values.into_iter().zip(pieces) {
                params.push(value);
                term.push_str(&placeholder(params.len()));
                term.push_str(piece);
            }
            terms.push(term);
        };
        if let Some(t) = self.since_us {
            push("time_us >= ?", vec![Param::Int(t)]);
        }
        if let Some(t) = self.until_us {
            push("time_us < ?", vec![Param::Int(t)]);
        }
        if let Some(ns) = &self.namespace {
            let ns = Param::Text(ns.clone());
            push(
                "(src_namespace = ? OR dst_namespace = ?)",
                vec![ns.clone(), ns],
            );
        }
        if let Some(w) = &self.workload {
            let w = Param::Text(w.clone());
            push("(src_workload = ? OR dst_workload = ?)", vec![w.clone(), w]);
        }
        if let Some(rule) = &self.rule {
            push("rule = ?", vec![Param::Text(rule.clone())]);
        }
        if let Some(s) = self.min_severity {
            push("severity >= ?", vec![Param::Int(severity_rank(s))]);
        }
        if let Some(class) = &self.class {
            push("class = ?", vec![Param::Text(class.clone())]);
        }
        if let Some(origin) = &self.origin {
            push("origin = ?", vec![Param::Text(origin.clone())]);
        }
        if terms.is_empty() {
            (String::new(), params)
        } else {
            (format!("WHERE {}", terms.join(" AND ")), params)
        }
    }
}

/// A query parameter, in the few types the schema uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Param {
    Int(i64),
    Text(String),
}

/// Severities are stored as ranks so that "high and above" is one range.
pub fn severity_rank(severity: Severity) -> i64 {
    match severity {
        Severity::Info => 0,
        Severity::Low => 1,
        Severity::Medium => 2,
        Severity::High => 3,
        Severity::Critical => 4,
    }
}

pub fn severity_of_rank(rank: i64) -> Option<Severity> {
    Some(match rank {
        0 => Severity::Info,
        1 => Severity::Low,
        2 => Severity::Medium,
        3 => Severity::High,
        4 => Severity::Critical,
        _ => return None,
    })
}

/// What the store keeps: alerts younger than `max_age_us` (by when they
/// were first seen) and, of those, the newest `max_alerts`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    pub max_age_us: Option<i64>,
    pub max_alerts: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_become_numbered_parameters_in_order() {
        let query = AlertQuery {
            since_us: Some(5),
            namespace: Some("shop".into()),
            min_severity: Some(Severity::High),
            ..AlertQuery::default()
        };
        let (sql, params) = query.where_clause(|n| format!("${n}"));
        assert_eq!(
            sql,
            "WHERE time_us >= $1 AND (src_namespace = $2 OR dst_namespace = $3) AND severity >= $4"
        );
        assert_eq!(
            params,
            vec![
                Param::Int(5),
                Param::Text("shop".into()),
                Param::Text("shop".into()),
                Param::Int(3)
            ]
        );
        assert_eq!(AlertQuery::default().where_clause(|_| "?".into()).0, "");
        let (sql, _) = query.where_clause(|n| format!("?{n}"));
        assert!(
            sql.contains("(src_namespace = ?2 OR dst_namespace = ?3)"),
            "{sql}"
        );
    }

    #[test]
    fn every_severity_survives_its_rank() {
        for s in [
            Severity::Info,
            Severity::Low,
            Severity::Medium,
            Severity::High,
            Severity::Critical,
        ] {
            assert_eq!(severity_of_rank(severity_rank(s)), Some(s));
        }
        assert_eq!(severity_of_rank(9), None);
    }

    #[test]
    fn the_limit_is_capped() {
        let q = AlertQuery {
            limit: Some(1 << 40),
            ..AlertQuery::default()
        };
        assert_eq!(q.limit(), MAX_LIMIT);
        assert_eq!(AlertQuery::default().limit(), 100);
    }
}
