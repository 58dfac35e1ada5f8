//! The registry of checks: stable ids, default severity, standards tags, the
//! concrete risk and the remediation. Every finding refers to one entry;
//! docs/checks.md documents every entry (a test keeps them in step).

use palisade_inventory::Source;

use crate::finding::{Finding, Resource, Severity};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// Workloads and services that escape or defeat pod-level policy.
    Bypass,
    /// What the policies actually cover and allow.
    Coverage,
    /// Pod Security Standards (baseline and restricted).
    PodSecurity,
    /// Container hygiene that matters for monitoring and response.
    Hygiene,
}

#[derive(Debug)]
pub struct Check {
    pub id: &'static str,
    pub title: &'static str,
    pub family: Family,
    pub severity: Severity,
    pub tags: &'static [&'static str],
    pub risk: &'static str,
    pub remediation: &'static str,
}

impl Check {
    pub fn finding(
        &'static self,
        resource: Resource,
        field: String,
        message: String,
        source: Option<Source>,
    ) -> Finding {
        Finding {
            check: self.id,
            severity: self.severity,
            resource,
            field,
            message,
            risk: self.risk,
            remediation: self.remediation,
            tags: self.tags,
            source,
            suppressed: None,
        }
    }
}

macro_rules! check {
    ($name:ident, $id:literal, $family:ident, $sev:ident, $title:literal, [$($tag:literal),*], $risk:literal, $fix:literal) => {
        pub static $name: Check = Check {
            id: $id,
            title: $title,
            family: Family::$family,
            severity: Severity::$sev,
            tags: &[$($tag),*],
            risk: $risk,
            remediation: $fix,
        };
    };
}

