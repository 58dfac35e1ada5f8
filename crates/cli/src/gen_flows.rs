//! Synthetic traffic for the flow benchmarks: a capture of many
//! interleaved connections, and the `--endpoints` file that places its
//! addresses on the pods of a generated cluster, so that `flows verify`
//! resolves every connection as it would on a real cluster.

use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::Result;
use palisade_detect::rfc3339;
use palisade_gen::{Params, Rng, generate};
use palisade_inventory::{Inventory, PodInstance, Protocol, Workload};
use palisade_policy::{EndpointRef, Engine, Settings};

/// The address pools of `synthetic_capture`: up to 64 client hosts (one
/// per 28,000 connections) and 512 servers, in each family.
const CLIENT_HOSTS: u32 = 64;
const SERVERS: u32 = 512;

pub fn write_capture(connections: usize, packets: usize, seed: u64) -> Result<()> {
    let stdout = std::io::stdout().lock();
    let mut out = BufWriter::with_capacity(1 << 20, stdout);
    let summary =
        palisade_flow::pcap_writer::synthetic_capture(connections, packets, seed, &mut out)?;
    out.flush()?;
    eprintln!(
        "wrote {} packets over {} connections ({} established, {} refused, {} unanswered, {} IPv6)",
        summary.packets,
        summary.connections,
        summary.established,
        summary.refused,
        summary.unanswered,
        summary.ipv6
    );
    Ok(())
}

fn pool() -> Vec<IpAddr> {
    let v4 =
        |base: [u8; 4], i: u32| IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::from(base)) + i));
    let v6 = |group: u16, i: u32| {
        IpAddr::V6(Ipv6Addr::new(
            0xfd00,
            0,
            0,
            group,
            0,
            0,
            (i >> 16) as u16,
            i as u16,
        ))
    };
    let mut addresses = Vec::new();
    addresses.extend((0..CLIENT_HOSTS).map(|i| v4([10, 64, 0, 1], i)));
    addresses.extend((0..SERVERS).map(|i| v4([10, 96, 0, 1], i)));
    addresses.extend((0..CLIENT_HOSTS).map(|i| v6(1, i)));
    addresses.extend((0..SERVERS).map(|i| v6(2, i)));
    addresses
}

/// One `ADDRESS NAMESPACE/POD` line per pool address, spread over the
/// generated cluster's pods (hostNetwork pods left out: they have their
/// node's address).
pub fn write_capture_endpoints(params: &Params) -> Result<()> {
    let text = generate(params);
    let (inventory, _) = Inventory::from_texts([("gen.yaml", text.as_str())]);
    let pods: Vec<(String, String)> = inventory
        .workloads
        .iter()
        .filter(|w| !w.template.host_network)
        .flat_map(|w| w.pods.iter().map(|p| (w.namespace.clone(), p.name.clone())))
        .collect();
    anyhow::ensure!(
        !pods.is_empty(),
        "the generated cluster has no pods to place addresses on"
    );
    let mut out = String::from("# synthetic capture addresses on generated pods\n");
    let stride = (pods.len() / pool().len()).max(1);
    for (i, ip) in pool().into_iter().enumerate() {
        let (namespace, pod) = &pods[(i * stride) % pods.len()];
        let _ = writeln!(out, "{ip} {namespace}/{pod}");
    }
    print!("{out}");
    Ok(())
}

/// One generated pod as Hubble describes it.
struct HubblePod {
    ip: IpAddr,
    ports: Vec<u16>,
    /// Its Hubble endpoint object, written once: endpoint ID, security
    /// identity, namespace, labels (its own and those Cilium derives), name.
    json: String,
}

/// The generated cluster's pods, and for each workload the few (server
/// workload, TCP port) edges its policies allow, so that most generated
/// traffic is the traffic the cluster was built for.
struct HubbleTraffic {
    pods: Vec<HubblePod>,
    pods_of: Vec<Vec<usize>>,
    allowed_edges: Vec<Vec<(usize, u16)>>,
    clients: Vec<usize>,
}

/// Peers per client workload in the generated traffic.
const PEERS: usize = 3;

