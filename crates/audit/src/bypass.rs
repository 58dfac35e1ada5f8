//! Bypass vectors: workloads and Services that escape or can defeat
//! pod-level NetworkPolicy.

use palisade_inventory::{Container, Inventory, Service, Workload, WorkloadKind};
use palisade_policy::Engine;

use crate::checks::*;
use crate::coverage::Facts;
use crate::finding::{Finding, Resource};

/// Where the pod spec sits in a workload's manifest.
pub fn pod_spec_path(w: &Workload) -> &'static str {
    let from_pod_object = w
        .pods
        .first()
        .is_some_and(|p| p.source.is_some() && p.source == w.source);
    match w.kind {
        _ if from_pod_object => "spec",
        WorkloadKind::Pod => "spec",
        WorkloadKind::CronJob => "spec.jobTemplate.spec.template.spec",
        _ => "spec.template.spec",
    }
}

pub fn workload_resource(w: &Workload, container: Option<&str>) -> Resource {
    Resource {
        kind: w.kind.as_str().to_string(),
        namespace: w.namespace.clone(),
        name: w.name.clone(),
        container: container.map(str::to_string),
    }
}

/// A finding about one container of a workload.
pub fn container_finding(
    check: &'static Check,
    w: &Workload,
    container: &str,
    field: String,
    message: String,
) -> Finding {
    check.finding(
        workload_resource(w, Some(container)),
        field,
        message,
        w.source.clone(),
    )
}

/// Capability names as the API accepts them, with or without `CAP_`.
fn has_cap(list: &[String], cap: &str) -> bool {
    list.iter().any(|c| {
        let c = c.to_ascii_uppercase();
        c.strip_prefix("CAP_").unwrap_or(&c) == cap
    })
}

pub fn check(
    inventory: &Inventory,
    engine: &Engine<'_>,
    facts: &Facts<'_>,
    out: &mut Vec<Finding>,
) {
    for w in &inventory.workloads {
        pod_level(w, out);
        let lists = [
            &w.template.containers,
            &w.template.init_containers,
            &w.template.ephemeral_containers,
        ];
        for list in lists {
            for (i, c) in list.iter().enumerate() {
                container_level(w, c, i, out);
            }
        }
    }
    for svc in &inventory.services {
        service_checks(inventory, engine, facts, svc, out);
    }
}

fn pod_level(w: &Workload, out: &mut Vec<Finding>) {
    let spec = pod_spec_path(w);
    let t = &w.template;
    let resource = || workload_resource(w, None);
    if t.host_network {
        out.push(HOST_NETWORK.finding(
            resource(),
            format!("{spec}.hostNetwork"),
            format!(
                "{} runs in the node's network namespace: no NetworkPolicy isolates it",
                w.display_name()
            ),
            w.source.clone(),
        ));
    }
    for (flag, field) in [(t.host_pid, "hostPID"), (t.host_ipc, "hostIPC")] {
        if flag {
            out.push(HOST_NAMESPACES.finding(
                resource(),
                format!("{spec}.{field}"),
                format!("{} sets {field}: true", w.display_name()),
                w.source.clone(),
            ));
        }
    }
}

