//! Policy verification on the bundled shop cluster, one named case per
//! class and per endpoint kind. Flows are built directly so these tests
//! depend on the detectors only; the readers have their own tests, and the
//! CLI tests run the whole pipe on a capture.

use std::net::IpAddr;
use std::sync::Arc;

use palisade_detect::{
    Alert, Baseline, Class, DeviationDetector, DeviationOptions, Learner, Resolver, ScanDetector,
    ScanOptions, Verifier, advise, apply_endpoints,
};
use palisade_flow::{Flow, FlowEndpoint, Format, Identity, Outcome, RecordRef, Transport};
use palisade_inventory::{Cidr, Inventory};
use palisade_policy::{Engine, Settings};

const SHOP: [(&str, &str); 3] = [
    (
        "namespaces.yaml",
        include_str!("../../../examples/shop/namespaces.yaml"),
    ),
    (
        "workloads.yaml",
        include_str!("../../../examples/shop/workloads.yaml"),
    ),
    (
        "policies.yaml",
        include_str!("../../../examples/shop/policies.yaml"),
    ),
];
const ENDPOINTS: &str = include_str!("../../../examples/shop/endpoints.txt");

const WEBAPP: &str = "10.244.1.10";
const CHECKOUT: &str = "10.244.1.20";
const CART: &str = "10.244.1.21";
const PAYMENTS: &str = "10.244.2.30";
const POSTGRES: &str = "10.244.3.40";
const REDIS: &str = "10.244.3.41";
const REPORTS: &str = "10.244.2.60";
const COREDNS: &str = "10.244.0.10";

fn shop() -> Inventory {
    let (mut inventory, diagnostics) = Inventory::from_texts(SHOP);
    assert!(diagnostics.is_empty(), "{:?}", diagnostics.items());
    let problems = apply_endpoints(&mut inventory, "endpoints.txt", ENDPOINTS);
    assert!(problems.is_empty(), "{problems:?}");
    inventory
}

fn flow(src: &str, dst: &str, transport: Transport, port: u16, outcome: Outcome) -> Flow {
    let evidence = RecordRef {
        file: Arc::from("test"),
        format: Format::Jsonl,
        record: 1,
    };
    let mut flow = Flow::new(evidence, transport, outcome);
    flow.src = FlowEndpoint {
        ip: Some(src.parse().unwrap()),
        port: Some(40000),
        identity: None,
    };
    flow.dst = FlowEndpoint {
        ip: Some(dst.parse().unwrap()),
        port: Some(port),
        identity: None,
    };
    flow.first_seen = Some(1_700_000_000_000_000);
    flow.bytes = [600, 1200];
    flow
}

fn tcp(src: &str, dst: &str, port: u16, outcome: Outcome) -> Flow {
    flow(src, dst, Transport::Tcp, port, outcome)
}

/// Verifies flows on the shop with 10.244.0.0/16 as the pod CIDR.
fn verify(flows: &[Flow]) -> (Vec<Class>, Vec<Alert>) {
    let inventory = shop();
    let engine = Engine::new(&inventory, &Settings::default());
    let cidr: Cidr = "10.244.0.0/16".parse().unwrap();
    let mut verifier = Verifier::new(
        &engine,
        Resolver::new(&inventory, &[cidr]),
        Settings::default(),
    );
    let classes = flows.iter().map(|f| verifier.verify(f).class).collect();
    let (_, alerts) = verifier.finish();
    (classes, alerts)
}

fn class_of(f: Flow) -> Class {
    verify(&[f]).0[0]
}

#[test]
fn allowed_traffic_raises_nothing() {
    let (classes, alerts) = verify(&[
        tcp(WEBAPP, CHECKOUT, 8080, Outcome::Established),
        tcp(CHECKOUT, CART, 7070, Outcome::Established),
        flow(WEBAPP, COREDNS, Transport::Udp, 53, Outcome::Established),
        tcp("198.51.100.7", WEBAPP, 8080, Outcome::Established),
    ]);
    assert_eq!(classes, vec![Class::Allowed; 4]);
    assert!(alerts.is_empty(), "{alerts:?}");
}

