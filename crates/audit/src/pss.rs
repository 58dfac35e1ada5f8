//! Pod Security Standards, field by field as Pod Security Admission decides
//! them (k8s.io/pod-security-admission, policy/check_*.go), for any policy
//! version from v1.0 to v1.37 (the default, "latest"). Every control covers
//! containers, initContainers and ephemeralContainers. Where a field exists
//! on the pod and on containers, PSA checks each place on its own: a bad pod
//! value fails even when every container overrides it, and only an unset
//! container value falls back to the pod's (runAsNonRoot, seccomp).

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

/// The Pod Security policy version (`pod-security.kubernetes.io/enforce-
/// version`), as its minor number: the checks changed between versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PssVersion(pub u32);

impl PssVersion {
    /// The newest version PSA defines checks for; `latest` and any newer
    /// version decide as this one.
    pub const LATEST: PssVersion = PssVersion(37);

    /// `latest`, `v1.N` or `1.N`.
    pub fn parse(text: &str) -> Option<PssVersion> {
        if text == "latest" {
            return Some(PssVersion::LATEST);
        }
        let minor: u32 = text
            .strip_prefix('v')
            .unwrap_or(text)
            .strip_prefix("1.")?
            .parse()
            .ok()?;
        Some(PssVersion(minor.min(PssVersion::LATEST.0)))
    }

    fn since(self, minor: u32) -> bool {
        self.0 >= minor
    }
}

impl Default for PssVersion {
    fn default() -> Self {
        PssVersion::LATEST
    }
}

impl std::fmt::Display for PssVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "v1.{}", self.0)
    }
}

/// Capabilities baseline allows adding (check_capabilities_baseline.go);
/// names are compared exactly (`chown` and `CAP_CHOWN` are not `CHOWN`).
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

/// Sysctls baseline allows (check_sysctls.go), with the version that first
/// allows each.
const SAFE_SYSCTLS: [(&str, u32); 14] = [
    ("kernel.shm_rmid_forced", 0),
    ("net.ipv4.ip_local_port_range", 0),
    ("net.ipv4.ip_unprivileged_port_start", 0),
    ("net.ipv4.tcp_syncookies", 0),
    ("net.ipv4.ping_group_range", 0),
    ("net.ipv4.ip_local_reserved_ports", 27),
    ("net.ipv4.tcp_keepalive_time", 29),
    ("net.ipv4.tcp_fin_timeout", 29),
    ("net.ipv4.tcp_keepalive_intvl", 29),
    ("net.ipv4.tcp_keepalive_probes", 29),
    ("net.ipv4.tcp_rmem", 32),
    ("net.ipv4.tcp_wmem", 32),
    ("net.ipv4.tcp_slow_start_after_idle", 37),
    ("net.ipv4.tcp_notsent_lowat", 37),
];

/// SELinux types baseline allows (check_seLinuxOptions.go), with the
/// version that first allows each.
const SELINUX_TYPES: [(&str, u32); 4] = [
    ("container_t", 0),
    ("container_init_t", 0),
    ("container_kvm_t", 0),
    ("container_engine_t", 31),
];

/// Volume sources restricted allows (check_restrictedVolumes.go; `image`
/// was added to every version).
const RESTRICTED_VOLUMES: [&str; 9] = [
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "image",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

const APPARMOR_ANNOTATION: &str = "container.apparmor.security.beta.kubernetes.io/";
const SECCOMP_POD_ANNOTATION: &str = "seccomp.security.alpha.kubernetes.io/pod";
const SECCOMP_CONTAINER_ANNOTATION: &str = "container.seccomp.security.alpha.kubernetes.io/";

struct Ctx<'a> {
    w: &'a Workload,
    spec: &'static str,
    level: PssLevel,
    version: PssVersion,
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

    /// `spec.hostUsers: false` (a user namespace) relaxes procMount (1.35,
    /// baseline), runAsNonRoot and runAsUser (1.35, restricted).
    fn user_namespace(&self) -> bool {
        self.version.since(35) && self.w.template.host_users == Some(false)
    }

    /// Windows pods are exempt from the Linux-only restricted controls
    /// (allowPrivilegeEscalation, capabilities, seccomp) from 1.25 on.
    fn windows(&self) -> bool {
        self.version.since(25) && self.w.template.os_name.as_deref() == Some("windows")
    }

    fn name(&self) -> String {
        self.w.display_name()
    }
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
/// reject the pod outright. PSA reads a value it does not know as
/// `restricted`.
fn enforced(inventory: &Inventory, w: &Workload) -> Option<&'static str> {
    let value = inventory
        .namespace(&w.namespace)?
        .labels
        .get(ENFORCE_LABEL)?;
    Some(match value.as_str() {
        "privileged" => "privileged",
        "baseline" => "baseline",
        _ => "restricted",
    })
}

