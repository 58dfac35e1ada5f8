//! Two evaluators, one truth: on random clusters, the compiled engine and
//! the reference evaluator must give the same verdict for every workload
//! pair, external range and port. A failing seed is printed; replay it with
//! `PROPTEST_CASES`/the seed in the message.

use std::net::IpAddr;

use palisade_gen::{Params, generate};
use palisade_inventory::{Inventory, Protocol};
use palisade_policy::endpoint::workload_view;
use palisade_policy::reference::{self, Endpoint};
use palisade_policy::{Conns, EndpointRef, Engine, HostNetworkPods, Partial, Settings};
use proptest::prelude::*;

const PORTS: [u16; 12] = [
    1, 53, 80, 143, 443, 3868, 5432, 5500, 8080, 9090, 9100, 65535,
];

/// A small random cluster, its size varying with the seed.
fn small_cluster(seed: u64) -> String {
    generate(&Params {
        namespaces: 2 + (seed % 3) as usize,
        workloads: 4 + (seed % 5) as usize,
        pods_per_workload: 1,
        policies: 3 + (seed % 7) as usize,
        seed,
        host_network_percent: 10,
    })
}

fn check_cluster(seed: u64, settings: &Settings) -> Result<(), TestCaseError> {
    let text = small_cluster(seed);
    let (inventory, diags) = Inventory::from_texts([("gen.yaml", text.as_str())]);
    prop_assert!(
        diags.is_empty(),
        "seed {seed}: generator made bad input: {:?}",
        diags.items()
    );
    let engine = Engine::new(&inventory, settings);
    let ips: Vec<Vec<IpAddr>> = inventory
        .workloads
        .iter()
        .map(|w| w.ips().collect())
        .collect();
    let mut endpoints: Vec<(EndpointRef, Endpoint<'_>)> = inventory
        .workloads
        .iter()
        .enumerate()
        .map(|(i, w)| {
            (
                EndpointRef::Workload(i),
                Endpoint::Pod(workload_view(&inventory, settings, w, &ips[i])),
            )
        })
        .collect();
    // One address from each external range, at both ends of it.
    for (x, range) in engine.externals().ranges().iter().enumerate() {
        for ip in [range.first(), range.last()] {
            endpoints.push((EndpointRef::External(x), Endpoint::External(ip)));
        }
    }
    for (src_ref, src) in &endpoints {
        for (dst_ref, dst) in &endpoints {
            if matches!(
                (src_ref, dst_ref),
                (EndpointRef::External(_), EndpointRef::External(_))
            ) {
                continue;
            }
            for protocol in Protocol::ALL {
                for port in PORTS {
                    let expected =
                        reference::evaluate(&inventory, settings, *src, *dst, protocol, port);
                    let got = engine.allowed(*src_ref, *dst_ref, protocol, port);
                    prop_assert_eq!(
                        got,
                        expected.allowed,
                        "seed {} {:?} -> {:?} {} {}: reference says {:#?}",
                        seed,
                        src_ref,
                        dst_ref,
                        protocol,
                        port,
                        expected
                    );
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn compiled_agrees_with_reference(seed in any::<u64>()) {
        check_cluster(seed, &Settings::default())?;
    }

    #[test]
    fn compiled_agrees_with_reference_when_ipblocks_match_pods(seed in any::<u64>()) {
        check_cluster(seed, &Settings { ipblock_matches_pods: true, ..Settings::default() })?;
    }

    #[test]
    fn compiled_agrees_with_reference_when_host_network_pods_are_pods(seed in any::<u64>()) {
        let settings = Settings { host_network_pods: HostNetworkPods::Pod, ..Settings::default() };
        check_cluster(seed, &settings)?;
    }
}

/// A partial engine's rows and columns are the whole engine's, cell for
/// cell, for every workload and external range.
fn check_partial(seed: u64, settings: &Settings) -> Result<(), TestCaseError> {
    let text = small_cluster(seed);
    let (inventory, _) = Inventory::from_texts([("gen.yaml", text.as_str())]);
    let engine = Engine::new(&inventory, settings);
    let w_count = inventory.workloads.len();
    // Every other workload, so that pairs between two uncomputed ones exist
    // and are never asked for.
    let of: Vec<usize> = (0..w_count).step_by(2).collect();
    let partial = Partial::new(&inventory, settings, &[], of.iter().copied());
    prop_assert_eq!(partial.externals().ranges(), engine.externals().ranges());
    let x_count = engine.externals().len();
    for &w in &of {
        let me = EndpointRef::Workload(w);
        let others = (0..w_count)
            .map(EndpointRef::Workload)
            .chain((0..x_count).map(EndpointRef::External));
        for other in others {
            for (src, dst) in [(me, other), (other, me)] {
                prop_assert_eq!(
                    Conns::conns(&partial, src, dst),
                    engine.conns(src, dst),
                    "seed {}: {:?} -> {:?}",
                    seed,
                    src,
                    dst
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn partial_rows_and_columns_agree_with_the_whole_engine(seed in any::<u64>()) {
        check_partial(seed, &Settings::default())?;
        check_partial(seed, &Settings { ipblock_matches_pods: true, ..Settings::default() })?;
        let settings = Settings { host_network_pods: HostNetworkPods::Pod, ..Settings::default() };
        check_partial(seed, &settings)?;
    }
}
