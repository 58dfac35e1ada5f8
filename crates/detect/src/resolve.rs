//! Who is behind an address or a data-plane identity: a pod of a workload,
//! a node, a Service's virtual IP, or an address outside the cluster.
//!
//! Order of evidence: a record's own identity (Hubble, Calico) first, as the
//! data plane knew the pod when it saw the packet; then the address.

use std::net::IpAddr;

use palisade_flow::{FlowEndpoint, Identity};
use palisade_inventory::{Cidr, Inventory, Labels, Workload};
use rustc_hash::FxHashMap;

/// What one flow endpoint resolved to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Place {
    /// A workload, and its pod when the address or name singles one out.
    Workload {
        index: usize,
        pod: Option<usize>,
    },
    /// A node's own address (kubelet, host processes, SNAT'd traffic).
    Node {
        index: Option<usize>,
        ip: IpAddr,
    },
    /// A Service's virtual IP: the capture saw the packet before DNAT.
    Service {
        index: usize,
    },
    External(IpAddr),
    /// The inventory does not know it; the reason says why.
    Unknown(String),
}

pub struct Resolver<'a> {
    inventory: &'a Inventory,
    pods_by_ip: FxHashMap<IpAddr, (usize, usize)>,
    /// Node addresses, and pods' `status.hostIP` (nodes are often absent
    /// from a dump, but pods record their node's address).
    nodes_by_ip: FxHashMap<IpAddr, Option<usize>>,
    services_by_ip: FxHashMap<IpAddr, usize>,
    pods_by_name: FxHashMap<(&'a str, &'a str), (usize, usize)>,
    /// Pod and service ranges: an unknown address inside them is a pod or
    /// service the inventory misses, not the outside world.
    cluster_cidrs: Vec<Cidr>,
}

impl<'a> Resolver<'a> {
    pub fn new(inventory: &'a Inventory, extra_cluster_cidrs: &[Cidr]) -> Resolver<'a> {
        let mut pods_by_ip = FxHashMap::default();
        let mut pods_by_name = FxHashMap::default();
        for (w, workload) in inventory.workloads.iter().enumerate() {
            for (p, pod) in workload.pods.iter().enumerate() {
                // hostNetwork pods carry their node's address; that address
                // is resolved as the node (below), which is what it is.
                if !workload.template.host_network {
                    for ip in &pod.ips {
                        pods_by_ip.entry(*ip).or_insert((w, p));
                    }
                }
                pods_by_name.insert((workload.namespace.as_str(), pod.name.as_str()), (w, p));
            }
        }
        let mut nodes_by_ip = FxHashMap::default();
        for pod in inventory.workloads.iter().flat_map(|w| &w.pods) {
            if let Some(ip) = pod.host_ip {
                let node = pod
                    .node_name
                    .as_ref()
                    .and_then(|name| inventory.nodes.iter().position(|n| &n.name == name));
                nodes_by_ip.entry(ip).or_insert(node);
            }
        }
        for (n, node) in inventory.nodes.iter().enumerate() {
            for ip in &node.addresses {
                nodes_by_ip.insert(*ip, Some(n));
            }
        }
        let mut services_by_ip = FxHashMap::default();
        for (s, service) in inventory.services.iter().enumerate() {
            for ip in &service.cluster_ips {
                services_by_ip.insert(*ip, s);
            }
        }
        let mut cluster_cidrs = extra_cluster_cidrs.to_vec();
        cluster_cidrs.extend(
            inventory
                .nodes
                .iter()
                .flat_map(|n| n.pod_cidrs.iter().copied()),
        );
        Resolver {
            inventory,
            pods_by_ip,
            nodes_by_ip,
            services_by_ip,
            pods_by_name,
            cluster_cidrs,
        }
    }

    pub fn inventory(&self) -> &'a Inventory {
        self.inventory
    }

    pub fn resolve(&self, endpoint: &FlowEndpoint) -> Place {
        if let Some(identity) = &endpoint.identity
            && let Some(place) = self.by_identity(identity, endpoint.ip)
        {
            return place;
        }
        match endpoint.ip {
            Some(ip) => self.by_ip(ip),
            None => Place::Unknown("the record has neither an address nor a known pod".into()),
        }
    }

