//! The inventory's object model: the parts of Kubernetes objects that network
//! reachability and posture depend on, already normalised (defaults applied,
//! workloads grouped, namespaces made explicit).

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use crate::cidr::Cidr;
use crate::selector::{LabelSelector, Labels};

/// Where an object came from, for diagnostics and SARIF regions. Lines and
/// columns are 1-based.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Source {
    pub file: Arc<str>,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub const ALL: [Protocol; 3] = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp];

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }

    /// Kubernetes spells protocols in upper case and rejects other spellings;
    /// we accept any case on the command line but not in manifests.
    pub fn parse_k8s(s: &str) -> Option<Protocol> {
        match s {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ContainerPort {
    pub name: Option<String>,
    pub port: u16,
    pub protocol: Protocol,
    pub host_port: Option<u16>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SeLinuxOptions {
    pub se_type: Option<String>,
    pub user: Option<String>,
    pub role: Option<String>,
}

/// A security context as written, at pod or container level. `None` means
/// the field is not set at that level (precedence is the auditor's job).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SecurityContext {
    pub privileged: Option<bool>,
    pub allow_privilege_escalation: Option<bool>,
    pub capabilities_add: Vec<String>,
    pub capabilities_drop: Vec<String>,
    pub run_as_non_root: Option<bool>,
    pub run_as_user: Option<i64>,
    pub read_only_root_filesystem: Option<bool>,
    /// `seccompProfile.type`.
    pub seccomp: Option<String>,
    /// `appArmorProfile.type`.
    pub app_armor: Option<String>,
    pub se_linux: Option<SeLinuxOptions>,
    pub proc_mount: Option<String>,
    pub windows_host_process: Option<bool>,
    /// Pod level only.
    pub sysctls: Vec<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ContainerKind {
    #[default]
    Regular,
    Init,
    Ephemeral,
}

impl ContainerKind {
    /// The pod spec field the container is listed in.
    pub fn field(self) -> &'static str {
        match self {
            ContainerKind::Regular => "containers",
            ContainerKind::Init => "initContainers",
            ContainerKind::Ephemeral => "ephemeralContainers",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Container {
    pub name: String,
    pub image: String,
    pub kind: ContainerKind,
    pub ports: Vec<ContainerPort>,
    pub security: SecurityContext,
    pub cpu_limit: bool,
    pub memory_limit: bool,
    /// Probes and lifecycle hooks that set `host`: (field path, host).
    pub handler_hosts: Vec<(String, String)>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Volume {
    pub name: String,
    /// The source type: `hostPath`, `configMap`, `emptyDir`, ...
    pub source: String,
    pub host_path: Option<String>,
}

/// What a pod looks like: labels and annotations, host namespaces, its
/// containers (with the named ports policies resolve against) and its
/// security settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct PodTemplate {
    pub labels: Labels,
    pub annotations: Labels,
    pub host_network: bool,
    pub host_pid: bool,
    pub host_ipc: bool,
    pub containers: Vec<Container>,
    pub init_containers: Vec<Container>,
    pub ephemeral_containers: Vec<Container>,
    pub security: SecurityContext,
    pub volumes: Vec<Volume>,
    pub automount_service_account_token: Option<bool>,
    pub service_account: Option<String>,
    /// `spec.os.name` (`linux`, `windows`), when set.
    pub os_name: Option<String>,
    /// `spec.hostUsers`: `Some(false)` runs the pod in a user namespace.
    pub host_users: Option<bool>,
}

impl PodTemplate {
    /// Resolves a named port as NetworkPolicy does: on the pod's containers'
    /// ports, matching the name and the protocol. Init containers count too
    /// (restartable "sidecar" init containers serve ports).
    pub fn named_port(&self, name: &str, protocol: Protocol) -> Vec<u16> {
        self.containers
            .iter()
            .chain(&self.init_containers)
            .flat_map(|c| &c.ports)
            .filter(|p| p.protocol == protocol && p.name.as_deref() == Some(name))
            .map(|p| p.port)
            .collect()
    }

    /// Every container of the pod: regular, init and ephemeral.
    pub fn all_containers(&self) -> impl Iterator<Item = &Container> {
        self.containers
            .iter()
            .chain(&self.init_containers)
            .chain(&self.ephemeral_containers)
    }

    pub fn has_port_name(&self, name: &str) -> bool {
        self.containers
            .iter()
            .chain(&self.init_containers)
            .flat_map(|c| &c.ports)
            .any(|p| p.name.as_deref() == Some(name))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Namespace {
    pub name: String,
    /// Includes the automatic `kubernetes.io/metadata.name` label.
    pub labels: Labels,
    pub annotations: Labels,
    /// False when the namespace is only referenced by other objects.
    pub declared: bool,
    pub source: Option<Source>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WorkloadKind {
    Pod,
    Deployment,
    ReplicaSet,
    StatefulSet,
    DaemonSet,
    Job,
    CronJob,
    ReplicationController,
    /// Pods owned by a controller kind we do not model (an operator's CRD).
    Other(String),
}

impl WorkloadKind {
    pub fn from_kind(kind: &str) -> WorkloadKind {
        match kind {
            "Pod" => WorkloadKind::Pod,
            "Deployment" => WorkloadKind::Deployment,
            "ReplicaSet" => WorkloadKind::ReplicaSet,
            "StatefulSet" => WorkloadKind::StatefulSet,
            "DaemonSet" => WorkloadKind::DaemonSet,
            "Job" => WorkloadKind::Job,
            "CronJob" => WorkloadKind::CronJob,
            "ReplicationController" => WorkloadKind::ReplicationController,
            other => WorkloadKind::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            WorkloadKind::Pod => "Pod",
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::ReplicaSet => "ReplicaSet",
            WorkloadKind::StatefulSet => "StatefulSet",
            WorkloadKind::DaemonSet => "DaemonSet",
            WorkloadKind::Job => "Job",
            WorkloadKind::CronJob => "CronJob",
            WorkloadKind::ReplicationController => "ReplicationController",
            WorkloadKind::Other(kind) => kind,
        }
    }
}

/// A running pod of a workload, as seen in a dump.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PodInstance {
    pub name: String,
    /// `metadata.uid`: what the node agent's cgroup attribution names.
    pub uid: Option<String>,
    pub ips: Vec<IpAddr>,
    pub node_name: Option<String>,
    pub host_ip: Option<IpAddr>,
    pub labels: Labels,
    pub source: Option<Source>,
}

/// A set of pods that behave alike: a controller's template, or a bare pod.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Workload {
    pub namespace: String,
    pub name: String,
    pub kind: WorkloadKind,
    /// The controller's (or bare pod's) own annotations.
    pub annotations: Labels,
    pub template: PodTemplate,
    pub pods: Vec<PodInstance>,
    pub source: Option<Source>,
}

impl Workload {
    /// `namespace/name[Kind]`, the naming of `roxctl netpol connectivity`.
    pub fn display_name(&self) -> String {
        format!("{}/{}[{}]", self.namespace, self.name, self.kind.as_str())
    }

    pub fn ips(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.pods.iter().flat_map(|p| p.ips.iter().copied())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ServicePort {
    pub name: Option<String>,
    pub port: u16,
    pub protocol: Protocol,
    pub node_port: Option<u16>,
    /// A number or a container port name.
    pub target_port: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Service {
    pub namespace: String,
    pub name: String,
    pub annotations: Labels,
    pub service_type: String,
    /// `None` for services without a selector (manually managed endpoints).
    pub selector: Option<Labels>,
    pub cluster_ips: Vec<IpAddr>,
    pub external_ips: Vec<String>,
    pub external_name: Option<String>,
    pub external_traffic_policy: Option<String>,
    pub ports: Vec<ServicePort>,
    pub source: Option<Source>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Node {
    pub name: String,
    pub labels: Labels,
    pub addresses: Vec<IpAddr>,
    pub pod_cidrs: Vec<Cidr>,
    pub source: Option<Source>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PortRef {
    Number(u16),
    Name(String),
}

/// One entry of a rule's `ports`. `port: None` means every port of the
/// protocol; `end_port` turns a numbered port into a range.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PolicyPort {
    pub protocol: Protocol,
    pub port: Option<PortRef>,
    pub end_port: Option<u16>,
}

impl fmt::Display for PolicyPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.port, self.end_port) {
            (None, _) => write!(f, "{} (all ports)", self.protocol),
            (Some(PortRef::Number(p)), Some(end)) => write!(f, "{} {p}-{end}", self.protocol),
            (Some(PortRef::Number(p)), None) => write!(f, "{} {p}", self.protocol),
            (Some(PortRef::Name(n)), _) => write!(f, "{} {n}", self.protocol),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Peer {
    /// `podSelector` and/or `namespaceSelector`. `namespace_selector: None`
    /// means the policy's own namespace; `pod_selector: None` means all pods
    /// of the selected namespaces.
    Pods {
        namespace_selector: Option<LabelSelector>,
        pod_selector: Option<LabelSelector>,
    },
    IpBlock {
        cidr: Cidr,
        except: Vec<Cidr>,
    },
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Pods {
                namespace_selector,
                pod_selector,
            } => {
                let mut parts = Vec::new();
                if let Some(ns) = namespace_selector {
                    parts.push(format!("namespaceSelector {}", ns.describe()));
                }
                if let Some(pods) = pod_selector {
                    parts.push(format!("podSelector {}", pods.describe()));
                }
                f.write_str(&parts.join(" AND "))
            }
            Peer::IpBlock { cidr, except } if except.is_empty() => write!(f, "ipBlock {cidr}"),
            Peer::IpBlock { cidr, except } => {
                let except: Vec<String> = except.iter().map(Cidr::to_string).collect();
                write!(f, "ipBlock {cidr} except {}", except.join(","))
            }
        }
    }
}

/// An ingress or egress rule. Empty `peers` allows every peer (including
/// every external address); empty `ports` allows every port and protocol.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Rule {
    pub peers: Vec<Peer>,
    pub ports: Vec<PolicyPort>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    Ingress,
    Egress,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NetworkPolicy {
    pub namespace: String,
    pub name: String,
    pub annotations: Labels,
    pub pod_selector: LabelSelector,
    /// After defaulting: Ingress always when `policyTypes` is omitted, Egress
    /// when omitted and an `egress` section is present.
    pub affects_ingress: bool,
    pub affects_egress: bool,
    pub ingress: Vec<Rule>,
    pub egress: Vec<Rule>,
    pub source: Option<Source>,
}

impl NetworkPolicy {
    pub fn affects(&self, direction: Direction) -> bool {
        match direction {
            Direction::Ingress => self.affects_ingress,
            Direction::Egress => self.affects_egress,
        }
    }

    pub fn rules(&self, direction: Direction) -> &[Rule] {
        match direction {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }

    pub fn qualified_name(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}
