//! Capacity of the agent's user-space path (decode, attribute, judge,
//! alert) on one thread, fed with sensor records instead of the kernel:
//! the generated cluster's pods in a cgroup tree named as the kubelet
//! names it, and TCP connections between its pods as the sensor reports
//! them (the connecting process, connect, accept, and both closes, each
//! record naming its socket and joined as the sensor joins them), with an
//! exec every 64. As in
//! the Hubble benchmark, 95% of the connections are ones the policies
//! allow, the rest between random pods (most of them denied: bypasses).
//!
//! ```text
//! cargo run --release -p palisade-agent --example replay -- 1000 1000000
//! ```
//!
//! Arguments: pods in the generated cluster, events to replay.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Instant;

use palisade_agent::{Agent, AgentOptions, EventSource, Input};
use palisade_detect::{Resolver, Verifier};
use palisade_gen::{Params, Rng, generate};
use palisade_inventory::{Inventory, Loader, Protocol};
use palisade_policy::{EndpointRef, Engine};
use palisade_sense::ebpf::{ConnectionKind, Event, Joiner, Process, encode, encode_for_socket};

/// Sensor records handed out as the agent drains the ring buffer: every
/// 100 ms, so at a million events a second, 100,000 at a time.
struct Replay {
    records: Vec<Vec<u8>>,
    at: usize,
    joiner: Joiner,
}

impl EventSource for Replay {
    fn drain(&mut self, sink: &mut dyn FnMut(Input)) -> usize {
        let end = (self.at + 100_000).min(self.records.len());
        for record in &self.records[self.at..end] {
            if let Ok(Some(event)) = self.joiner.push(record) {
                sink(Input::Kernel(event));
            }
        }
        let n = end - self.at;
        self.at = end;
        n
    }
    fn lost(&self) -> u64 {
        0
    }
    fn undecodable(&self) -> u64 {
        0
    }
    fn drop_reason(&self, reason: u32) -> String {
        format!("drop reason {reason}")
    }
}

/// A pod as the sensor sees it: its address and its container's cgroup.
struct LocalPod {
    ip: std::net::IpAddr,
    cgroup_id: u64,
    workload: usize,
}

/// Container cgroups for every pod of the inventory, under `root`.
fn cgroup_tree(inventory: &Inventory, root: &std::path::Path) -> Vec<LocalPod> {
    let mut pods = Vec::new();
    let all = inventory
        .workloads
        .iter()
        .enumerate()
        .flat_map(|(w, workload)| workload.pods.iter().map(move |pod| (w, pod)));
    for (workload, pod) in all {
        let (Some(uid), Some(ip)) = (&pod.uid, pod.ips.first()) else {
            continue;
        };
        let dir = root
            .join("kubepods/besteffort")
            .join(format!("pod{uid}"))
            .join(format!("{:064x}", pods.len() + 1));
        std::fs::create_dir_all(&dir).expect("temporary cgroup tree");
        let cgroup_id = std::fs::metadata(&dir).unwrap().ino();
        pods.push(LocalPod {
            ip: *ip,
            cgroup_id,
            workload,
        });
    }
    pods
}

const PORTS: [u16; 5] = [80, 443, 5432, 8080, 9090];

/// A connection between two pods: one the policies allow (95%, when one
/// is found in a few tries), or between random pods.
fn pick<'p>(
    rng: &mut Rng,
    pods: &'p [LocalPod],
    engine: &Engine<'_>,
) -> (&'p LocalPod, &'p LocalPod, u16) {
    let wanted = rng.chance(95);
    for _ in 0..50 {
        let (src, dst, port) = (rng.pick(pods), rng.pick(pods), *rng.pick(&PORTS));
        let allowed = engine.allowed(
            EndpointRef::Workload(src.workload),
            EndpointRef::Workload(dst.workload),
            Protocol::Tcp,
            port,
        );
        if allowed == wanted {
            return (src, dst, port);
        }
    }
    (rng.pick(pods), rng.pick(pods), *rng.pick(&PORTS))
}

