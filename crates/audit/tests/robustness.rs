//! The audit must not panic on any inventory the loader produces: mutated
//! manifests (the bundled example with bytes deleted, duplicated or
//! replaced) go through loading, the engine and every check.

use palisade_audit::{AuditOptions, PssLevel, audit};
use palisade_inventory::Inventory;
use palisade_policy::{Engine, Settings};
use proptest::prelude::*;

const SEED_TEXT: &str = concat!(
    include_str!("../../../examples/shop/namespaces.yaml"),
    "\n---\n",
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
    "*a",
    "---\n",
    "'",
    "\t",
    "null",
    "0",
    "true",
    "::/0",
    "0.0.0.0/0",
    "hostNetwork: true\n",
    "privileged: true",
    "Exists",
    "port: x",
    "é",
];

fn mutate(text: &str, edits: &[(usize, usize, usize)]) -> String {
    palisade_gen::mutate(text, edits, NOISE, 48)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    #[test]
    fn audit_never_panics(edits in proptest::collection::vec((any::<usize>(), any::<usize>(), any::<usize>()), 1..10)) {
        let text = mutate(SEED_TEXT, &edits);
        let (inventory, _) = Inventory::from_texts([("m.yaml", text.as_str())]);
        let engine = Engine::new(&inventory, &Settings::default());
        let report = audit(&inventory, &engine, &AuditOptions { pss: PssLevel::Restricted, ..Default::default() });
        prop_assert_eq!(report.summary.suppressed, 0);
    }
}
