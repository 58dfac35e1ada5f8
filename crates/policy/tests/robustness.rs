//! Mutated manifests (the bundled example with bytes deleted, duplicated or
//! replaced) must load without panicking, and the engine must not panic on
//! whatever inventory results. The same path is a cargo-fuzz target in
//! `fuzz/`; this keeps it exercised on stable in every CI run.

use palisade_inventory::Inventory;
use palisade_policy::{ConnectivityMap, Engine, MapFilter, Settings};
use proptest::prelude::*;

const SEED_TEXT: &str = concat!(
    include_str!("../../../examples/shop/workloads.yaml"),
    "\n---\n",
    include_str!("../../../examples/shop/policies.yaml")
);

const NOISE: &[&str] = &[
    "",
    "\n",
    ":",
    "- ",
    "{",
    "}",
    "[",
    "]",
    "&a ",
    "*a",
    "---\n",
    "'",
    "\"",
    "\t",
    "#",
    "null",
    "-1",
    "99999",
    "::/0",
    "0.0.0.0/33",
    "In",
    "port: x",
    "\u{0}",
    "é",
];

fn mutate(text: &str, edits: &[(usize, usize, usize)]) -> String {
    palisade_gen::mutate(text, edits, NOISE, 64)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn mutated_manifests_never_panic(edits in proptest::collection::vec((any::<usize>(), any::<usize>(), any::<usize>()), 1..12)) {
        let text = mutate(SEED_TEXT, &edits);
        let (inventory, _) = Inventory::from_texts([("m.yaml", text.as_str())]);
        for settings in [Settings::default(), Settings { ipblock_matches_pods: true, ..Settings::default() }] {
            let engine = Engine::new(&inventory, &settings);
            let _ = ConnectivityMap::from_engine(&engine, &MapFilter::default());
        }
    }
}
