//! Every subtle rule of networking.k8s.io/v1 NetworkPolicy, one named test
//! each. `verdict` checks that both evaluators agree before returning.

use palisade_inventory::{Inventory, Protocol};
use palisade_policy::endpoint::{decide, resolve};
use palisade_policy::{Engine, HostNetworkPods, Settings};

const PODS: &str = r#"
kind: Namespace
metadata: {name: shop, labels: {team: retail}}
---
kind: Namespace
metadata: {name: ops, labels: {team: platform}}
---
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web, tier: fe}}
spec:
  containers:
  - name: c
    ports:
    - {name: http, containerPort: 8080}
    - {name: dns, containerPort: 5353, protocol: UDP}
status: {podIP: 10.0.0.1}
---
kind: Pod
metadata: {name: api, namespace: shop, labels: {app: api}}
spec:
  containers:
  - name: c
    ports: [{name: http, containerPort: 9000}, {name: sig, containerPort: 3868, protocol: SCTP}]
status: {podIP: 10.0.0.2}
---
kind: Pod
metadata: {name: probe, namespace: ops, labels: {app: probe}}
status: {podIP: 10.0.1.1}
---
kind: Pod
metadata: {name: agent, namespace: ops, labels: {app: agent}}
spec: {hostNetwork: true}
status: {podIP: 192.168.0.10}
"#;

fn verdict_with(policies: &str, settings: &Settings, from: &str, to: &str, conn: &str) -> bool {
    let text = format!("{PODS}\n---\n{policies}");
    let (inv, diags) = Inventory::from_texts([("t.yaml", text.as_str())]);
    assert!(diags.is_empty(), "{:?}", diags.items());
    let (proto, port) = conn.split_once('/').unwrap();
    let protocol = match proto {
        "TCP" => Protocol::Tcp,
        "UDP" => Protocol::Udp,
        _ => Protocol::Sctp,
    };
    let port: u16 = port.parse().unwrap();
    let src = resolve(&inv, from).unwrap();
    let dst = resolve(&inv, to).unwrap();
    let engine = Engine::new(&inv, settings);
    let compiled = engine.allowed(
        src.endpoint_ref(&engine),
        dst.endpoint_ref(&engine),
        protocol,
        port,
    );
    let decision = decide(&inv, settings, &src, &dst, protocol, port);
    assert_eq!(
        compiled, decision.allowed,
        "evaluators disagree: {decision:#?}"
    );
    compiled
}

fn verdict(policies: &str, from: &str, to: &str, conn: &str) -> bool {
    verdict_with(policies, &Settings::default(), from, to, conn)
}

const DENY_ALL_INGRESS_SHOP: &str = "kind: NetworkPolicy\nmetadata: {name: deny, namespace: shop}\nspec: {podSelector: {}, policyTypes: [Ingress]}\n";

#[test]
fn no_policy_allows_everything() {
    assert!(verdict("", "ops/probe", "shop/web", "TCP/1"));
    assert!(verdict("", "shop/web", "8.8.8.8", "UDP/53"));
}

#[test]
fn policy_without_rules_isolates() {
    assert!(!verdict(
        DENY_ALL_INGRESS_SHOP,
        "ops/probe",
        "shop/web",
        "TCP/8080"
    ));
    assert!(!verdict(
        DENY_ALL_INGRESS_SHOP,
        "shop/api",
        "shop/web",
        "TCP/8080"
    ));
    assert!(!verdict(
        DENY_ALL_INGRESS_SHOP,
        "1.2.3.4",
        "shop/web",
        "TCP/8080"
    ));
    // Egress of shop is not affected.
    assert!(verdict(
        DENY_ALL_INGRESS_SHOP,
        "shop/web",
        "ops/probe",
        "TCP/80"
    ));
}

