//! The one alert schema every detector produces and every sink serializes:
//! a time, a rule id, a severity, the two endpoints, the protocol and port,
//! the evidence (the flow record and, for policy alerts, the engine's
//! decision) and a human summary.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use palisade_flow::{Flow, Micros, RecordRef};
use palisade_inventory::severity::Severity;
use palisade_policy::Decision;
use serde::Serialize;

/// What a connection is, judged against the declared policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    /// Allowed by policy and seen.
    Allowed,
    /// Established or forwarded although the policy denies it.
    Bypass,
    /// Denied by policy and not established.
    BlockedAttempt,
    /// Allowed by policy but refused, unanswered or dropped in the network.
    UnexpectedDrop,
    /// An endpoint the inventory does not know.
    Unresolved,
}

impl Class {
    pub const ALL: [Class; 5] = [
        Class::Allowed,
        Class::Bypass,
        Class::BlockedAttempt,
        Class::UnexpectedDrop,
        Class::Unresolved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Class::Allowed => "allowed",
            Class::Bypass => "bypass",
            Class::BlockedAttempt => "blocked-attempt",
            Class::UnexpectedDrop => "unexpected-drop",
            Class::Unresolved => "unresolved",
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The rules alerts are raised under; ids are stable (SARIF rule ids,
/// suppressions, dashboards).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    Bypass,
    UnexpectedDrop,
    BlockedAttempt,
    Unresolved,
    NewEdge,
    NewPort,
    NewExternal,
    VolumeSpike,
    VerticalScan,
    HorizontalScan,
    BlockedBurst,
    FanOut,
    RawSocket,
    MetadataAccess,
    SuspiciousExec,
    EventsLost,
    NewProcess,
}

impl Rule {
    /// The rules of the flow detectors (`flows verify`).
    pub const FLOWS: [Rule; 12] = [
        Rule::Bypass,
        Rule::UnexpectedDrop,
        Rule::BlockedAttempt,
        Rule::Unresolved,
        Rule::NewEdge,
        Rule::NewPort,
        Rule::NewExternal,
        Rule::VolumeSpike,
        Rule::VerticalScan,
        Rule::HorizontalScan,
        Rule::BlockedBurst,
        Rule::FanOut,
    ];

    /// The node agent's own rules, about what happens on the node.
    pub const RUNTIME: [Rule; 5] = [
        Rule::RawSocket,
        Rule::MetadataAccess,
        Rule::SuspiciousExec,
        Rule::EventsLost,
        Rule::NewProcess,
    ];

    pub fn id(self) -> &'static str {
        match self {
            Rule::Bypass => "FLOW-001",
            Rule::UnexpectedDrop => "FLOW-002",
            Rule::BlockedAttempt => "FLOW-003",
            Rule::Unresolved => "FLOW-004",
            Rule::NewEdge => "FLOW-101",
            Rule::NewPort => "FLOW-102",
            Rule::NewExternal => "FLOW-103",
            Rule::VolumeSpike => "FLOW-104",
            Rule::VerticalScan => "FLOW-201",
            Rule::HorizontalScan => "FLOW-202",
            Rule::BlockedBurst => "FLOW-203",
            Rule::FanOut => "FLOW-204",
            Rule::RawSocket => "RUN-001",
            Rule::MetadataAccess => "RUN-002",
            Rule::SuspiciousExec => "RUN-003",
            Rule::EventsLost => "RUN-004",
            Rule::NewProcess => "RUN-005",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Rule::Bypass => "policy-bypass",
            Rule::UnexpectedDrop => "unexpected-drop",
            Rule::BlockedAttempt => "blocked-attempt",
            Rule::Unresolved => "unresolved-endpoint",
            Rule::NewEdge => "baseline-new-edge",
            Rule::NewPort => "baseline-new-port",
            Rule::NewExternal => "baseline-new-external",
            Rule::VolumeSpike => "baseline-volume",
            Rule::VerticalScan => "port-scan",
            Rule::HorizontalScan => "host-sweep",
            Rule::BlockedBurst => "blocked-burst",
            Rule::FanOut => "fan-out",
            Rule::RawSocket => "raw-socket",
            Rule::MetadataAccess => "cloud-metadata",
            Rule::SuspiciousExec => "exec-in-container",
            Rule::EventsLost => "sensor-events-lost",
            Rule::NewProcess => "process-baseline-new",
        }
    }

    pub fn severity(self) -> Severity {
        match self {
            Rule::Bypass => Severity::Critical,
            Rule::VerticalScan
            | Rule::HorizontalScan
            | Rule::RawSocket
            | Rule::MetadataAccess
            | Rule::EventsLost => Severity::High,
            Rule::SuspiciousExec | Rule::NewProcess => Severity::Medium,
            Rule::UnexpectedDrop
            | Rule::BlockedBurst
            | Rule::FanOut
            | Rule::NewEdge
            | Rule::NewExternal => Severity::Medium,
            Rule::BlockedAttempt | Rule::NewPort | Rule::VolumeSpike => Severity::Low,
            Rule::Unresolved => Severity::Info,
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Rule::Bypass => {
                "A connection was established or forwarded although the declared NetworkPolicies deny it."
            }
            Rule::UnexpectedDrop => {
                "The declared policy allows the connection, but the network refused, dropped or never answered it."
            }
            Rule::BlockedAttempt => {
                "A connection the declared policy denies was attempted and did not get through."
            }
            Rule::Unresolved => "An endpoint of the connection is not in the inventory.",
            Rule::NewEdge => "Two endpoints talked that never talked in the baseline.",
            Rule::NewPort => {
                "A known pair of endpoints used a protocol or port not in the baseline."
            }
            Rule::NewExternal => "A workload reached an outside address not in the baseline.",
            Rule::VolumeSpike => {
                "A connection moved far more bytes than any on its edge in the baseline."
            }
            Rule::VerticalScan => "One source probed many ports of one destination.",
            Rule::HorizontalScan => "One source probed one port on many destinations.",
            Rule::BlockedBurst => "One source made many policy-denied attempts in a short time.",
            Rule::FanOut => "One source contacted many distinct peers in a short time.",
            Rule::RawSocket => {
                "A process in a container opened a raw or packet socket, which can forge and sniff traffic below pod-level policy."
            }
            Rule::MetadataAccess => {
                "A container connected to a cloud metadata address, where the node's cloud credentials are served."
            }
            Rule::SuspiciousExec => "A shell or network tool was executed inside a container.",
            Rule::EventsLost => {
                "The sensor lost events (its buffer was full): connections may have gone unseen."
            }
            Rule::NewProcess => "A process that never opened connections in this workload did.",
        }
    }
}

/// One side of an alert: a pod or workload of the inventory, a node, a
/// service address, or an address outside the cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AlertEndpoint {
    /// `pod`, `workload`, `node`, `service`, `external` or `unknown`.
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// `namespace/name[Kind]`, as in `palisade reach`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Why the endpoint is what it is (service VIP, hostNetwork, unknown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl fmt::Display for AlertEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.workload, &self.node, self.ip) {
            (Some(w), _, _) => f.write_str(w),
            (None, Some(node), _) => write!(f, "node/{node}"),
            (None, None, Some(ip)) => write!(f, "{ip}"),
            (None, None, None) => match (&self.namespace, &self.pod) {
                (Some(ns), Some(pod)) => write!(f, "{ns}/{pod}"),
                _ => f.write_str("?"),
            },
        }
    }
}

