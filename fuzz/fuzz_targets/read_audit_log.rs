//! Any bytes as a Kubernetes audit log: the reader must not panic or hang,
//! and must account for every line it read (an event, a duplicate, or a
//! counted skip; an EventList line may hold several).
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_logs::read_audit_log;

fuzz_target!(|data: &[u8]| {
    let mut events = 0u64;
    let stats = read_audit_log(data, &mut |_| events += 1);
    assert_eq!(stats.events, events);
    let skipped: u64 = stats.skipped.values().sum();
    assert!(stats.lines <= stats.events + stats.duplicates + skipped + 1);
});