#[test]
fn empty_rule_allows_everything() {
    let p = "kind: NetworkPolicy\nmetadata: {name: all, namespace: shop}\nspec: {podSelector: {}, ingress: [{}]}\n";
    assert!(verdict(p, "ops/probe", "shop/web", "SCTP/9"));
    assert!(verdict(p, "203.0.113.9", "shop/web", "TCP/22"));
}

#[test]
fn omitted_policy_types_become_egress_when_egress_rules_exist() {
    let p = "kind: NetworkPolicy\nmetadata: {name: e, namespace: shop}\nspec:\n  podSelector: {matchLabels: {app: web}}\n  egress: [{ports: [{port: 443}]}]\n";
    assert!(verdict(p, "shop/web", "1.1.1.1", "TCP/443"));
    assert!(!verdict(p, "shop/web", "1.1.1.1", "TCP/80"));
    // ... and still Ingress, with no ingress rule: isolated for ingress.
    assert!(!verdict(p, "shop/api", "shop/web", "TCP/8080"));
}

#[test]
fn empty_egress_list_does_not_make_an_egress_policy() {
    // SetDefaults_NetworkPolicySpec adds Egress only for len(egress) > 0.
    let p = "kind: NetworkPolicy\nmetadata: {name: e, namespace: shop}\nspec: {podSelector: {}, egress: []}\n";
    assert!(verdict(p, "shop/web", "1.1.1.1", "TCP/80"));
    assert!(!verdict(p, "ops/probe", "shop/web", "TCP/8080"));
}

#[test]
fn explicit_egress_only_leaves_ingress_open() {
    let p = "kind: NetworkPolicy\nmetadata: {name: e, namespace: shop}\nspec: {podSelector: {}, policyTypes: [Egress], ingress: [{from: [{podSelector: {matchLabels: {app: nobody}}}]}]}\n";
    assert!(verdict(p, "ops/probe", "shop/web", "TCP/8080"));
    assert!(!verdict(p, "shop/web", "ops/probe", "TCP/80"));
}

#[test]
fn pod_and_namespace_selector_in_one_peer_are_anded() {
    let p = "kind: NetworkPolicy\nmetadata: {name: p, namespace: shop}\nspec:\n  podSelector: {matchLabels: {app: web}}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {team: platform}}, podSelector: {matchLabels: {app: api}}}]}]\n";
    // probe is in the platform namespace but is not app=api; api is app=api
    // but not in a platform namespace.
    assert!(!verdict(p, "ops/probe", "shop/web", "TCP/8080"));
    assert!(!verdict(p, "shop/api", "shop/web", "TCP/8080"));
}

#[test]
fn two_peers_are_ored() {
    let p = "kind: NetworkPolicy\nmetadata: {name: p, namespace: shop}\nspec:\n  podSelector: {matchLabels: {app: web}}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {team: platform}}}, {podSelector: {matchLabels: {app: api}}}]}]\n";
    assert!(verdict(p, "ops/probe", "shop/web", "TCP/8080"));
    assert!(verdict(p, "shop/api", "shop/web", "TCP/8080"));
}

#[test]
fn pod_selector_alone_means_the_policys_namespace() {
    let p = "kind: NetworkPolicy\nmetadata: {name: p, namespace: shop}\nspec:\n  podSelector: {matchLabels: {app: web}}\n  ingress: [{from: [{podSelector: {}}]}]\n";
    assert!(verdict(p, "shop/api", "shop/web", "TCP/8080"));
    assert!(!verdict(p, "ops/probe", "shop/web", "TCP/8080"));
}

#[test]
fn empty_namespace_selector_means_all_namespaces() {
    let p = "kind: NetworkPolicy\nmetadata: {name: p, namespace: shop}\nspec:\n  podSelector: {matchLabels: {app: web}}\n  ingress: [{from: [{namespaceSelector: {}}]}]\n";
    assert!(verdict(p, "ops/probe", "shop/web", "TCP/8080"));
    // ...but only pods: external addresses are not in any namespace.
    assert!(!verdict(p, "1.2.3.4", "shop/web", "TCP/8080"));
}