fn records(pods: &[LocalPod], engine: &Engine<'_>, events: usize) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(7);
    let mut out = Vec::with_capacity(events);
    let mut connection = 0u64;
    while out.len() < events {
        let (src, dst, port) = pick(&mut rng, pods, engine);
        let client = std::net::SocketAddr::new(src.ip, 32768 + (connection % 28000) as u16);
        let server = std::net::SocketAddr::new(dst.ip, port);
        let process = |pod: &LocalPod, comm: &str| Process {
            pid: 1000 + (pod.cgroup_id % 30000) as u32,
            comm: comm.into(),
            cgroup_id: pod.cgroup_id,
        };
        let tcp = |kind, local, remote, process| Event::Tcp {
            kind,
            netns: 1,
            time_ns: connection * 1000,
            process,
            local,
            remote,
            bytes_sent: 100,
            bytes_received: 200,
            error: 0,
            existing: false,
        };
        // As the kernel writes them: the owner at SYN_SENT (source port
        // 0), the connect from softirq (no process), closes without it.
        let (client_sock, server_sock) = (2 * connection + 1, 2 * connection + 2);
        let unconnected = std::net::SocketAddr::new(src.ip, 0);
        let nobody = |pod: &LocalPod| Process {
            pid: 0,
            comm: String::new(),
            cgroup_id: pod.cgroup_id,
        };
        for (event, sock, connecting) in [
            (
                tcp(
                    ConnectionKind::Connect,
                    unconnected,
                    server,
                    process(src, "client"),
                ),
                client_sock,
                true,
            ),
            (
                tcp(ConnectionKind::Connect, client, server, nobody(src)),
                client_sock,
                false,
            ),
            (
                tcp(
                    ConnectionKind::Accept,
                    server,
                    client,
                    process(dst, "server"),
                ),
                server_sock,
                false,
            ),
            (
                tcp(ConnectionKind::Close, unconnected, server, nobody(src)),
                client_sock,
                false,
            ),
            (
                tcp(ConnectionKind::Close, server, client, nobody(dst)),
                server_sock,
                false,
            ),
        ] {
            out.push(encode_for_socket(&event, sock, connecting));
        }
        if connection.is_multiple_of(64) {
            out.push(encode(&Event::Exec {
                netns: 1,
                time_ns: connection * 1000,
                process: process(src, "python3"),
                executable: "/usr/bin/python3".into(),
            }));
        }
        connection += 1;
    }
    out.truncate(events);
    out
}

fn main() {
    let mut args = std::env::args().skip(1);
    let pods: usize = args.next().map_or(1000, |a| a.parse().expect("pods"));
    let events: usize = args
        .next()
        .map_or(1_000_000, |a| a.parse().expect("events"));
    let mut loader = Loader::default();
    loader.add_text("generated", &generate(&Params::benchmark(pods)));
    let (inventory, _) = loader.finish();
    let root = std::env::temp_dir().join(format!("palisade-replay-{}", std::process::id()));
    let local = cgroup_tree(&inventory, &root);
    let options = AgentOptions::new(PathBuf::from(&root));
    let engine = Engine::new(&inventory, &options.settings);
    let records = records(&local, &engine, events);

    let mut verifier = Verifier::new(
        &engine,
        Resolver::new(&inventory, &[]),
        options.settings.clone(),
    );
    let (judge, _) = verifier.split();
    let mut agent = Agent::new(options);
    let mut source = Replay {
        records,
        at: 0,
        joiner: Joiner::new(),
    };
    let mut sink = std::io::sink();
    let started = Instant::now();
    while source.at < source.records.len() {
        agent
            .poll(&inventory, judge, &mut source, &mut sink)
            .expect("a sink does not fail");
    }
    let seconds = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&root);
    println!(
        "{events} sensor records (five a connection) from {} pods in {seconds:.3} s: {:.0} records/s on one thread; {} alerts sent",
        local.len(),
        events as f64 / seconds,
        agent.alerts_sent
    );
}