#[test]
fn bypass_is_an_established_connection_the_policy_denies() {
    let (classes, alerts) = verify(&[tcp(WEBAPP, POSTGRES, 5432, Outcome::Established)]);
    assert_eq!(classes, vec![Class::Bypass]);
    let alert = &alerts[0];
    assert_eq!(
        (alert.rule.as_ref(), alert.severity.as_str()),
        ("FLOW-001", "critical")
    );
    assert_eq!(
        alert.src.workload.as_deref(),
        Some("frontend/webapp[Deployment]")
    );
    assert_eq!(alert.dst.pod.as_deref(), Some("postgres-0"));
    let decision = alert.evidence.decision.as_ref().expect("an explanation");
    assert!(!decision.allowed);
    assert!(
        !decision.egress.allowed,
        "webapp's egress does not allow postgres"
    );
    assert!(
        alert.summary.contains(
            "denied by the egress of the source (frontend/allow-dns, frontend/default-deny"
        ),
        "{}",
        alert.summary
    );
}

#[test]
fn forwarded_by_the_data_plane_is_a_bypass_too() {
    assert_eq!(
        class_of(tcp(WEBAPP, POSTGRES, 5432, Outcome::Forwarded)),
        Class::Bypass
    );
}

#[test]
fn blocked_attempt_is_a_denied_connection_that_did_not_get_through() {
    for outcome in [Outcome::Unanswered, Outcome::Refused, Outcome::Dropped] {
        assert_eq!(
            class_of(tcp(REPORTS, PAYMENTS, 50051, outcome)),
            Class::BlockedAttempt
        );
    }
}

#[test]
fn unexpected_drop_is_an_allowed_connection_refused_or_unanswered() {
    for outcome in [Outcome::Unanswered, Outcome::Refused, Outcome::Dropped] {
        assert_eq!(
            class_of(tcp(CHECKOUT, CART, 7070, outcome)),
            Class::UnexpectedDrop,
            "{outcome}"
        );
    }
}

#[test]
fn allowed_one_way_udp_is_not_a_drop() {
    let f = flow(WEBAPP, COREDNS, Transport::Udp, 53, Outcome::Unanswered);
    assert_eq!(class_of(f), Class::Allowed);
}

#[test]
fn dropped_udp_the_policy_allows_is_an_unexpected_drop() {
    let f = flow(WEBAPP, COREDNS, Transport::Udp, 53, Outcome::Dropped);
    assert_eq!(class_of(f), Class::UnexpectedDrop);
}

#[test]
fn unknown_address_in_the_pod_cidr_is_unresolved() {
    let (classes, alerts) = verify(&[tcp("10.244.9.99", WEBAPP, 8080, Outcome::Established)]);
    assert_eq!(classes, vec![Class::Unresolved]);
    assert_eq!(alerts[0].rule, "FLOW-004");
    assert_eq!(alerts[0].src.kind, "unknown");
}

#[test]
fn two_outside_addresses_are_unresolved() {
    let f = tcp("198.51.100.7", "203.0.113.9", 443, Outcome::Established);
    assert_eq!(class_of(f), Class::Unresolved);
}

#[test]
fn an_outside_address_is_external_and_judged_by_ip_blocks() {
    // payments may reach 203.0.113.0/24 on 443 and nothing else outside.
    assert_eq!(
        class_of(tcp(PAYMENTS, "203.0.113.9", 443, Outcome::Established)),
        Class::Allowed
    );
    assert_eq!(
        class_of(tcp(PAYMENTS, "198.51.100.1", 443, Outcome::Established)),
        Class::Bypass
    );
}

