//! Detectors: observed traffic judged against the declared policy, against
//! a learned baseline, and for scanning behaviour. Every detector produces
//! [`Alert`]s of one schema; detectors never print.

pub mod advise;
pub mod alert;
pub mod baseline;
pub mod describe;
pub mod endpoints;
pub mod pipeline;
pub mod resolve;
pub mod scan;
pub mod verify;

pub use advise::{Advice, Proof, advise};
pub use alert::{
    Actor, Alert, AlertEndpoint, AlertObject, AlertProcess, Class, Evidence, Rule, class_of_rule,
    rfc3339,
};
pub use baseline::{Baseline, DeviationDetector, DeviationOptions, Edge, Learner};
pub use describe::describe_place;
pub use endpoints::apply_endpoints;
pub use pipeline::{Detectors, Findings, Recorder};
pub use resolve::{Place, Resolver};
pub use scan::{ScanDetector, ScanOptions};
pub use verify::{Judge, Judged, Summary, Tally, Verifier, sort_alerts};
