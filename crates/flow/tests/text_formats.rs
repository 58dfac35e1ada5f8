//! The text flow readers (Hubble, Calico, conntrack, generic JSON lines and
//! CSV) against real samples and against broken input.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use palisade_flow::calico::read_calico;
use palisade_flow::conntrack::read_conntrack;
use palisade_flow::generic::{
    self, LOST_EVENTS_REASON, ParsedLine, UNREADABLE_REASON, read_csv, read_jsonl, record_line,
    sniff,
};
use palisade_flow::hubble::{parse_hubble_line, read_hubble};
use palisade_flow::{Flow, Format, Outcome, ReadStats, RecordRef, Transport};

const HUBBLE_10: &[u8] = include_bytes!("data/hubble-basic-sample-10-flows.json");
const HUBBLE_400: &[u8] = include_bytes!("data/hubble-basic-sample-400-tcp-flows.json");
const CALICO: &[u8] = include_bytes!("data/calico-flows.log");
const CONNTRACK: &[u8] = include_bytes!("data/conntrack-lab-events.txt");
const CONNTRACK_TS: &[u8] = include_bytes!("data/conntrack-lab-events-timestamp.txt");

type Reader = fn(&[u8], Arc<str>, &mut dyn FnMut(Flow)) -> ReadStats;

const READERS: [(&str, Reader); 5] = [
    ("hubble", |input, file, sink| read_hubble(input, file, sink)),
    ("calico", |input, file, sink| read_calico(input, file, sink)),
    ("conntrack", |input, file, sink| {
        read_conntrack(input, file, sink)
    }),
    ("jsonl", |input, file, sink| read_jsonl(input, file, sink)),
    ("csv", |input, file, sink| read_csv(input, file, sink)),
];

fn read(reader: Reader, input: &[u8]) -> (Vec<Flow>, ReadStats) {
    let mut flows = Vec::new();
    let stats = reader(input, Arc::from("test-input"), &mut |flow| flows.push(flow));
    (flows, stats)
}

fn reader(name: &str) -> Reader {
    READERS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, r)| *r)
        .expect("known reader")
}

fn ip(text: &str) -> Option<IpAddr> {
    Some(text.parse().expect("test IP"))
}

fn diagnostic_lines(stats: &ReadStats) -> Vec<u64> {
    stats.diagnostics.iter().map(|d| d.record).collect()
}

// ---------------------------------------------------------------- Hubble

#[test]
fn hubble_first_flow_is_a_reply_turned_round() {
    let (flows, stats) = read(reader("hubble"), HUBBLE_10);
    assert_eq!((flows.len(), stats.records, stats.flows), (10, 10, 10));
    assert!(stats.diagnostics.is_empty() && stats.skipped.is_empty());

    // Line 1 is reviews:15020 → host:42044 with "reply": true, so the
    // initiator is the host, and a forwarded reply means it was answered.
    let first = &flows[0];
    assert_eq!(first.evidence.record, 1);
    assert_eq!(first.evidence.format, Format::Hubble);
    assert_eq!(first.transport, Transport::Tcp);
    assert_eq!(first.outcome, Outcome::Established);
    assert_eq!(
        (first.src.ip, first.src.port),
        (ip("10.0.2.1"), Some(42044))
    );
    assert_eq!(
        (first.dst.ip, first.dst.port),
        (ip("10.0.2.16"), Some(15020))
    );
    assert_eq!(first.packets, [0, 1]);
    assert!(!first.direction_inferred);
    assert_eq!(first.reporter.as_deref(), Some("ingress"));
    // 2021-06-16T16:52:13.136834446Z, truncated to the microsecond.
    assert_eq!(first.first_seen, Some(1_623_862_333_136_834));
    let host = first.src.identity.as_ref().expect("host identity");
    assert_eq!(host.entity.as_deref(), Some("host"));
    let pod = first.dst.identity.as_ref().expect("pod identity");
    assert_eq!(pod.namespace.as_deref(), Some("bookinfo"));
    assert_eq!(pod.pod.as_deref(), Some("reviews-v1-545db77b95-s6jb8"));
    assert_eq!(
        pod.labels,
        [
            "app=reviews",
            "security.istio.io/tlsMode=istio",
            "version=v1"
        ]
    );
    assert_eq!(pod.entity, None);

    // Line 2 is the same connection's next packet, host → reviews, with no
    // reply field: same direction, Hubble did not say, so it is inferred.
    let second = &flows[1];
    assert_eq!(
        (second.src.ip, second.dst.port),
        (ip("10.0.2.1"), Some(15020))
    );
    assert_eq!(second.packets, [1, 0]);
    assert!(second.direction_inferred);

    // Line 7 is a reply from the internet to a pod's egress connection.
    let seventh = &flows[6];
    assert_eq!(
        (seventh.src.ip, seventh.src.port),
        (ip("10.0.2.13"), Some(36804))
    );
    assert_eq!(
        (seventh.dst.ip, seventh.dst.port),
        (ip("35.246.31.234"), Some(443))
    );
    assert_eq!(seventh.reporter.as_deref(), Some("egress"));
}

