//! Loading behaviour a user relies on: workload grouping, implicit
//! namespaces, policy defaulting and validation, diagnostics on bad input.

use palisade_inventory::{Inventory, Protocol, Severity, WorkloadKind};

fn load(text: &str) -> (Inventory, Vec<String>) {
    let (inv, diags) = Inventory::from_texts([("in.yaml", text)]);
    let diags = diags.items().iter().map(|d| d.to_string()).collect();
    (inv, diags)
}

const DUMP: &str = r#"
apiVersion: v1
kind: List
items:
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: web, namespace: shop}
  spec:
    template:
      metadata: {labels: {app: web}}
      spec:
        containers:
        - name: web
          image: nginx:1.27
          ports: [{name: http, containerPort: 8080}]
- apiVersion: apps/v1
  kind: ReplicaSet
  metadata:
    name: web-5d4f8
    namespace: shop
    ownerReferences: [{kind: Deployment, name: web, controller: true}]
  spec:
    template:
      metadata: {labels: {app: web}}
- apiVersion: v1
  kind: Pod
  metadata:
    name: web-5d4f8-abcde
    namespace: shop
    labels: {app: web, pod-template-hash: 5d4f8}
    ownerReferences: [{kind: ReplicaSet, name: web-5d4f8, controller: true}]
  spec: {containers: [{name: web}]}
  status: {podIP: 10.0.0.5, podIPs: [{ip: 10.0.0.5}, {ip: "fd00::5"}]}
- apiVersion: v1
  kind: Pod
  metadata:
    name: api-7c9-xyz
    namespace: shop
    labels: {app: api, pod-template-hash: "7c9"}
    ownerReferences: [{kind: ReplicaSet, name: api-7c9, controller: true}]
  spec: {containers: [{name: api}]}
- apiVersion: v1
  kind: Pod
  metadata: {name: debug, labels: {run: debug}}
  spec: {containers: [{name: sh}]}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: cfg, namespace: shop}
"#;

#[test]
fn pods_are_grouped_into_their_deployment() {
    let (inv, diags) = load(DUMP);
    assert!(diags.is_empty(), "{diags:?}");
    let names: Vec<String> = inv.workloads.iter().map(|w| w.display_name()).collect();
    assert_eq!(
        names,
        [
            "default/debug[Pod]",
            "shop/api-7c9[ReplicaSet]",
            "shop/web[Deployment]"
        ]
    );
    let web = &inv.workloads[2];
    assert_eq!(web.pods.len(), 1);
    assert_eq!(web.ips().count(), 2);
    assert_eq!(web.template.named_port("http", Protocol::Tcp), [8080]);
    assert!(web.template.named_port("http", Protocol::Udp).is_empty());
}

#[test]
fn referenced_namespaces_exist_with_their_name_label() {
    let (inv, _) = load(DUMP);
    let names: Vec<&str> = inv.namespaces.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["default", "shop"]);
    let shop = inv.namespace("shop").unwrap();
    assert!(!shop.declared);
    assert_eq!(shop.labels["kubernetes.io/metadata.name"], "shop");
}

#[test]
fn other_kinds_are_skipped_and_counted() {
    let (inv, _) = load(DUMP);
    assert_eq!(inv.skipped_kinds.get("ConfigMap"), Some(&1));
    assert_eq!(inv.skipped_objects(), 1);
}

#[test]
fn replicaset_pods_join_a_present_deployment_without_the_replicaset() {
    let text = r#"
kind: Deployment
metadata: {name: api, namespace: ns}
spec: {template: {metadata: {labels: {app: api}}}}
---
kind: Pod
metadata:
  name: api-66b-q
  namespace: ns
  labels: {app: api, pod-template-hash: 66b}
  ownerReferences: [{kind: ReplicaSet, name: api-66b, controller: true}]
"#;
    let (inv, diags) = load(text);
    assert!(diags.is_empty(), "{diags:?}");
    assert_eq!(inv.workloads.len(), 1);
    assert_eq!(inv.workloads[0].kind, WorkloadKind::Deployment);
    assert_eq!(inv.workloads[0].pods.len(), 1);
}

#[test]
fn cronjob_pods_join_the_cronjob() {
    let text = r#"
kind: CronJob
metadata: {name: backup, namespace: db}
spec: {jobTemplate: {spec: {template: {metadata: {labels: {job: backup}}}}}}
---
kind: Pod
metadata:
  name: backup-29000000-abc
  namespace: db
  ownerReferences: [{kind: Job, name: backup-29000000, controller: true}]
"#;
    let (inv, _) = load(text);
    assert_eq!(inv.workloads.len(), 1);
    assert_eq!(inv.workloads[0].display_name(), "db/backup[CronJob]");
    assert_eq!(inv.workloads[0].template.labels["job"], "backup");
}

#[test]
fn policy_types_default_from_egress_rules() {
    let text = r#"
kind: NetworkPolicy
metadata: {name: a}
spec: {podSelector: {}, egress: [{}]}
---
kind: NetworkPolicy
metadata: {name: b}
spec: {podSelector: {}, egress: []}
---
kind: NetworkPolicy
metadata: {name: c}
spec: {podSelector: {}, policyTypes: [Egress]}
"#;
    let (inv, diags) = load(text);
    assert!(diags.is_empty(), "{diags:?}");
    let types: Vec<(bool, bool)> = inv
        .policies
        .iter()
        .map(|p| (p.affects_ingress, p.affects_egress))
        .collect();
    // `egress: []` has no rule, so defaulting adds only Ingress.
    assert_eq!(types, [(true, true), (true, false), (false, true)]);
}

