//! Raw objects → [`Inventory`]: typed decoding, owner grouping of pods into
//! workloads, implicit namespaces, and the counting of skipped kinds.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use serde::Deserialize;

use crate::yaml::de::{Coercion, from_node};

use crate::Inventory;
use crate::cidr::Cidr;
use crate::diagnostics::{Diagnostic, Diagnostics};
use crate::documents::RawObject;
use crate::manifest;
use crate::model::*;
use crate::pod_convert::pod_template;
use crate::policy_convert::{convert_policy, parse_protocol, port_number};
use crate::selector::Labels;

/// The label the API server sets on every namespace (Kubernetes ≥ 1.21).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

const DEFAULT_NAMESPACE: &str = "default";

/// A controller object (Deployment, ReplicaSet, ...) before grouping.
#[derive(Clone)]
struct ControllerObject {
    kind: WorkloadKind,
    annotations: Labels,
    name: String,
    namespace: String,
    /// Shared: the live inventory and the audit-trail timeline rebuild a
    /// namespace from decoded objects at every change, and a template is
    /// most of a decoded object.
    template: Arc<PodTemplate>,
    owner: Option<(String, String)>,
    source: Source,
}

#[derive(Clone)]
struct PodObject {
    namespace: String,
    annotations: Labels,
    owner: Option<(String, String)>,
    /// Shared, as a controller's: most pods' templates serve only to find
    /// their workload.
    template: Arc<PodTemplate>,
    instance: PodInstance,
}

#[derive(Default)]
struct Collected {
    namespaces: BTreeMap<String, Namespace>,
    controllers: BTreeMap<(String, String, String), ControllerObject>,
    pods: Vec<PodObject>,
    services: Vec<Service>,
    policies: Vec<NetworkPolicy>,
    nodes: Vec<Node>,
    skipped_kinds: BTreeMap<String, usize>,
}

pub fn build(objects: Vec<RawObject>, diags: &mut Diagnostics) -> Inventory {
    // Decoding is per object and independent; only insertion is ordered.
    let decoded = crate::parallel::map_in_order(objects, 128, decode);
    build_decoded(decoded.into_iter().map(DecodedObject), diags)
}

/// An object decoded once, to be built into inventories many times: the
/// audit-trail timeline rebuilds one namespace per change, from objects
/// decoded when they last changed.
#[derive(Clone)]
pub struct DecodedObject(Decoded);

impl DecodedObject {
    pub fn decode(object: RawObject) -> DecodedObject {
        DecodedObject(decode(object))
    }

    /// Kind, namespace (empty for cluster-scoped kinds) and name; `None`
    /// for a kind Palisade does not model or an object that failed to
    /// decode.
    pub fn key(&self) -> Option<(&str, &str, &str)> {
        match &self.0 {
            Decoded::Object {
                kind,
                namespace,
                name,
                ..
            } => Some((kind, namespace, name)),
            Decoded::Skipped(_) | Decoded::Failed(_) => None,
        }
    }
}

pub fn build_decoded(
    objects: impl IntoIterator<Item = DecodedObject>,
    diags: &mut Diagnostics,
) -> Inventory {
    let mut collected = Collected::default();
    let mut seen: HashMap<(String, String, String), Source> = HashMap::new();
    for DecodedObject(decoded) in objects {
        insert(decoded, &mut collected, &mut seen, diags);
    }
    let workloads = group_workloads(&mut collected);
    let mut inventory = Inventory {
        namespaces: Vec::new(),
        workloads,
        services: collected.services,
        policies: collected.policies,
        nodes: collected.nodes,
        skipped_kinds: collected.skipped_kinds,
    };
    inventory.namespaces = complete_namespaces(collected.namespaces, &inventory);
    inventory.sort();
    inventory
}

