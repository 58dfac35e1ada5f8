//! Any bytes as a rule file (Falco-shaped rules, macros and lists, or a
//! Sigma rule) and each line as an Envoy/Istio access line and a CoreDNS
//! `log` line: loading succeeds or refuses with a reason, the line parsers
//! answer or decline, and a rule set that loaded evaluates records of every
//! source built from the same text; none of it may panic or hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_logs::{RuleSet, parse_coredns, parse_envoy};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for line in text.lines() {
        let _ = parse_envoy(line);
        let _ = parse_coredns(line);
    }
    match RuleSet::load(&[("fuzz.yaml", text)]) {
        Ok(mut rules) => {
            let record = serde_json::json!({ "log": text, "verb": text, "user": { "username": text } });
            for source in ["k8s_audit", "container_log"] {
                let _ = rules.evaluate(source, &record, 0);
            }
        }
        Err(reason) => assert!(!reason.is_empty(), "a refusal says why"),
    }
});