fn container_level(w: &Workload, c: &Container, index: usize, out: &mut Vec<Finding>) {
    let path = format!("{}.{}[{index}]", pod_spec_path(w), c.kind.field());
    let sc = &c.security;
    let mut push = |check: &'static Check, field: String, message: String| {
        out.push(container_finding(check, w, &c.name, field, message));
    };
    let privileged = sc.privileged == Some(true);
    if privileged {
        push(
            &PRIVILEGED,
            format!("{path}.securityContext.privileged"),
            format!("container {} is privileged", c.name),
        );
    }
    let added = &sc.capabilities_add;
    let caps_field = format!("{path}.securityContext.capabilities");
    // A privileged container already has every capability; one finding says it.
    if !privileged {
        if has_cap(added, "ALL") {
            push(
                &ALL_CAPS,
                format!("{caps_field}.add"),
                format!("container {} adds ALL capabilities", c.name),
            );
        } else {
            for (cap, check) in [("NET_ADMIN", &NET_ADMIN), ("SYS_ADMIN", &SYS_ADMIN)] {
                if has_cap(added, cap) {
                    push(
                        check,
                        format!("{caps_field}.add"),
                        format!("container {} adds {cap}", c.name),
                    );
                }
            }
        }
        let dropped =
            has_cap(&sc.capabilities_drop, "NET_RAW") || has_cap(&sc.capabilities_drop, "ALL");
        if has_cap(added, "NET_RAW") || !dropped {
            let how = if has_cap(added, "NET_RAW") {
                "adds NET_RAW"
            } else {
                "does not drop NET_RAW (runtimes grant it by default)"
            };
            push(
                &NET_RAW,
                format!("{caps_field}.drop"),
                format!("container {} {how}", c.name),
            );
        }
    }
    if sc.allow_privilege_escalation != Some(false) || privileged {
        push(
            &PRIVILEGE_ESCALATION,
            format!("{path}.securityContext.allowPrivilegeEscalation"),
            format!(
                "container {} does not set allowPrivilegeEscalation: false",
                c.name
            ),
        );
    }
    for (i, p) in c.ports.iter().enumerate() {
        if let Some(host_port) = p.host_port {
            push(
                &HOST_PORT,
                format!("{path}.ports[{i}].hostPort"),
                format!(
                    "container {} binds {} port {host_port} on the node",
                    c.name, p.protocol
                ),
            );
        }
    }
    for (field, host) in &c.handler_hosts {
        push(
            &HANDLER_HOST,
            format!("{path}.{field}"),
            format!("container {} {field} targets host {host:?}", c.name),
        );
    }
}

fn service_checks(
    inventory: &Inventory,
    engine: &Engine<'_>,
    facts: &Facts<'_>,
    svc: &Service,
    out: &mut Vec<Finding>,
) {
    let resource = || Resource {
        kind: "Service".into(),
        namespace: svc.namespace.clone(),
        name: svc.name.clone(),
        container: None,
    };
    let name = format!("{}/{}", svc.namespace, svc.name);
    if !svc.external_ips.is_empty() {
        out.push(EXTERNAL_IPS.finding(
            resource(),
            "spec.externalIPs".into(),
            format!(
                "Service {name} claims external addresses {}",
                svc.external_ips.join(", ")
            ),
            svc.source.clone(),
        ));
    }
    if svc.service_type == "ExternalName" {
        let target = svc.external_name.clone().unwrap_or_default();
        out.push(EXTERNAL_NAME.finding(
            resource(),
            "spec.externalName".into(),
            format!("Service {name} aliases {target:?}"),
            svc.source.clone(),
        ));
    }
    let Some(selector) = svc.selector.as_ref().filter(|s| !s.is_empty()) else {
        return;
    };
    let backends = inventory.service_backends(&svc.namespace, selector);
    let isolated = |i: usize| facts.isolated(i, palisade_inventory::Direction::Ingress);
    let external = matches!(svc.service_type.as_str(), "NodePort" | "LoadBalancer");
    let cluster_policy = svc.external_traffic_policy.as_deref().unwrap_or("Cluster") == "Cluster";
    if external && cluster_policy && backends.iter().any(|&i| isolated(i)) {
        out.push(EXPOSED_CLUSTER_POLICY.finding(
            resource(),
            "spec.externalTrafficPolicy".into(),
            format!(
                "{} Service {name} uses externalTrafficPolicy: Cluster in front of policy-protected pods: their ingress rules see node addresses, not clients",
                svc.service_type
            ),
            svc.source.clone(),
        ));
    }
    let open: Vec<String> = backends
        .iter()
        .filter(|&&i| !isolated(i))
        .map(|&i| engine.workload(i).display_name())
        .collect();
    if !open.is_empty() {
        out.push(SERVICE_UNPROTECTED_BACKENDS.finding(
            resource(),
            "spec.selector".into(),
            format!(
                "Service {name} routes to {} which no ingress policy selects",
                open.join(", ")
            ),
            svc.source.clone(),
        ));
    }
}