impl HubbleTraffic {
    fn new(inventory: &Inventory) -> HubbleTraffic {
        let mut pods = Vec::new();
        let mut pods_of = vec![Vec::new(); inventory.workloads.len()];
        for (w, workload) in inventory.workloads.iter().enumerate() {
            if workload.template.host_network {
                continue;
            }
            for pod in &workload.pods {
                if let Some(&ip) = pod.ips.first() {
                    pods_of[w].push(pods.len());
                    let ids = (100 + pods.len(), 10_000 + w);
                    pods.push(hubble_pod(workload, pod, ip, ids));
                }
            }
        }
        let engine = Engine::new(inventory, &Settings::default());
        let allowed_edges: Vec<Vec<(usize, u16)>> = (0..pods_of.len())
            .map(|w| allowed_edges(&engine, &pods, &pods_of, w))
            .collect();
        let clients = (0..pods_of.len())
            .filter(|&w| !allowed_edges[w].is_empty() && !pods_of[w].is_empty())
            .collect();
        HubbleTraffic {
            pods,
            pods_of,
            allowed_edges,
            clients,
        }
    }

    /// Client pod, server pod, destination port and whether the data
    /// plane dropped it, for one connection: 95% on allowed edges (0.5% of
    /// those dropped), the rest between random pods (half dropped).
    fn connection(&self, r: u64) -> (&HubblePod, &HubblePod, u16, bool) {
        let pick = |list: &[usize], bits: u64| list[(bits % list.len() as u64) as usize];
        if r % 100 < 95 && !self.clients.is_empty() {
            let w = pick(&self.clients, r >> 8);
            let edges = &self.allowed_edges[w];
            let (server_workload, port) = edges[((r >> 24) % edges.len() as u64) as usize];
            let client = pick(&self.pods_of[w], r >> 32);
            let server = pick(&self.pods_of[server_workload], r >> 40);
            return (
                &self.pods[client],
                &self.pods[server],
                port,
                (r >> 50).is_multiple_of(200),
            );
        }
        let n = self.pods.len() as u64;
        let client = &self.pods[((r >> 8) % n) as usize];
        let server = &self.pods[((r >> 28) % n) as usize];
        let port = match server.ports.as_slice() {
            [] => 8080,
            ports => ports[((r >> 48) as usize) % ports.len()],
        };
        (client, server, port, (r >> 60).is_multiple_of(2))
    }
}

/// `ids`: the endpoint ID (one per pod) and the security identity (one
/// per label set, here per workload).
fn hubble_pod(
    workload: &Workload,
    pod: &PodInstance,
    ip: IpAddr,
    ids: (usize, usize),
) -> HubblePod {
    let ns = &workload.namespace;
    let mut labels: Vec<String> = pod
        .labels
        .iter()
        .map(|(k, v)| json_string(&format!("k8s:{k}={v}")))
        .collect();
    labels.push(json_string(&format!(
        "k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name={ns}"
    )));
    labels.push(json_string("k8s:io.cilium.k8s.policy.cluster=bench"));
    labels.push(json_string(&format!(
        "k8s:io.kubernetes.pod.namespace={ns}"
    )));
    let json = format!(
        "{{\"ID\":{},\"identity\":{},\"namespace\":{},\"labels\":[{}],\"pod_name\":{}}}",
        ids.0,
        ids.1,
        json_string(ns),
        labels.join(","),
        json_string(&pod.name)
    );
    HubblePod {
        ip,
        ports: workload
            .template
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().map(|p| p.port))
            .collect(),
        json,
    }
}

