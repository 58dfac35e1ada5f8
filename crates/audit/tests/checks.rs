//! Every check with a manifest that fails it and one that passes.

use palisade_audit::{Suppressions, audit, checks};
use palisade_inventory::Inventory;
use palisade_policy::{Engine, Settings};

const NS: &str = "kind: Namespace\nmetadata: {name: app}\n---\n";

/// (check id, resource) of every active finding.
fn findings(yaml: &str) -> Vec<(String, String)> {
    let text = format!("{NS}{yaml}");
    let (inv, diags) = Inventory::from_texts([("t.yaml", text.as_str())]);
    assert!(diags.is_empty(), "{:?}", diags.items());
    let engine = Engine::new(&inv, &Settings::default());
    audit(&inv, &engine, &Suppressions::default())
        .active()
        .map(|f| (f.check.to_string(), f.resource.to_string()))
        .collect()
}

fn has(yaml: &str, id: &str) -> bool {
    findings(yaml).iter().any(|(c, _)| c == id)
}

fn pod(spec: &str) -> String {
    format!("kind: Pod\nmetadata: {{name: p, namespace: app, labels: {{app: p}}}}\nspec:\n{spec}\n")
}

const SAFE_CONTAINER: &str = "  containers:\n  - name: c\n    image: x@sha256:0\n    securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}\n";

#[test]
fn host_network() {
    assert!(has(
        &pod(&format!("  hostNetwork: true\n{SAFE_CONTAINER}")),
        "BYP-001"
    ));
    assert!(!has(&pod(SAFE_CONTAINER), "BYP-001"));
}

#[test]
fn host_port() {
    let c = "  containers:\n  - name: c\n    ports: [{containerPort: 80, hostPort: 8080}]\n";
    assert!(has(&pod(c), "BYP-002"));
    assert!(!has(
        &pod("  containers:\n  - name: c\n    ports: [{containerPort: 80}]\n"),
        "BYP-002"
    ));
}

#[test]
fn privileged_also_in_init_and_ephemeral_containers() {
    for field in ["containers", "initContainers", "ephemeralContainers"] {
        let spec = format!("  {field}:\n  - name: c\n    securityContext: {{privileged: true}}\n");
        assert!(has(&pod(&spec), "BYP-003"), "{field}");
    }
    assert!(!has(&pod(SAFE_CONTAINER), "BYP-003"));
}

#[test]
fn dangerous_capabilities() {
    let caps = |add: &str| {
        pod(&format!(
            "  containers:\n  - name: c\n    securityContext: {{capabilities: {{add: [{add}], drop: [ALL]}}}}\n"
        ))
    };
    assert!(has(&caps("NET_ADMIN"), "BYP-004"));
    assert!(has(&caps("CAP_SYS_ADMIN"), "BYP-006"));
    assert!(has(&caps("ALL"), "BYP-007"));
    assert!(has(&caps("NET_RAW"), "BYP-005"));
    assert!(!has(&caps("CHOWN"), "BYP-004"));
    assert!(!has(&caps("CHOWN"), "BYP-005"));
}

#[test]
fn net_raw_not_dropped() {
    assert!(has(&pod("  containers:\n  - name: c\n"), "BYP-005"));
    assert!(!has(
        &pod(
            "  containers:\n  - name: c\n    securityContext: {capabilities: {drop: [NET_RAW]}}\n"
        ),
        "BYP-005"
    ));
    assert!(!has(&pod(SAFE_CONTAINER), "BYP-005"));
}

#[test]
fn host_pid_and_ipc() {
    assert!(has(
        &pod(&format!("  hostPID: true\n{SAFE_CONTAINER}")),
        "BYP-008"
    ));
    assert!(has(
        &pod(&format!("  hostIPC: true\n{SAFE_CONTAINER}")),
        "BYP-008"
    ));
    assert!(!has(&pod(SAFE_CONTAINER), "BYP-008"));
}

#[test]
fn privilege_escalation() {
    assert!(has(&pod("  containers:\n  - name: c\n"), "BYP-009"));
    assert!(!has(&pod(SAFE_CONTAINER), "BYP-009"));
}

