//! `palisade gen` and `palisade bench`: synthetic clusters and the
//! benchmarks of BENCHMARKS.md.

use std::hint::black_box;
use std::time::Instant;

use anyhow::Result;
use palisade_gen::{Params, Rng, generate};
use palisade_inventory::{Inventory, Protocol};
use palisade_policy::{ConnectivityMap, EndpointRef, Engine, MapFilter, Settings};

use crate::Outcome;

#[derive(clap::Args, Debug)]
pub struct GenArgs {
    /// Pods in the cluster; workloads, namespaces and policies scale with it
    /// (10 pods per workload, 200 per namespace, one policy per 5 pods).
    #[arg(long, default_value_t = 10_000)]
    pub pods: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write only the workloads' templates, no Pod objects (as a repository
    /// of manifests has them, rather than a cluster dump).
    #[arg(long)]
    pub no_pod_objects: bool,
    /// Percent of workloads on the host network.
    #[arg(long, default_value_t = 3)]
    pub host_network_percent: u64,
    /// Write a synthetic pcap capture instead (of --connections
    /// interleaved connections, about --packets packets).
    #[arg(long, conflicts_with_all = ["capture_endpoints", "hubble"])]
    pub capture: bool,
    /// Write this many `hubble observe -o json` lines of TCP traffic
    /// between the generated cluster's pods instead.
    #[arg(long, value_name = "FLOWS", conflicts_with = "capture_endpoints")]
    pub hubble: Option<usize>,
    /// Write a Kubernetes audit log of this many changes to the generated
    /// cluster instead (relabels, pod and policy deletes and re-creates,
    /// policy edits, namespace relabels), for `palisade logs timeline`.
    #[arg(long, value_name = "CHANGES", conflicts_with_all = ["capture", "hubble", "capture_endpoints"])]
    pub audit_trail: Option<usize>,
    /// Write the `--endpoints` file that puts the synthetic capture's
    /// addresses on this generated cluster's pods.
    #[arg(long)]
    pub capture_endpoints: bool,
    #[arg(long, default_value_t = 100_000)]
    pub connections: usize,
    #[arg(long, default_value_t = 10_000_000)]
    pub packets: usize,
}

pub fn generate_cluster(args: &GenArgs) -> Result<Outcome> {
    let mut params = Params {
        seed: args.seed,
        host_network_percent: args.host_network_percent,
        ..Params::benchmark(args.pods)
    };
    if args.no_pod_objects {
        params.pods_per_workload = 0;
    }
    if args.capture {
        crate::gen_flows::write_capture(args.connections, args.packets, args.seed)?;
        return Ok(Outcome::Clean);
    }
    if let Some(flows) = args.hubble {
        crate::gen_flows::write_hubble(&params, flows)?;
        return Ok(Outcome::Clean);
    }
    if args.capture_endpoints {
        crate::gen_flows::write_capture_endpoints(&params)?;
        return Ok(Outcome::Clean);
    }
    if let Some(changes) = args.audit_trail {
        let trail = palisade_logs::synthetic::audit_trail(&generate(&params), changes, args.seed)
            .map_err(|e| anyhow::anyhow!("generated cluster: {e}"))?;
        print!("{trail}");
        return Ok(Outcome::Clean);
    }
    print!("{}", generate(&params));
    Ok(Outcome::Clean)
}

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Cluster sizes in pods, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,50000")]
    pub pods: Vec<usize>,
    /// Single verdicts to time per size.
    #[arg(long, default_value_t = 20_000_000)]
    pub verdicts: usize,
}

pub fn run(args: &BenchArgs) -> Result<Outcome> {
    println!(
        "| pods | workloads | policies | objects | YAML MB | load s | map s | map entries | verdicts/s | peak RSS MiB |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &pods in &args.pods {
        let text = generate(&Params::benchmark(pods));
        let t = Instant::now();
        let (inventory, diags) = Inventory::from_texts([("gen.yaml", text.as_str())]);
        let load = t.elapsed().as_secs_f64();
        anyhow::ensure!(
            diags.is_empty(),
            "generated input has diagnostics: {:?}",
            diags.items().first()
        );
        let objects = inventory
            .workloads
            .iter()
            .map(|w| w.pods.len() + 1)
            .sum::<usize>()
            + inventory.policies.len()
            + inventory.namespaces.len();
        let t = Instant::now();
        let engine = Engine::new(&inventory, &Settings::default());
        let map = ConnectivityMap::from_engine(&engine, &MapFilter::default());
        let map_time = t.elapsed().as_secs_f64();
        let rate = verdict_rate(&engine, args.verdicts);
        println!(
            "| {pods} | {} | {} | {objects} | {:.1} | {load:.3} | {map_time:.3} | {} | {:.1}M | {} |",
            inventory.workloads.len(),
            inventory.policies.len(),
            text.len() as f64 / 1e6,
            map.len(),
            rate / 1e6,
            peak_rss_mib().map_or("n/a".to_string(), |m| m.to_string()),
        );
    }
    Ok(Outcome::Clean)
}

/// Single verdicts per second on one thread, over random endpoint pairs,
/// protocols and ports drawn before the clock starts.
fn verdict_rate(engine: &Engine<'_>, count: usize) -> f64 {
    let workloads = engine.inventory().workloads.len();
    let externals = engine.externals().len();
    let mut rng = Rng::new(7);
    let endpoint = |rng: &mut Rng| {
        if rng.chance(90) {
            EndpointRef::Workload(rng.below(workloads))
        } else {
            EndpointRef::External(rng.below(externals))
        }
    };
    let queries: Vec<(EndpointRef, EndpointRef, Protocol, u16)> = (0..1 << 16)
        .map(|_| {
            let src = endpoint(&mut rng);
            let dst = EndpointRef::Workload(rng.below(workloads));
            let protocol = *rng.pick(&Protocol::ALL);
            let port = [53, 80, 443, 8080, 9090, 5432][rng.below(6)];
            (src, dst, protocol, port)
        })
        .collect();
    let t = Instant::now();
    let mut allowed = 0usize;
    for i in 0..count {
        let (s, d, p, port) = queries[i & 0xffff];
        allowed += usize::from(engine.allowed(black_box(s), black_box(d), p, port));
    }
    black_box(allowed);
    count as f64 / t.elapsed().as_secs_f64()
}

/// Peak resident memory of this process so far (Linux).
fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}