/// The parsed flow of every line, with the line's raw JSON.
fn hubble_400_lines() -> Vec<(serde_json::Value, Flow)> {
    let text = std::str::from_utf8(HUBBLE_400).expect("sample is UTF-8");
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            let evidence = RecordRef {
                file: Arc::from("400"),
                format: Format::Hubble,
                record: i as u64 + 1,
            };
            let flow = match parse_hubble_line(line.as_bytes(), evidence) {
                Ok(ParsedLine::Flow(flow)) => flow,
                other => panic!("line {}: {other:?}", i + 1),
            };
            (
                serde_json::from_str(line).expect("sample line is JSON"),
                flow,
            )
        })
        .collect()
}

#[test]
fn hubble_policy_verdict_events_are_kept_as_flows() {
    let lines = hubble_400_lines();
    assert_eq!(lines.len(), 400);
    let verdicts: Vec<&Flow> = lines
        .iter()
        .filter(|(json, _)| json["flow"]["event_type"]["type"] == 5)
        .map(|(_, flow)| flow)
        .collect();
    assert_eq!(verdicts.len(), 27);
    for flow in verdicts {
        // REDIRECTED (to the L7 proxy) is a forward; these are the SYNs to
        // the bookinfo services' port 9080.
        assert_eq!(flow.outcome, Outcome::Forwarded);
        assert_eq!(flow.dst.port, Some(9080));
        assert_eq!(flow.packets, [1, 0]);
    }
}

#[test]
fn hubble_replies_put_the_initiator_in_src() {
    let lines = hubble_400_lines();
    let mut replies = 0;
    for (json, flow) in &lines {
        let f = &json["flow"];
        let is_reply = f["is_reply"]
            .as_bool()
            .or(f["reply"].as_bool())
            .unwrap_or(false);
        let (from, to) = (&f["IP"]["source"], &f["IP"]["destination"]);
        let (src, dst) = if is_reply { (to, from) } else { (from, to) };
        assert_eq!(flow.src.ip, ip(src.as_str().expect("IP")));
        assert_eq!(flow.dst.ip, ip(dst.as_str().expect("IP")));
        if is_reply {
            replies += 1;
            assert_eq!(flow.packets, [0, u64::from(f["Type"] != "L7")]);
        }
    }
    assert_eq!(replies, 132);
    // L7 messages are not packets.
    let l7 = lines
        .iter()
        .filter(|(json, _)| json["flow"]["Type"] == "L7");
    assert!(l7.into_iter().all(|(_, flow)| flow.packets == [0, 0]));
}