/// Up to [`PEERS`] workloads `client` may reach over TCP, each with a
/// port allowed to it (a declared container port when one is allowed);
/// the search starts at a different workload for each client so that the
/// servers spread over the namespaces.
fn allowed_edges(
    engine: &Engine,
    pods: &[HubblePod],
    pods_of: &[Vec<usize>],
    client: usize,
) -> Vec<(usize, u16)> {
    let n = pods_of.len();
    (0..n)
        .map(|k| (client * 7919 + k) % n)
        .filter(|&server| server != client && !pods_of[server].is_empty())
        .filter_map(|server| {
            let allowed = engine
                .conns(EndpointRef::Workload(client), EndpointRef::Workload(server))
                .ports(Protocol::Tcp);
            let declared = &pods[pods_of[server][0]].ports;
            let port = declared.iter().copied().find(|&p| allowed.contains(p));
            let &(lo, _) = allowed.ranges().first()?;
            Some((server, port.unwrap_or(lo.max(1))))
        })
        .take(PEERS)
        .collect()
}

fn json_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// `flows` lines of `hubble observe -o json` over the generated cluster's
/// pods, four events per TCP connection (SYN, SYN-ACK, ACK, reply data);
/// see [`HubbleTraffic::connection`] for the mix.
pub fn write_hubble(params: &Params, flows: usize) -> Result<()> {
    let (inventory, _) = Inventory::from_texts([("gen.yaml", generate(params).as_str())]);
    let traffic = HubbleTraffic::new(&inventory);
    anyhow::ensure!(
        !traffic.pods.is_empty(),
        "the generated cluster has no pods with addresses (drop --no-pod-objects)"
    );
    let mut out = BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    let mut line = String::new();
    for i in 0..flows as u64 {
        line.clear();
        hubble_line(&traffic, params.seed, i, &mut line);
        out.write_all(line.as_bytes())?;
    }
    out.flush()?;
    Ok(())
}

fn hubble_line(traffic: &HubbleTraffic, seed: u64, i: u64, out: &mut String) {
    const EVENTS: [(&str, bool, &str); 4] = [
        ("\"SYN\":true", false, "SYN"),
        ("\"SYN\":true,\"ACK\":true", true, "SYN, ACK"),
        ("\"ACK\":true", false, "ACK"),
        ("\"PSH\":true,\"ACK\":true", true, "ACK, PSH"),
    ];
    let connection = i / 4;
    let r = Rng::new(seed ^ connection.wrapping_mul(0x2545_f491_4f6c_dd1d)).next_u64();
    let (client, server, port, dropped) = traffic.connection(r);
    let client_port = 32768 + (connection % 28000) as u16;
    let (flags, is_reply, summary) = if dropped {
        EVENTS[0]
    } else {
        EVENTS[(i % 4) as usize]
    };
    let (from, to, from_port, to_port) = if is_reply {
        (server, client, port, client_port)
    } else {
        (client, server, client_port, port)
    };
    let verdict = if dropped {
        "\"verdict\":\"DROPPED\",\"drop_reason\":133,\"drop_reason_desc\":\"POLICY_DENIED\""
    } else {
        "\"verdict\":\"FORWARDED\""
    };
    // 100,000 events a second from 2023-11-14T22:13:20Z.
    let micros = 1_700_000_000_000_000 + i as i64 * 10;
    let _ = writeln!(
        out,
        "{{\"flow\":{{\"time\":\"{time}\",{verdict},\"ethernet\":{{\"source\":\"0a:58:0a:f4:00:01\",\"destination\":\"0a:58:0a:f4:00:02\"}},\
\"IP\":{{\"source\":\"{from_ip}\",\"destination\":\"{to_ip}\",\"ipVersion\":\"IPv4\"}},\
\"l4\":{{\"TCP\":{{\"source_port\":{from_port},\"destination_port\":{to_port},\"flags\":{{{flags}}}}}}},\
\"source\":{from_json},\"destination\":{to_json},\
\"Type\":\"L3_L4\",\"node_name\":\"bench-node\",\"event_type\":{{\"type\":4,\"sub_type\":3}},\"traffic_direction\":\"EGRESS\",\
\"trace_observation_point\":\"TO_ENDPOINT\",\"is_reply\":{is_reply},\"Summary\":\"TCP Flags: {summary}\"}},\
\"node_name\":\"bench-node\",\"time\":\"{time}\"}}",
        time = rfc3339(micros),
        from_ip = from.ip,
        to_ip = to.ip,
        from_json = from.json,
        to_json = to.json,
    );
}
