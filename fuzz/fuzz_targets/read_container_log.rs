//! Any bytes as a container log (and any text as its path): the reader must
//! not panic or hang, and every input line is a log line, part of one, or a
//! counted skip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_logs::{read_container_log, source_of_path};

fuzz_target!(|data: &[u8]| {
    let _ = source_of_path(&String::from_utf8_lossy(data));
    let mut lines = 0u64;
    let stats = read_container_log(data, None, &mut |_| lines += 1);
    assert_eq!(stats.lines, lines);
    let skipped: u64 = stats.skipped.values().sum();
    assert!(stats.lines + skipped <= stats.records + 2);
});
