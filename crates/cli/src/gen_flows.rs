//! Synthetic traffic for the flow benchmarks: a capture of many
//! interleaved connections, and the `--endpoints` file that places its
//! addresses on the pods of a generated cluster, so that `flows verify`
//! resolves every connection as it would on a real cluster.

use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::Result;
use palisade_gen::{Params, generate};
use palisade_inventory::Inventory;

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
