//! Every check with a manifest that fails it and one that passes.

use palisade_audit::{AuditOptions, PssLevel, Suppressions, audit, checks};
use palisade_inventory::Inventory;
use palisade_policy::{Engine, Settings};

const NS: &str = "kind: Namespace\nmetadata: {name: app}\n---\n";

/// (check id, resource) of every active finding.
fn findings(yaml: &str) -> Vec<(String, String)> {
    let text = format!("{NS}{yaml}");
    let (inv, diags) = Inventory::from_texts([("t.yaml", text.as_str())]);
    assert!(diags.is_empty(), "{:?}", diags.items());
    let engine = Engine::new(&inv, &Settings::default());
    audit(
        &inv,
        &engine,
        &AuditOptions {
            pss: PssLevel::Restricted,
            ..Default::default()
        },
    )
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
    let options = AuditOptions {
        suppressions: Suppressions {
            skip: vec!["BYP-009".into()],
            ..Default::default()
        },
        pss: PssLevel::Both,
        ..Default::default()
    };
    let report = audit(&inv, &engine, &options);
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

/// A pod that passes every Pod Security control, restricted included.
const RESTRICTED_POD: &str = "  securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}\n  containers:\n  - name: c\n    securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}\n";

fn pss_ids(spec: &str) -> Vec<String> {
    let mut ids: Vec<String> = findings(&pod(spec))
        .into_iter()
        .map(|(c, _)| c)
        .filter(|c| c.starts_with("PSS-1") || (c.starts_with("PSS-0")))
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

#[test]
fn restricted_pod_passes_every_pod_security_control() {
    assert!(
        pss_ids(RESTRICTED_POD).is_empty(),
        "{:?}",
        pss_ids(RESTRICTED_POD)
    );
}

fn with_container_context(sc: &str) -> String {
    let caps = if sc.contains("capabilities:") {
        ""
    } else {
        "capabilities: {drop: [ALL]}, "
    };
    format!(
        "  securityContext: {{runAsNonRoot: true, seccompProfile: {{type: RuntimeDefault}}}}\n  containers:\n  - name: c\n    securityContext: {{allowPrivilegeEscalation: false, {caps}{sc}}}\n"
    )
}

#[test]
fn baseline_controls_fail_and_pass_field_by_field() {
    let cases = [
        ("PSS-002", with_container_context("privileged: true")),
        ("PSS-008", with_container_context("procMount: Unmasked")),
        ("PSS-009", with_container_context("seccompProfile: {type: Unconfined}")),
        ("PSS-006", with_container_context("appArmorProfile: {type: Unconfined}")),
        ("PSS-007", with_container_context("seLinuxOptions: {type: spc_t}")),
        ("PSS-007", with_container_context("seLinuxOptions: {user: system_u}")),
        ("PSS-011", with_container_context("windowsOptions: {hostProcess: true}")),
        ("PSS-001", format!("  hostIPC: true\n{RESTRICTED_POD}")),
        ("PSS-004", format!("  volumes: [{{name: h, hostPath: {{path: /var/run}}}}]\n{RESTRICTED_POD}")),
        ("PSS-010", "  securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}, sysctls: [{name: net.ipv4.ip_forward, value: '1'}]}\n  containers:\n  - name: c\n    securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}\n".to_string()),
        ("PSS-005", "  securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}\n  containers:\n  - name: c\n    ports: [{containerPort: 80, hostPort: 80}]\n    securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}\n".to_string()),
        ("PSS-003", with_container_context("capabilities: {drop: [ALL], add: [NET_ADMIN]}")),
    ];
    for (id, spec) in cases {
        assert!(
            pss_ids(&spec).contains(&id.to_string()),
            "{id} not raised for\n{spec}"
        );
    }
    // Allowed values pass.
    for ok in [
        with_container_context("seLinuxOptions: {type: container_init_t}"),
        with_container_context("procMount: Default"),
        with_container_context("appArmorProfile: {type: RuntimeDefault}"),
        with_container_context("seccompProfile: {type: Localhost, localhostProfile: p.json}"),
        "  securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}, sysctls: [{name: net.ipv4.tcp_syncookies, value: '1'}]}\n  containers:\n  - name: c\n    securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}\n".to_string(),
    ] {
        assert!(pss_ids(&ok).is_empty(), "{:?} for\n{ok}", pss_ids(&ok));
    }
    // Baseline allows adding its own capabilities (restricted does not).
    let chown = pss_ids(&with_container_context(
        "capabilities: {drop: [ALL], add: [CHOWN]}",
    ));
    assert!(!chown.contains(&"PSS-003".to_string()) && chown.contains(&"PSS-106".to_string()));
    // AppArmor annotations count too.
    let annotated = format!(
        "kind: Pod\nmetadata: {{name: p, namespace: app, annotations: {{container.apparmor.security.beta.kubernetes.io/c: unconfined}}}}\nspec:\n{RESTRICTED_POD}"
    );
    assert!(findings(&annotated).iter().any(|(c, _)| c == "PSS-006"));
}

#[test]
fn restricted_controls_and_pod_versus_container_precedence() {
    // The pod sets runAsNonRoot, a container overrides it with false.
    let overridden = "  securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}\n  containers:\n  - name: c\n    securityContext: {runAsNonRoot: false, allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}\n";
    assert!(pss_ids(overridden).contains(&"PSS-103".to_string()));
    // Set only on the container: enough.
    let container_only = "  containers:\n  - name: c\n    securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}, allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}\n";
    assert!(
        pss_ids(container_only).is_empty(),
        "{:?}",
        pss_ids(container_only)
    );
    // Init containers are held to the same rules.
    let init = format!("{RESTRICTED_POD}  initContainers:\n  - name: setup\n");
    let ids = pss_ids(&init);
    for id in ["PSS-102", "PSS-106"] {
        assert!(ids.contains(&id.to_string()), "{id} {ids:?}");
    }
    let root = "  securityContext: {runAsNonRoot: true, runAsUser: 0, seccompProfile: {type: RuntimeDefault}}\n  containers:\n  - name: c\n    securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}\n".to_string();
    assert!(pss_ids(&root).contains(&"PSS-104".to_string()));
    let volume = format!("  volumes: [{{name: g, gitRepo: {{repository: x}}}}]\n{RESTRICTED_POD}");
    assert!(pss_ids(&volume).contains(&"PSS-101".to_string()));
    let ok_volume = format!(
        "  volumes: [{{name: e, emptyDir: {{}}}}, {{name: s, secret: {{secretName: x}}}}]\n{RESTRICTED_POD}"
    );
    assert!(pss_ids(&ok_volume).is_empty());
    let no_seccomp = "  securityContext: {runAsNonRoot: true}\n  containers:\n  - name: c\n    securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}\n";
    assert!(pss_ids(no_seccomp).contains(&"PSS-105".to_string()));
    let bind = with_container_context("capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}");
    assert!(pss_ids(&bind).is_empty(), "{:?}", pss_ids(&bind));
}

#[test]
fn pss_level_selects_and_weights_restricted_controls() {
    let text = format!("{NS}{}", pod("  containers:\n  - name: c\n"));
    let (inv, _) = Inventory::from_texts([("t.yaml", text.as_str())]);
    let engine = Engine::new(&inv, &Settings::default());
    let run = |pss| {
        audit(
            &inv,
            &engine,
            &AuditOptions {
                pss,
                ..Default::default()
            },
        )
    };
    let severity_of = |r: &palisade_audit::Report, id: &str| {
        r.findings
            .iter()
            .find(|f| f.check == id)
            .map(|f| f.severity)
    };
    assert_eq!(severity_of(&run(PssLevel::Baseline), "PSS-103"), None);
    assert_eq!(
        severity_of(&run(PssLevel::Both), "PSS-103"),
        Some(palisade_audit::Severity::Low)
    );
    assert_eq!(
        severity_of(&run(PssLevel::Restricted), "PSS-103"),
        Some(palisade_audit::Severity::Medium)
    );
}

#[test]
fn namespace_enforce_labels() {
    let p = pod(RESTRICTED_POD);
    assert!(has(&p, "PSS-201"));
    let labelled = format!(
        "kind: Namespace\nmetadata: {{name: app, labels: {{pod-security.kubernetes.io/enforce: baseline}}}}\n---\n{}",
        pod("  hostPID: true\n  containers: [{name: c}]\n")
    );
    let (inv, _) = Inventory::from_texts([("t.yaml", labelled.as_str())]);
    let engine = Engine::new(&inv, &Settings::default());
    let report = audit(&inv, &engine, &AuditOptions::default());
    assert!(!report.findings.iter().any(|f| f.check == "PSS-201"));
    let host = report
        .findings
        .iter()
        .find(|f| f.check == "PSS-001")
        .unwrap();
    assert!(
        host.message
            .contains("enforces baseline: admission would reject"),
        "{}",
        host.message
    );
    let restricted_only = report
        .findings
        .iter()
        .find(|f| f.check == "PSS-103")
        .unwrap();
    assert!(!restricted_only.message.contains("reject"));
}

#[test]
fn hygiene() {
    let bare = pod("  containers:\n  - name: c\n    image: nginx\n");
    let ids: Vec<String> = findings(&bare).into_iter().map(|(c, _)| c).collect();
    for id in ["HYG-001", "HYG-002", "HYG-003", "HYG-004"] {
        assert!(ids.contains(&id.to_string()), "{id} {ids:?}");
    }
    let tidy = "  automountServiceAccountToken: false\n  containers:\n  - name: c\n    image: nginx@sha256:abc\n    resources: {limits: {cpu: 100m, memory: 64Mi}}\n    securityContext: {readOnlyRootFilesystem: true}\n";
    let ids: Vec<String> = findings(&pod(tidy)).into_iter().map(|(c, _)| c).collect();
    assert!(!ids.iter().any(|c| c.starts_with("HYG")), "{ids:?}");
    // The token only matters when the API server is reachable.
    let api = "---\nkind: Service\nmetadata: {name: kubernetes, namespace: default}\nspec: {clusterIP: 10.96.0.1, ports: [{port: 443}]}\n";
    let deny = "---\nkind: NetworkPolicy\nmetadata: {name: d, namespace: app}\nspec: {podSelector: {}, policyTypes: [Egress], egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.96.0.0/12]}}]}]}\n";
    assert!(!has(&format!("{bare}{api}{deny}"), "HYG-002"));
    assert!(has(&format!("{bare}{api}"), "HYG-002"));
}

#[test]
fn mutable_namespace_labels_in_allow_rules() {
    let p = pod(SAFE_CONTAINER);
    let team = "---\nkind: NetworkPolicy\nmetadata: {name: t, namespace: app}\nspec: {podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {team: web}}}]}]}\n";
    assert!(has(&format!("{p}{team}"), "BYP-015"));
    let by_name = "---\nkind: NetworkPolicy\nmetadata: {name: t, namespace: app}\nspec: {podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: web}}}]}]}\n";
    assert!(!has(&format!("{p}{by_name}"), "BYP-015"));
}

#[test]
fn egress_rules_reaching_the_api_server() {
    let p = pod(SAFE_CONTAINER);
    let api = "---\nkind: Service\nmetadata: {name: kubernetes, namespace: default}\nspec: {clusterIP: 10.96.0.1, ports: [{port: 443}]}\n";
    let wide = "---\nkind: NetworkPolicy\nmetadata: {name: w, namespace: app}\nspec: {podSelector: {}, policyTypes: [Egress], egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8}}], ports: [{port: 443}]}]}\n";
    assert!(has(&format!("{p}{api}{wide}"), "POL-010"));
    let carved = "---\nkind: NetworkPolicy\nmetadata: {name: w, namespace: app}\nspec: {podSelector: {}, policyTypes: [Egress], egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.96.0.0/12]}}]}]}\n";
    assert!(!has(&format!("{p}{api}{carved}"), "POL-010"));
}

#[test]
fn ipblocks_overlapping_cluster_cidrs() {
    let p = pod(SAFE_CONTAINER);
    let node = "---\nkind: Node\nmetadata: {name: n1}\nspec: {podCIDR: 10.244.1.0/24}\n";
    let block = "---\nkind: NetworkPolicy\nmetadata: {name: b, namespace: app}\nspec: {podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8}}]}]}\n";
    assert!(has(&format!("{p}{node}{block}"), "POL-013"));
    assert!(!has(&format!("{p}{block}"), "POL-013"));
    let outside = "---\nkind: NetworkPolicy\nmetadata: {name: b, namespace: app}\nspec: {podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 192.168.0.0/16}}]}]}\n";
    assert!(!has(&format!("{p}{node}{outside}"), "POL-013"));
    // A service CIDR given by the user counts too.
    let text = format!("{NS}{p}{block}");
    let (inv, _) = Inventory::from_texts([("t.yaml", text.as_str())]);
    let engine = Engine::new(&inv, &Settings::default());
    let options = AuditOptions {
        service_cidrs: vec!["10.96.0.0/12".parse().unwrap()],
        ..Default::default()
    };
    let report = audit(&inv, &engine, &options);
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.check == "POL-013" && f.message.contains("service CIDR 10.96.0.0/12"))
    );
}

