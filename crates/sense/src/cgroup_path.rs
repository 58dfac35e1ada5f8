//! What a cgroup path says about its processes: the kubelet names pod
//! cgroups after the pod's UID and the container runtime names container
//! cgroups after the container's ID, under either kubelet cgroup driver
//! (kubernetes pkg/kubelet/cm/cgroup_manager_linux.go):
//!
//! - systemd: `/kubepods.slice/kubepods-burstable.slice/
//!   kubepods-burstable-pod<uid, - as _>.slice/cri-containerd-<id>.scope`
//!   (`crio-<id>.scope` for CRI-O, `docker-<id>.scope` for Docker);
//!   Guaranteed pods sit directly at `kubepods-pod<uid>.slice`;
//! - cgroupfs: `/kubepods/<qos>/pod<uid>/<id>`, Guaranteed pods at
//!   `/kubepods/pod<uid>/<id>` (CRI-O writes `crio-<id>`).
//!
//! The kubepods tree may sit below another prefix (kind and other nested
//! setups: `/kubelet.slice/kubelet-kubepods.slice/...`), so it is found
//! anywhere in the path.

/// The pod's QoS class, from the cgroup it sits in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Qos {
    Guaranteed,
    Burstable,
    BestEffort,
}

/// The container runtime, from the container cgroup's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    Containerd,
    CriO,
    Docker,
    /// A bare ID (containerd under the cgroupfs driver).
    Unnamed,
}

/// Who owns the processes of a cgroup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    /// A container of a pod.
    Container {
        pod_uid: String,
        container_id: String,
        runtime: Runtime,
        qos: Qos,
    },
    /// The pod's own cgroup, or a runtime helper inside it (CRI-O's conmon):
    /// the pod is known, the container is not.
    Pod { pod_uid: String, qos: Qos },
    /// Outside the kubepods tree: the node's own processes (kubelet,
    /// container runtimes, system services, logins), with the path.
    Host(String),
    /// Inside the kubepods tree but not named as the kubelet names pods:
    /// counted as an attribution miss by the caller.
    Unrecognised(String),
}

/// Classifies a cgroup path (relative to the cgroup2 root, or absolute
/// within it: `/kubepods.slice/...`).
pub fn classify(path: &str) -> Owner {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let Some(root) = parts.iter().position(|p| is_kubepods(p)) else {
        return Owner::Host(path.to_string());
    };
    let mut qos = Qos::Guaranteed;
    for (i, part) in parts.iter().enumerate().skip(root + 1) {
        if let Some(q) = qos_of(part) {
            qos = q;
            continue;
        }
        let Some(pod_uid) = pod_uid_of(part) else {
            return Owner::Unrecognised(path.to_string());
        };
        return match parts.get(i + 1).map(|c| container_of(c)) {
            Some(Some((container_id, runtime))) => Owner::Container {
                pod_uid,
                container_id,
                runtime,
                qos,
            },
            // The pod cgroup itself, or a helper cgroup in it.
            Some(None) | None => Owner::Pod { pod_uid, qos },
        };
    }
    // The kubepods or QoS cgroup itself: no pod.
    Owner::Unrecognised(path.to_string())
}

/// `kubepods.slice`, `kubepods`, or a nested `kubelet-kubepods.slice`.
fn is_kubepods(part: &str) -> bool {
    part == "kubepods" || part == "kubepods.slice" || part.ends_with("-kubepods.slice")
}

fn qos_of(part: &str) -> Option<Qos> {
    let name = part
        .strip_suffix(".slice")
        .map(|n| n.rsplit('-').next().unwrap_or(n))
        .unwrap_or(part);
    match name {
        "burstable" => Some(Qos::Burstable),
        "besteffort" => Some(Qos::BestEffort),
        _ => None,
    }
}

/// `pod<uid>` (cgroupfs) or `kubepods[-qos]-pod<uid with _>.slice`
/// (systemd, which escapes `-` as `_`).
fn pod_uid_of(part: &str) -> Option<String> {
    let uid = match part.strip_suffix(".slice") {
        Some(unit) => {
            let (_, uid) = unit.rsplit_once("-pod")?;
            uid.replace('_', "-")
        }
        None => part.strip_prefix("pod")?.to_string(),
    };
    is_uid(&uid).then_some(uid)
}