check!(
    HOST_NETWORK,
    "BYP-001",
    Bypass,
    High,
    "Pod uses the host network",
    ["pss:baseline", "cis:5.2.5", "nsa", "mitre:T1599"],
    "NetworkPolicy never selects hostNetwork pods: the pod is not isolated, its traffic leaves with the node's address, and peers cannot tell it from the node.",
    "Remove hostNetwork: true; expose the workload through a Service instead."
);
check!(
    HOST_PORT,
    "BYP-002",
    Bypass,
    Medium,
    "Container binds a host port",
    ["pss:baseline", "cis:5.2.13", "nsa"],
    "A hostPort is reachable on the node's address; on many data planes that path is not subject to the pod's ingress policy, and clients are SNATed.",
    "Remove hostPort; use a Service (ClusterIP, or NodePort/LoadBalancer with externalTrafficPolicy: Local)."
);
check!(
    PRIVILEGED,
    "BYP-003",
    Bypass,
    Critical,
    "Privileged container",
    ["pss:baseline", "cis:5.2.2", "nsa", "mitre:T1611"],
    "A privileged container holds every capability and device: it can rewrite the node's firewall and routing, so no policy binds it.",
    "Set securityContext.privileged: false and grant only the capabilities needed."
);
check!(
    NET_ADMIN,
    "BYP-004",
    Bypass,
    High,
    "Container adds NET_ADMIN",
    ["pss:baseline", "cis:5.2.9", "mitre:T1599"],
    "NET_ADMIN can change interfaces, routes and nftables rules in the pod's network namespace, and with host networking on the node.",
    "Drop NET_ADMIN; move network setup into a CNI plugin or an init step run by the platform."
);
check!(
    NET_RAW,
    "BYP-005",
    Bypass,
    Medium,
    "Container can open raw sockets (NET_RAW not dropped)",
    ["pss:restricted", "cis:5.2.8", "mitre:T1557"],
    "NET_RAW lets a process forge packets (ARP/IP spoofing) and probe the network outside the connection-tracked path policy enforcement relies on. Container runtimes grant it by default.",
    "Add NET_RAW (or ALL) to securityContext.capabilities.drop."
);
check!(
    SYS_ADMIN,
    "BYP-006",
    Bypass,
    Critical,
    "Container adds SYS_ADMIN",
    ["pss:baseline", "cis:5.2.9", "mitre:T1611"],
    "SYS_ADMIN is close to root on the node: mounts, namespaces and BPF make escaping the pod's network sandbox routine.",
    "Drop SYS_ADMIN; use narrowly scoped capabilities or a privileged platform component."
);
check!(
    ALL_CAPS,
    "BYP-007",
    Bypass,
    Critical,
    "Container adds ALL capabilities",
    ["pss:baseline", "cis:5.2.9"],
    "Adding ALL grants NET_ADMIN, NET_RAW and SYS_ADMIN at once.",
    "Replace ALL with the specific capabilities needed, and drop ALL."
);
check!(
    HOST_NAMESPACES,
    "BYP-008",
    Bypass,
    High,
    "Pod shares the host's PID or IPC namespace",
    ["pss:baseline", "cis:5.2.3", "cis:5.2.4", "nsa"],
    "hostPID/hostIPC expose the node's processes and shared memory: a compromise reaches host-network processes that no policy governs.",
    "Remove hostPID and hostIPC."
);
check!(
    PRIVILEGE_ESCALATION,
    "BYP-009",
    Bypass,
    Medium,
    "Privilege escalation is not disabled",
    ["pss:restricted", "cis:5.2.6"],
    "Without allowPrivilegeEscalation: false, setuid binaries can gain capabilities such as NET_RAW inside the container.",
    "Set securityContext.allowPrivilegeEscalation: false on every container."
);
check!(
    HANDLER_HOST,
    "BYP-010",
    Bypass,
    Medium,
    "Probe or lifecycle hook targets another host",
    ["pss:baseline"],
    "The kubelet sends these requests from the node, where NetworkPolicy does not apply: a `host` field turns them into node-originated requests to any address.",
    "Remove the host field so probes target the pod itself."
);
check!(
    EXPOSED_CLUSTER_POLICY,
    "BYP-011",
    Bypass,
    High,
    "External Service hides client addresses from ipBlock rules",
    ["nsa", "mitre:T1599"],
    "With externalTrafficPolicy: Cluster, traffic is SNATed to a node address before it reaches the pod: ipBlock rules meant for client addresses silently stop matching, and rules for node addresses admit everyone.",
    "Set externalTrafficPolicy: Local, or enforce client ranges at the load balancer."
);
check!(
    EXTERNAL_IPS,
    "BYP-012",
    Bypass,
    High,
    "Service sets externalIPs",
    ["cve:CVE-2020-8554", "mitre:T1557"],
    "Any user who can create Services can claim an external address and intercept cluster traffic to it (CVE-2020-8554).",
    "Remove externalIPs, and block them cluster-wide with an admission policy."
);
check!(
    EXTERNAL_NAME,
    "BYP-013",
    Bypass,
    Low,
    "ExternalName Service",
    ["nsa"],
    "An ExternalName Service is a DNS alias: it can redirect in-cluster clients to any host, and traffic to it is judged by egress rules for that host, not for the Service.",
    "Prefer a Service with explicit endpoints, and restrict egress to the real destination."
);
check!(
    SERVICE_UNPROTECTED_BACKENDS,
    "BYP-014",
    Bypass,
    Medium,
    "Service routes to pods no ingress policy protects",
    ["nsa"],
    "The Service's backends accept connections from anywhere in the cluster (and from outside, for NodePort/LoadBalancer).",
    "Add an ingress policy that selects the Service's pods."
);
check!(
    NO_DEFAULT_DENY_INGRESS,
    "POL-001",
    Coverage,
    High,
    "Namespace has no default-deny for ingress",
    ["nsa", "cis:5.3.2"],
    "No policy selects every pod of the namespace for ingress, so a new or relabelled workload accepts connections from everyone.",
    "Add a policy with podSelector: {} and policyTypes: [Ingress]."
);
check!(
    NO_DEFAULT_DENY_EGRESS,
    "POL-002",
    Coverage,
    Medium,
    "Namespace has no default-deny for egress",
    ["nsa", "cis:5.3.2"],
    "No policy selects every pod of the namespace for egress, so a compromised workload can connect anywhere, including the cloud metadata service.",
    "Add a policy with podSelector: {} and policyTypes: [Egress], plus the needed egress rules (DNS first)."
);
check!(
    WORKLOAD_NOT_ISOLATED_INGRESS,
    "POL-003",
    Coverage,
    Medium,
    "Workload is not isolated for ingress",
    ["nsa"],
    "No ingress policy selects the workload: it accepts connections from every pod and address.",
    "Select the workload with an ingress policy (a namespace default-deny covers it)."
);
check!(
    WORKLOAD_NOT_ISOLATED_EGRESS,
    "POL-004",
    Coverage,
    Low,
    "Workload is not isolated for egress",
    ["nsa"],
    "No egress policy selects the workload: it can open connections to anything.",
    "Select the workload with an egress policy."
);
check!(
    POLICY_SELECTS_NOTHING,
    "POL-005",
    Coverage,
    Low,
    "Policy selects no workload",
    [],
    "The policy protects nothing; often a label typo that leaves the intended workload open.",
    "Fix the podSelector, or delete the policy."
);
check!(
    PEER_SELECTS_NOTHING,
    "POL-006",
    Coverage,
    Low,
    "Rule peer matches no workload",
    [],
    "The peer admits no current workload; often a label or namespace typo, and traffic meant to be allowed is dropped.",
    "Fix the selector."
);
check!(
    ALLOW_ALL_SOURCES,
    "POL-007",
    Coverage,
    Medium,
    "Ingress rule admits every source",
    ["nsa"],
    "The rule admits all pods of all namespaces and/or every external address on the listed ports.",
    "Name the clients with pod and namespace selectors, or explicit ipBlocks."
);
check!(
    ALLOW_ALL_DESTINATIONS,
    "POL-008",
    Coverage,
    Medium,
    "Egress rule allows every destination",
    ["nsa", "mitre:T1048"],
    "The rule lets the workload connect to any pod and any address on the listed ports: an exfiltration path.",
    "Name the destinations with selectors or narrow ipBlocks."
);
check!(
    METADATA_EGRESS,
    "POL-009",
    Coverage,
    High,
    "Egress reaches the cloud metadata service",
    ["mitre:T1552.005"],
    "The workload can reach 169.254.169.254 / fd00:ec2::254, where cloud instance credentials are served.",
    "Add the metadata addresses to the ipBlock's except list, or narrow the ipBlock."
);
check!(
    DNS_ANY_DESTINATION,
    "POL-011",
    Coverage,
    Low,
    "DNS egress to any destination",
    ["mitre:T1071.004"],
    "Port 53 is allowed to every address, not just the cluster DNS: DNS tunnelling to any resolver works.",
    "Allow port 53 only to kube-dns (namespaceSelector kube-system, podSelector k8s-app: kube-dns)."
);
check!(
    NAMED_PORT_UNRESOLVED,
    "POL-012",
    Coverage,
    Medium,
    "Named port resolves on no pod",
    [],
    "A named port that no destination pod declares (with that protocol) allows nothing: the rule silently fails.",
    "Use a port name the destination containers declare, or a number."
);
check!(
    EXPOSED_EVERYWHERE,
    "POL-015",
    Coverage,
    High,
    "Workload exposed to every namespace on every port",
    ["nsa"],
    "Every other workload of the cluster can connect to it on every port and protocol.",
    "Isolate the workload for ingress and allow only its clients and ports."
);

