//! cgroup id → pod: on a plain directory tree (any user), and on real
//! cgroups created under this machine's cgroup2 mount in the kubelet's
//! layouts (root only; CI runs it, and `PALISADE_PRIVILEGED_TESTS=require`
//! turns the skip into a failure).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use palisade_sense::{CgroupIndex, Lookup, Owner, Qos, Runtime, cgroup_mounts};

const UID: &str = "4e3f8a1c-2b7d-4c9e-8f10-123456789abc";
const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// The two kubelet layouts below `base`; returns the container
/// directories (systemd, cgroupfs).
fn kubelet_tree(base: &Path) -> std::io::Result<(PathBuf, PathBuf)> {
    let escaped = UID.replace('-', "_");
    let systemd = base
        .join("kubepods.slice/kubepods-burstable.slice")
        .join(format!("kubepods-burstable-pod{escaped}.slice"))
        .join(format!("cri-containerd-{ID}.scope"));
    let cgroupfs = base
        .join("kubepods/besteffort")
        .join(format!("pod{UID}"))
        .join(ID);
    for dir in [&systemd, &cgroupfs] {
        // One level at a time: cgroupfs refuses `mkdir -p` on some kernels.
        let mut at = PathBuf::new();
        for part in dir.components() {
            at.push(part);
            if !at.exists() {
                std::fs::create_dir(&at)?;
            }
        }
    }
    Ok((systemd, cgroupfs))
}

fn check_index(root: &Path, prefix: &str, systemd: &Path, cgroupfs: &Path) {
    let mut index = CgroupIndex::new(root, Duration::ZERO);
    let id = |p: &Path| std::fs::metadata(p).expect("cgroup dir").ino();
    match index.lookup(id(systemd)) {
        Lookup::Found { path, owner } => {
            assert!(path.starts_with(prefix), "{path}");
            assert_eq!(
                owner,
                Owner::Container {
                    pod_uid: UID.into(),
                    container_id: ID.into(),
                    runtime: Runtime::Containerd,
                    qos: Qos::Burstable,
                }
            );
        }
        Lookup::Missing => panic!("systemd-layout cgroup not found"),
    }
    let Lookup::Found { owner, .. } = index.lookup(id(cgroupfs)) else {
        panic!("cgroupfs-layout cgroup not found");
    };
    assert!(matches!(
        owner,
        Owner::Container {
            qos: Qos::BestEffort,
            runtime: Runtime::Unnamed,
            ..
        }
    ));
    // A directory made after the first walk is found by the rescan.
    let late = cgroupfs
        .parent()
        .unwrap()
        .join("fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210");
    std::fs::create_dir(&late).expect("late cgroup");
    assert!(matches!(index.lookup(id(&late)), Lookup::Found { .. }));
    std::fs::remove_dir(&late).expect("remove late cgroup");
    // An id that exists nowhere is a counted miss.
    assert_eq!(index.lookup(u64::MAX), Lookup::Missing);
    let stats = index.stats();
    assert_eq!((stats.hits, stats.misses), (3, 1), "{stats:?}");
    assert!(stats.rescans >= 2, "{stats:?}");
}

/// Removes the tree bottom-up (cgroup directories only go with rmdir).
fn remove_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

#[test]
fn cgroup_ids_resolve_to_pods_on_a_directory_tree() {
    let base = std::env::temp_dir().join(format!("palisade-cg-{}", std::process::id()));
    std::fs::create_dir_all(&base).unwrap();
    let (systemd, cgroupfs) = kubelet_tree(&base).unwrap();
    check_index(&base, "/kubepods", &systemd, &cgroupfs);
    remove_tree(&base);
}

#[test]
fn real_cgroups_in_both_kubelet_layouts() {
    let required = std::env::var("PALISADE_PRIVILEGED_TESTS").is_ok_and(|v| v == "require");
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let Some(root) = cgroup_mounts(&mountinfo).unified else {
        assert!(!required, "no cgroup2 mount in /proc/self/mountinfo");
        eprintln!("SKIPPED real_cgroups_in_both_kubelet_layouts: no cgroup2 mount");
        return;
    };
    let base = root.join(format!("palisade-test-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir(&base) {
        assert!(
            !required,
            "cannot create a cgroup under {}: {e}",
            root.display()
        );
        eprintln!(
            "SKIPPED real_cgroups_in_both_kubelet_layouts: cannot create cgroups ({e}); run as root"
        );
        return;
    }
    let result = std::panic::catch_unwind(|| {
        let (systemd, cgroupfs) = kubelet_tree(&base).expect("kubelet cgroups");
        // Real cgroup directories carry the kernel's interface files.
        assert!(systemd.join("cgroup.procs").exists());
        let prefix = format!("/{}/kubepods", base.file_name().unwrap().to_string_lossy());
        check_index(&root, &prefix, &systemd, &cgroupfs);
    });
    remove_tree(&base);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