/// One object after typed decoding, before it joins the inventory.
#[derive(Clone)]
enum Decoded {
    Skipped(String),
    Failed(Diagnostic),
    Object {
        kind: String,
        namespace: String,
        name: String,
        source: Source,
        body: Box<Body>,
        warnings: Diagnostics,
    },
}

#[derive(Clone)]
enum Body {
    Namespace(Labels, Labels),
    Pod(PodObject),
    Controller(ControllerObject),
    Service(Service),
    Policy(NetworkPolicy),
    Node(Node),
    /// Decoded, but invalid in a way the API server would reject.
    Invalid(Diagnostic),
}

/// Decodes a whole object as `T`, whose `metadata` is skipped: it was
/// decoded on its own first.
fn decode_as<'a, T: Deserialize<'a>>(
    object: &'a RawObject,
    warnings: &mut Diagnostics,
) -> Result<T, Diagnostic> {
    let (value, coercions) = decode_node(object, &object.value, "")?;
    for c in coercions {
        warnings.push(coercion_note(object, &c, ""));
    }
    Ok(value)
}

/// `prefix` names where `node` sits in the object, for messages.
fn decode_node<'a, T: Deserialize<'a>>(
    object: &'a RawObject,
    node: &'a crate::yaml::Node,
    prefix: &str,
) -> Result<(T, Vec<Coercion>), Diagnostic> {
    from_node(node).map_err(|e| {
        let name = object
            .value
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(|n| n.as_str())
            .unwrap_or("<unnamed>");
        Diagnostic::error(
            object.source_at(e.mark),
            format!("{} {name}: {prefix}{}: {}", object.kind, e.path, e.message),
        )
    })
}

/// A scalar read as the type its field has (a number as a label's text):
/// shown with `-v`, as Kubernetes tooling accepts it.
fn coercion_note(object: &RawObject, c: &Coercion, prefix: &str) -> Diagnostic {
    Diagnostic::note(
        object.source_at(c.mark),
        format!("{}: {prefix}{}: {}", object.kind, c.path, c.message),
    )
}

/// `metadata.name`, or for an object that asks the API server to generate
/// its name (`kubectl create` of `generateName: job-`), the prefix itself:
/// the object exists, only its suffix is unknown.
fn object_name(
    object: &RawObject,
    meta: &manifest::ObjectMeta,
    warnings: &mut Diagnostics,
) -> Option<String> {
    if let Some(name) = meta.name.clone().filter(|n| !n.is_empty()) {
        return Some(name);
    }
    let prefix = meta.generate_name.clone().filter(|n| !n.is_empty())?;
    warnings.push(Diagnostic::note(
        object.source.clone(),
        format!(
            "{}: no metadata.name; named {prefix:?} after its generateName",
            object.kind
        ),
    ));
    Some(prefix)
}

fn decode(object: RawObject) -> Decoded {
    let kind = object.kind.as_str();
    if !is_supported_kind(kind) {
        return Decoded::Skipped(object.kind);
    }
    let mut warnings = Diagnostics::default();
    let meta: manifest::ObjectMeta = match object.value.get("metadata") {
        Some(m) => match decode_node(&object, m, "metadata.") {
            Ok((meta, coercions)) => {
                for c in &coercions {
                    warnings.push(coercion_note(&object, c, "metadata."));
                }
                meta
            }
            Err(d) => return Decoded::Failed(d),
        },
        None => manifest::ObjectMeta::default(),
    };
    let Some(name) = object_name(&object, &meta, &mut warnings) else {
        return Decoded::Failed(Diagnostic::error(
            object.source.clone(),
            format!("{kind}: metadata.name is missing"),
        ));
    };
    let namespace = if matches!(kind, "Namespace" | "Node") {
        String::new()
    } else {
        meta.namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string())
    };
    let body = match decode_body(&object, &meta, &namespace, &name, &mut warnings) {
        Ok(body) => body,
        Err(d) => return Decoded::Failed(d),
    };
    Decoded::Object {
        kind: object.kind,
        namespace,
        name,
        source: object.source,
        body: Box::new(body),
        warnings,
    }
}

