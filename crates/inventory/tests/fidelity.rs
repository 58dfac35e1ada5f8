//! The fidelity corpus (`tests/fidelity/` at the repository root): each file
//! is read as `kubectl apply -f` and goyaml.v3 read it, and each test names
//! the case and checks the values Kubernetes would see.

use std::path::PathBuf;

use palisade_inventory::{Diagnostics, Inventory, Peer, Severity, Workload};

fn corpus_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fidelity")
        .join(name)
}

fn load(name: &str) -> (Inventory, Diagnostics) {
    let bytes = std::fs::read(corpus_file(name)).expect("corpus file");
    let text = String::from_utf8(bytes).expect("UTF-8");
    Inventory::from_texts([(name, text.as_str())])
}

/// Loads a case that Kubernetes accepts whole: no warning or error.
fn load_clean(name: &str) -> Inventory {
    let (inventory, diags) = load(name);
    let problems: Vec<String> = diags.problems().map(|d| d.to_string()).collect();
    assert!(problems.is_empty(), "{name}: {problems:#?}");
    inventory
}

fn workload<'a>(inv: &'a Inventory, namespace: &str, name: &str) -> &'a Workload {
    inv.workloads
        .iter()
        .find(|w| w.namespace == namespace && w.name == name)
        .unwrap_or_else(|| panic!("{namespace}/{name} missing: {:#?}", names(inv)))
}

fn names(inv: &Inventory) -> Vec<String> {
    inv.workloads
        .iter()
        .map(|w| format!("{}/{}", w.namespace, w.name))
        .collect()
}

fn label<'a>(labels: &'a palisade_inventory::Labels, key: &str) -> &'a str {
    labels.get(key).map(String::as_str).unwrap_or("<absent>")
}

#[test]
fn yaml11_booleans_are_strings_namespace_y_and_label_values() {
    let inv = load_clean("yaml11-booleans.yaml");
    let ns = inv.namespace("y").expect("namespace y");
    assert_eq!(label(&ns.labels, "enabled"), "yes");
    assert_eq!(label(&ns.labels, "on"), "off");
    let pod = workload(&inv, "y", "web");
    let labels = &pod.template.labels;
    assert_eq!(label(labels, "canary"), "no");
    assert_eq!(label(labels, "public"), "on");
    assert_eq!(label(labels, "Y"), "N");
    assert!(!pod.template.host_network);
    let policy = &inv.policies[0];
    assert_eq!(policy.namespace, "y");
    let requirement = &policy.pod_selector.match_expressions[0];
    assert_eq!(requirement.values, ["y", "n", "no"]);
    let Peer::Pods {
        namespace_selector: Some(ns_selector),
        ..
    } = &policy.ingress[0].peers[0]
    else {
        panic!("a namespace selector peer");
    };
    assert_eq!(label(&ns_selector.match_labels, "enabled"), "yes");
    assert!(policy.pod_selector.matches(labels));
}

#[test]
fn numbers_where_strings_are_expected_keep_their_text() {
    let (inv, diags) = load("numbers-as-text.yaml");
    assert_eq!(diags.problems().count(), 0, "{diags:?}");
    let w = workload(&inv, "numbers", "api");
    assert_eq!(label(&w.template.labels, "version"), "1.10");
    assert_eq!(label(&w.template.labels, "release"), "2024.01");
    let a = &w.annotations;
    assert_eq!(label(a, "replicas-note"), "12");
    assert_eq!(label(a, "mode"), "0755");
    assert_eq!(label(a, "checksum/config"), "1234e56");
    assert_eq!(label(a, "huge"), "123456789012345678901234567890");
    assert_eq!(label(a, "negative"), "-0");
    assert_eq!(label(a, "infinity"), ".inf");
    // Integer fields still read numbers, with Go's base prefixes.
    let ports: Vec<u16> = w.template.containers[0]
        .ports
        .iter()
        .map(|p| p.port)
        .collect();
    assert_eq!(ports, [8080, 8080]);
    // Each coercion is a note (shown with -v), never a dropped object.
    assert!(diags.notes() >= 9, "{diags:?}");
    let note = diags
        .items()
        .iter()
        .find(|d| d.message.contains("labels.version"))
        .expect("a note for the version label");
    assert_eq!(note.severity, Severity::Note);
    assert_eq!((note.source.line, note.source.column), (10, 14), "{note}");
}

#[test]
fn tab_as_white_space_inside_flow_collections() {
    let inv = load_clean("tab-in-flow.yaml");
    let w = workload(&inv, "tabs", "java");
    assert_eq!(label(&w.template.labels, "lang"), "jvm");
    let port = &w.template.containers[0].ports[0];
    assert_eq!((port.port, port.name.as_deref()), (8443, Some("https")));
}

#[test]
fn crlf_multiline_single_quoted_scalar_indented_less_than_its_key() {
    let inv = load_clean("crlf-quoted-json.yaml");
    let w = workload(&inv, "crlf", "embedded");
    // Line breaks in a flow scalar fold to spaces; leading white space of
    // continuation lines is dropped.
    assert_eq!(
        label(&w.annotations, "config.json"),
        r#"{ "a": 1, "b": [2, 3] }"#
    );
    // CRLF in block scalars reads as LF.
    assert_eq!(label(&w.annotations, "script"), "line one\nline two\n");
    assert_eq!(label(&w.annotations, "quoted"), "x\r\ny");
}