check!(
    PSS_HOST_NAMESPACES,
    "PSS-001",
    PodSecurity,
    High,
    "Host namespaces (PSS baseline)",
    ["pss:baseline", "cis:5.2.3", "cis:5.2.4", "cis:5.2.5"],
    "Sharing the host's network, PID or IPC namespace removes the pod's isolation from the node.",
    "Remove hostNetwork, hostPID and hostIPC."
);
check!(
    PSS_PRIVILEGED,
    "PSS-002",
    PodSecurity,
    High,
    "Privileged container (PSS baseline)",
    ["pss:baseline", "cis:5.2.2"],
    "Privileged containers disable most isolation mechanisms.",
    "Remove securityContext.privileged: true."
);
check!(
    PSS_CAPABILITIES_BASELINE,
    "PSS-003",
    PodSecurity,
    Medium,
    "Capabilities beyond the baseline set (PSS baseline)",
    ["pss:baseline", "cis:5.2.9"],
    "Only AUDIT_WRITE, CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, MKNOD, NET_BIND_SERVICE, SETFCAP, SETGID, SETPCAP, SETUID and SYS_CHROOT may be added.",
    "Remove the other capabilities from capabilities.add."
);
check!(
    PSS_HOST_PATH,
    "PSS-004",
    PodSecurity,
    High,
    "HostPath volume (PSS baseline)",
    ["pss:baseline", "cis:5.2.12"],
    "A hostPath volume gives the pod the node's files: credentials, the container runtime socket, kubelet state.",
    "Use a persistentVolumeClaim, configMap, secret or emptyDir instead."
);
check!(
    PSS_HOST_PORTS,
    "PSS-005",
    PodSecurity,
    Medium,
    "Host port (PSS baseline)",
    ["pss:baseline", "cis:5.2.13"],
    "Host ports bind the node's address and bypass Service-level controls.",
    "Remove hostPort."
);
check!(
    PSS_APPARMOR,
    "PSS-006",
    PodSecurity,
    Medium,
    "AppArmor profile overridden (PSS baseline)",
    ["pss:baseline"],
    "An Unconfined (or custom non-local) AppArmor profile removes a mandatory access control layer.",
    "Leave AppArmor unset, or use RuntimeDefault or a Localhost profile."
);
check!(
    PSS_SELINUX,
    "PSS-007",
    PodSecurity,
    Medium,
    "SELinux options outside the allowed set (PSS baseline)",
    ["pss:baseline"],
    "Custom SELinux users/roles or types other than container_t, container_init_t, container_kvm_t and container_engine_t can escape confinement.",
    "Remove seLinuxOptions.user/role and use an allowed type."
);
check!(
    PSS_PROC_MOUNT,
    "PSS-008",
    PodSecurity,
    Medium,
    "Unmasked /proc (PSS baseline)",
    ["pss:baseline"],
    "procMount other than Default exposes host kernel interfaces under /proc.",
    "Remove procMount or set it to Default."
);
check!(
    PSS_SECCOMP_BASELINE,
    "PSS-009",
    PodSecurity,
    Medium,
    "Seccomp profile other than RuntimeDefault or Localhost (PSS baseline)",
    ["pss:baseline"],
    "Without seccomp every system call is reachable, widening the kernel attack surface.",
    "Remove the Unconfined profile; use RuntimeDefault."
);
check!(
    PSS_SYSCTLS,
    "PSS-010",
    PodSecurity,
    Medium,
    "Unsafe sysctls (PSS baseline)",
    ["pss:baseline"],
    "Only namespaced, safe sysctls are allowed; others change kernel behaviour for the whole node.",
    "Remove the sysctls outside the safe set."
);
check!(
    PSS_HOST_PROCESS,
    "PSS-011",
    PodSecurity,
    High,
    "Windows HostProcess (PSS baseline)",
    ["pss:baseline", "cis:5.2.11"],
    "A HostProcess container runs directly on the Windows node with host privileges.",
    "Remove windowsOptions.hostProcess."
);
check!(
    PSS_HOST_PROBES,
    "PSS-012",
    PodSecurity,
    Medium,
    "Probe or lifecycle hook aimed at another host (PSS baseline)",
    ["pss:baseline"],
    "Since v1.34 baseline forbids probes and lifecycle hooks with a host: the kubelet would send requests from the node to any address, past the pod's network policy.",
    "Remove the host field so the probe targets the pod itself."
);
check!(
    PSS_VOLUME_TYPES,
    "PSS-101",
    PodSecurity,
    Medium,
    "Volume type outside the restricted set (PSS restricted)",
    ["pss:restricted"],
    "Restricted allows only configMap, csi, downwardAPI, emptyDir, ephemeral, image, persistentVolumeClaim, projected and secret volumes (a volume without a source is an emptyDir).",
    "Replace the volume with an allowed type."
);
check!(
    PSS_PRIVILEGE_ESCALATION,
    "PSS-102",
    PodSecurity,
    Medium,
    "Privilege escalation allowed (PSS restricted)",
    ["pss:restricted", "cis:5.2.6"],
    "setuid binaries can gain privileges unless allowPrivilegeEscalation is false.",
    "Set allowPrivilegeEscalation: false."
);
check!(
    PSS_RUN_AS_NON_ROOT,
    "PSS-103",
    PodSecurity,
    Medium,
    "May run as root (PSS restricted)",
    ["pss:restricted", "cis:5.2.7"],
    "Without runAsNonRoot: true the image decides, and most images run as root.",
    "Set runAsNonRoot: true on the pod (or every container)."
);
check!(
    PSS_RUN_AS_USER,
    "PSS-104",
    PodSecurity,
    Medium,
    "Runs as user 0 (PSS restricted)",
    ["pss:restricted", "cis:5.2.7"],
    "runAsUser: 0 is root in the container.",
    "Set a non-zero runAsUser."
);
check!(
    PSS_SECCOMP_RESTRICTED,
    "PSS-105",
    PodSecurity,
    Medium,
    "No seccomp profile (PSS restricted)",
    ["pss:restricted"],
    "Restricted requires RuntimeDefault or Localhost seccomp on the pod or every container.",
    "Set securityContext.seccompProfile.type: RuntimeDefault on the pod."
);
check!(
    PSS_CAPABILITIES_RESTRICTED,
    "PSS-106",
    PodSecurity,
    Medium,
    "Capabilities not dropped (PSS restricted)",
    ["pss:restricted", "cis:5.2.10"],
    "Restricted requires dropping ALL capabilities and allows adding back only NET_BIND_SERVICE.",
    "Set capabilities.drop: [ALL] and add only NET_BIND_SERVICE if needed."
);
check!(
    PSS_PROC_MOUNT_RESTRICTED,
    "PSS-107",
    PodSecurity,
    Medium,
    "Unmasked /proc in a user namespace (PSS restricted)",
    ["pss:restricted"],
    "Since v1.35 baseline allows procMount Unmasked for pods with hostUsers: false; restricted still forbids it.",
    "Remove procMount or set it to Default."
);
check!(
    PSS_NO_ENFORCE_LABEL,
    "PSS-201",
    PodSecurity,
    Low,
    "Namespace enforces no Pod Security level",
    ["pss:baseline"],
    "Without a pod-security.kubernetes.io/enforce label, admission accepts privileged pods in the namespace.",
    "Label the namespace pod-security.kubernetes.io/enforce: baseline (or restricted)."
);
check!(
    WRITABLE_ROOT_FS,
    "HYG-001",
    Hygiene,
    Low,
    "Writable root filesystem",
    ["nsa"],
    "An attacker can drop tools and persist changes in the container; a read-only root also makes tampering visible.",
    "Set readOnlyRootFilesystem: true and mount emptyDir volumes where writes are needed."
);
check!(
    TOKEN_WITH_API_REACH,
    "HYG-002",
    Hygiene,
    Medium,
    "Service account token mounted and API server reachable",
    ["cis:5.1.6", "mitre:T1528"],
    "The pod holds a Kubernetes API token and its egress reaches the API server: a compromise can act as the service account.",
    "Set automountServiceAccountToken: false, or restrict egress away from the API server."
);
check!(
    NO_LIMITS,
    "HYG-003",
    Hygiene,
    Low,
    "No CPU or memory limit",
    [],
    "Without limits one compromised or runaway container can starve the node, including the agents that monitor it.",
    "Set resources.limits.cpu and resources.limits.memory."
);
check!(
    MUTABLE_IMAGE,
    "HYG-004",
    Hygiene,
    Low,
    "Image not pinned by digest",
    [],
    "A tag (worst: latest, or none) can be re-pointed: what runs is not what was reviewed or scanned.",
    "Reference images by digest (image@sha256:...)."
);