#[test]
fn suppression_config_file() {
    let config = "skip: [HYG-004]\nignore:\n- check: POL-001\n  namespace: app\n  reason: legacy, tracked in TICKET-1\n- check: BYP-005\n  name: p\n  reason: needs ping\n";
    let s = Suppressions::from_yaml(config).unwrap();
    let text = format!("{NS}{}", pod("  containers: [{name: c}]\n"));
    let (inv, _) = Inventory::from_texts([("t.yaml", text.as_str())]);
    let engine = Engine::new(&inv, &Settings::default());
    let report = audit(
        &inv,
        &engine,
        &AuditOptions {
            suppressions: s,
            ..Default::default()
        },
    );
    let reason = |id: &str| {
        report
            .findings
            .iter()
            .find(|f| f.check == id)
            .and_then(|f| f.suppressed.clone())
    };
    assert_eq!(
        reason("POL-001").as_deref(),
        Some("legacy, tracked in TICKET-1")
    );
    assert_eq!(reason("BYP-005").as_deref(), Some("needs ping"));
    assert!(reason("HYG-004").is_some());
    assert!(reason("POL-003").is_none());
    assert!(
        Suppressions::from_yaml("skip: [NOPE-9]")
            .unwrap_err()
            .contains("NOPE-9")
    );
    assert!(Suppressions::from_yaml("sikp: []").is_err());
}

#[test]
fn policies_whose_removal_changes_nothing() {
    let p = pod(SAFE_CONTAINER);
    let broad = "---\nkind: NetworkPolicy\nmetadata: {name: broad, namespace: app}\nspec: {podSelector: {matchLabels: {app: p}}, ingress: [{ports: [{port: 80}]}]}\n";
    let narrow = "---\nkind: NetworkPolicy\nmetadata: {name: narrow, namespace: app}\nspec: {podSelector: {matchLabels: {app: p}}, ingress: [{from: [{podSelector: {}}], ports: [{port: 80}]}]}\n";
    let f = findings(&format!("{p}{broad}{narrow}"));
    let redundant: Vec<&String> = f
        .iter()
        .filter(|(c, _)| c == "POL-014")
        .map(|(_, r)| r)
        .collect();
    assert_eq!(redundant, ["NetworkPolicy/app/narrow"], "{f:?}");
    // A namespace default-deny is never judged by today's workloads.
    let deny = "---\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: app}\nspec: {podSelector: {}, policyTypes: [Ingress]}\n";
    let f = findings(&format!("{p}{broad}{deny}"));
    assert!(!f.iter().any(|(c, _)| c == "POL-014"), "{f:?}");
}
