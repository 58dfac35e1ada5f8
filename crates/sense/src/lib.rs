//! Linux live sources for `palisade agent`. This first part is attribution:
//! from the cgroup a kernel event names (its cgroup id is the inode of the
//! cgroup2 directory) to the pod and container behind it, by the path the
//! kubelet and the container runtime give that directory.
//!
//! The eBPF sensor ([`ebpf`]) reports connections, executions, raw sockets
//! and drops with the cgroup id and network namespace behind each; the
//! conntrack sensor comes next.

pub mod btf;
pub mod cgroup_path;
pub mod cgroups;
pub mod conntrack;
pub mod ebpf;
pub mod mountinfo;
pub mod namespaces;

pub use cgroup_path::{Owner, Qos, Runtime, classify};
pub use cgroups::{CgroupIndex, Lookup};
pub use mountinfo::{CgroupMounts, cgroup_mounts};