#[test]
fn hubble_other_responses_are_counted_and_lost_events_summed() {
    let mut input = Vec::new();
    input.extend_from_slice(&HUBBLE_10[..HUBBLE_10.iter().position(|&b| b == b'\n').unwrap() + 1]);
    input.extend_from_slice(br#"{"node_status":{"state_change":"NODE_CONNECTED","node_names":["a"]},"node_name":"a","time":"2021-06-16T16:52:14Z"}"#);
    input.extend_from_slice(b"\r\n\n");
    input.extend_from_slice(br#"{"lost_events":{"source":"PERF_EVENT_RING_BUFFER","num_events_lost":"7","cpu":{"value":1}},"node_name":"a"}"#);
    input.push(b'\n');
    input.extend_from_slice(
        br#"{"lost_events":{"source":"HUBBLE_RING_BUFFER","num_events_lost":5}}"#,
    );
    input.push(b'\n');
    input
        .extend_from_slice(br#"{"flow":{"verdict":"VERDICT_UNKNOWN","IP":{"source":"10.0.0.1"}}}"#);
    let (flows, stats) = read(reader("hubble"), &input);
    assert_eq!(flows.len(), 1);
    assert_eq!(stats.records, 5);
    assert_eq!(stats.skipped["hubble node_status"], 1);
    assert_eq!(stats.skipped[LOST_EVENTS_REASON], 12);
    assert_eq!(stats.skipped["hubble flow with unknown verdict"], 1);
    assert_eq!(diagnostic_lines(&stats), [4, 5, 6]);
    assert!(stats.diagnostics[0].message.contains("7 events lost"));
    assert!(!stats.truncated);
}

#[test]
fn hubble_bad_lines_are_reported_and_the_rest_read() {
    let text = std::str::from_utf8(HUBBLE_10).unwrap();
    let good: Vec<&str> = text.lines().collect();
    let mut input = Vec::new();
    for (i, line) in good.iter().enumerate() {
        match i {
            2 => input.extend_from_slice(&line.as_bytes()[..line.len() / 2]),
            4 => input.extend_from_slice(line.replace("\"IP\":{", "\"IP\":[{").as_bytes()),
            6 => input.extend_from_slice(&[0xff, 0xfe, b'{', b'}']),
            8 => input.extend_from_slice(line.replace("10.0.2.1\"", "10.0.2.999\"").as_bytes()),
            _ => input.extend_from_slice(line.as_bytes()),
        }
        input.push(b'\n');
    }
    let (flows, stats) = read(reader("hubble"), &input);
    assert_eq!(flows.len(), 6);
    assert_eq!(diagnostic_lines(&stats), [3, 5, 7, 9]);
    assert_eq!(stats.skipped[UNREADABLE_REASON], 4);
    let messages: Vec<&str> = stats
        .diagnostics
        .iter()
        .map(|d| d.message.as_str())
        .collect();
    assert!(messages[0].starts_with("truncated JSON"), "{}", messages[0]);
    assert!(messages[2].starts_with("not UTF-8"), "{}", messages[2]);
    assert!(messages[3].contains("10.0.2.999"), "{}", messages[3]);
    let lines: Vec<u64> = flows.iter().map(|f| f.evidence.record).collect();
    assert_eq!(lines, [1, 2, 4, 6, 8, 10]);
}

#[test]
fn per_line_parsing_accounts_exactly_like_the_streaming_reader() {
    let (streamed, streamed_stats) = read(reader("hubble"), HUBBLE_400);
    let file: Arc<str> = Arc::from("test-input");
    let mut stats = ReadStats::default();
    let mut flows = Vec::new();
    for (i, line) in HUBBLE_400.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let number = i as u64 + 1;
        let evidence = RecordRef {
            file: file.clone(),
            format: Format::Hubble,
            record: number,
        };
        stats.records += 1;
        let result = parse_hubble_line(line, evidence);
        record_line(&mut stats, &file, number, result, &mut |f| flows.push(f));
    }
    assert_eq!(flows, streamed);
    assert_eq!(stats, streamed_stats);
}

// ---------------------------------------------------------------- Calico

#[test]
fn calico_aggregated_records() {
    let (flows, stats) = read(reader("calico"), CALICO);
    assert_eq!((flows.len(), stats.records), (4, 4));
    assert!(stats.diagnostics.is_empty());

    let first = &flows[0];
    assert_eq!(first.transport, Transport::Udp);
    assert_eq!(first.outcome, Outcome::Forwarded);
    assert_eq!(first.connections, 41);
    assert_eq!((first.src.ip, first.dst.ip), (None, None));
    assert_eq!((first.src.port, first.dst.port), (None, Some(53)));
    assert_eq!(first.first_seen, Some(1_577_834_657_000_000));
    assert_eq!(first.last_seen, Some(1_577_834_965_000_000));
    let src = first.src.identity.as_ref().expect("source identity");
    assert_eq!(src.namespace.as_deref(), Some("tigera-intrusion-detection"));
    assert_eq!(
        src.pod.as_deref(),
        Some("intrusion-detection-controller-5bdcdd9c97-*")
    );
    assert_eq!(
        src.labels,
        [
            "pod-template-hash=5bdcdd9c97",
            "k8s-app=intrusion-detection-controller"
        ]
    );
    let dst = first.dst.identity.as_ref().expect("destination identity");
    assert_eq!(
        (dst.namespace.as_deref(), dst.pod.as_deref()),
        (Some("kube-system"), Some("coredns-576cbf47c7-*"))
    );
    assert_eq!(first.reporter.as_deref(), Some("dst"));
    assert_eq!(
        first.dataplane_policies,
        ["0|__PROFILE__|__PROFILE__.kns.kube-system|allow"]
    );
    // Reported by the DNS server: what it received (bytes_in) came from
    // the initiator.
    assert_eq!((first.packets, first.bytes), ([37, 37], [4288, 7644]));

    // Reported by the client: what it sent (bytes_out) is the initiator's.
    let third = &flows[2];
    assert_eq!(third.reporter.as_deref(), Some("src"));
    assert_eq!((third.connections, third.bytes), (31, [1486, 2661]));
    assert_eq!(
        third.src.identity.as_ref().and_then(|i| i.pod.as_deref()),
        Some("compliance-benchmarker-*")
    );
}

// ---------------------------------------------------------------- conntrack

/// A connection: source, destination, destination port, transport.
type ConnectionKey = (String, String, u16, Transport);

/// The lab's connections by key.
fn lab_flows(input: &[u8]) -> (BTreeMap<ConnectionKey, Flow>, ReadStats) {
    let (flows, stats) = read(reader("conntrack"), input);
    let count = flows.len();
    let by_key: BTreeMap<_, _> = flows
        .into_iter()
        .map(|f| {
            let key = (
                f.src.ip.map(|i| i.to_string()).unwrap_or_default(),
                f.dst.ip.map(|i| i.to_string()).unwrap_or_default(),
                f.dst.port.unwrap_or(0),
                f.transport,
            );
            (key, f)
        })
        .collect();
    assert_eq!(by_key.len(), count, "one flow per connection");
    (by_key, stats)
}

fn key(src: &str, dst: &str, port: u16, transport: Transport) -> ConnectionKey {
    (src.to_string(), dst.to_string(), port, transport)
}

fn assert_lab_connections(input: &[u8]) -> BTreeMap<ConnectionKey, Flow> {
    let (flows, stats) = lab_flows(input);
    assert_eq!(stats.records, 16);
    assert!(stats.diagnostics.is_empty(), "{:?}", stats.diagnostics);
    let outcomes: Vec<_> = flows.iter().map(|(k, f)| (k.clone(), f.outcome)).collect();
    assert_eq!(
        outcomes,
        [
            (
                key("10.77.0.1", "224.0.0.22", 0, Transport::Other(2)),
                Outcome::Unanswered
            ),
            (
                key("10.77.0.11", "10.77.0.12", 8080, Transport::Tcp),
                Outcome::Established
            ),
            (
                key("10.77.0.11", "10.77.0.12", 8081, Transport::Tcp),
                Outcome::Refused
            ),
            (
                key("10.77.0.12", "10.77.0.13", 5353, Transport::Udp),
                Outcome::Unanswered
            ),
            (
                key("10.77.0.12", "10.77.0.13", 9090, Transport::Tcp),
                Outcome::Established
            ),
        ]
    );
    let web = &flows[&key("10.77.0.11", "10.77.0.12", 8080, Transport::Tcp)];
    assert_eq!(web.src.port, Some(33772));
    assert_eq!(web.evidence.record, 2);
    assert_eq!(web.reporter, None, "no NAT in the lab");
    assert_eq!(stats.flows, 5);
    flows
}

#[test]
fn conntrack_lab_connections() {
    let flows = assert_lab_connections(CONNTRACK);
    assert!(flows.values().all(|f| f.first_seen.is_none()));
}

#[test]
fn conntrack_lab_connections_with_timestamps() {
    let flows = assert_lab_connections(CONNTRACK_TS);
    let refused = &flows[&key("10.77.0.11", "10.77.0.12", 8081, Transport::Tcp)];
    assert_eq!(refused.first_seen, Some(1_795_345_176_440_458));
    assert_eq!(refused.last_seen, Some(1_795_345_176_440_478));
    let web = &flows[&key("10.77.0.11", "10.77.0.12", 8080, Transport::Tcp)];
    assert_eq!(web.first_seen, Some(1_795_345_175_431_827));
    assert_eq!(web.last_seen, Some(1_795_345_176_434_069));
}

#[test]
fn conntrack_nat_accounting_icmp_and_listings() {
    let input = b"\
[NEW] tcp 6 120 SYN_SENT src=10.0.0.5 dst=10.96.0.10 sport=40000 dport=53 [UNREPLIED] src=10.244.1.7 dst=10.0.0.5 sport=5353 dport=40000 zone=3 id=12345
[DESTROY] tcp 6 src=10.0.0.5 dst=10.96.0.10 sport=40000 dport=53 packets=5 bytes=300 src=10.244.1.7 dst=10.0.0.5 sport=5353 dport=40000 packets=4 bytes=500 [ASSURED] mark=0 zone=3 use=1 id=12345
    [NEW] icmp     1 30 src=10.0.0.1 dst=10.0.0.2 type=8 code=0 id=77 [UNREPLIED] src=10.0.0.2 dst=10.0.0.1 type=0 code=0 id=77 id=999
 [UPDATE] icmp     1 30 src=10.0.0.1 dst=10.0.0.2 type=8 code=0 id=77 src=10.0.0.2 dst=10.0.0.1 type=0 code=0 id=77 mark=0 future=thing
ipv6     10 udp      17 29 src=fd00::1 dst=fd00::2 sport=1000 dport=53 src=fd00::2 dst=fd00::1 sport=53 dport=1000 mark=0 use=1
conntrack v1.4.6 (conntrack-tools): 4 flow events have been shown.
";
    let (flows, stats) = read(reader("conntrack"), input);
    assert!(stats.diagnostics.is_empty(), "{:?}", stats.diagnostics);
    assert_eq!(stats.skipped["conntrack banner"], 1);
    assert_eq!(flows.len(), 3);
    let dns = &flows[0];
    assert_eq!(dns.outcome, Outcome::Established);
    assert_eq!(dns.reporter.as_deref(), Some("dnat:10.244.1.7:5353"));
    assert_eq!((dns.packets, dns.bytes), ([5, 4], [300, 500]));
    assert_eq!((dns.dst.ip, dns.dst.port), (ip("10.96.0.10"), Some(53)));
    let ping = &flows[1];
    assert_eq!(
        (ping.transport, ping.outcome),
        (Transport::Icmp, Outcome::Established)
    );
    assert_eq!((ping.icmp, ping.src.port), (Some((8, 0)), None));
    assert_eq!(ping.reporter, None);
    let listed = &flows[2];
    assert_eq!(
        (listed.src.ip, listed.outcome),
        (ip("fd00::1"), Outcome::Established)
    );
}

#[test]
fn conntrack_unanswered_syn_and_bad_lines() {
    let input = b"\
[NEW] tcp 6 120 SYN_SENT src=10.0.0.1 dst=10.0.0.2 sport=1 dport=2 [UNREPLIED] src=10.0.0.2 dst=10.0.0.1 sport=2 dport=1
[NEW] tcp 6 120 SYN_SENT src=10.0.0.1 dst=10.0.0.2 sport=1
[DESTROY] tcp 6 src=10.0.0.1 dst=10.0.0.2 sport=1 dport=2 [UNREPLIED] src=10.0.0.2 dst=10.0.0.1 sport=2 dport=2
[NEW] tcp 600 120 SYN_SENT src=10.0.0.1 dst=10.0.0.2 sport=3 dport=4
[NEW] tcp 6 120 SYN_SENT src=10.0.0.1 dst=10.0.0.2 sport=3 dport=99999
";
    let (flows, stats) = read(reader("conntrack"), input);
    assert_eq!(diagnostic_lines(&stats), [2, 4, 5]);
    assert_eq!(flows.len(), 1);
    // Destroyed by its timeout in SYN_SENT: nobody answered.
    assert_eq!(flows[0].outcome, Outcome::Unanswered);
    assert_eq!(flows[0].evidence.record, 1);
}

// ---------------------------------------------------------------- generic

fn sample_flows() -> Vec<Flow> {
    let evidence = RecordRef {
        file: Arc::from("test-input"),
        format: Format::Jsonl,
        record: 1,
    };
    let mut web = Flow::new(evidence.clone(), Transport::Tcp, Outcome::Established);
    web.first_seen = Some(1_714_557_600_250_000);
    web.last_seen = Some(1_714_557_601_000_000);
    web.src.ip = ip("10.0.0.1");
    web.src.port = Some(40000);
    web.dst.ip = ip("10.0.0.2");
    web.dst.port = Some(8080);
    web.packets = [10, 8];
    web.bytes = [1200, 5000];
    web.src.identity = Some(std::sync::Arc::new(palisade_flow::Identity {
        namespace: Some("shop".into()),
        pod: Some("web, \"blue\"\nv2".into()),
        ..Default::default()
    }));
    let mut ping = Flow::new(evidence.clone(), Transport::Icmpv6, Outcome::Unanswered);
    ping.src.ip = ip("fd00::1");
    ping.dst.ip = ip("fd00::2");
    let mut grouped = Flow::new(evidence, Transport::Udp, Outcome::Dropped);
    grouped.connections = 12;
    grouped.src.identity = Some(std::sync::Arc::new(palisade_flow::Identity {
        namespace: Some("a".into()),
        pod: Some("api-7d9f-*".into()),
        ..Default::default()
    }));
    grouped.dst.ip = ip("8.8.8.8");
    grouped.dst.port = Some(53);
    vec![web, ping, grouped]
}

/// The generic schema's fields of a flow, as text, absent when empty.
fn schema_fields(flow: &Flow) -> Vec<(&'static str, Option<String>)> {
    let side = |e: &palisade_flow::FlowEndpoint| {
        let identity = e.identity.as_ref();
        (
            e.ip.map(|i| i.to_string()),
            e.port.map(|p| p.to_string()),
            identity.and_then(|i| i.namespace.clone()),
            identity.and_then(|i| i.pod.clone()),
        )
    };
    let (sip, sport, sns, spod) = side(&flow.src);
    let (dip, dport, dns, dpod) = side(&flow.dst);
    let seconds = |t: Option<i64>| t.map(|t| format!("{}.{:06}", t / 1_000_000, t % 1_000_000));
    vec![
        ("time", seconds(flow.first_seen)),
        ("end_time", seconds(flow.last_seen)),
        ("src_ip", sip),
        ("src_port", sport),
        ("dst_ip", dip),
        ("dst_port", dport),
        ("protocol", Some(flow.transport.to_string())),
        ("outcome", Some(flow.outcome.to_string())),
        ("src_namespace", sns),
        ("src_pod", spod),
        ("dst_namespace", dns),
        ("dst_pod", dpod),
        ("packets_out", Some(flow.packets[0].to_string())),
        ("packets_in", Some(flow.packets[1].to_string())),
        ("bytes_out", Some(flow.bytes[0].to_string())),
        ("bytes_in", Some(flow.bytes[1].to_string())),
        ("connections", Some(flow.connections.to_string())),
    ]
}

fn csv_quote(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

fn assert_same_flows(read_back: &[Flow], expected: &[Flow], format: Format, lines: &[u64]) {
    assert_eq!(read_back.len(), expected.len());
    for ((got, want), line) in read_back.iter().zip(expected).zip(lines) {
        let mut want = want.clone();
        want.evidence.format = format;
        want.evidence.record = *line;
        assert_eq!(got, &want);
    }
}

#[test]
fn generic_jsonl_round_trip() {
    let flows = sample_flows();
    let mut input = String::new();
    for flow in &flows {
        let object: serde_json::Map<String, serde_json::Value> = schema_fields(flow)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.map_or(serde_json::Value::Null, Into::into)))
            .collect();
        input.push_str(&serde_json::Value::Object(object).to_string());
        input.push('\n');
    }
    let (read_back, stats) = read(reader("jsonl"), input.as_bytes());
    assert!(stats.diagnostics.is_empty(), "{:?}", stats.diagnostics);
    assert_same_flows(&read_back, &flows, Format::Jsonl, &[1, 2, 3]);
}

#[test]
fn generic_csv_round_trip_with_quoting() {
    let flows = sample_flows();
    // Columns in reverse order, an unknown column, CRLF line ends.
    let mut columns: Vec<&str> = schema_fields(&flows[0]).iter().map(|(k, _)| *k).collect();
    columns.reverse();
    let mut input = format!("note,{}\r\n", columns.join(",").to_uppercase());
    for flow in &flows {
        let fields: BTreeMap<_, _> = schema_fields(flow).into_iter().collect();
        let cells: Vec<String> = columns
            .iter()
            .map(|c| fields[c].as_deref().map(csv_quote).unwrap_or_default())
            .collect();
        input.push_str(&format!(
            "\"ignored, \"\"really\"\"\",{}\r\n",
            cells.join(",")
        ));
    }
    let (read_back, stats) = read(reader("csv"), input.as_bytes());
    assert!(stats.diagnostics.is_empty(), "{:?}", stats.diagnostics);
    assert_eq!(stats.skipped["CSV header"], 1);
    // The first row spans two lines: its pod name holds a newline.
    assert_same_flows(&read_back, &flows, Format::Csv, &[2, 4, 5]);
    assert_eq!(
        read_back[0]
            .src
            .identity
            .as_ref()
            .and_then(|i| i.pod.as_deref()),
        Some("web, \"blue\"\nv2")
    );
}

#[test]
fn generic_records_accept_the_documented_spellings() {
    let input = br#"{"time":"2024-05-01T12:00:00.25+02:00","src_ip":"10.0.0.1","dst_ip":"10.0.0.2","dst_port":"443","protocol":6,"outcome":"reset","extra":{"x":[1]}}
{"time":1714557600.25,"src_pod":"web-1","src_namespace":"a","dst_ip":"10.0.0.2","protocol":"icmp","dst_port":7,"outcome":"deny","connections":null}
"#;
    let (flows, stats) = read(reader("jsonl"), input);
    assert!(stats.diagnostics.is_empty(), "{:?}", stats.diagnostics);
    assert_eq!(flows[0].first_seen, Some(1_714_557_600_250_000));
    assert_eq!(
        (flows[0].transport, flows[0].outcome),
        (Transport::Tcp, Outcome::Refused)
    );
    assert_eq!(flows[0].dst.port, Some(443));
    assert_eq!(flows[1].first_seen, flows[0].first_seen);
    assert_eq!(
        (flows[1].outcome, flows[1].dst.port),
        (Outcome::Dropped, None)
    );
    assert_eq!(flows[1].src.ip, None);
}

#[test]
fn generic_bad_records_name_their_line_and_reason() {
    let jsonl = br#"{"src_ip":"10.0.0.1","dst_ip":"10.0.0.2","protocol":"tcp","outcome":"established"}
{"src_ip":"10.0.0.1","dst_ip":"10.0.0.2","protocol":"tcp"}
{"src_ip":"10.0.0.1","dst_ip":"10.0.0.2","protocol":"tcp","outcome":"maybe"}
{"src_ip":"10.0.0.1","dst_ip":"10.0.0.2","protocol":"tcp","outcome":"dropped","dst_port":true}
{"dst_ip":"10.0.0.2","protocol":"tcp","outcome":"dropped"}
{"src_ip":"10.0.0.1","src_ip":"10.0.0.3","dst_ip":"10.0.0.2","protocol":"tcp","outcome":"dropped"}
{"src_ip":"10.0.0.1","dst_ip":"10.0.0.2","protocol":"tcp","outcome":"dropped","time":"2024-13-01T00:00:00Z"}
[1,2,3]
{"src_ip":"10.0.0.1","dst_ip":"10.0.0.2","protocol":"udp","outcome":"unanswered"}"#;
    let (flows, stats) = read(reader("jsonl"), jsonl);
    assert_eq!(flows.len(), 2);
    assert_eq!(diagnostic_lines(&stats), [2, 3, 4, 5, 6, 7, 8]);
    let reasons: Vec<&str> = stats
        .diagnostics
        .iter()
        .map(|d| d.message.as_str())
        .collect();
    assert!(reasons[0].contains("outcome is missing"), "{}", reasons[0]);
    assert!(reasons[1].contains("\"maybe\""), "{}", reasons[1]);
    assert!(
        reasons[3].contains("neither src_ip nor src_pod"),
        "{}",
        reasons[3]
    );
    assert!(
        reasons[4].contains("src_ip is given twice"),
        "{}",
        reasons[4]
    );
    assert!(
        !stats.truncated,
        "the last line parsed, so no sign of truncation"
    );

    let csv = b"src_ip,dst_ip,dst_port,protocol,outcome\n\
        10.0.0.1,10.0.0.2,80,tcp,established\n\
        10.0.0.1,10.0.0.2,tcp,established\n\
        src_ip,dst_ip,dst_port,protocol,outcome\n\
        10.0.0.1,10.0.0.2,80,tcp,\"established\n";
    let (flows, stats) = read(reader("csv"), csv);
    assert_eq!(flows.len(), 1);
    assert_eq!(stats.skipped["repeated CSV header"], 1);
    assert_eq!(diagnostic_lines(&stats), [3, 5]);
    assert!(
        stats.diagnostics[0]
            .message
            .contains("4 cells but the header has 5")
    );
    assert!(stats.truncated, "an unterminated quote at the end");

    let headless = b"source,destination\n1,2\n3,4\n";
    let (flows, stats) = read(reader("csv"), headless);
    assert!(flows.is_empty());
    assert_eq!(diagnostic_lines(&stats), [1]);
    assert_eq!(stats.skipped["CSV row under an unusable header"], 2);
}

// ---------------------------------------------------------------- sniffing

#[test]
fn sniff_recognises_every_sample() {
    assert_eq!(sniff(HUBBLE_10), Some(Format::Hubble));
    assert_eq!(sniff(&HUBBLE_400[..4096]), Some(Format::Hubble));
    assert_eq!(sniff(CALICO), Some(Format::Calico));
    assert_eq!(sniff(CONNTRACK), Some(Format::Conntrack));
    assert_eq!(sniff(CONNTRACK_TS), Some(Format::Conntrack));
    assert_eq!(
        sniff(b"time,src_ip,dst_ip,protocol,outcome\n"),
        Some(Format::Csv)
    );
    assert_eq!(
        sniff(br#"{"src_ip":"10.0.0.1","outcome":"dropped"}"#),
        Some(Format::Jsonl)
    );
}

// ---------------------------------------------------------------- robustness

fn samples() -> Vec<&'static [u8]> {
    vec![
        HUBBLE_10,
        CALICO,
        CONNTRACK,
        CONNTRACK_TS,
        &HUBBLE_400[..20_000],
    ]
}

/// Reads `input` with every reader: none may panic, and every record is
/// accounted for as a flow, a skip or a diagnostic.
fn read_with_all(input: &[u8]) {
    for (name, reader) in READERS {
        let (flows, stats) = read(reader, input);
        assert_eq!(flows.len() as u64, stats.flows, "{name}");
        let problems = stats.diagnostics.len() as u64 + stats.diagnostics_dropped;
        assert!(
            problems <= stats.records + 1,
            "{name}: {problems} diagnostics"
        );
        if name != "conntrack" {
            // One record, one result (conntrack gathers several events).
            // Lost events are counted with the skips but are not lines.
            let lost = stats.skipped.get(LOST_EVENTS_REASON).copied().unwrap_or(0);
            let skipped = stats.skipped_total() - lost;
            assert_eq!(stats.records, stats.flows + skipped, "{name}");
        }
    }
}

#[test]
fn every_prefix_of_every_sample_reads_without_panic() {
    for sample in samples() {
        let step = (sample.len() / 400).max(1);
        for end in (0..=sample.len()).step_by(step) {
            read_with_all(&sample[..end]);
        }
    }
}

#[test]
fn a_cut_last_line_is_reported_as_truncation() {
    let cut = &HUBBLE_10[..HUBBLE_10.len() - 40];
    let (flows, stats) = read(reader("hubble"), cut);
    assert_eq!(flows.len(), 9);
    assert!(stats.truncated);
    assert_eq!(diagnostic_lines(&stats), [10]);
    assert!(stats.diagnostics[0].message.contains("may be truncated"));
}

#[test]
fn garbage_and_binary_input_reads_without_panic() {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..300 {
        let len = (next() % 600) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if round % 3 == 0 {
            // Mostly-text garbage exercises the parsers, not only UTF-8.
            let alphabet = b"{}[]\":,=. \n\r\t0123456789abcdefsrcdstporttcpudp[NEW]-\\";
            for b in &mut bytes {
                *b = alphabet[*b as usize % alphabet.len()];
            }
        }
        read_with_all(&bytes);
    }
    // Samples with bytes flipped: close to valid, so deep in the parsers.
    for sample in samples() {
        for _ in 0..40 {
            let mut bytes = sample.to_vec();
            for _ in 0..4 {
                let at = (next() as usize) % bytes.len();
                bytes[at] = next() as u8;
            }
            read_with_all(&bytes);
        }
    }
    read_with_all(&[0u8; 5000]);
    read_with_all(&[b'"'; 5000]);
    read_with_all(&[b'['; 5000]);
}

#[test]
fn wrong_types_are_diagnostics_not_panics() {
    for line in [
        r#"{"flow":{"verdict":["FORWARDED"]}}"#,
        r#"{"flow":{"verdict":"FORWARDED","IP":{"source":1},"l4":{"TCP":{}}}}"#,
        r#"{"flow":{"verdict":"FORWARDED","IP":{},"l4":{"TCP":{"source_port":-1}}}}"#,
        r#"{"flow":{"verdict":"FORWARDED","IP":{},"l4":{"ICMPv4":{"type":300}}}}"#,
        r#"{"flow":{"verdict":"FORWARDED","source":{"labels":"k8s:app=x"}}}"#,
        r#"{"flow":{"verdict":"FORWARDED","is_reply":"yes"}}"#,
        r#"{"flow":{"verdict":"FORWARDED","time":12}}"#,
        r#"{"lost_events":{"num_events_lost":"many"}}"#,
    ] {
        let (flows, stats) = read(reader("hubble"), line.as_bytes());
        assert!(flows.is_empty(), "{line}");
        assert_eq!(stats.records, 1, "{line}");
    }
    for line in [
        r#"{"action":"allow","proto":"tcp","start_time":"yesterday"}"#,
        r#"{"action":"allow","proto":"tcp","source_labels":{"labels":[1]}}"#,
        r#"{"action":"allow","proto":"tcp","num_flows":1.5}"#,
        r#"{"action":["allow"],"proto":"tcp"}"#,
    ] {
        let (flows, stats) = read(reader("calico"), line.as_bytes());
        assert!(flows.is_empty(), "{line}");
        assert_eq!(stats.diagnostics.len(), 1, "{line}");
    }
}

#[test]
fn generic_module_exposes_the_csv_row_api() {
    let header = generic::CsvHeader::parse(b"protocol,outcome,src_ip,dst_ip").expect("header");
    let evidence = RecordRef {
        file: Arc::from("x"),
        format: Format::Csv,
        record: 2,
    };
    let parsed = generic::parse_csv_row(&header, b"udp,unanswered,10.0.0.1,10.0.0.2", evidence);
    assert!(matches!(parsed, Ok(ParsedLine::Flow(f)) if f.transport == Transport::Udp));
    assert!(generic::CsvHeader::parse(b"protocol,src_ip,dst_ip").is_err());
}