pub fn check(inventory: &Inventory, level: PssLevel, version: PssVersion, out: &mut Vec<Finding>) {
    for w in &inventory.workloads {
        let start = out.len();
        let mut ctx = Ctx {
            w,
            spec: pod_spec_path(w),
            level,
            version,
            out,
        };
        pod_controls(&mut ctx);
        let t = &w.template;
        for list in [&t.containers, &t.init_containers, &t.ephemeral_containers] {
            for (i, c) in list.iter().enumerate() {
                let path = format!("{}.{}[{i}]", ctx.spec, c.kind.field());
                container_baseline(&mut ctx, c, &path);
                container_restricted(&mut ctx, c, &path);
            }
        }
        if let Some(enforce) = enforced(inventory, w) {
            for f in &mut out[start..] {
                let rejected = match enforce {
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
    host_namespaces(ctx);
    volumes(ctx);
    sysctls(ctx);
    let (spec, name) = (ctx.spec, ctx.name());
    let security = &ctx.w.template.security;
    if security.windows_host_process == Some(true) {
        ctx.push(
            &PSS_HOST_PROCESS,
            None,
            format!("{spec}.securityContext.windowsOptions.hostProcess"),
            format!("{name} runs as a Windows HostProcess pod"),
        );
    }
    se_linux(
        ctx,
        None,
        security,
        format!("{spec}.securityContext.seLinuxOptions"),
    );
    profiles(ctx, None, security, &format!("{spec}.securityContext"));
    app_armor_annotations(ctx);
    if ctx.version.since(19) {
        pod_seccomp_restricted(ctx);
    } else {
        seccomp_annotations(ctx);
    }
    pod_run_as(ctx);
}

fn host_namespaces(ctx: &mut Ctx<'_>) {
    let t = &ctx.w.template;
    let (spec, name) = (ctx.spec, ctx.name());
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
}

fn volumes(ctx: &mut Ctx<'_>) {
    let (spec, name) = (ctx.spec, ctx.name());
    for (i, v) in ctx.w.template.volumes.iter().enumerate() {
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
}

fn sysctls(ctx: &mut Ctx<'_>) {
    let version = ctx.version;
    let unsafe_sysctls: Vec<&str> = ctx
        .w
        .template
        .security
        .sysctls
        .iter()
        .map(String::as_str)
        .filter(|s| {
            !SAFE_SYSCTLS
                .iter()
                .any(|(safe, since)| safe == s && version.since(*since))
        })
        .collect();
    if !unsafe_sysctls.is_empty() {
        let message = format!(
            "{} sets sysctls outside the safe set of {version}: {}",
            ctx.name(),
            unsafe_sysctls.join(", ")
        );
        let field = format!("{}.securityContext.sysctls", ctx.spec);
        ctx.push(&PSS_SYSCTLS, None, field, message);
    }
}

fn se_linux(ctx: &mut Ctx<'_>, container: Option<&str>, sc: &SecurityContext, field: String) {
    let Some(opts) = &sc.se_linux else { return };
    let version = ctx.version;
    let bad_type = opts.se_type.as_deref().is_some_and(|t| {
        !t.is_empty()
            && !SELINUX_TYPES
                .iter()
                .any(|(allowed, since)| *allowed == t && version.since(*since))
    });
    let custom = opts.user.as_deref().is_some_and(|u| !u.is_empty())
        || opts.role.as_deref().is_some_and(|r| !r.is_empty());
    if bad_type || custom {
        let who = container.map_or_else(|| ctx.name(), |c| format!("container {c}"));
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

/// The seccomp (from 1.19) and AppArmor profile fields of the pod or a
/// container: when set, only RuntimeDefault and Localhost are allowed.
fn profiles(ctx: &mut Ctx<'_>, container: Option<&str>, sc: &SecurityContext, path: &str) {
    let who = container.map_or_else(|| ctx.name(), |c| format!("container {c}"));
    let confined = |t: &str| matches!(t, "RuntimeDefault" | "Localhost");
    if ctx.version.since(19)
        && let Some(t) = sc.seccomp.as_deref().filter(|t| !confined(t))
    {
        ctx.push(
            &PSS_SECCOMP_BASELINE,
            container,
            format!("{path}.seccompProfile.type"),
            format!("{who} sets seccomp profile {t}"),
        );
    }
    if let Some(t) = sc.app_armor.as_deref().filter(|t| !confined(t)) {
        ctx.push(
            &PSS_APPARMOR,
            container,
            format!("{path}.appArmorProfile.type"),
            format!("{who} sets AppArmor profile {t}"),
        );
    }
}

/// Any `container.apparmor.security.beta.kubernetes.io/*` annotation must be
/// empty, `runtime/default` or `localhost/...`.
fn app_armor_annotations(ctx: &mut Ctx<'_>) {
    let name = ctx.name();
    for (key, value) in ctx
        .w
        .template
        .annotations
        .iter()
        .filter(|(k, _)| k.starts_with(APPARMOR_ANNOTATION))
    {
        if !(value.is_empty() || value == "runtime/default" || value.starts_with("localhost/")) {
            ctx.push(
                &PSS_APPARMOR,
                None,
                format!("metadata.annotations[{key}]"),
                format!("{name} sets AppArmor profile {value:?}"),
            );
        }
    }
}

/// Before 1.19 baseline read seccomp from annotations only: the pod's and
/// those of containers that exist.
fn seccomp_annotations(ctx: &mut Ctx<'_>) {
    let t = &ctx.w.template;
    let name = ctx.name();
    let containers: Vec<&str> = [&t.containers, &t.init_containers, &t.ephemeral_containers]
        .into_iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    for (key, value) in &t.annotations {
        let applies = key == SECCOMP_POD_ANNOTATION
            || key
                .strip_prefix(SECCOMP_CONTAINER_ANNOTATION)
                .is_some_and(|c| containers.contains(&c));
        let allowed = matches!(value.as_str(), "runtime/default" | "docker/default")
            || value.starts_with("localhost/");
        if applies && !allowed {
            ctx.push(
                &PSS_SECCOMP_BASELINE,
                None,
                format!("metadata.annotations[{key}]"),
                format!("{name} sets seccomp profile {value:?}"),
            );
        }
    }
}

/// Restricted seccomp (1.19) at pod level: a pod profile other than
/// RuntimeDefault or Localhost fails even when containers set their own.
fn pod_seccomp_restricted(ctx: &mut Ctx<'_>) {
    let pod = ctx.w.template.security.seccomp.as_deref();
    if ctx.windows() || pod.is_none_or(|t| matches!(t, "RuntimeDefault" | "Localhost")) {
        return;
    }
    let (spec, name) = (ctx.spec, ctx.name());
    ctx.push(
        &PSS_SECCOMP_RESTRICTED,
        None,
        format!("{spec}.securityContext.seccompProfile.type"),
        format!("{name} sets a pod seccomp profile other than RuntimeDefault or Localhost"),
    );
}

/// Pod-level runAsNonRoot: false and runAsUser: 0 fail restricted whatever
/// the containers say.
fn pod_run_as(ctx: &mut Ctx<'_>) {
    if ctx.user_namespace() {
        return;
    }
    let (spec, name) = (ctx.spec, ctx.name());
    let security = &ctx.w.template.security;
    let (non_root, user) = (security.run_as_non_root, security.run_as_user);
    if non_root == Some(false) {
        ctx.push(
            &PSS_RUN_AS_NON_ROOT,
            None,
            format!("{spec}.securityContext.runAsNonRoot"),
            format!("{name} sets runAsNonRoot: false"),
        );
    }
    if ctx.version.since(23) && user == Some(0) {
        ctx.push(
            &PSS_RUN_AS_USER,
            None,
            format!("{spec}.securityContext.runAsUser"),
            format!("{name} runs as user 0 by default"),
        );
    }
}

fn container_baseline(ctx: &mut Ctx<'_>, c: &Container, path: &str) {
    let sc = &c.security;
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
    let beyond: Vec<&str> = sc
        .capabilities_add
        .iter()
        .map(String::as_str)
        .filter(|c| !BASELINE_CAPS.contains(c))
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
    proc_mount(ctx, c, path);
    if ctx.version.since(34) {
        for (field, host) in &c.handler_hosts {
            ctx.push(
                &PSS_HOST_PROBES,
                Some(n),
                format!("{path}.{field}.host"),
                format!("{who}'s {field} sends to host {host:?}"),
            );
        }
    }
    profiles(ctx, Some(n), sc, &format!("{path}.securityContext"));
    se_linux(
        ctx,
        Some(n),
        sc,
        format!("{path}.securityContext.seLinuxOptions"),
    );
}

/// procMount other than Default fails baseline unless the pod has its own
/// user namespace (1.35); restricted keeps the strict rule (PSS-107).
fn proc_mount(ctx: &mut Ctx<'_>, c: &Container, path: &str) {
    let Some(mount) = c.security.proc_mount.as_deref().filter(|m| *m != "Default") else {
        return;
    };
    let check = if ctx.user_namespace() {
        &PSS_PROC_MOUNT_RESTRICTED
    } else {
        &PSS_PROC_MOUNT
    };
    ctx.push(
        check,
        Some(c.name.as_str()),
        format!("{path}.securityContext.procMount"),
        format!("container {} sets procMount {mount}", c.name),
    );
}

fn container_restricted(ctx: &mut Ctx<'_>, c: &Container, path: &str) {
    let sc = &c.security;
    let pod = &ctx.w.template.security;
    let n = c.name.as_str();
    let who = format!("container {n}");
    let linux = !ctx.windows();
    if linux && ctx.version.since(8) && sc.allow_privilege_escalation != Some(false) {
        ctx.push(
            &PSS_PRIVILEGE_ESCALATION,
            Some(n),
            format!("{path}.securityContext.allowPrivilegeEscalation"),
            format!("{who} does not set allowPrivilegeEscalation: false"),
        );
    }
    let user_namespace = ctx.user_namespace();
    // A container's false fails, and so does an unset one under a pod that
    // does not say true.
    let fails = match sc.run_as_non_root {
        Some(value) => !value,
        None => pod.run_as_non_root != Some(true),
    };
    if !user_namespace && fails {
        ctx.push(
            &PSS_RUN_AS_NON_ROOT,
            Some(n),
            format!("{path}.securityContext.runAsNonRoot"),
            format!("{who} does not set runAsNonRoot: true (nor does the pod)"),
        );
    }
    if !user_namespace && ctx.version.since(23) && sc.run_as_user == Some(0) {
        ctx.push(
            &PSS_RUN_AS_USER,
            Some(n),
            format!("{path}.securityContext.runAsUser"),
            format!("{who} runs as user 0"),
        );
    }
    if linux && ctx.version.since(19) {
        container_seccomp_restricted(ctx, c, path);
    }
    if linux && ctx.version.since(22) {
        container_capabilities_restricted(ctx, c, path);
    }
}

/// A container must have RuntimeDefault or Localhost itself, or leave it
/// unset under a pod that has one.
fn container_seccomp_restricted(ctx: &mut Ctx<'_>, c: &Container, path: &str) {
    let confined = |t: &str| matches!(t, "RuntimeDefault" | "Localhost");
    let ok = match c.security.seccomp.as_deref() {
        Some(t) => confined(t),
        None => ctx
            .w
            .template
            .security
            .seccomp
            .as_deref()
            .is_some_and(confined),
    };
    if !ok {
        ctx.push(
            &PSS_SECCOMP_RESTRICTED,
            Some(c.name.as_str()),
            format!("{path}.securityContext.seccompProfile.type"),
            format!(
                "container {} has no RuntimeDefault or Localhost seccomp profile (nor does the pod)",
                c.name
            ),
        );
    }
}

/// `drop` must contain `ALL` and `add` only `NET_BIND_SERVICE`, exactly.
fn container_capabilities_restricted(ctx: &mut Ctx<'_>, c: &Container, path: &str) {
    let sc = &c.security;
    let drops_all = sc.capabilities_drop.iter().any(|c| c == "ALL");
    let adds_more = sc.capabilities_add.iter().any(|c| c != "NET_BIND_SERVICE");
    if !drops_all || adds_more {
        ctx.push(
            &PSS_CAPABILITIES_RESTRICTED,
            Some(c.name.as_str()),
            format!("{path}.securityContext.capabilities"),
            format!(
                "container {} must drop ALL capabilities and may add only NET_BIND_SERVICE",
                c.name
            ),
        );
    }
}