    pub fn by_ip(&self, ip: IpAddr) -> Place {
        if let Some(&(index, pod)) = self.pods_by_ip.get(&ip) {
            return Place::Workload {
                index,
                pod: Some(pod),
            };
        }
        if let Some(&index) = self.nodes_by_ip.get(&ip) {
            return Place::Node { index, ip };
        }
        if let Some(&index) = self.services_by_ip.get(&ip) {
            return Place::Service { index };
        }
        if self.cluster_cidrs.iter().any(|c| c.contains(ip)) {
            return Place::Unknown(format!(
                "{ip} is in the cluster's pod or service range but no pod or service in the inventory has it"
            ));
        }
        Place::External(ip)
    }

    /// `None` when the identity says nothing the address would not.
    fn by_identity(&self, identity: &Identity, ip: Option<IpAddr>) -> Option<Place> {
        match identity.entity.as_deref() {
            Some("host" | "remote-node" | "kube-apiserver") => {
                return ip.map(|ip| match self.by_ip(ip) {
                    node @ Place::Node { .. } => node,
                    _ => Place::Node { index: None, ip },
                });
            }
            Some("world" | "pub" | "pvt") => {
                return Some(ip.map_or_else(
                    || Place::Unknown("an outside address the record does not give".into()),
                    Place::External,
                ));
            }
            _ => {}
        }
        let namespace = identity.namespace.as_deref()?;
        let pod = identity.pod.as_deref().unwrap_or("");
        if let Some(&(index, pod)) = self.pods_by_name.get(&(namespace, pod)) {
            return Some(Place::Workload {
                index,
                pod: Some(pod),
            });
        }
        let found = self
            .workload_by_name_pattern(namespace, pod)
            .or_else(|| self.workload_by_labels(namespace, &identity.labels));
        Some(match found {
            Some(index) => Place::Workload {
                index,
                pod: ip.and_then(|ip| self.pod_with_ip(index, ip)),
            },
            None => Place::Unknown(format!(
                "{namespace}/{pod} is not a pod of any workload in the inventory"
            )),
        })
    }

    /// The workload (and pod, when the inventory has it) a pod name
    /// belongs to: an exact pod name, a workload name, or a name derived
    /// from a workload's.
    pub fn workload_of_pod(&self, namespace: &str, pod: &str) -> Option<(usize, Option<usize>)> {
        if let Some(&(w, p)) = self.pods_by_name.get(&(namespace, pod)) {
            return Some((w, Some(p)));
        }
        self.workload_by_name_pattern(namespace, pod)
            .map(|w| (w, None))
    }

    fn pod_with_ip(&self, workload: usize, ip: IpAddr) -> Option<usize> {
        self.inventory.workloads[workload]
            .pods
            .iter()
            .position(|p| p.ips.contains(&ip))
    }

    /// Controllers name their pods `<workload>-<suffix>` (Deployments add a
    /// ReplicaSet hash, StatefulSets an ordinal), and Calico aggregates them
    /// as `<prefix>-*`. The longest workload name that prefixes the pod
    /// name wins, so `api` does not steal the pods of `api-gateway`.
    fn workload_by_name_pattern(&self, namespace: &str, pod: &str) -> Option<usize> {
        let stem = pod.trim_end_matches('*');
        if stem.is_empty() {
            return None;
        }
        self.inventory
            .workloads
            .iter()
            .enumerate()
            .filter(|(_, w)| w.namespace == namespace && names_pod(w, stem))
            .max_by_key(|(_, w)| w.name.len())
            .map(|(i, _)| i)
    }

    /// The workload whose template labels the pod carries, most specific
    /// first (pods add labels such as `pod-template-hash`).
    fn workload_by_labels(&self, namespace: &str, labels: &[String]) -> Option<usize> {
        if labels.is_empty() {
            return None;
        }
        let pod_labels: Labels = labels
            .iter()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.inventory
            .workloads
            .iter()
            .enumerate()
            .filter(|(_, w)| {
                w.namespace == namespace
                    && !w.template.labels.is_empty()
                    && w.template
                        .labels
                        .iter()
                        .all(|(k, v)| pod_labels.get(k) == Some(v))
            })
            .max_by_key(|(_, w)| w.template.labels.len())
            .map(|(i, _)| i)
    }
}

fn names_pod(workload: &Workload, stem: &str) -> bool {
    stem == workload.name
        || stem
            .strip_prefix(workload.name.as_str())
            .is_some_and(|rest| rest.starts_with('-'))
}