#[test]
fn namespaces_match_on_the_automatic_name_label() {
    let p = "kind: NetworkPolicy\nmetadata: {name: p, namespace: shop}\nspec:\n  podSelector: {}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: ops}}}]}]\n";
    assert!(verdict(p, "ops/probe", "shop/web", "TCP/8080"));
    assert!(!verdict(p, "shop/api", "shop/web", "TCP/8080"));
}

#[test]
fn except_carves_a_hole_that_another_rule_can_fill() {
    let hole = "kind: NetworkPolicy\nmetadata: {name: p, namespace: shop}\nspec:\n  podSelector: {}\n  policyTypes: [Egress]\n  egress: [{to: [{ipBlock: {cidr: 0.0.0.0/0, except: [169.254.169.254/32]}}]}]\n";
    assert!(verdict(hole, "shop/web", "169.254.169.253", "TCP/80"));
    assert!(!verdict(hole, "shop/web", "169.254.169.254", "TCP/80"));
    let filled = format!(
        "{hole}---\nkind: NetworkPolicy\nmetadata: {{name: q, namespace: shop}}\nspec:\n  podSelector: {{}}\n  policyTypes: [Egress]\n  egress: [{{to: [{{ipBlock: {{cidr: 169.254.0.0/16}}}}]}}]\n"
    );
    assert!(verdict(&filled, "shop/web", "169.254.169.254", "TCP/80"));
}

#[test]
fn port_without_protocol_is_tcp() {
    let p = "kind: NetworkPolicy\nmetadata: {name: p, namespace: shop}\nspec: {podSelector: {}, ingress: [{ports: [{port: 8080}]}]}\n";
    assert!(verdict(p, "ops/probe", "shop/web", "TCP/8080"));
    assert!(!verdict(p, "ops/probe", "shop/web", "UDP/8080"));
}

#[test]
fn protocol_without_port_is_every_port() {
    let p = "kind: NetworkPolicy\nmetadata: {name: p, namespace: shop}\nspec: {podSelector: {}, ingress: [{ports: [{protocol: UDP}]}]}\n";
    assert!(verdict(p, "ops/probe", "shop/web", "UDP/1"));
    assert!(verdict(p, "ops/probe", "shop/web", "UDP/65535"));
    assert!(!verdict(p, "ops/probe", "shop/web", "TCP/53"));
}

#[test]
fn end_port_makes_an_inclusive_range() {
    let p = "kind: NetworkPolicy\nmetadata: {name: p, namespace: shop}\nspec: {podSelector: {}, ingress: [{ports: [{port: 8000, endPort: 8080}]}]}\n";
    assert!(verdict(p, "ops/probe", "shop/web", "TCP/8000"));
    assert!(verdict(p, "ops/probe", "shop/web", "TCP/8080"));
    assert!(!verdict(p, "ops/probe", "shop/web", "TCP/8081"));
    assert!(!verdict(p, "ops/probe", "shop/web", "TCP/7999"));
}

#[test]
fn named_port_resolves_on_the_destination_with_its_protocol() {
    let p = "kind: NetworkPolicy\nmetadata: {name: p, namespace: shop}\nspec: {podSelector: {}, ingress: [{ports: [{port: http}]}]}\n";
    // web's http is 8080, api's http is 9000.
    assert!(verdict(p, "ops/probe", "shop/web", "TCP/8080"));
    assert!(!verdict(p, "ops/probe", "shop/web", "TCP/9000"));
    assert!(verdict(p, "ops/probe", "shop/api", "TCP/9000"));
    // dns is a UDP port: a TCP named port entry does not resolve to it.
    let dns = "kind: NetworkPolicy\nmetadata: {name: p, namespace: shop}\nspec: {podSelector: {}, ingress: [{ports: [{port: dns}]}]}\n";
    assert!(!verdict(dns, "ops/probe", "shop/web", "UDP/5353"));
    let udp = "kind: NetworkPolicy\nmetadata: {name: p, namespace: shop}\nspec: {podSelector: {}, ingress: [{ports: [{port: dns, protocol: UDP}]}]}\n";
    assert!(verdict(udp, "ops/probe", "shop/web", "UDP/5353"));
}