#[test]
fn service_vip_is_judged_on_its_backends_target_port() {
    // Service frontend/webapp: 10.96.0.80:80 -> webapp's named port http (8080).
    let (classes, _) = verify(&[tcp("198.51.100.7", "10.96.0.80", 80, Outcome::Established)]);
    assert_eq!(classes, vec![Class::Allowed]);
    let (classes, alerts) = verify(&[tcp(REPORTS, "10.96.0.80", 80, Outcome::Established)]);
    // legacy has no policy, webapp's ingress admits any address (0.0.0.0/0)
    // but pods are not addresses under the default setting.
    assert_eq!(classes, vec![Class::Bypass]);
    assert_eq!(alerts[0].dst.kind, "service");
    assert_eq!(alerts[0].port, Some(8080));
}

#[test]
fn identity_names_resolve_without_addresses() {
    let mut f = tcp(WEBAPP, POSTGRES, 5432, Outcome::Forwarded);
    f.src.ip = None;
    f.src.identity = Some(std::sync::Arc::new(Identity {
        namespace: Some("frontend".into()),
        pod: Some("webapp-7d9f8c6b5-*".into()),
        ..Identity::default()
    }));
    f.dst.ip = None;
    f.dst.identity = Some(std::sync::Arc::new(Identity {
        namespace: Some("database".into()),
        pod: None,
        labels: vec!["app=postgres".into(), "controller-revision-hash=abc".into()],
        ..Identity::default()
    }));
    assert_eq!(class_of(f), Class::Bypass);
}

#[test]
fn hubble_host_to_an_endpoint_local_to_it_is_the_own_node_and_allowed() {
    // Hubble's `reserved:host` is the node that reported the flow, and a
    // destination with an endpoint ID runs on that node: a kubelet probe,
    // which NetworkPolicy cannot block, even though the manifests do not
    // say where the pod runs.
    let from_host = |node_local| {
        let mut f = tcp("10.0.2.1", POSTGRES, 5432, Outcome::Forwarded);
        f.src.identity = Some(std::sync::Arc::new(Identity {
            entity: Some("host".into()),
            ..Identity::default()
        }));
        f.dst.identity = Some(std::sync::Arc::new(Identity {
            namespace: Some("database".into()),
            pod: Some("postgres-0".into()),
            node_local,
            ..Identity::default()
        }));
        f
    };
    assert_eq!(class_of(from_host(true)), Class::Allowed);
    // Without that, it is a node the policy does not admit.
    assert_eq!(class_of(from_host(false)), Class::Bypass);
}

#[test]
fn identity_of_a_pod_the_inventory_lacks_is_unresolved() {
    let mut f = tcp(WEBAPP, POSTGRES, 5432, Outcome::Forwarded);
    f.src.identity = Some(std::sync::Arc::new(Identity {
        namespace: Some("shadow".into()),
        pod: Some("miner-1".into()),
        ..Identity::default()
    }));
    assert_eq!(class_of(f), Class::Unresolved);
}

#[test]
fn identical_connections_group_into_one_alert_with_a_count() {
    let flows: Vec<Flow> = (0..5)
        .map(|i| {
            let mut f = tcp(REPORTS, PAYMENTS, 50051, Outcome::Unanswered);
            f.first_seen = Some(1_700_000_000_000_000 + i);
            f
        })
        .collect();
    let (_, alerts) = verify(&flows);
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].connections, 5);
    assert_eq!(alerts[0].evidence.records.len(), 5);
}