fn decode_body(
    object: &RawObject,
    meta: &manifest::ObjectMeta,
    namespace: &str,
    name: &str,
    warnings: &mut Diagnostics,
) -> Result<Body, Diagnostic> {
    let source = object.source.clone();
    let (namespace, name) = (namespace.to_string(), name.to_string());
    let kind = object.kind.as_str();
    Ok(match kind {
        "Namespace" => Body::Namespace(
            meta.labels.clone().unwrap_or_default(),
            meta.annotations.clone().unwrap_or_default(),
        ),
        "Pod" => {
            let mut pod: manifest::Pod = decode_as(object, warnings)?;
            pod.metadata = meta.clone();
            Body::Pod(pod_object(pod, namespace, name, source, warnings))
        }
        "CronJob" => {
            let cj: manifest::CronJob = decode_as(object, warnings)?;
            let template = pod_template(cj.spec.job_template.spec.template, &source, warnings);
            Body::Controller(controller(kind, namespace, name, template, meta, source))
        }
        "Service" => {
            let mut svc: manifest::Service = decode_as(object, warnings)?;
            svc.metadata = meta.clone();
            Body::Service(service(svc, namespace, name, source, warnings))
        }
        "NetworkPolicy" => {
            let np: manifest::NetworkPolicy = decode_as(object, warnings)?;
            match convert_policy(&namespace, &name, np.spec) {
                Ok(mut policy) => {
                    policy.source = Some(source);
                    policy.annotations = meta.annotations.clone().unwrap_or_default();
                    Body::Policy(policy)
                }
                Err(reason) => Body::Invalid(Diagnostic::error(
                    source,
                    format!("NetworkPolicy {namespace}/{name} is invalid and ignored: {reason}"),
                )),
            }
        }
        "Node" => {
            let mut node: manifest::Node = decode_as(object, warnings)?;
            node.metadata = meta.clone();
            Body::Node(node_model(node, name, source, warnings))
        }
        _ => {
            let ctrl: manifest::Controller = decode_as(object, warnings)?;
            let template = pod_template(ctrl.spec.template, &source, warnings);
            Body::Controller(controller(kind, namespace, name, template, meta, source))
        }
    })
}

fn insert(
    decoded: Decoded,
    c: &mut Collected,
    seen: &mut HashMap<(String, String, String), Source>,
    diags: &mut Diagnostics,
) {
    let (kind, namespace, name, source, body, warnings) = match decoded {
        Decoded::Skipped(kind) => {
            *c.skipped_kinds.entry(kind).or_default() += 1;
            return;
        }
        Decoded::Failed(d) => {
            diags.push(d);
            return;
        }
        Decoded::Object {
            kind,
            namespace,
            name,
            source,
            body,
            warnings,
        } => (kind, namespace, name, source, body, warnings),
    };
    diags.extend(warnings);
    let key = (kind.clone(), namespace.clone(), name.clone());
    if let Some(first) = seen.insert(key, source.clone()) {
        diags.push(Diagnostic::warning(
            source.clone(),
            format!("{kind} {namespace}/{name} is declared again (first at {first}); the later one is used"),
        ));
        remove_earlier(c, &kind, &namespace, &name);
    }
    match *body {
        Body::Namespace(labels, annotations) => {
            c.namespaces.insert(
                name.clone(),
                Namespace {
                    name,
                    labels,
                    annotations,
                    declared: true,
                    source: Some(source),
                },
            );
        }
        Body::Pod(pod) => c.pods.push(pod),
        Body::Controller(ctrl) => {
            c.controllers.insert((namespace, kind, name), ctrl);
        }
        Body::Service(svc) => c.services.push(svc),
        Body::Policy(policy) => c.policies.push(policy),
        Body::Node(node) => c.nodes.push(node),
        Body::Invalid(d) => diags.push(d),
    }
}

