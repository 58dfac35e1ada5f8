//! Pod Security Standards as Pod Security Admission decides them, one test
//! per rule learnt from PSA's own fixtures (k8s.io/pod-security-admission
//! test/testdata), each with the version it depends on.

use palisade_audit::{AuditOptions, PssLevel, PssVersion, audit};
use palisade_inventory::Inventory;
use palisade_policy::{Engine, Settings};

/// PSS ids raised for a Pod with this `spec` (and `metadata` extras).
fn ids_with(meta: &str, spec: &str, level: PssLevel, version: u32) -> Vec<String> {
    let text = format!("kind: Pod\nmetadata: {{name: p, namespace: app{meta}}}\nspec:\n{spec}");
    let (inv, diags) = Inventory::from_texts([("t.yaml", text.as_str())]);
    assert_eq!(diags.problems().count(), 0, "{:?}", diags.items());
    let engine = Engine::new(&inv, &Settings::default());
    let options = AuditOptions {
        pss: level,
        pss_version: PssVersion(version),
        ..Default::default()
    };
    let mut ids: Vec<String> = audit(&inv, &engine, &options)
        .active()
        .map(|f| f.check.to_string())
        .filter(|c| c.starts_with("PSS-0") || c.starts_with("PSS-1"))
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

fn baseline(spec: &str, version: u32) -> Vec<String> {
    ids_with("", spec, PssLevel::Baseline, version)
}

fn restricted(spec: &str, version: u32) -> Vec<String> {
    ids_with("", spec, PssLevel::Restricted, version)
}

/// A pod that passes restricted, with `container` added to its container's
/// securityContext (replacing the capabilities when it sets them) and `pod`
/// to its spec.
fn pod(pod: &str, container: &str) -> String {
    let caps = if container.contains("capabilities:") {
        ""
    } else {
        ", capabilities: {drop: [ALL]}"
    };
    format!(
        "  securityContext: {{runAsNonRoot: true, seccompProfile: {{type: RuntimeDefault}}}}\n{pod}  containers:\n  - name: c\n    securityContext: {{allowPrivilegeEscalation: false{caps}{container}}}\n"
    )
}

const LATEST: u32 = 37;

#[test]
fn the_base_pod_passes_restricted_in_every_version() {
    for v in [0, 8, 19, 22, 23, 25, 31, 34, 35, LATEST] {
        assert!(
            restricted(&pod("", ""), v).is_empty(),
            "v1.{v}: {:?}",
            restricted(&pod("", ""), v)
        );
    }
}

#[test]
fn capability_names_are_compared_exactly() {
    for name in ["chown", "CAP_CHOWN", "Chown"] {
        let spec = pod(
            "",
            &format!(", capabilities: {{drop: [ALL], add: [{name}]}}"),
        );
        assert!(
            baseline(&spec, LATEST).contains(&"PSS-003".into()),
            "{name}"
        );
    }
    assert!(
        baseline(
            &pod("", ", capabilities: {drop: [ALL], add: [CHOWN]}"),
            LATEST
        )
        .is_empty()
    );
    // Restricted: `all` does not drop ALL, `net_bind_service` is not allowed.
    assert!(
        restricted(&pod("", ", capabilities: {drop: [all]}"), LATEST).contains(&"PSS-106".into())
    );
    let bind = pod("", ", capabilities: {drop: [ALL], add: [net_bind_service]}");
    assert!(restricted(&bind, LATEST).contains(&"PSS-106".into()));
}

#[test]
fn proc_mount_unmasked_is_baseline_with_host_users_false_from_1_35() {
    let unmasked = pod("  hostUsers: false\n", ", procMount: Unmasked");
    assert!(
        baseline(&unmasked, LATEST).is_empty(),
        "{:?}",
        baseline(&unmasked, LATEST)
    );
    assert!(baseline(&unmasked, 34).contains(&"PSS-008".into()));
    // Restricted keeps the strict rule (procMount_restricted).
    assert_eq!(restricted(&unmasked, LATEST), ["PSS-107"]);
    let host_users = pod("  hostUsers: true\n", ", procMount: Unmasked");
    assert!(baseline(&host_users, LATEST).contains(&"PSS-008".into()));
}

#[test]
fn safe_sysctls_follow_the_version() {
    let with = |name: &str| {
        format!(
            "  securityContext: {{runAsNonRoot: true, seccompProfile: {{type: RuntimeDefault}}, sysctls: [{{name: {name}, value: '1'}}]}}\n  containers:\n  - name: c\n    securityContext: {{allowPrivilegeEscalation: false, capabilities: {{drop: [ALL]}}}}\n"
        )
    };
    for (name, since) in [
        ("net.ipv4.ip_local_reserved_ports", 27),
        ("net.ipv4.tcp_keepalive_time", 29),
        ("net.ipv4.tcp_rmem", 32),
        ("net.ipv4.tcp_wmem", 32),
        ("net.ipv4.tcp_slow_start_after_idle", 37),
        ("net.ipv4.tcp_notsent_lowat", 37),
    ] {
        assert!(
            baseline(&with(name), since).is_empty(),
            "{name} at v1.{since}"
        );
        assert_eq!(
            baseline(&with(name), since - 1),
            ["PSS-010"],
            "{name} before v1.{since}"
        );
    }
    assert_eq!(baseline(&with("net.ipv4.ip_forward"), LATEST), ["PSS-010"]);
}

#[test]
fn a_volume_without_a_source_is_an_empty_dir() {
    for volume in [
        "{name: v}",
        "{name: v, hostPath: null}",
        "{name: v, configMap: null}",
    ] {
        let spec = pod(&format!("  volumes: [{volume}]\n"), "");
        assert!(
            restricted(&spec, LATEST).is_empty(),
            "{volume}: {:?}",
            restricted(&spec, LATEST)
        );
    }
}

#[test]
fn image_volumes_are_allowed_and_unknown_ones_are_not() {
    let image = pod("  volumes: [{name: v, image: {reference: 'x:1'}}]\n", "");
    assert!(restricted(&image, LATEST).is_empty());
    let nfs = pod("  volumes: [{name: v, nfs: {server: s, path: /}}]\n", "");
    assert_eq!(restricted(&nfs, LATEST), ["PSS-101"]);
}

#[test]
fn windows_pods_are_exempt_from_linux_only_restricted_controls_from_1_25() {
    let windows = "  os: {name: windows}\n  securityContext: {runAsNonRoot: true}\n  containers:\n  - name: c\n";
    assert!(
        restricted(windows, 25).is_empty(),
        "{:?}",
        restricted(windows, 25)
    );
    let before = restricted(windows, 24);
    for id in ["PSS-102", "PSS-105", "PSS-106"] {
        assert!(
            before.contains(&id.to_string()),
            "{id} at v1.24: {before:?}"
        );
    }
    // runAsNonRoot is not Linux-only.
    let root = "  os: {name: windows}\n  containers:\n  - name: c\n";
    assert_eq!(restricted(root, LATEST), ["PSS-103"]);
}

#[test]
fn pod_run_as_non_root_false_fails_even_if_every_container_says_true() {
    let spec = "  securityContext: {runAsNonRoot: false, seccompProfile: {type: RuntimeDefault}}\n  containers:\n  - name: c\n    securityContext: {runAsNonRoot: true, allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}\n";
    assert_eq!(restricted(spec, LATEST), ["PSS-103"]);
    // The pod's runAsUser 0 fails even when the container sets another.
    let user = "  securityContext: {runAsNonRoot: true, runAsUser: 0, seccompProfile: {type: RuntimeDefault}}\n  containers:\n  - name: c\n    securityContext: {runAsUser: 1000, allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}\n";
    assert_eq!(restricted(user, LATEST), ["PSS-104"]);
    // ... from v1.23, when runAsUser joined restricted.
    assert!(restricted(user, 22).is_empty());
}

#[test]
fn host_users_false_exempts_run_as_non_root_and_run_as_user_from_1_35() {
    let spec = "  hostUsers: false\n  securityContext: {runAsUser: 0, seccompProfile: {type: RuntimeDefault}}\n  containers:\n  - name: c\n    securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}\n";
    assert!(
        restricted(spec, 35).is_empty(),
        "{:?}",
        restricted(spec, 35)
    );
    assert_eq!(restricted(spec, 34), ["PSS-103", "PSS-104"]);
}

#[test]
fn pod_seccomp_other_than_runtime_default_fails_even_if_containers_override() {
    let spec = "  securityContext: {runAsNonRoot: true, seccompProfile: {type: Unconfined}}\n  containers:\n  - name: c\n    securityContext: {seccompProfile: {type: RuntimeDefault}, allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}\n";
    let ids = restricted(spec, LATEST);
    assert!(
        ids.contains(&"PSS-105".into()) && ids.contains(&"PSS-009".into()),
        "{ids:?}"
    );
    // Any type other than RuntimeDefault or Localhost, not only Unconfined.
    let odd = pod("", ", seccompProfile: {type: Unknown}");
    assert!(baseline(&odd, LATEST).contains(&"PSS-009".into()));
}

#[test]
fn seccomp_is_read_from_annotations_before_1_19() {
    let meta = ", annotations: {container.seccomp.security.alpha.kubernetes.io/c: unconfined}";
    let spec = "  containers:\n  - name: c\n";
    assert_eq!(ids_with(meta, spec, PssLevel::Baseline, 18), ["PSS-009"]);
    assert!(ids_with(meta, spec, PssLevel::Baseline, 19).is_empty());
    // Only annotations of containers that exist count.
    let other = ", annotations: {container.seccomp.security.alpha.kubernetes.io/gone: unconfined}";
    assert!(ids_with(other, spec, PssLevel::Baseline, 18).is_empty());
    let pod_level = ", annotations: {seccomp.security.alpha.kubernetes.io/pod: docker/default}";
    assert!(ids_with(pod_level, spec, PssLevel::Baseline, 18).is_empty());
}

#[test]
fn empty_apparmor_annotation_is_allowed() {
    let spec = pod("", "");
    let empty = ", annotations: {container.apparmor.security.beta.kubernetes.io/c: ''}";
    assert!(ids_with(empty, &spec, PssLevel::Baseline, LATEST).is_empty());
    let bad = ", annotations: {container.apparmor.security.beta.kubernetes.io/c: unconfined}";
    assert_eq!(
        ids_with(bad, &spec, PssLevel::Baseline, LATEST),
        ["PSS-006"]
    );
    let field = pod("", ", appArmorProfile: {type: Custom}");
    assert_eq!(baseline(&field, LATEST), ["PSS-006"]);
}

#[test]
fn probes_aimed_at_another_host_fail_baseline_from_1_34() {
    let spec =
        "  containers:\n  - name: c\n    readinessProbe: {tcpSocket: {host: 10.0.0.1, port: 80}}\n";
    assert_eq!(baseline(spec, 34), ["PSS-012"]);
    assert!(baseline(spec, 33).is_empty());
}

#[test]
fn selinux_container_engine_t_is_allowed_from_1_31() {
    let spec = pod("", ", seLinuxOptions: {type: container_engine_t}");
    assert!(baseline(&spec, 31).is_empty());
    assert_eq!(baseline(&spec, 30), ["PSS-007"]);
}

#[test]
fn restricted_controls_join_in_their_versions() {
    // allowPrivilegeEscalation from v1.8, capabilities from v1.22, seccomp
    // from v1.19.
    let bare = "  securityContext: {runAsNonRoot: true}\n  containers:\n  - name: c\n";
    assert!(restricted(bare, 7).is_empty(), "{:?}", restricted(bare, 7));
    assert_eq!(restricted(bare, 8), ["PSS-102"]);
    assert_eq!(restricted(bare, 19), ["PSS-102", "PSS-105"]);
    assert_eq!(restricted(bare, 22), ["PSS-102", "PSS-105", "PSS-106"]);
}

#[test]
fn versions_parse_as_the_enforce_version_label_does() {
    assert_eq!(PssVersion::parse("latest"), Some(PssVersion::LATEST));
    assert_eq!(PssVersion::parse("v1.25"), Some(PssVersion(25)));
    assert_eq!(PssVersion::parse("1.8"), Some(PssVersion(8)));
    // Newer than the newest known decide as the newest.
    assert_eq!(PssVersion::parse("v1.40"), Some(PssVersion::LATEST));
    assert_eq!(PssVersion::parse("v2.0"), None);
    assert_eq!(PssVersion::parse("1.x"), None);
}