#[test]
fn named_port_in_egress_resolves_on_the_peer() {
    let p = "kind: NetworkPolicy\nmetadata: {name: p, namespace: ops}\nspec: {podSelector: {matchLabels: {app: probe}}, policyTypes: [Egress], egress: [{ports: [{port: http}]}]}\n";
    assert!(verdict(p, "ops/probe", "shop/web", "TCP/8080"));
    assert!(verdict(p, "ops/probe", "shop/api", "TCP/9000"));
    assert!(!verdict(p, "ops/probe", "shop/api", "TCP/8080"));
    // External addresses have no named ports.
    assert!(!verdict(p, "ops/probe", "1.2.3.4", "TCP/8080"));
}

#[test]
fn named_port_that_resolves_nowhere_allows_nothing() {
    let p = "kind: NetworkPolicy\nmetadata: {name: p, namespace: shop}\nspec: {podSelector: {}, ingress: [{ports: [{port: nosuch}]}]}\n";
    for port in ["TCP/8080", "TCP/9000", "TCP/1"] {
        assert!(!verdict(p, "ops/probe", "shop/web", port));
    }
}

#[test]
fn sctp_is_never_tcp() {
    let p = "kind: NetworkPolicy\nmetadata: {name: p, namespace: shop}\nspec: {podSelector: {}, ingress: [{ports: [{port: 3868, protocol: SCTP}]}]}\n";
    assert!(verdict(p, "ops/probe", "shop/api", "SCTP/3868"));
    assert!(!verdict(p, "ops/probe", "shop/api", "TCP/3868"));
}

#[test]
fn host_network_pods_read_as_pods_are_isolated_and_selected() {
    let p = "kind: NetworkPolicy\nmetadata: {name: deny, namespace: ops}\nspec: {podSelector: {}, policyTypes: [Ingress, Egress]}\n---\nkind: NetworkPolicy\nmetadata: {name: p, namespace: shop}\nspec: {podSelector: {}, ingress: [{from: [{namespaceSelector: {}}]}]}\n";
    let as_pods = Settings {
        host_network_pods: HostNetworkPods::Pod,
        ..Settings::default()
    };
    // The deny-all of ops isolates the hostNetwork agent both ways ...
    assert!(!verdict_with(
        p,
        &as_pods,
        "shop/web",
        "ops/agent",
        "TCP/10250"
    ));
    assert!(!verdict_with(p, &as_pods, "ops/agent", "8.8.8.8", "UDP/53"));
    // ... and shop's namespaceSelector {} peer matches it like any pod (its
    // egress is still denied by ops/deny).
    let open_egress = "kind: NetworkPolicy\nmetadata: {name: p, namespace: shop}\nspec: {podSelector: {}, ingress: [{from: [{namespaceSelector: {}}]}]}\n";
    assert!(verdict_with(
        open_egress,
        &as_pods,
        "ops/agent",
        "shop/web",
        "TCP/8080"
    ));
    assert!(!verdict(open_egress, "ops/agent", "shop/web", "TCP/8080"));
}

#[test]
fn host_network_pods_are_never_isolated_nor_selected() {
    let p = "kind: NetworkPolicy\nmetadata: {name: deny, namespace: ops}\nspec: {podSelector: {}, policyTypes: [Ingress, Egress]}\n---\nkind: NetworkPolicy\nmetadata: {name: p, namespace: shop}\nspec: {podSelector: {}, ingress: [{from: [{namespaceSelector: {}}]}]}\n";
    // agent is hostNetwork in ops: the deny-all does not isolate it.
    assert!(verdict(p, "shop/web", "ops/agent", "TCP/10250"));
    assert!(verdict(p, "ops/agent", "8.8.8.8", "UDP/53"));
    // ... and as a peer it is matched by no namespace/pod selector.
    assert!(!verdict(p, "ops/agent", "shop/web", "TCP/8080"));
}