/// What the alert rests on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Evidence {
    /// The first flow of the group, as read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow: Option<Flow>,
    /// Where the first few flows of the group are in the input.
    pub records: Vec<RecordRef>,
    /// The engine's explanation, for alerts about policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// Detector figures (ports probed, window, threshold...).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub figures: BTreeMap<&'static str, u64>,
    /// The inventory the verdict was judged against: `k8s:` and a digest
    /// of every object's resourceVersion (the live API), or `files:` and a
    /// digest of the manifests read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
}

/// How many records an alert keeps as pointers into the input.
pub const MAX_RECORDS: usize = 5;

/// The process behind a live alert, as the node agent saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AlertProcess {
    pub pid: u32,
    pub comm: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executable: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
}

/// Who made the change or request a log alert is about (audit events).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Actor {
    pub user: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

/// The object a log alert is about (kind, namespace, name).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AlertObject {
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Alert {
    /// When the first flow of the alert was seen (RFC 3339, UTC).
    pub time: Option<String>,
    /// Built-in rules have fixed ids; rules loaded from files own theirs.
    pub rule: Cow<'static, str>,
    pub name: Cow<'static, str>,
    pub severity: Severity,
    pub summary: String,
    pub src: AlertEndpoint,
    pub dst: AlertEndpoint,
    pub protocol: String,
    pub port: Option<u16>,
    /// Connections the alert stands for (alerts group identical connections).
    pub connections: u64,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
    /// Live alerts: the process that made the connection or did the act.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<AlertProcess>,
    /// Log alerts: who did it, and to what.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<Actor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<AlertObject>,
    pub evidence: Evidence,
}