fn is_supported_kind(kind: &str) -> bool {
    matches!(
        kind,
        "Namespace"
            | "Pod"
            | "Deployment"
            | "ReplicaSet"
            | "StatefulSet"
            | "DaemonSet"
            | "Job"
            | "CronJob"
            | "ReplicationController"
            | "Service"
            | "NetworkPolicy"
            | "Node"
    )
}

/// Later declarations replace earlier ones, as `kubectl apply` of the same
/// object twice would.
fn remove_earlier(c: &mut Collected, kind: &str, namespace: &str, name: &str) {
    match kind {
        "Pod" => c
            .pods
            .retain(|p| !(p.namespace == namespace && p.instance.name == name)),
        "Service" => c
            .services
            .retain(|s| !(s.namespace == namespace && s.name == name)),
        "NetworkPolicy" => c
            .policies
            .retain(|p| !(p.namespace == namespace && p.name == name)),
        "Node" => c.nodes.retain(|n| n.name != name),
        _ => {}
    }
}

/// The owner that makes an object part of a workload: the ownerReference
/// with `controller: true` (`metav1.GetControllerOf`; other owners only
/// govern garbage collection). A Node as controller marks a static pod's
/// mirror, which is a workload of its own (`ns/name[Pod]`), never grouped
/// with the other static pods of its node.
fn controller_owner(meta: &manifest::ObjectMeta) -> Option<(String, String)> {
    meta.owner_references
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|r| r.controller == Some(true))
        // kind and name are required; the API server rejects a reference
        // without them, so it groups nothing.
        .filter(|r| r.kind != "Node" && !r.kind.is_empty() && !r.name.is_empty())
        .map(|r| (r.kind.clone(), r.name.clone()))
}

fn controller(
    kind: &str,
    namespace: String,
    name: String,
    template: PodTemplate,
    meta: &manifest::ObjectMeta,
    source: Source,
) -> ControllerObject {
    ControllerObject {
        kind: WorkloadKind::from_kind(kind),
        annotations: meta.annotations.clone().unwrap_or_default(),
        name,
        namespace,
        template: Arc::new(template),
        owner: controller_owner(meta),
        source,
    }
}

fn pod_object(
    pod: manifest::Pod,
    namespace: String,
    name: String,
    source: Source,
    diags: &mut Diagnostics,
) -> PodObject {
    let owner = controller_owner(&pod.metadata);
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    let pod_uid = pod.metadata.uid.clone().filter(|u| !u.is_empty());
    let mut ips: Vec<IpAddr> = Vec::new();
    let listed = pod.status.pod_ips.iter().flatten().map(|p| p.ip.as_str());
    for text in pod.status.pod_ip.iter().map(String::as_str).chain(listed) {
        match text.parse::<IpAddr>() {
            Ok(ip) if !ips.contains(&ip) => ips.push(ip),
            Ok(_) => {}
            Err(_) => diags.push(Diagnostic::warning(
                source.clone(),
                format!("Pod {namespace}/{name}: status.podIP {text:?} is not an IP address"),
            )),
        }
    }
    let host_ip = pod.status.host_ip.as_deref().and_then(|h| h.parse().ok());
    let node_name = pod.spec.node_name.clone();
    let template = pod_template(
        manifest::PodTemplateSpec {
            metadata: pod.metadata,
            spec: pod.spec,
        },
        &source,
        diags,
    );
    PodObject {
        namespace,
        annotations,
        owner,
        instance: PodInstance {
            name,
            uid: pod_uid,
            ips,
            node_name,
            host_ip,
            labels: template.labels.clone(),
            source: Some(source),
        },
        template: Arc::new(template),
    }
}