check!(
    MUTABLE_NAMESPACE_LABEL,
    "BYP-015",
    Bypass,
    Medium,
    "Allow rule trusts a mutable namespace label",
    ["mitre:T1599"],
    "The peer's namespaceSelector matches labels that namespace owners can set themselves: labelling any namespace that way admits its pods (the kubernetes.io/metadata.name label cannot be forged).",
    "Select namespaces by kubernetes.io/metadata.name, or guard the label with an admission policy."
);
check!(
    API_SERVER_EGRESS,
    "POL-010",
    Coverage,
    Medium,
    "Egress rule allows the API server",
    ["mitre:T1552.007"],
    "An isolated workload's egress rules reach the Kubernetes API server: with a mounted token, a compromise can query or change the cluster.",
    "Remove the API server's address from the rule (except it from the ipBlock) unless the workload needs the API."
);
check!(
    IPBLOCK_OVERLAPS_CLUSTER,
    "POL-013",
    Coverage,
    Medium,
    "ipBlock overlaps the pod or service CIDR",
    [],
    "Whether an ipBlock matches pod or service addresses differs between data planes (Calico: yes; Cilium: no), so the rule admits different traffic on different clusters; Service addresses are rewritten before policy anyway.",
    "Use pod and namespace selectors for in-cluster peers; keep ipBlocks for outside addresses."
);

