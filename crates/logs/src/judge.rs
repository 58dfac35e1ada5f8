//! What the seed snapshot (`logs scan --seed`) says of an event, for rules
//! to match on under `palisade.`: how many of a Service's backends a
//! NetworkPolicy protects (AUDIT-009 and AUDIT-010 are about exposing
//! protected pods), and whether the declared policy allows the connection
//! an Envoy line says failed (LOG-004: a failure the policy allows is
//! likely an unexpected drop; one it denies is the policy working).
//! Without a seed the fields are absent and rules that test them decide
//! as written.

use std::net::SocketAddr;

use palisade_inventory::{Inventory, Labels, Protocol};
use palisade_policy::Settings;
use palisade_policy::compiled::selects;
use palisade_policy::endpoint::{Resolved, decide, resolve};
use serde_json::Value;

use crate::container::LogSource;

/// Policy kinds the engine does not read (the inventory skips them).
const UNMODELLED_POLICY_KINDS: [&str; 5] = [
    "GlobalNetworkPolicy",
    "CiliumNetworkPolicy",
    "CiliumClusterwideNetworkPolicy",
    "AdminNetworkPolicy",
    "BaselineAdminNetworkPolicy",
];

/// The workloads a Service's selector picks in its namespace that some
/// NetworkPolicy isolates for ingress: with none, exposing the Service
/// (externalIPs, NodePort) opens nothing a policy protects. `None` when the
/// object has no selector to judge (a patch body without one, or a
/// Service whose endpoints are managed by hand).
pub fn isolated_backends(
    inventory: &Inventory,
    settings: &Settings,
    namespace: &str,
    service: &Value,
) -> Option<usize> {
    let selector: Labels = service
        .pointer("/spec/selector")?
        .as_object()?
        .iter()
        .map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect::<Option<_>>()?;
    // A Service with an empty selector selects no pods (unlike a
    // NetworkPolicy's empty podSelector): the endpoints controller only
    // manages endpoints of Services whose selector is non-empty.
    if selector.is_empty() {
        return None;
    }
    // Calico, Cilium and admin network policies are not modelled: where the
    // snapshot has any, "no NetworkPolicy isolates it" proves nothing.
    let unmodelled = inventory
        .skipped_kinds
        .keys()
        .any(|kind| UNMODELLED_POLICY_KINDS.contains(&kind.as_str()));
    if unmodelled {
        return None;
    }
    let isolated = inventory
        .service_backends(namespace, &selector)
        .into_iter()
        .filter(|&w| {
            let workload = &inventory.workloads[w];
            inventory
                .policies
                .iter()
                .any(|p| p.affects_ingress && selects(settings, p, workload))
        });
    Some(isolated.count())
}

/// Whether the declared policy allows the pod whose log this is to reach
/// `upstream` (`ip:port`, TCP). `None` when the pod is not in the snapshot,
/// the address is not one, or it is a Service's cluster IP (Istio's
/// passthrough goes to the ClusterIP; the policy judges the pods behind it,
/// after translation, which the line does not name).
pub fn policy_allows(
    inventory: &Inventory,
    settings: &Settings,
    source: &LogSource,
    upstream: &str,
) -> Option<bool> {
    let upstream: SocketAddr = upstream.parse().ok()?;
    if inventory
        .services
        .iter()
        .any(|s| s.cluster_ips.contains(&upstream.ip()))
    {
        return None;
    }
    let by_uid = source
        .pod_uid
        .as_deref()
        .and_then(|uid| inventory.pod_by_uid(uid))
        .map(|(index, pod)| Resolved::Workload {
            index,
            pod: Some(pod),
        });
    let src = match by_uid {
        Some(src) => src,
        None => resolve(inventory, &format!("{}/{}", source.namespace, source.pod)).ok()?,
    };
    let dst = resolve(inventory, &upstream.ip().to_string()).ok()?;
    let decision = decide(
        inventory,
        settings,
        &src,
        &dst,
        Protocol::Tcp,
        upstream.port(),
    );
    Some(decision.allowed)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// Shop: web-1 may reach db-1 on 5432, which a policy isolates (db is
    /// also a Service); cache-1 is isolated by none. The scanner's tests
    /// seed with it too.
    pub(crate) const SNAPSHOT: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: shop, uid: u-web, labels: {app: web}}
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: db-1, namespace: shop, uid: u-db, labels: {app: db}}
status: {podIP: 10.0.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: cache-1, namespace: shop, labels: {app: cache}}
status: {podIP: 10.0.0.3}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec: {selector: {app: db}, clusterIP: 10.96.0.20, ports: [{port: 5432}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: web}}}]
    ports: [{port: 5432}]
"#;

    fn snapshot() -> Inventory {
        Inventory::from_texts([("snapshot.yaml", SNAPSHOT)]).0
    }

    #[test]
    fn a_service_in_front_of_isolated_pods_counts_them() {
        let (inventory, settings) = (snapshot(), Settings::default());
        let service = |selector: Value| json!({"spec": {"selector": selector}});
        let count = |namespace: &str, object: &Value| {
            isolated_backends(&inventory, &settings, namespace, object)
        };
        assert_eq!(count("shop", &service(json!({"app": "db"}))), Some(1));
        assert_eq!(count("shop", &service(json!({"app": "cache"}))), Some(0));
        assert_eq!(count("other", &service(json!({"app": "db"}))), Some(0));
        assert_eq!(count("shop", &service(json!({}))), None, "empty selector");
        assert_eq!(count("shop", &json!({"spec": {"type": "NodePort"}})), None);
        assert_eq!(count("shop", &service(json!({"app": 7}))), None);
        let mut cilium = snapshot();
        cilium.skipped_kinds.insert("CiliumNetworkPolicy".into(), 1);
        let object = service(json!({"app": "cache"}));
        assert_eq!(isolated_backends(&cilium, &settings, "shop", &object), None);
    }

    #[test]
    fn the_policy_decides_an_envoy_upstream_from_the_logging_pod() {
        let (inventory, settings) = (snapshot(), Settings::default());
        let source = |pod: &str, uid: Option<&str>| LogSource {
            namespace: "shop".into(),
            pod: pod.into(),
            pod_uid: uid.map(str::to_string),
            container: "istio-proxy".into(),
        };
        let allows = |source: &LogSource, upstream: &str| {
            policy_allows(&inventory, &settings, source, upstream)
        };
        assert_eq!(allows(&source("web-1", None), "10.0.0.2:5432"), Some(true));
        assert_eq!(
            allows(&source("web-1", Some("u-web")), "10.0.0.2:5432"),
            Some(true)
        );
        assert_eq!(allows(&source("web-1", None), "10.0.0.2:22"), Some(false));
        assert_eq!(
            allows(&source("cache-1", None), "10.0.0.2:5432"),
            Some(false)
        );
        assert_eq!(
            allows(&source("web-1", None), "10.0.0.3:6379"),
            Some(true),
            "unisolated"
        );
        assert_eq!(allows(&source("gone-1", None), "10.0.0.2:5432"), None);
        assert_eq!(allows(&source("web-1", None), "db:5432"), None);
        assert_eq!(
            allows(&source("web-1", None), "10.96.0.20:5432"),
            None,
            "a ClusterIP"
        );
    }
}
