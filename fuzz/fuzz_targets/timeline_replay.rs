//! Any bytes as an audit trail replayed over a small seed: the timeline
//! must not panic, and every step must be exactly the full diff of the
//! inventories before and after it (the incremental deltas may leave
//! nothing out and add nothing).
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_logs::audit::read_audit_log;
use palisade_logs::timeline::Timeline;
use palisade_policy::{MapFilter, Settings, diff};

const SEED: &str = "apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: shop}}
---
apiVersion: v1
kind: Namespace
metadata: {name: other, labels: {team: other}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {containers: [{name: c, image: nginx, ports: [{name: http, containerPort: 80}]}]}
status: {podIP: 10.1.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: shop, labels: {app: db}}
spec: {containers: [{name: c, image: postgres}]}
status: {podIP: 10.1.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: x, namespace: other, labels: {app: x}}
spec: {containers: [{name: c, image: nginx}]}
status: {podIP: 10.2.0.1}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-in, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: web}}}, {namespaceSelector: {matchLabels: {team: trusted}}}]
    ports: [{port: 5432}]
  - from: [{ipBlock: {cidr: 192.0.2.0/24, except: [192.0.2.128/25]}}]
";

fuzz_target!(|data: &[u8]| {
    let texts = vec![("seed.yaml".to_string(), SEED.to_string())];
    let settings = Settings::default();
    let (mut timeline, _) = Timeline::seed(&texts, settings.clone());
    let filter = MapFilter::default();
    read_audit_log(data, &mut |event| {
        let before = timeline.inventory().clone();
        let step = timeline.apply(&event, &filter);
        let expected = diff(&before, timeline.inventory(), &settings, &filter);
        assert_eq!(step.map(|s| s.entries).unwrap_or_default(), expected);
    });
});