fn service(
    svc: manifest::Service,
    namespace: String,
    name: String,
    source: Source,
    diags: &mut Diagnostics,
) -> Service {
    let annotations = svc.metadata.annotations.unwrap_or_default();
    let spec = svc.spec;
    let mut cluster_ips = Vec::new();
    let listed = spec.cluster_ips.iter().flatten().map(String::as_str);
    for text in spec.cluster_ip.iter().map(String::as_str).chain(listed) {
        // "None" marks a headless service.
        if let Ok(ip) = text.parse::<IpAddr>()
            && !cluster_ips.contains(&ip)
        {
            cluster_ips.push(ip);
        }
    }
    let mut ports = Vec::new();
    for p in spec.ports.unwrap_or_default() {
        match (port_number(p.port), parse_protocol(p.protocol.as_deref())) {
            (Ok(port), Ok(protocol)) => ports.push(ServicePort {
                name: p.name,
                port,
                protocol,
                node_port: p.node_port.and_then(|n| port_number(n).ok()),
                target_port: p.target_port.map(|t| match t {
                    manifest::IntOrString::Int(n) => n.to_string(),
                    manifest::IntOrString::Str(s) => s,
                }),
            }),
            (Err(e), _) | (_, Err(e)) => diags.push(Diagnostic::warning(
                source.clone(),
                format!("Service {namespace}/{name}: port ignored: {e}"),
            )),
        }
    }
    Service {
        namespace,
        name,
        annotations,
        service_type: spec.service_type.unwrap_or_else(|| "ClusterIP".to_string()),
        selector: spec.selector,
        cluster_ips,
        external_ips: spec.external_ips.unwrap_or_default(),
        external_name: spec.external_name,
        external_traffic_policy: spec.external_traffic_policy,
        ports,
        source: Some(source),
    }
}

fn node_model(node: manifest::Node, name: String, source: Source, diags: &mut Diagnostics) -> Node {
    let addresses = node
        .status
        .addresses
        .unwrap_or_default()
        .iter()
        .filter(|a| a.address_type.ends_with("IP"))
        .filter_map(|a| a.address.parse().ok())
        .collect();
    let mut pod_cidrs = Vec::new();
    let listed = node.spec.pod_cidrs.iter().flatten().map(String::as_str);
    for text in node.spec.pod_cidr.iter().map(String::as_str).chain(listed) {
        match text.parse::<Cidr>() {
            Ok(c) if !pod_cidrs.contains(&c) => pod_cidrs.push(c),
            Ok(_) => {}
            Err(e) => diags.push(Diagnostic::warning(
                source.clone(),
                format!("Node {name}: {e}"),
            )),
        }
    }
    Node {
        name,
        labels: node.metadata.labels.unwrap_or_default(),
        addresses,
        pod_cidrs,
        source: Some(source),
    }
}

/// Which workload a pod belongs to, following owner references through the
/// controllers that are present: Deployment → ReplicaSet → Pod and
/// CronJob → Job → Pod. A ReplicaSet or Job whose own object is absent is
/// still attributed to its Deployment or CronJob when that is present, using
/// the naming the controllers use (`<deployment>-<pod-template-hash>`,
/// `<cronjob>-<scheduled minute>`).
fn workload_key(
    c: &Collected,
    namespace: &str,
    owner: Option<&(String, String)>,
    pod_name: &str,
    labels: &Labels,
) -> (String, String) {
    let Some((kind, name)) = owner else {
        return ("Pod".to_string(), pod_name.to_string());
    };
    let present = |k: &str, n: &str| {
        c.controllers
            .contains_key(&(namespace.to_string(), k.to_string(), n.to_string()))
    };
    let parent = match kind.as_str() {
        "ReplicaSet" => Some("Deployment"),
        "Job" => Some("CronJob"),
        _ => None,
    };
    if let Some(parent) = parent {
        if let Some(ctrl) = c
            .controllers
            .get(&(namespace.to_string(), kind.clone(), name.clone()))
        {
            if let Some((pk, pn)) = &ctrl.owner
                && pk == parent
                && present(pk, pn)
            {
                return (pk.clone(), pn.clone());
            }
            return (kind.clone(), name.clone());
        }
        if let Some(guess) = parent_name_from_child(kind, name, labels)
            && present(parent, &guess)
        {
            return (parent.to_string(), guess);
        }
    }
    (kind.clone(), name.clone())
}