#[test]
fn ipblock_does_not_match_pod_addresses_by_default() {
    let p = "kind: NetworkPolicy\nmetadata: {name: p, namespace: shop}\nspec: {podSelector: {matchLabels: {app: web}}, ingress: [{from: [{ipBlock: {cidr: 10.0.1.0/24}}]}]}\n";
    assert!(!verdict(p, "ops/probe", "shop/web", "TCP/8080"));
    let calico = Settings {
        ipblock_matches_pods: true,
        ..Settings::default()
    };
    assert!(verdict_with(
        p,
        &calico,
        "ops/probe",
        "shop/web",
        "TCP/8080"
    ));
    assert!(!verdict_with(
        p, &calico, "shop/api", "shop/web", "TCP/8080"
    ));
}

#[test]
fn policies_select_only_in_their_own_namespace() {
    let p = "kind: NetworkPolicy\nmetadata: {name: p, namespace: ops}\nspec: {podSelector: {matchLabels: {app: web}}}\n";
    assert!(verdict(p, "ops/probe", "shop/web", "TCP/8080"));
}

#[test]
fn rules_of_several_policies_add_up() {
    let p = "kind: NetworkPolicy\nmetadata: {name: a, namespace: shop}\nspec: {podSelector: {}, ingress: [{ports: [{port: 80}]}]}\n---\nkind: NetworkPolicy\nmetadata: {name: b, namespace: shop}\nspec: {podSelector: {matchLabels: {app: web}}, ingress: [{ports: [{port: 443}]}]}\n";
    assert!(verdict(p, "ops/probe", "shop/web", "TCP/80"));
    assert!(verdict(p, "ops/probe", "shop/web", "TCP/443"));
    assert!(!verdict(p, "ops/probe", "shop/api", "TCP/443"));
}

#[test]
fn both_egress_and_ingress_must_allow() {
    let p = "kind: NetworkPolicy\nmetadata: {name: out, namespace: ops}\nspec: {podSelector: {}, policyTypes: [Egress], egress: [{ports: [{port: 80}]}]}\n---\nkind: NetworkPolicy\nmetadata: {name: in, namespace: shop}\nspec: {podSelector: {}, ingress: [{ports: [{port: 443}]}]}\n";
    assert!(!verdict(p, "ops/probe", "shop/web", "TCP/80"));
    assert!(!verdict(p, "ops/probe", "shop/web", "TCP/443"));
}

#[test]
fn not_in_and_does_not_exist_select_pods_without_the_key() {
    let p = "kind: NetworkPolicy\nmetadata: {name: p, namespace: shop}\nspec:\n  podSelector: {matchExpressions: [{key: tier, operator: NotIn, values: [fe]}]}\n  policyTypes: [Ingress]\n";
    // api has no tier label: NotIn selects it; web is tier=fe: not selected.
    assert!(!verdict(p, "ops/probe", "shop/api", "TCP/9000"));
    assert!(verdict(p, "ops/probe", "shop/web", "TCP/8080"));
    let q = "kind: NetworkPolicy\nmetadata: {name: p, namespace: shop}\nspec:\n  podSelector: {matchExpressions: [{key: tier, operator: DoesNotExist}]}\n  policyTypes: [Ingress]\n";
    assert!(!verdict(q, "ops/probe", "shop/api", "TCP/9000"));
    assert!(verdict(q, "ops/probe", "shop/web", "TCP/8080"));
}

#[test]
fn ipv6_blocks_are_their_own_family() {
    let p = "kind: NetworkPolicy\nmetadata: {name: p, namespace: shop}\nspec: {podSelector: {}, policyTypes: [Egress], egress: [{to: [{ipBlock: {cidr: '::/0', except: ['fd00:ec2::254/128']}}]}]}\n";
    assert!(verdict(p, "shop/web", "2001:db8::1", "TCP/443"));
    assert!(!verdict(p, "shop/web", "fd00:ec2::254", "TCP/80"));
    assert!(!verdict(p, "shop/web", "1.1.1.1", "TCP/443"));
}

