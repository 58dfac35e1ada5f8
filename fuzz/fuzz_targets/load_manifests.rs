//! Any bytes as a manifest file: loading must not panic or hang, and
//! neither the engine nor the audit may panic on whatever inventory comes
//! out.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_inventory::Inventory;
use palisade_policy::{ConnectivityMap, Engine, MapFilter, Settings};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (inventory, _diagnostics) = Inventory::from_texts([("fuzz.yaml", text)]);
    for settings in [Settings::default(), Settings { ipblock_matches_pods: true, host_network_pods: palisade_policy::HostNetworkPods::Pod }] {
        let engine = Engine::new(&inventory, &settings);
        let _ = ConnectivityMap::from_engine(&engine, &MapFilter::default());
        let _ = palisade_audit::audit(&inventory, &engine, &palisade_audit::AuditOptions::default());
    }
});
