//! The network namespaces of a node's containers: where the sensors must
//! look, since sockets and conntrack tables are per namespace.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{CgroupIndex, Owner, classify};

/// The agent's own network namespace and that of a process in each
/// container cgroup under `cgroup_root`, once each (as `/proc/PID/ns/net`
/// paths, with the namespace's inode).
pub fn network_namespaces(cgroup_root: &Path) -> Vec<PathBuf> {
    namespaces_with_inodes(cgroup_root)
        .into_iter()
        .map(|(path, _)| path)
        .collect()
}

/// [`network_namespaces`] with each namespace's inode number.
pub fn namespaces_with_inodes(cgroup_root: &Path) -> Vec<(PathBuf, u64)> {
    let index = CgroupIndex::new(cgroup_root, Duration::ZERO);
    let mut seen = HashSet::new();
    let mut namespaces = Vec::new();
    // Named by the process, not /proc/self: a thread that reads it
    // resolves /proc/self for itself.
    let own = PathBuf::from(format!("/proc/{}/ns/net", std::process::id()));
    if let Ok(meta) = std::fs::metadata(&own) {
        seen.insert(meta.ino());
        namespaces.push((own, meta.ino()));
    }
    for (_, path) in index.cgroups() {
        if !matches!(classify(path), Owner::Container { .. }) {
            continue;
        }
        let procs = cgroup_root
            .join(path.trim_start_matches('/'))
            .join("cgroup.procs");
        let Some(pid) = std::fs::read_to_string(procs)
            .ok()
            .and_then(|text| text.lines().next().map(str::to_string))
        else {
            continue;
        };
        let namespace = PathBuf::from(format!("/proc/{}/ns/net", pid.trim()));
        if let Ok(meta) = std::fs::metadata(&namespace)
            && seen.insert(meta.ino())
        {
            namespaces.push((namespace, meta.ino()));
        }
    }
    namespaces
}
