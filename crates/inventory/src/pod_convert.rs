//! Pod templates (from Pods and controllers' templates) → the model:
//! containers of every kind with their ports and security contexts, and the
//! pod-level settings posture checks need.

use crate::diagnostics::{Diagnostic, Diagnostics};
use crate::manifest;
use crate::model::{
    Container, ContainerKind, ContainerPort, PodTemplate, SeLinuxOptions, SecurityContext, Source,
    Volume,
};
use crate::policy_convert::{parse_protocol, port_number};

pub fn pod_template(
    t: manifest::PodTemplateSpec,
    source: &Source,
    diags: &mut Diagnostics,
) -> PodTemplate {
    let spec = t.spec;
    let mut containers = |list: Option<Vec<manifest::Container>>, kind| -> Vec<Container> {
        list.unwrap_or_default()
            .into_iter()
            .map(|c| container(c, kind, source, diags))
            .collect()
    };
    let regular = containers(spec.containers, ContainerKind::Regular);
    let init = containers(spec.init_containers, ContainerKind::Init);
    let ephemeral = containers(spec.ephemeral_containers, ContainerKind::Ephemeral);
    PodTemplate {
        labels: t.metadata.labels.unwrap_or_default(),
        annotations: t.metadata.annotations.unwrap_or_default(),
        host_network: spec.host_network.unwrap_or(false),
        host_pid: spec.host_pid.unwrap_or(false),
        host_ipc: spec.host_ipc.unwrap_or(false),
        containers: regular,
        init_containers: init,
        ephemeral_containers: ephemeral,
        security: spec
            .security_context
            .map(security_context)
            .unwrap_or_default(),
        volumes: spec
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(volume)
            .collect(),
        automount_service_account_token: spec.automount_service_account_token,
        service_account: spec.service_account_name,
        os_name: spec.os.and_then(|o| o.name),
        host_users: spec.host_users,
    }
}

fn container(
    c: manifest::Container,
    kind: ContainerKind,
    source: &Source,
    diags: &mut Diagnostics,
) -> Container {
    let hosts = handler_hosts(&c);
    let mut ports = Vec::new();
    for p in c.ports.unwrap_or_default() {
        let port = port_number(p.container_port);
        let protocol = parse_protocol(p.protocol.as_deref());
        let host_port = p.host_port.filter(|h| *h != 0).map(port_number).transpose();
        match (port, protocol, host_port) {
            (Ok(port), Ok(protocol), Ok(host_port)) => ports.push(ContainerPort {
                name: p.name,
                port,
                protocol,
                host_port,
            }),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => diags.push(Diagnostic::warning(
                source.clone(),
                format!("container {:?}: port ignored: {e}", c.name),
            )),
        }
    }
    let limits = c.resources.and_then(|r| r.limits).unwrap_or_default();
    Container {
        handler_hosts: hosts,
        name: c.name,
        image: c.image.unwrap_or_default(),
        kind,
        ports,
        security: c.security_context.map(security_context).unwrap_or_default(),
        cpu_limit: limits.contains_key("cpu"),
        memory_limit: limits.contains_key("memory"),
    }
}

/// Probes and lifecycle hooks that send their requests to `host` instead of
/// the pod itself.
fn handler_hosts(c: &manifest::Container) -> Vec<(String, String)> {
    let handlers = [
        ("livenessProbe", c.liveness_probe.as_ref()),
        ("readinessProbe", c.readiness_probe.as_ref()),
        ("startupProbe", c.startup_probe.as_ref()),
        (
            "lifecycle.postStart",
            c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()),
        ),
        (
            "lifecycle.preStop",
            c.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()),
        ),
    ];
    let mut out = Vec::new();
    for (field, handler) in handlers {
        let Some(h) = handler else { continue };
        for (kind, target) in [("httpGet", &h.http_get), ("tcpSocket", &h.tcp_socket)] {
            if let Some(host) = target
                .as_ref()
                .and_then(|t| t.host.clone())
                .filter(|h| !h.is_empty())
            {
                out.push((format!("{field}.{kind}.host"), host));
            }
        }
    }
    out
}

fn security_context(s: manifest::SecurityContext) -> SecurityContext {
    let caps = s.capabilities.unwrap_or_default();
    SecurityContext {
        privileged: s.privileged,
        allow_privilege_escalation: s.allow_privilege_escalation,
        capabilities_add: caps.add.unwrap_or_default(),
        capabilities_drop: caps.drop.unwrap_or_default(),
        run_as_non_root: s.run_as_non_root,
        run_as_user: s.run_as_user,
        read_only_root_filesystem: s.read_only_root_filesystem,
        seccomp: s.seccomp_profile.and_then(|p| p.profile_type),
        app_armor: s.app_armor_profile.and_then(|p| p.profile_type),
        se_linux: s.se_linux_options.map(|o| SeLinuxOptions {
            se_type: o.se_type,
            user: o.user,
            role: o.role,
        }),
        proc_mount: s.proc_mount,
        windows_host_process: s.windows_options.and_then(|w| w.host_process),
        sysctls: s
            .sysctls
            .unwrap_or_default()
            .into_iter()
            .map(|s| s.name)
            .collect(),
    }
}

fn volume(v: manifest::Volume) -> Volume {
    // A volume without a source is an emptyDir: the API server defaults it
    // so (SetDefaults_Volume) before admission sees it. A null source is
    // no source.
    let source = if v.host_path.is_some() {
        "hostPath".to_string()
    } else {
        v.sources
            .iter()
            .find(|(_, value)| !value.is_null())
            .map(|(key, _)| key.clone())
            .unwrap_or_else(|| "emptyDir".to_string())
    };
    Volume {
        name: v.name,
        source,
        host_path: v.host_path.and_then(|h| h.path),
    }
}
