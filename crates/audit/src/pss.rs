//! Pod Security Standards, field by field as Pod Security Admission checks
//! them (k8s.io/pod-security-admission, policy/check_*.go, latest version).
//! Every control covers containers, initContainers and ephemeralContainers;
//! where a field exists at pod and container level, the container's value
//! wins and the pod's is the default.

use palisade_inventory::{Container, Inventory, SecurityContext, Workload};

use crate::bypass::{pod_spec_path, workload_resource};
use crate::checks::*;
use crate::finding::{Finding, Resource, Severity};

/// Which Pod Security level to audit against.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PssLevel {
    /// Baseline only.
    Baseline,
    /// Baseline and restricted, restricted at full severity.
    Restricted,
    /// Baseline, plus restricted at low severity (the default).
    #[default]
    Both,
}

/// Capabilities baseline allows adding (check_capabilities_baseline.go).
const BASELINE_CAPS: [&str; 13] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// Sysctls baseline allows (check_sysctls.go, newest version).
const SAFE_SYSCTLS: [&str; 10] = [
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];

/// SELinux types baseline allows (check_seLinuxOptions.go).
const SELINUX_TYPES: [&str; 4] = [
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

/// Volume sources restricted allows (check_restrictedVolumes.go).
const RESTRICTED_VOLUMES: [&str; 8] = [
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

const APPARMOR_ANNOTATION: &str = "container.apparmor.security.beta.kubernetes.io/";

struct Ctx<'a> {
    w: &'a Workload,
    spec: &'static str,
    level: PssLevel,
    out: &'a mut Vec<Finding>,
}

impl Ctx<'_> {
    fn push(
        &mut self,
        check: &'static Check,
        container: Option<&str>,
        field: String,
        message: String,
    ) {
        let restricted =
            check.tags.contains(&"pss:restricted") && !check.tags.contains(&"pss:baseline");
        if restricted && self.level == PssLevel::Baseline {
            return;
        }
        let mut f = check.finding(
            workload_resource(self.w, container),
            field,
            message,
            self.w.source.clone(),
        );
        if restricted && self.level == PssLevel::Both {
            f.severity = Severity::Low;
        }
        self.out.push(f);
    }
}

fn cap_name(c: &str) -> String {
    let c = c.to_ascii_uppercase();
    c.strip_prefix("CAP_").map(str::to_string).unwrap_or(c)
}

const ENFORCE_LABEL: &str = "pod-security.kubernetes.io/enforce";

/// Namespaces with workloads but no enforced Pod Security level.
pub fn check_namespaces(inventory: &Inventory, out: &mut Vec<Finding>) {
    for ns in &inventory.namespaces {
        let level = ns.labels.get(ENFORCE_LABEL).map(String::as_str);
        let has_workloads = inventory.workloads.iter().any(|w| w.namespace == ns.name);
        if has_workloads && matches!(level, None | Some("privileged")) {
            out.push(PSS_NO_ENFORCE_LABEL.finding(
                Resource {
                    kind: "Namespace".into(),
                    namespace: String::new(),
                    name: ns.name.clone(),
                    container: None,
                },
                format!("metadata.labels[{ENFORCE_LABEL}]"),
                format!(
                    "namespace {} enforces {}",
                    ns.name,
                    level.map_or("no Pod Security level".to_string(), |l| format!(
                        "the {l} level (no restriction)"
                    ))
                ),
                ns.source.clone(),
            ));
        }
    }
}

/// The level a workload's namespace enforces, to say when admission would
/// reject the pod outright.
fn enforced(inventory: &Inventory, w: &Workload) -> Option<String> {
    inventory
        .namespace(&w.namespace)?
        .labels
        .get(ENFORCE_LABEL)
        .cloned()
}

pub fn check(inventory: &Inventory, level: PssLevel, out: &mut Vec<Finding>) {
    for w in &inventory.workloads {
        let start = out.len();
        let mut ctx = Ctx {
            w,
            spec: pod_spec_path(w),
            level,
            out,
        };
        pod_controls(&mut ctx);
        let t = &w.template;
        for list in [&t.containers, &t.init_containers, &t.ephemeral_containers] {
            for (i, c) in list.iter().enumerate() {
                container_controls(&mut ctx, c, i);
            }
        }
        if let Some(enforce) = enforced(inventory, w) {
            for f in &mut out[start..] {
                let rejected = match enforce.as_str() {
                    "restricted" => true,
                    "baseline" => f.tags.contains(&"pss:baseline"),
                    _ => false,
                };
                if rejected {
                    f.message.push_str(&format!(
                        " (namespace {} enforces {enforce}: admission would reject this pod)",
                        w.namespace
                    ));
                }
            }
        }
    }
}