impl Alert {
    pub fn severity(&self) -> Severity {
        self.severity
    }

    /// What identifies repeats of one alert: same rule, endpoints,
    /// protocol and port (and, for runtime alerts, what ran).
    pub fn group_key(&self) -> String {
        let executable = self
            .process
            .as_ref()
            .and_then(|p| p.executable.as_deref())
            .unwrap_or("");
        let port = self.port.map_or(String::new(), |p| p.to_string());
        // Runtime alerts differ by what ran; flow alerts do not (a hundred
        // clients of one edge are one alert).
        let executable = if self.rule.starts_with("RUN-") {
            executable
        } else {
            ""
        };
        format!(
            "{}|{}|{}|{}|{port}|{executable}",
            self.rule, self.src, self.dst, self.protocol
        )
    }

    /// A stable id for this alert as sent by `origin` (a node, a run):
    /// the same group opened at the same time always gets the same id, so
    /// an update of its count, or a redelivery, lands on the stored one.
    /// 128 bits of SHA-256, in hex.
    pub fn id(&self, origin: &str) -> String {
        use sha2::Digest;
        let mut hash = sha2::Sha256::new();
        for part in [
            origin,
            &self.group_key(),
            self.first_seen.as_deref().unwrap_or(""),
            self.object.as_ref().map_or("", |o| o.kind.as_str()),
            self.object
                .as_ref()
                .and_then(|o| o.name.as_deref())
                .unwrap_or(""),
        ] {
            hash.update(part.as_bytes());
            hash.update([0]);
        }
        let digest = hash.finalize();
        digest[..16].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The connectivity class a flow rule stands for; `None` for rules
    /// that are not about one connection's verdict.
    pub fn class(&self) -> Option<Class> {
        class_of_rule(&self.rule)
    }
}

/// The class of the four verdict rules, by rule id.
pub fn class_of_rule(rule: &str) -> Option<Class> {
    Some(match rule {
        "FLOW-001" => Class::Bypass,
        "FLOW-002" => Class::UnexpectedDrop,
        "FLOW-003" => Class::BlockedAttempt,
        "FLOW-004" => Class::Unresolved,
        _ => return None,
    })
}

/// Formats microseconds since the epoch as RFC 3339 UTC with microseconds.
pub fn rfc3339(micros: Micros) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's
/// algorithm, which works in 400-year eras).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339_across_leap_years_and_before_the_epoch() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            rfc3339(1_623_862_333_136_834),
            "2021-06-16T16:52:13.136834Z"
        );
        assert_eq!(rfc3339(951_782_400_000_000), "2000-02-29T00:00:00.000000Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999999Z");
    }

    #[test]
    fn rule_ids_are_unique() {
        let all: Vec<Rule> = Rule::FLOWS.into_iter().chain(Rule::RUNTIME).collect();
        let mut ids: Vec<&str> = all.iter().map(|r| r.id()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), all.len());
    }

    #[test]
    fn verdict_rules_map_to_their_class() {
        for class in [
            Class::Bypass,
            Class::UnexpectedDrop,
            Class::BlockedAttempt,
            Class::Unresolved,
        ] {
            let rule = match class {
                Class::Bypass => Rule::Bypass,
                Class::UnexpectedDrop => Rule::UnexpectedDrop,
                Class::BlockedAttempt => Rule::BlockedAttempt,
                _ => Rule::Unresolved,
            };
            assert_eq!(class_of_rule(rule.id()), Some(class));
        }
        assert_eq!(class_of_rule(Rule::VerticalScan.id()), None);
    }
}
