//! Any bytes as a container log and as an audit log: the scanners with
//! their gates must raise exactly the alerts they raise without them (a
//! gate may only skip lines no rule could fire on).
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use palisade_logs::{LogSource, Scanner};

fn alerts(data: &[u8], gated: bool) -> Vec<String> {
    let scanner = Scanner::new(&[]).expect("the built-in rules load");
    let mut scanner = if gated { scanner } else { scanner.ungated() };
    let source = LogSource {
        namespace: "shop".into(),
        pod: "web-1".into(),
        pod_uid: None,
        container: "app".into(),
    };
    let mut out = Vec::new();
    let file: Arc<str> = Arc::from("0.log");
    scanner.container(data, &file, Some(&source), &mut |a| out.push(format!("{a:?}")));
    scanner.audit(data, &file, &mut |a| out.push(format!("{a:?}")));
    out
}

fuzz_target!(|data: &[u8]| {
    assert_eq!(alerts(data, true), alerts(data, false));
});