check!(
    REDUNDANT_POLICY,
    "POL-014",
    Coverage,
    Low,
    "Policy whose removal would change nothing",
    [],
    "Every connection the policy allows is allowed by others, and the workloads it selects are isolated by others too: dead weight that hides the real rules and survives refactors.",
    "Delete the policy, or fix it if it was meant to allow something the others do not."
);

pub static ALL: &[&Check] = &[
    &HOST_NETWORK,
    &HOST_PORT,
    &PRIVILEGED,
    &NET_ADMIN,
    &NET_RAW,
    &SYS_ADMIN,
    &ALL_CAPS,
    &HOST_NAMESPACES,
    &PRIVILEGE_ESCALATION,
    &HANDLER_HOST,
    &EXPOSED_CLUSTER_POLICY,
    &EXTERNAL_IPS,
    &EXTERNAL_NAME,
    &SERVICE_UNPROTECTED_BACKENDS,
    &MUTABLE_NAMESPACE_LABEL,
    &NO_DEFAULT_DENY_INGRESS,
    &NO_DEFAULT_DENY_EGRESS,
    &WORKLOAD_NOT_ISOLATED_INGRESS,
    &WORKLOAD_NOT_ISOLATED_EGRESS,
    &POLICY_SELECTS_NOTHING,
    &PEER_SELECTS_NOTHING,
    &ALLOW_ALL_SOURCES,
    &ALLOW_ALL_DESTINATIONS,
    &METADATA_EGRESS,
    &API_SERVER_EGRESS,
    &IPBLOCK_OVERLAPS_CLUSTER,
    &REDUNDANT_POLICY,
    &DNS_ANY_DESTINATION,
    &NAMED_PORT_UNRESOLVED,
    &EXPOSED_EVERYWHERE,
    &PSS_HOST_NAMESPACES,
    &PSS_PRIVILEGED,
    &PSS_CAPABILITIES_BASELINE,
    &PSS_HOST_PATH,
    &PSS_HOST_PORTS,
    &PSS_APPARMOR,
    &PSS_SELINUX,
    &PSS_PROC_MOUNT,
    &PSS_SECCOMP_BASELINE,
    &PSS_SYSCTLS,
    &PSS_HOST_PROCESS,
    &PSS_HOST_PROBES,
    &PSS_VOLUME_TYPES,
    &PSS_PRIVILEGE_ESCALATION,
    &PSS_RUN_AS_NON_ROOT,
    &PSS_RUN_AS_USER,
    &PSS_SECCOMP_RESTRICTED,
    &PSS_CAPABILITIES_RESTRICTED,
    &PSS_PROC_MOUNT_RESTRICTED,
    &PSS_NO_ENFORCE_LABEL,
    &WRITABLE_ROOT_FS,
    &TOKEN_WITH_API_REACH,
    &NO_LIMITS,
    &MUTABLE_IMAGE,
];

pub fn by_id(id: &str) -> Option<&'static Check> {
    ALL.iter().copied().find(|c| c.id == id)
}