#[test]
fn json_document_followed_by_yaml_documents() {
    let inv = load_clean("json-then-yaml.yaml");
    assert_eq!(
        label(&inv.namespace("mixed").unwrap().labels, "from"),
        "json"
    );
    let mut pods = names(&inv);
    pods.sort();
    assert_eq!(
        pods,
        [
            "mixed/flow-yaml",
            "mixed/from-json",
            "mixed/from-yaml",
            "mixed/json-line-two"
        ]
    );
    let from_json = workload(&inv, "mixed", "from-json");
    assert_eq!(from_json.source.as_ref().unwrap().line, 9);
}

#[test]
fn byte_order_mark() {
    let inv = load_clean("bom.yaml");
    workload(&inv, "bom", "bom");
}

#[test]
fn anchors_aliases_and_merge_keys() {
    let inv = load_clean("anchors-merge.yaml");
    let w = workload(&inv, "anchors", "shop");
    let labels = &w.template.labels;
    assert_eq!(label(labels, "app"), "shop");
    assert_eq!(label(labels, "tier"), "web");
    assert_eq!(label(labels, "extra"), "yes");
    let containers: Vec<(&str, usize)> = w
        .template
        .containers
        .iter()
        .map(|c| (c.name.as_str(), c.ports.len()))
        .collect();
    assert_eq!(containers, [("shop", 1), ("sidecar", 0)]);
    assert_eq!(
        inv.services[0].ports[0].target_port.as_deref(),
        Some("http")
    );
}

#[test]
fn block_scalars_with_chomping_and_indentation_indicators() {
    let inv = load_clean("block-scalars.yaml");
    let a = &inv.namespace("blocks").unwrap().annotations;
    assert_eq!(label(a, "literal"), "a\n  b\nc\n");
    assert_eq!(label(a, "strip"), "kept\nno final newline");
    assert_eq!(label(a, "keep"), "trailing\n\n");
    assert_eq!(label(a, "folded"), "folded into one\nparagraph\n");
    assert_eq!(label(a, "indicator"), "  two leading spaces\n");
    assert_eq!(label(a, "folded-strip"), "x y");
}

#[test]
fn quoted_keys_explicit_keys_and_keys_that_look_typed() {
    let inv = load_clean("quoted-keys.yaml");
    let labels = &inv.namespace("keys").unwrap().labels;
    assert_eq!(label(labels, "app.kubernetes.io/name"), "web");
    assert_eq!(label(labels, "tier"), "db");
    assert_eq!(label(labels, "explicit"), "value");
    assert_eq!(label(labels, "80"), "http");
    assert_eq!(label(labels, "true"), "key true");
}

#[test]
fn document_markers_end_markers_directives_and_empty_documents() {
    let inv = load_clean("separators.yaml");
    assert!(inv.namespace("sep").unwrap().declared);
    let tagged = workload(&inv, "sep", "tagged");
    assert_eq!(label(&tagged.template.labels, "v"), "1.10");
    assert_eq!(label(&tagged.template.labels, "n"), "42");
    workload(&inv, "sep", "inline");
    assert_eq!(inv.workloads.len(), 2);
}

#[test]
fn helm_rendered_output() {
    let inv = load_clean("helm-rendered.yaml");
    let w = workload(&inv, "helm", "release-web");
    assert_eq!(
        label(&w.template.annotations, "checksum/config"),
        "01ba4719c80b6fe911b091a7c05124b64eeece964e09c058ef8f9805daca546b"
    );
    assert_eq!(w.template.containers[0].ports[0].port, 80);
    assert_eq!(
        label(&w.annotations, "app.kubernetes.io/version"),
        "<absent>"
    );
    let svc = &inv.services[0];
    assert_eq!(
        label(svc.selector.as_ref().unwrap(), "app.kubernetes.io/instance"),
        "release"
    );
    assert_eq!(inv.policies.len(), 1);
    assert_eq!(inv.skipped_kinds.get("ServiceAccount"), Some(&1));
}

#[test]
fn what_kubernetes_rejects_drops_that_object_only_at_the_value() {
    let (inv, diags) = load("rejected.yaml");
    let errors: Vec<String> = diags
        .items()
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| d.to_string())
        .collect();
    assert_eq!(
        errors,
        [
            "rejected.yaml:12:22: error: Pod bad-port: spec.containers[0].ports[0].containerPort: \
             expected an integer, found a string `http`",
            "rejected.yaml:19:11: error: Pod bad-labels: metadata.labels: expected a mapping, found a sequence",
        ]
    );
    // A repeated key is accepted with kubectl's duplicate-field warning;
    // the last value wins.
    let warnings: Vec<String> = diags
        .items()
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .map(|d| d.to_string())
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0]
            == "rejected.yaml:28:5: warning: key \"app\" is repeated; the last value is used \
            (the first is at line 27)"
    );
    assert_eq!(names(&inv), ["rejected/good"]);
    assert_eq!(
        label(&workload(&inv, "rejected", "good").template.labels, "app"),
        "better"
    );
}

#[test]
fn generate_name_without_a_name() {
    let (inv, diags) = load("generate-name.yaml");
    assert_eq!(diags.problems().count(), 0, "{diags:?}");
    assert_eq!(diags.notes(), 1, "{diags:?}");
    let w = workload(&inv, "batch", "report-");
    assert_eq!(label(&w.template.labels, "app"), "report");
}