#[test]
fn explanation_names_the_rule_that_allowed() {
    let p = "kind: NetworkPolicy\nmetadata: {name: web-in, namespace: shop}\nspec:\n  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - from: [{podSelector: {matchLabels: {app: nobody}}}]\n  - from: [{namespaceSelector: {matchLabels: {team: platform}}}]\n    ports: [{port: http}]\n";
    let text = format!("{PODS}\n---\n{p}");
    let (inv, _) = Inventory::from_texts([("t.yaml", text.as_str())]);
    let src = resolve(&inv, "ops/probe").unwrap();
    let dst = resolve(&inv, "shop/web").unwrap();
    let d = decide(&inv, &Settings::default(), &src, &dst, Protocol::Tcp, 8080);
    assert!(d.allowed);
    assert!(!d.egress.isolated);
    assert_eq!(d.ingress.selected_by, ["shop/web-in"]);
    let m = &d.ingress.allowed_by[0];
    assert_eq!((m.policy.as_str(), m.rule_index), ("shop/web-in", 1));
    assert_eq!(m.peer, "namespaceSelector team=platform");
    assert_eq!(m.port, "TCP http");
}

#[test]
fn exists_expression_in_a_cross_namespace_peer() {
    // np-guard's network-config-analyzer 2.1.0 allows nothing here; the API
    // semantics are plain: Exists matches every pod that has the key.
    let p = "kind: NetworkPolicy\nmetadata: {name: p, namespace: ops}\nspec:\n  podSelector: {matchLabels: {app: probe}}\n  policyTypes: [Egress]\n  egress:\n  - to: [{namespaceSelector: {matchLabels: {team: retail}}, podSelector: {matchExpressions: [{key: tier, operator: Exists}]}}, {ipBlock: {cidr: '::/0'}}]\n    ports: [{port: 53}, {protocol: UDP}]\n";
    assert!(verdict(p, "ops/probe", "shop/web", "TCP/53"));
    assert!(verdict(p, "ops/probe", "shop/web", "UDP/9999"));
    // api has no tier label.
    assert!(!verdict(p, "ops/probe", "shop/api", "TCP/53"));
}

#[test]
fn dual_stack_pods_match_ipblocks_of_each_family_by_that_family() {
    let pods = "kind: Pod\nmetadata: {name: ds, namespace: ops, labels: {app: ds}}\nstatus: {podIPs: [{ip: 10.0.2.1}, {ip: 'fd00::21'}]}\n";
    let policy = "kind: NetworkPolicy\nmetadata: {name: p, namespace: shop}\nspec: {podSelector: {matchLabels: {app: web}}, ingress: [{from: [{ipBlock: {cidr: 10.0.2.0/24}}]}]}\n";
    let calico = Settings {
        ipblock_matches_pods: true,
        ..Settings::default()
    };
    let both = format!("{pods}---\n{policy}");
    assert!(verdict_with(
        &both, &calico, "ops/ds", "shop/web", "TCP/8080"
    ));
    assert!(!verdict_with(
        &both,
        &Settings::default(),
        "ops/ds",
        "shop/web",
        "TCP/8080"
    ));
}

#[test]
fn does_not_exist_expression_in_a_cross_namespace_peer() {
    let p = "kind: NetworkPolicy\nmetadata: {name: p, namespace: ops}\nspec:\n  podSelector: {matchLabels: {app: probe}}\n  policyTypes: [Egress]\n  egress: [{to: [{namespaceSelector: {matchLabels: {team: retail}}, podSelector: {matchExpressions: [{key: tier, operator: DoesNotExist}]}}]}]\n";
    assert!(verdict(p, "ops/probe", "shop/api", "TCP/9000"));
    assert!(!verdict(p, "ops/probe", "shop/web", "TCP/8080"));
}