fn pod_controls(ctx: &mut Ctx<'_>) {
    let w = ctx.w;
    let t = &w.template;
    let spec = ctx.spec;
    let name = w.display_name();
    for (on, field) in [
        (t.host_network, "hostNetwork"),
        (t.host_pid, "hostPID"),
        (t.host_ipc, "hostIPC"),
    ] {
        if on {
            ctx.push(
                &PSS_HOST_NAMESPACES,
                None,
                format!("{spec}.{field}"),
                format!("{name} sets {field}: true"),
            );
        }
    }
    if t.security.windows_host_process == Some(true) {
        ctx.push(
            &PSS_HOST_PROCESS,
            None,
            format!("{spec}.securityContext.windowsOptions.hostProcess"),
            format!("{name} runs as a Windows HostProcess pod"),
        );
    }
    for (i, v) in t.volumes.iter().enumerate() {
        if v.source == "hostPath" {
            let path = v.host_path.clone().unwrap_or_default();
            ctx.push(
                &PSS_HOST_PATH,
                None,
                format!("{spec}.volumes[{i}].hostPath"),
                format!("{name} mounts host path {path:?} as volume {}", v.name),
            );
        }
        if !RESTRICTED_VOLUMES.contains(&v.source.as_str()) {
            ctx.push(
                &PSS_VOLUME_TYPES,
                None,
                format!("{spec}.volumes[{i}]"),
                format!("{name} uses a {} volume ({})", v.source, v.name),
            );
        }
    }
    let unsafe_sysctls: Vec<&String> = t
        .security
        .sysctls
        .iter()
        .filter(|s| !SAFE_SYSCTLS.contains(&s.as_str()))
        .collect();
    if !unsafe_sysctls.is_empty() {
        let list: Vec<&str> = unsafe_sysctls.iter().map(|s| s.as_str()).collect();
        ctx.push(
            &PSS_SYSCTLS,
            None,
            format!("{spec}.securityContext.sysctls"),
            format!("{name} sets unsafe sysctls {}", list.join(", ")),
        );
    }
    se_linux(
        ctx,
        None,
        &t.security,
        format!("{spec}.securityContext.seLinuxOptions"),
    );
    if t.security.seccomp.as_deref() == Some("Unconfined") {
        ctx.push(
            &PSS_SECCOMP_BASELINE,
            None,
            format!("{spec}.securityContext.seccompProfile.type"),
            format!("{name} sets seccomp Unconfined"),
        );
    }
    if t.security.app_armor.as_deref() == Some("Unconfined") {
        ctx.push(
            &PSS_APPARMOR,
            None,
            format!("{spec}.securityContext.appArmorProfile.type"),
            format!("{name} sets AppArmor Unconfined"),
        );
    }
    for (key, value) in t
        .annotations
        .iter()
        .filter(|(k, _)| k.starts_with(APPARMOR_ANNOTATION))
    {
        if !(value == "runtime/default" || value.starts_with("localhost/")) {
            ctx.push(
                &PSS_APPARMOR,
                None,
                format!("metadata.annotations[{key}]"),
                format!("{name} sets AppArmor profile {value:?}"),
            );
        }
    }
    if t.security.run_as_user == Some(0) {
        ctx.push(
            &PSS_RUN_AS_USER,
            None,
            format!("{spec}.securityContext.runAsUser"),
            format!("{name} runs as user 0 by default"),
        );
    }
}

fn se_linux(ctx: &mut Ctx<'_>, container: Option<&str>, sc: &SecurityContext, field: String) {
    let Some(opts) = &sc.se_linux else { return };
    let bad_type = opts
        .se_type
        .as_deref()
        .is_some_and(|t| !t.is_empty() && !SELINUX_TYPES.contains(&t));
    let custom = opts.user.as_deref().is_some_and(|u| !u.is_empty())
        || opts.role.as_deref().is_some_and(|r| !r.is_empty());
    if bad_type || custom {
        let who = container.map_or_else(|| ctx.w.display_name(), |c| format!("container {c}"));
        ctx.push(
            &PSS_SELINUX,
            container,
            field,
            format!(
                "{who} sets SELinux options outside the allowed types, or a custom user or role"
            ),
        );
    }
}