#[test]
fn probe_with_host() {
    let probe = "  containers:\n  - name: c\n    livenessProbe: {httpGet: {host: 10.0.0.1, port: 80, path: /}}\n";
    assert!(has(&pod(probe), "BYP-010"));
    let hook = "  containers:\n  - name: c\n    lifecycle: {preStop: {tcpSocket: {host: metadata, port: 80}}}\n";
    assert!(has(&pod(hook), "BYP-010"));
    assert!(!has(
        &pod("  containers:\n  - name: c\n    livenessProbe: {httpGet: {port: 80}}\n"),
        "BYP-010"
    ));
}

const DENY_INGRESS: &str = "---\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: app}\nspec: {podSelector: {}, policyTypes: [Ingress]}\n";

fn service(spec: &str) -> String {
    format!(
        "{}---\nkind: Service\nmetadata: {{name: s, namespace: app}}\nspec:\n{spec}\n",
        pod(SAFE_CONTAINER)
    )
}

#[test]
fn external_service_with_cluster_traffic_policy_in_front_of_protected_pods() {
    let lb = service("  type: LoadBalancer\n  selector: {app: p}\n  ports: [{port: 80}]");
    assert!(has(&format!("{lb}{DENY_INGRESS}"), "BYP-011"));
    // Unprotected pods are reported by BYP-014 instead.
    assert!(!has(&lb, "BYP-011"));
    let local = service(
        "  type: NodePort\n  externalTrafficPolicy: Local\n  selector: {app: p}\n  ports: [{port: 80}]",
    );
    assert!(!has(&format!("{local}{DENY_INGRESS}"), "BYP-011"));
}

#[test]
fn external_ips_and_external_name() {
    assert!(has(
        &service("  externalIPs: [203.0.113.7]\n  ports: [{port: 80}]"),
        "BYP-012"
    ));
    assert!(has(
        &service("  type: ExternalName\n  externalName: example.com"),
        "BYP-013"
    ));
    assert!(!has(&service("  ports: [{port: 80}]"), "BYP-012"));
}

#[test]
fn service_in_front_of_unprotected_pods() {
    let svc = service("  selector: {app: p}\n  ports: [{port: 80}]");
    assert!(has(&svc, "BYP-014"));
    assert!(!has(&format!("{svc}{DENY_INGRESS}"), "BYP-014"));
}

#[test]
fn namespace_default_deny_needs_an_empty_selector() {
    let p = pod(SAFE_CONTAINER);
    assert!(has(&p, "POL-001") && has(&p, "POL-002"));
    assert!(!has(&format!("{p}{DENY_INGRESS}"), "POL-001"));
    // A policy that selects the only pod by label does not cover new pods.
    let by_label = "---\nkind: NetworkPolicy\nmetadata: {name: l, namespace: app}\nspec: {podSelector: {matchLabels: {app: p}}, policyTypes: [Ingress]}\n";
    assert!(has(&format!("{p}{by_label}"), "POL-001"));
    let egress = "---\nkind: NetworkPolicy\nmetadata: {name: e, namespace: app}\nspec: {podSelector: {}, policyTypes: [Egress]}\n";
    assert!(!has(&format!("{p}{egress}"), "POL-002"));
}

#[test]
fn workload_isolation_uses_policy_types_defaulting() {
    let p = pod(SAFE_CONTAINER);
    assert!(has(&p, "POL-003") && has(&p, "POL-004"));
    // policyTypes omitted + an egress rule: isolates both directions.
    let implicit = "---\nkind: NetworkPolicy\nmetadata: {name: i, namespace: app}\nspec: {podSelector: {matchExpressions: [{key: app, operator: In, values: [p]}]}, egress: [{}]}\n";
    let f = findings(&format!("{p}{implicit}"));
    assert!(
        !f.iter().any(|(c, _)| c == "POL-003" || c == "POL-004"),
        "{f:?}"
    );
    // A policy in another namespace does not isolate.
    let other = "---\nkind: NetworkPolicy\nmetadata: {name: o, namespace: other}\nspec: {podSelector: {}, policyTypes: [Ingress, Egress]}\n";
    assert!(has(&format!("{p}{other}"), "POL-003"));
}

