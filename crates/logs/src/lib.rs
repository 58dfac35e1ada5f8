//! Palisade's log sources: Kubernetes API audit events ([`audit`]), what
//! the audit-trail rules and the connectivity timeline read, and container
//! logs ([`container`]) as kubelets keep them and collectors ship them
//! (issue 10), and Envoy/Istio access and CoreDNS query lines ([`access`]).
//! (The drops data planes log are flow records: `palisade_flow::droplog`.)
//! Rules for all of them ([`rules`]): a Falco-shaped file format matched by
//! dotted path. The built-in rules and the audit-trail timeline follow.

pub mod access;
pub mod audit;
pub mod container;
pub mod judge;
pub mod prefilter;
pub mod rules;
pub mod scan;
pub mod sigma;
pub mod synthetic;
pub mod tail;
pub mod timeline;

pub use access::{DnsQuery, EnvoyAccess, parse_coredns, parse_envoy};
pub use audit::{
    AuditEvent, AuditStats, ObjectRef, Stage, User, read_audit_log, sort_by_stage_time,
};
pub use container::{LogLine, LogSource, LogStats, Stream, read_container_log, source_of_path};
pub use rules::{Firing, Rate, Rule, RuleSet};
pub use scan::{BUILTIN_RULES, Scanner};