fn container_controls(ctx: &mut Ctx<'_>, c: &Container, index: usize) {
    let path = format!("{}.{}[{index}]", ctx.spec, c.kind.field());
    let sc = &c.security;
    let pod = ctx.w.template.security.clone();
    let n = c.name.as_str();
    let who = format!("container {n}");
    if sc.privileged == Some(true) {
        ctx.push(
            &PSS_PRIVILEGED,
            Some(n),
            format!("{path}.securityContext.privileged"),
            format!("{who} is privileged"),
        );
    }
    if sc.windows_host_process == Some(true) {
        ctx.push(
            &PSS_HOST_PROCESS,
            Some(n),
            format!("{path}.securityContext.windowsOptions.hostProcess"),
            format!("{who} is a Windows HostProcess container"),
        );
    }
    let beyond: Vec<String> = sc
        .capabilities_add
        .iter()
        .map(|c| cap_name(c))
        .filter(|c| !BASELINE_CAPS.contains(&c.as_str()))
        .collect();
    if !beyond.is_empty() {
        ctx.push(
            &PSS_CAPABILITIES_BASELINE,
            Some(n),
            format!("{path}.securityContext.capabilities.add"),
            format!("{who} adds {}", beyond.join(", ")),
        );
    }
    for (i, p) in c.ports.iter().enumerate() {
        if let Some(h) = p.host_port {
            ctx.push(
                &PSS_HOST_PORTS,
                Some(n),
                format!("{path}.ports[{i}].hostPort"),
                format!("{who} uses host port {h}"),
            );
        }
    }
    if sc.proc_mount.as_deref().is_some_and(|m| m != "Default") {
        ctx.push(
            &PSS_PROC_MOUNT,
            Some(n),
            format!("{path}.securityContext.procMount"),
            format!(
                "{who} sets procMount {}",
                sc.proc_mount.as_deref().unwrap_or_default()
            ),
        );
    }
    if sc.seccomp.as_deref() == Some("Unconfined") {
        ctx.push(
            &PSS_SECCOMP_BASELINE,
            Some(n),
            format!("{path}.securityContext.seccompProfile.type"),
            format!("{who} sets seccomp Unconfined"),
        );
    }
    if sc.app_armor.as_deref() == Some("Unconfined") {
        ctx.push(
            &PSS_APPARMOR,
            Some(n),
            format!("{path}.securityContext.appArmorProfile.type"),
            format!("{who} sets AppArmor Unconfined"),
        );
    }
    se_linux(
        ctx,
        Some(n),
        sc,
        format!("{path}.securityContext.seLinuxOptions"),
    );

    // Restricted.
    if sc.allow_privilege_escalation != Some(false) {
        ctx.push(
            &PSS_PRIVILEGE_ESCALATION,
            Some(n),
            format!("{path}.securityContext.allowPrivilegeEscalation"),
            format!("{who} does not set allowPrivilegeEscalation: false"),
        );
    }
    if sc.run_as_non_root.or(pod.run_as_non_root) != Some(true) {
        ctx.push(
            &PSS_RUN_AS_NON_ROOT,
            Some(n),
            format!("{path}.securityContext.runAsNonRoot"),
            format!("{who} does not set runAsNonRoot: true (nor does the pod)"),
        );
    }
    if sc.run_as_user == Some(0) {
        ctx.push(
            &PSS_RUN_AS_USER,
            Some(n),
            format!("{path}.securityContext.runAsUser"),
            format!("{who} runs as user 0"),
        );
    }
    let seccomp = sc.seccomp.as_deref().or(pod.seccomp.as_deref());
    if !matches!(seccomp, Some("RuntimeDefault" | "Localhost")) {
        ctx.push(
            &PSS_SECCOMP_RESTRICTED,
            Some(n),
            format!("{path}.securityContext.seccompProfile.type"),
            format!("{who} has no RuntimeDefault or Localhost seccomp profile (nor does the pod)"),
        );
    }
    let drops_all = sc.capabilities_drop.iter().any(|c| cap_name(c) == "ALL");
    let adds_more = sc
        .capabilities_add
        .iter()
        .any(|c| cap_name(c) != "NET_BIND_SERVICE");
    if !drops_all || adds_more {
        ctx.push(
            &PSS_CAPABILITIES_RESTRICTED,
            Some(n),
            format!("{path}.securityContext.capabilities"),
            format!("{who} must drop ALL capabilities and may add only NET_BIND_SERVICE"),
        );
    }
}