#[test]
fn icmp_passes_only_where_everything_is_allowed() {
    // legacy has no policy at all; frontend's default-deny blocks ICMP.
    let ping = |src: &str, dst: &str| {
        let mut f = flow(src, dst, Transport::Icmp, 0, Outcome::Established);
        f.dst.port = None;
        class_of(f)
    };
    assert_eq!(ping(REPORTS, "198.51.100.7"), Class::Allowed);
    assert_eq!(ping(WEBAPP, "198.51.100.7"), Class::Bypass);
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn judged_run(flows: &[Flow], options: ScanOptions) -> Vec<Alert> {
    let inventory = shop();
    let engine = Engine::new(&inventory, &Settings::default());
    let mut verifier = Verifier::new(&engine, Resolver::new(&inventory, &[]), Settings::default());
    let mut scans = ScanDetector::new(options);
    for f in flows {
        let judged = verifier.verify(f);
        scans.observe(f, &judged);
    }
    scans.finish(&inventory)
}

#[test]
fn vertical_port_scan_names_source_target_and_port_count() {
    let flows: Vec<Flow> = (1..=40)
        .map(|port| tcp(REPORTS, REDIS, port, Outcome::Unanswered))
        .collect();
    let alerts = judged_run(&flows, ScanOptions::default());
    let scan = alerts
        .iter()
        .find(|a| a.rule == "FLOW-201")
        .expect("a port scan");
    assert_eq!(scan.src.ip, Some(ip(REPORTS)));
    assert_eq!(scan.dst.ip, Some(ip(REDIS)));
    assert_eq!(scan.evidence.figures["ports"], 40);
    assert!(
        scan.summary
            .contains("probed 40 ports of database/redis[StatefulSet]"),
        "{}",
        scan.summary
    );
    // 40 denied attempts in a minute is also a burst.
    assert!(alerts.iter().any(|a| a.rule == "FLOW-203"));
}

#[test]
fn ports_spread_beyond_the_window_are_not_a_scan() {
    let flows: Vec<Flow> = (1..=40)
        .map(|port| {
            let mut f = tcp(REPORTS, REDIS, port, Outcome::Unanswered);
            f.first_seen = Some(i64::from(port) * 10_000_000);
            f
        })
        .collect();
    let alerts = judged_run(&flows, ScanOptions::default());
    assert!(alerts.iter().all(|a| a.rule != "FLOW-201"), "{alerts:?}");
}

#[test]
fn horizontal_sweep_counts_hosts_that_did_not_answer() {
    let flows: Vec<Flow> = (1..=30)
        .map(|host| {
            tcp(
                REPORTS,
                &format!("10.244.7.{host}"),
                22,
                Outcome::Unanswered,
            )
        })
        .collect();
    let alerts = judged_run(&flows, ScanOptions::default());
    let sweep = alerts
        .iter()
        .find(|a| a.rule == "FLOW-202")
        .expect("a sweep");
    assert_eq!(sweep.port, Some(22));
    assert_eq!(sweep.evidence.figures["hosts"], 30);
}

#[test]
fn successful_scrapes_of_many_pods_are_not_a_sweep() {
    let flows: Vec<Flow> = (1..=30)
        .map(|host| {
            tcp(
                REPORTS,
                &format!("10.244.7.{host}"),
                9100,
                Outcome::Established,
            )
        })
        .collect();
    let alerts = judged_run(&flows, ScanOptions::default());
    assert!(alerts.iter().all(|a| a.rule != "FLOW-202"));
}

fn learn(flows: &[Flow]) -> Baseline {
    let inventory = shop();
    let engine = Engine::new(&inventory, &Settings::default());
    let verifier = Verifier::new(&engine, Resolver::new(&inventory, &[]), Settings::default());
    let mut learner = Learner::default();
    for f in flows {
        learner.observe(&inventory, f, &verifier.judge(f));
    }
    learner.finish()
}

fn deviations(baseline: &Baseline, flows: &[Flow]) -> Vec<Alert> {
    let inventory = shop();
    let engine = Engine::new(&inventory, &Settings::default());
    let verifier = Verifier::new(&engine, Resolver::new(&inventory, &[]), Settings::default());
    let mut detector = DeviationDetector::new(baseline, DeviationOptions::default());
    for f in flows {
        detector.observe(&inventory, f, &verifier.judge(f));
    }
    detector.finish()
}

fn normal_traffic() -> Vec<Flow> {
    vec![
        tcp("198.51.100.7", WEBAPP, 8080, Outcome::Established),
        tcp(WEBAPP, CHECKOUT, 8080, Outcome::Established),
        tcp(CHECKOUT, CART, 7070, Outcome::Established),
        tcp(CHECKOUT, POSTGRES, 5432, Outcome::Established),
        tcp(CHECKOUT, PAYMENTS, 50051, Outcome::Established),
        tcp(PAYMENTS, "203.0.113.9", 443, Outcome::Established),
        flow(WEBAPP, COREDNS, Transport::Udp, 53, Outcome::Established),
        // Did not get through: not normal behaviour, not learned.
        tcp(REPORTS, PAYMENTS, 50051, Outcome::Unanswered),
    ]
}

#[test]
fn baseline_learns_edges_that_got_through_and_round_trips_as_yaml() {
    let baseline = learn(&normal_traffic());
    assert_eq!(baseline.edges.len(), 7);
    assert_eq!(baseline.skipped_flows, 1);
    let edge = &baseline
        .edges
        .iter()
        .find(|e| e.dst == "payments/payments[Deployment]")
        .unwrap();
    assert_eq!(
        (edge.src.as_str(), edge.protocol.as_str(), edge.port),
        ("backend/checkout[Deployment]", "TCP", Some(50051))
    );
    assert_eq!(
        (edge.connections, edge.bytes, edge.max_bytes),
        (1, 1800, 1800)
    );
    let yaml = baseline.to_yaml();
    assert!(yaml.starts_with("# Palisade baseline"));
    assert_eq!(Baseline::from_yaml(&yaml).unwrap(), baseline);
}

#[test]
fn baseline_of_another_version_is_refused() {
    let yaml = learn(&normal_traffic())
        .to_yaml()
        .replace("version: 1", "version: 9");
    let err = Baseline::from_yaml(&yaml).unwrap_err();
    assert!(err.contains("version 9"), "{err}");
}

#[test]
fn deviations_new_edge_new_port_new_external_and_volume() {
    let baseline = learn(&normal_traffic());
    let mut big = tcp(CHECKOUT, POSTGRES, 5432, Outcome::Established);
    big.bytes = [50 << 20, 1000];
    let alerts = deviations(
        &baseline,
        &[
            tcp(WEBAPP, CHECKOUT, 8080, Outcome::Established),
            tcp(WEBAPP, CART, 8080, Outcome::Established),
            tcp(WEBAPP, CHECKOUT, 9090, Outcome::Established),
            tcp(PAYMENTS, "198.51.100.66", 443, Outcome::Established),
            big,
        ],
    );
    let rules: Vec<&str> = alerts.iter().map(|a| a.rule.as_ref()).collect();
    assert_eq!(rules.len(), 4, "{alerts:#?}");
    for rule in ["FLOW-101", "FLOW-102", "FLOW-103", "FLOW-104"] {
        assert!(rules.contains(&rule), "{rule} missing from {rules:?}");
    }
}

#[test]
fn advice_round_trips_through_the_engine() {
    let inventory = shop();
    let baseline = learn(&normal_traffic());
    let advice = advise(&inventory, &baseline, &Settings::default());
    assert!(advice.proof.holds(), "{:#?}", advice.proof);
    assert_eq!(advice.proof.observed_allowed, advice.proof.observed_total);
    assert_eq!(advice.proof.observed_total, 7);
    // Independently of the proof: load the YAML and ask the engine.
    let (generated, diagnostics) = Inventory::from_texts([("advice.yaml", advice.yaml.as_str())]);
    assert!(diagnostics.is_empty());
    let mut candidate = inventory.clone();
    candidate.policies = generated.policies;
    let engine = Engine::new(&candidate, &Settings::default());
    let w = |name: &str| {
        palisade_policy::EndpointRef::Workload(
            candidate
                .workloads
                .iter()
                .position(|w| w.name == name)
                .unwrap(),
        )
    };
    use palisade_inventory::Protocol::{Tcp, Udp};
    assert!(engine.allowed(w("checkout"), w("postgres"), Tcp, 5432));
    assert!(engine.allowed(w("webapp"), w("coredns"), Udp, 53));
    assert!(!engine.allowed(w("webapp"), w("postgres"), Tcp, 5432));
    assert!(!engine.allowed(w("checkout"), w("cart"), Tcp, 7071));
    // Named ports where the destination names them.
    assert!(advice.yaml.contains("port: postgres"), "{}", advice.yaml);
}

#[test]
fn advice_leaves_out_what_policy_cannot_express() {
    let inventory = shop();
    let mut traffic = normal_traffic();
    traffic.push(tcp("10.0.0.1", REPORTS, 8000, Outcome::Established));
    let baseline = learn(&traffic);
    let advice = advise(&inventory, &baseline, &Settings::default());
    assert!(advice.proof.holds(), "{:#?}", advice.proof);
    assert!(advice.yaml.contains("cidr: 10.0.0.1/32"));
}

/// A data-plane record made `at` one end (`reporter`), with `replies`
/// packets seen coming back.
fn reported(
    src: &str,
    dst: &str,
    port: u16,
    outcome: Outcome,
    at: &'static str,
    replies: u64,
) -> Flow {
    let mut f = tcp(src, dst, port, outcome);
    f.reporter = Some(std::borrow::Cow::Borrowed(at));
    f.packets = [1, replies];
    f
}

#[test]
fn a_record_made_at_the_source_is_judged_by_the_source_egress_alone() {
    // legacy/reports has no egress policy; payments admits only checkout.
    // Hubble's EGRESS record (Calico's src record) of the request only
    // shows that the source let it out: no bypass. The destination's
    // record, or a reply, shows the whole path.
    let at_source = reported(REPORTS, PAYMENTS, 50051, Outcome::Forwarded, "egress", 0);
    assert_eq!(class_of(at_source), Class::Allowed);
    let calico_src = reported(REPORTS, PAYMENTS, 50051, Outcome::Forwarded, "src", 0);
    assert_eq!(class_of(calico_src), Class::Allowed);
    let at_destination = reported(REPORTS, PAYMENTS, 50051, Outcome::Forwarded, "ingress", 0);
    assert_eq!(class_of(at_destination), Class::Bypass);
    let answered = reported(REPORTS, PAYMENTS, 50051, Outcome::Forwarded, "egress", 1);
    assert_eq!(class_of(answered), Class::Bypass);
    let dropped_there = reported(REPORTS, PAYMENTS, 50051, Outcome::Dropped, "ingress", 0);
    assert_eq!(class_of(dropped_there), Class::BlockedAttempt);
}

#[test]
fn a_record_made_at_the_source_still_catches_an_egress_bypass() {
    // frontend's egress admits DNS only: a webapp connection to postgres
    // let out by the source is a bypass of its egress policy.
    let at_source = reported(WEBAPP, POSTGRES, 5432, Outcome::Forwarded, "egress", 0);
    assert_eq!(class_of(at_source), Class::Bypass);
    // The source dropping what its egress allows is an unexpected drop.
    let dropped = reported(REPORTS, PAYMENTS, 50051, Outcome::Dropped, "egress", 0);
    assert_eq!(class_of(dropped), Class::UnexpectedDrop);
}

#[test]
fn a_baseline_learns_only_what_reached_the_destination() {
    let inventory = shop();
    let engine = Engine::new(&inventory, &Settings::default());
    let verifier = Verifier::new(&engine, Resolver::new(&inventory, &[]), Settings::default());
    let mut learner = Learner::default();
    let flows = [
        reported(REPORTS, PAYMENTS, 50051, Outcome::Forwarded, "egress", 0),
        reported(REPORTS, PAYMENTS, 50051, Outcome::Forwarded, "egress", 1),
        reported(CHECKOUT, PAYMENTS, 50051, Outcome::Forwarded, "ingress", 0),
    ];
    for f in &flows {
        learner.observe(&inventory, f, &verifier.judge(f));
    }
    let baseline = learner.finish();
    // The request seen leaving reports is left out; its answered twin and
    // checkout's connection are learned.
    assert_eq!(baseline.learned_connections, 2);
    assert_eq!(baseline.edges.len(), 2);
}