fn parent_name_from_child(kind: &str, child: &str, labels: &Labels) -> Option<String> {
    let (base, suffix) = child.rsplit_once('-')?;
    let matches = match kind {
        "ReplicaSet" => labels.get("pod-template-hash").is_some_and(|h| h == suffix),
        "Job" => !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit()),
        _ => false,
    };
    matches.then(|| base.to_string())
}

fn group_workloads(c: &mut Collected) -> Vec<Workload> {
    // Controllers owned by a present parent (a Deployment's ReplicaSets, a
    // CronJob's Jobs) are folded into the parent.
    let folded: HashSet<(String, String, String)> = c
        .controllers
        .iter()
        .filter(|(_, ctrl)| {
            let parent = match ctrl.kind {
                WorkloadKind::ReplicaSet => "Deployment",
                WorkloadKind::Job => "CronJob",
                _ => return false,
            };
            ctrl.owner.as_ref().is_some_and(|(k, n)| {
                k == parent
                    && c.controllers
                        .contains_key(&(ctrl.namespace.clone(), k.clone(), n.clone()))
            })
        })
        .map(|(k, _)| k.clone())
        .collect();
    let mut by_key: BTreeMap<(String, String, String), Workload> = BTreeMap::new();
    for (key, ctrl) in &c.controllers {
        if folded.contains(key) {
            continue;
        }
        by_key.insert(
            key.clone(),
            Workload {
                namespace: ctrl.namespace.clone(),
                name: ctrl.name.clone(),
                kind: ctrl.kind.clone(),
                annotations: ctrl.annotations.clone(),
                template: PodTemplate::clone(&ctrl.template),
                pods: Vec::new(),
                source: Some(ctrl.source.clone()),
            },
        );
    }
    let pods = std::mem::take(&mut c.pods);
    for pod in pods {
        let (kind, name) = workload_key(
            c,
            &pod.namespace,
            pod.owner.as_ref(),
            &pod.instance.name,
            &pod.template.labels,
        );
        let key = (pod.namespace.clone(), kind.clone(), name.clone());
        let workload = by_key.entry(key).or_insert_with(|| Workload {
            namespace: pod.namespace.clone(),
            name,
            kind: WorkloadKind::from_kind(&kind),
            annotations: pod.annotations.clone(),
            // Without its controller, the first pod stands for the workload.
            template: PodTemplate::clone(&pod.template),
            pods: Vec::new(),
            source: pod.instance.source.clone(),
        });
        workload.pods.push(pod.instance);
    }
    by_key.into_values().collect()
}

/// Adds the namespaces that objects reference without declaring, and the
/// automatic `kubernetes.io/metadata.name` label to every namespace.
fn complete_namespaces(
    mut declared: BTreeMap<String, Namespace>,
    inv: &Inventory,
) -> Vec<Namespace> {
    let referenced = inv
        .workloads
        .iter()
        .map(|w| &w.namespace)
        .chain(inv.services.iter().map(|s| &s.namespace))
        .chain(inv.policies.iter().map(|p| &p.namespace));
    for ns in referenced {
        declared.entry(ns.clone()).or_insert_with(|| Namespace {
            name: ns.clone(),
            labels: Labels::new(),
            annotations: Labels::new(),
            declared: false,
            source: None,
        });
    }
    declared
        .into_values()
        .map(|mut ns| {
            ns.labels
                .insert(NAMESPACE_NAME_LABEL.to_string(), ns.name.clone());
            ns
        })
        .collect()
}