#[test]
fn invalid_policies_are_reported_with_the_reason_and_left_out() {
    let text = r#"
kind: NetworkPolicy
metadata: {name: bad-op, namespace: x}
spec:
  podSelector: {matchExpressions: [{key: a, operator: Is, values: [b]}]}
---
kind: NetworkPolicy
metadata: {name: bad-except, namespace: x}
spec:
  podSelector: {}
  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.1.0.0/24]}}]}]
---
kind: NetworkPolicy
metadata: {name: bad-endport, namespace: x}
spec:
  podSelector: {}
  ingress: [{ports: [{port: http, endPort: 90}]}]
---
kind: NetworkPolicy
metadata: {name: good, namespace: x}
spec: {podSelector: {}}
"#;
    let (inv, diags) = load(text);
    assert_eq!(inv.policies.len(), 1);
    assert_eq!(diags.len(), 3, "{diags:?}");
    assert!(diags[0].starts_with("in.yaml:2:1: error:"), "{}", diags[0]);
    assert!(diags[0].contains("unknown operator \"Is\""));
    assert!(diags[1].contains("not a strict subset"));
    assert!(diags[1].starts_with("in.yaml:7:"), "{}", diags[1]);
    assert!(diags[2].contains("endPort requires a numeric port"));
}

#[test]
fn type_errors_name_the_field_path() {
    let text = "kind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    ports: [{containerPort: [1]}]\n";
    let (inv, diags) = Inventory::from_texts([("p.yaml", text)]);
    assert!(inv.workloads.is_empty());
    let d = &diags.items()[0];
    assert_eq!(d.severity, Severity::Error);
    assert!(
        d.message
            .contains("spec.containers[0].ports[0].containerPort"),
        "{d}"
    );
}

#[test]
fn garbage_never_panics() {
    for text in [
        "",
        "---\n---\n",
        "- 1\n- 2\n",
        "kind: List\nitems: 3\n",
        "a: &a [*a]\n",
        "kind: Pod\nmetadata: 7\n",
        "{\"kind\": \"Pod\", ",
        "kind: NetworkPolicy\nmetadata: {name: x}\nspec: {ingress: [{from: [{}]}]}\n",
        "\u{feff}kind: Pod\nmetadata: {name: bom}\n",
    ] {
        let _ = load(text);
    }
}

#[test]
fn later_declarations_win_with_a_warning() {
    let text = "kind: Service\nmetadata: {name: s}\nspec: {type: NodePort}\n---\nkind: Service\nmetadata: {name: s}\n";
    let (inv, diags) = load(text);
    assert_eq!(inv.services.len(), 1);
    assert_eq!(inv.services[0].service_type, "ClusterIP");
    assert_eq!(diags.len(), 1);
    assert!(diags[0].contains("declared again"));
}

#[test]
fn static_mirror_pods_are_each_their_own_workload() {
    // kubelet's mirror pods of static pods are controlled by their Node.
    let text = r#"
kind: Pod
metadata:
  name: etcd-node-1
  namespace: kube-system
  labels: {component: etcd}
  ownerReferences: [{apiVersion: v1, kind: Node, name: node-1, controller: true}]
spec: {hostNetwork: true, nodeName: node-1}
---
kind: Pod
metadata:
  name: kube-apiserver-node-1
  namespace: kube-system
  labels: {component: kube-apiserver}
  ownerReferences: [{apiVersion: v1, kind: Node, name: node-1, controller: true}]
spec: {hostNetwork: true, nodeName: node-1}
"#;
    let (inv, diags) = load(text);
    assert!(diags.is_empty(), "{diags:?}");
    let names: Vec<String> = inv.workloads.iter().map(|w| w.display_name()).collect();
    assert_eq!(
        names,
        [
            "kube-system/etcd-node-1[Pod]",
            "kube-system/kube-apiserver-node-1[Pod]"
        ]
    );
    assert_eq!(inv.workloads[0].template.labels["component"], "etcd");
}

#[test]
fn only_the_controller_owner_makes_a_workload() {
    // An owner without `controller: true` governs garbage collection only
    // (metav1.GetControllerOf ignores it).
    let text = r#"
kind: Pod
metadata:
  name: worker
  namespace: ns
  ownerReferences: [{kind: ConfigMap, name: settings}, {kind: StatefulSet, name: db, controller: false}]
"#;
    let (inv, _) = load(text);
    assert_eq!(inv.workloads[0].display_name(), "ns/worker[Pod]");
}

#[test]
fn pods_are_found_by_their_uid() {
    let text = "kind: Pod\nmetadata: {name: a, namespace: ns, uid: 4e3f8a1c-2b7d-4c9e-8f10-123456789abc}\n---\nkind: Pod\nmetadata: {name: b, namespace: ns}\n";
    let (inv, _) = load(text);
    let (w, p) = inv
        .pod_by_uid("4e3f8a1c-2b7d-4c9e-8f10-123456789abc")
        .expect("found");
    assert_eq!(inv.workloads[w].pods[p].name, "a");
    assert_eq!(inv.pod_by_uid("nope"), None);
}