#[test]
fn policy_and_peer_that_select_nothing() {
    let p = pod(SAFE_CONTAINER);
    let typo = "---\nkind: NetworkPolicy\nmetadata: {name: t, namespace: app}\nspec: {podSelector: {matchLabels: {app: q}}, ingress: [{from: [{podSelector: {matchLabels: {app: nobody}}}, {namespaceSelector: {matchLabels: {team: none}}}]}]}\n";
    let f = findings(&format!("{p}{typo}"));
    assert!(f.iter().any(|(c, _)| c == "POL-005"));
    assert_eq!(f.iter().filter(|(c, _)| c == "POL-006").count(), 2, "{f:?}");
    let fine = "---\nkind: NetworkPolicy\nmetadata: {name: f, namespace: app}\nspec: {podSelector: {matchLabels: {app: p}}, ingress: [{from: [{podSelector: {matchLabels: {app: p}}}]}]}\n";
    let f = findings(&format!("{p}{fine}"));
    assert!(
        !f.iter().any(|(c, _)| c == "POL-005" || c == "POL-006"),
        "{f:?}"
    );
}

#[test]
fn rules_that_admit_everyone() {
    let p = pod(SAFE_CONTAINER);
    for from in [
        "{}",
        "{from: [{ipBlock: {cidr: 0.0.0.0/0}}]}",
        "{from: [{namespaceSelector: {}}]}",
        "{from: [{ipBlock: {cidr: '::/0'}}]}",
    ] {
        let np = format!(
            "---\nkind: NetworkPolicy\nmetadata: {{name: a, namespace: app}}\nspec: {{podSelector: {{}}, ingress: [{from}]}}\n"
        );
        assert!(has(&format!("{p}{np}"), "POL-007"), "{from}");
    }
    let narrow = "---\nkind: NetworkPolicy\nmetadata: {name: a, namespace: app}\nspec: {podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8}}, {namespaceSelector: {}, podSelector: {matchLabels: {app: p}}}]}]}\n";
    assert!(!has(&format!("{p}{narrow}"), "POL-007"));
    let egress = "---\nkind: NetworkPolicy\nmetadata: {name: e, namespace: app}\nspec: {podSelector: {}, egress: [{ports: [{port: 443}]}]}\n";
    assert!(has(&format!("{p}{egress}"), "POL-008"));
}

#[test]
fn dns_to_any_destination() {
    let p = pod(SAFE_CONTAINER);
    let any = "---\nkind: NetworkPolicy\nmetadata: {name: d, namespace: app}\nspec: {podSelector: {}, egress: [{ports: [{port: 53, protocol: UDP}, {port: 53}]}]}\n";
    let f = findings(&format!("{p}{any}"));
    assert!(f.iter().any(|(c, _)| c == "POL-011"), "{f:?}");
    assert!(!f.iter().any(|(c, _)| c == "POL-008"), "{f:?}");
    let kube_dns = "---\nkind: NetworkPolicy\nmetadata: {name: d, namespace: app}\nspec: {podSelector: {}, egress: [{to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}}], ports: [{port: 53, protocol: UDP}]}]}\n";
    assert!(!has(&format!("{p}{kube_dns}"), "POL-011"));
}

#[test]
fn metadata_egress_is_judged_by_the_engine() {
    let p = pod(SAFE_CONTAINER);
    // Unrestricted egress reaches it.
    assert!(has(&p, "POL-009"));
    let open = "---\nkind: NetworkPolicy\nmetadata: {name: o, namespace: app}\nspec: {podSelector: {}, policyTypes: [Egress], egress: [{to: [{ipBlock: {cidr: 0.0.0.0/0, except: [10.0.0.0/8]}}]}]}\n";
    assert!(has(&format!("{p}{open}"), "POL-009"));
    let carved = "---\nkind: NetworkPolicy\nmetadata: {name: o, namespace: app}\nspec: {podSelector: {}, policyTypes: [Egress], egress: [{to: [{ipBlock: {cidr: 0.0.0.0/0, except: [169.254.169.254/32]}}]}]}\n";
    assert!(!has(&format!("{p}{carved}"), "POL-009"));
    // Refilled by a second rule: the engine sees it.
    let refilled = format!(
        "{carved}---\nkind: NetworkPolicy\nmetadata: {{name: r, namespace: app}}\nspec: {{podSelector: {{}}, policyTypes: [Egress], egress: [{{to: [{{ipBlock: {{cidr: 169.254.0.0/16}}}}]}}]}}\n"
    );
    assert!(has(&format!("{p}{refilled}"), "POL-009"));
}

