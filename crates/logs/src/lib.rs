//! Palisade's log sources. First: Kubernetes API audit events ([`audit`]),
//! what the audit-trail rules and the connectivity timeline read (issue
//! 10). Container logs, data-plane drop logs and the rule engine follow.

pub mod audit;

pub use audit::{
    AuditEvent, AuditStats, ObjectRef, Stage, User, read_audit_log, sort_by_stage_time,
};
