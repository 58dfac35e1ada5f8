//! The YAML reader never panics or hangs: every prefix of every fidelity
//! case (inputs that end inside a block scalar, a quoted scalar, a flow
//! collection, a CRLF pair...) loads without even the parser failing, and
//! mutated cases with YAML's own indicators load with diagnostics at worst
//! (a panic of the parser itself is caught and becomes one).

use std::path::PathBuf;

use palisade_inventory::Inventory;
use proptest::prelude::*;

fn corpus() -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fidelity");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("fidelity corpus")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("UTF-8 case");
            (p.display().to_string(), text)
        })
        .collect()
}

#[test]
fn every_prefix_of_every_case_loads() {
    for (name, text) in corpus() {
        for end in (0..=text.len()).filter(|&i| text.is_char_boundary(i)) {
            let prefix = &text[..end];
            let (_, diags) = Inventory::from_texts([("p.yaml", prefix)]);
            // The parser's own panics are caught and reported; none may
            // happen on a truncated input.
            let failed = diags
                .items()
                .iter()
                .any(|d| d.message.contains("YAML parser failed"));
            assert!(!failed, "{name} cut at byte {end}: {diags:?}");
        }
    }
}

const NOISE: &[&str] = &[
    "",
    "\n",
    "\r\n",
    "\r",
    "\t",
    " ",
    ":",
    ": ",
    "- ",
    "? ",
    "{",
    "}",
    "[",
    "]",
    ",",
    "|",
    "|-",
    "|+",
    ">",
    ">-",
    "|2",
    "|9",
    "&a ",
    "*a",
    "!!str ",
    "!t ",
    "<<: *a",
    "---",
    "...",
    "\n---\n",
    "'",
    "\"",
    "\\",
    "\\u00",
    "#",
    "%YAML 1.1\n",
    "\u{feff}",
    "\u{85}",
    "\u{2028}",
    "é",
    "\u{0}",
];

fn mutate(text: &str, edits: &[(usize, usize, usize)]) -> String {
    palisade_gen::mutate(text, edits, NOISE, 16)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn mutated_cases_load(case in any::<usize>(), edits in proptest::collection::vec((any::<usize>(), any::<usize>(), any::<usize>()), 1..8)) {
        let files = corpus();
        let (_, text) = &files[case % files.len()];
        let text = mutate(text, &edits);
        let _ = Inventory::from_texts([("m.yaml", text.as_str())]);
    }
}