#[test]
fn named_ports_that_resolve_nowhere() {
    let p = pod(
        "  containers:\n  - name: c\n    ports: [{name: http, containerPort: 8080}, {name: dns, containerPort: 53, protocol: UDP}]\n",
    );
    let np = |port: &str| {
        format!(
            "---\nkind: NetworkPolicy\nmetadata: {{name: named, namespace: app}}\nspec: {{podSelector: {{}}, ingress: [{{ports: [{port}]}}]}}\n"
        )
    };
    assert!(has(&format!("{p}{}", np("{port: metrics}")), "POL-012"));
    // The protocol is part of the match.
    assert!(has(&format!("{p}{}", np("{port: dns}")), "POL-012"));
    assert!(!has(
        &format!("{p}{}", np("{port: dns, protocol: UDP}")),
        "POL-012"
    ));
    assert!(!has(&format!("{p}{}", np("{port: http}")), "POL-012"));
    let egress = "---\nkind: NetworkPolicy\nmetadata: {name: e, namespace: app}\nspec: {podSelector: {}, policyTypes: [Egress], egress: [{to: [{podSelector: {matchLabels: {app: p}}}], ports: [{port: grpc}]}]}\n";
    assert!(has(&format!("{p}{egress}"), "POL-012"));
}

#[test]
fn exposed_to_everything() {
    let two = format!(
        "{}---\nkind: Pod\nmetadata: {{name: q, namespace: other, labels: {{app: q}}}}\n",
        pod(SAFE_CONTAINER)
    );
    let allow_all = "---\nkind: NetworkPolicy\nmetadata: {name: a, namespace: app}\nspec: {podSelector: {}, ingress: [{from: [{namespaceSelector: {}}]}]}\n";
    assert!(has(&format!("{two}{allow_all}"), "POL-015"));
    let some_ports = "---\nkind: NetworkPolicy\nmetadata: {name: a, namespace: app}\nspec: {podSelector: {}, ingress: [{from: [{namespaceSelector: {}}], ports: [{port: 80}]}]}\n";
    assert!(!has(&format!("{two}{some_ports}"), "POL-015"));
}

#[test]
fn suppressions_are_counted_not_dropped() {
    let annotated = "kind: Pod\nmetadata:\n  name: p\n  namespace: app\n  annotations: {palisade.io/ignore: 'BYP-001, BYP-005', palisade.io/ignore-reason: node agent}\nspec:\n  hostNetwork: true\n  containers: [{name: c}]\n";
    let text = format!("{NS}{annotated}");
    let (inv, _) = Inventory::from_texts([("t.yaml", text.as_str())]);
    let engine = Engine::new(&inv, &Settings::default());
    let report = audit(
        &inv,
        &engine,
        &Suppressions {
            skip: vec!["BYP-009".into()],
        },
    );
    let suppressed: Vec<(&str, &str)> = report
        .findings
        .iter()
        .filter_map(|f| f.suppressed.as_deref().map(|r| (f.check, r)))
        .collect();
    assert!(
        suppressed.contains(&("BYP-001", "node agent")),
        "{suppressed:?}"
    );
    assert!(suppressed.contains(&("BYP-005", "node agent")));
    assert!(suppressed.iter().any(|(c, _)| *c == "BYP-009"));
    assert_eq!(report.summary.suppressed, suppressed.len());
    assert!(!report.active().any(|f| f.check == "BYP-001"));
}

#[test]
fn every_check_is_documented() {
    let docs = include_str!("../../../docs/checks.md");
    for check in checks::ALL {
        assert!(
            docs.contains(&format!("## {}", check.id)),
            "{} is not in docs/checks.md",
            check.id
        );
    }
}