/// A UID as the API server writes it: 8-4-4-4-12 hexadecimal digits.
fn is_uid(uid: &str) -> bool {
    let groups: Vec<&str> = uid.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A container cgroup: `cri-containerd-<id>.scope`, `crio-<id>.scope`,
/// `docker-<id>.scope`, `crio-<id>`, or a bare `<id>`. CRI-O's
/// `crio-conmon-<id>` is its monitor, not the container.
fn container_of(part: &str) -> Option<(String, Runtime)> {
    let name = part.strip_suffix(".scope").unwrap_or(part);
    if name.starts_with("crio-conmon-") {
        return None;
    }
    let (id, runtime) = if let Some(id) = name.strip_prefix("cri-containerd-") {
        (id, Runtime::Containerd)
    } else if let Some(id) = name.strip_prefix("crio-") {
        (id, Runtime::CriO)
    } else if let Some(id) = name.strip_prefix("docker-") {
        (id, Runtime::Docker)
    } else {
        (name, Runtime::Unnamed)
    };
    // Runtimes use 64 hex digits; accept shorter abbreviations (12+).
    let valid = id.len() >= 12 && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit());
    valid.then(|| (id.to_string(), runtime))
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "4e3f8a1c-2b7d-4c9e-8f10-123456789abc";
    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn container(qos: Qos, runtime: Runtime) -> Owner {
        Owner::Container {
            pod_uid: UID.into(),
            container_id: ID.into(),
            runtime,
            qos,
        }
    }

    #[test]
    fn systemd_driver_every_qos_and_runtime() {
        let escaped = UID.replace('-', "_");
        let cases = [
            (
                format!(
                    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{escaped}.slice/cri-containerd-{ID}.scope"
                ),
                container(Qos::Burstable, Runtime::Containerd),
            ),
            (
                format!(
                    "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{escaped}.slice/crio-{ID}.scope"
                ),
                container(Qos::BestEffort, Runtime::CriO),
            ),
            (
                format!("/kubepods.slice/kubepods-pod{escaped}.slice/docker-{ID}.scope"),
                container(Qos::Guaranteed, Runtime::Docker),
            ),
        ];
        for (path, owner) in cases {
            assert_eq!(classify(&path), owner, "{path}");
        }
    }

    #[test]
    fn cgroupfs_driver_every_qos() {
        assert_eq!(
            classify(&format!("/kubepods/burstable/pod{UID}/{ID}")),
            container(Qos::Burstable, Runtime::Unnamed)
        );
        assert_eq!(
            classify(&format!("/kubepods/besteffort/pod{UID}/crio-{ID}")),
            container(Qos::BestEffort, Runtime::CriO)
        );
        assert_eq!(
            classify(&format!("kubepods/pod{UID}/{ID}")),
            container(Qos::Guaranteed, Runtime::Unnamed)
        );
    }

    #[test]
    fn pod_level_cgroups_and_runtime_helpers() {
        let pod = Owner::Pod {
            pod_uid: UID.into(),
            qos: Qos::Burstable,
        };
        assert_eq!(classify(&format!("/kubepods/burstable/pod{UID}")), pod);
        let escaped = UID.replace('-', "_");
        let conmon = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{escaped}.slice/crio-conmon-{ID}.scope"
        );
        assert_eq!(classify(&conmon), pod);
    }

    #[test]
    fn nested_kubepods_tree_is_found() {
        let escaped = UID.replace('-', "_");
        let kind = format!(
            "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{escaped}.slice/cri-containerd-{ID}.scope"
        );
        assert_eq!(
            classify(&kind),
            container(Qos::BestEffort, Runtime::Containerd)
        );
    }

    #[test]
    fn host_processes_and_unrecognised_names() {
        for host in [
            "/",
            "/system.slice/containerd.service",
            "/user.slice/user-0.slice",
            "/process_api/6db9",
        ] {
            assert_eq!(classify(host), Owner::Host(host.to_string()));
        }
        for odd in [
            "/kubepods.slice",
            "/kubepods/burstable",
            "/kubepods/burstable/podnot-a-uid/abc",
            "/kubepods/burstable/pod4e3f8a1c-2b7d-4c9e-8f10-12345678/x",
        ] {
            assert!(matches!(classify(odd), Owner::Unrecognised(_)), "{odd}");
        }
        // A pod cgroup with a child that is no container ID is the pod.
        assert!(matches!(
            classify(&format!("/kubepods/pod{UID}/not-hex")),
            Owner::Pod { .. }
        ));
    }
}
