//! Who is behind a kernel event: its cgroup id resolved to a pod UID and
//! container (by the cgroup's path), the pod UID joined to the inventory
//! (`metadata.uid`). Every lookup that finds no pod is counted.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use palisade_inventory::Inventory;
use palisade_sense::{CgroupIndex, Lookup, Owner};
use rustc_hash::FxHashMap;

/// A pod of the inventory: workload and pod index.
pub type PodRef = (usize, usize);

/// Where an event came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A container of a pod; `pod` is `None` when the inventory does not
    /// have the pod UID (the inventory is older than the pod, or partial).
    Container {
        pod_uid: String,
        container_id: String,
        pod: Option<PodRef>,
    },
    /// A pod's own cgroup (its sandbox), not one of its containers.
    PodSandbox {
        pod_uid: String,
        pod: Option<PodRef>,
    },
    /// A process of the node itself.
    Host,
    /// A cgroup that no longer exists or is named by no known scheme.
    Unknown,
}

impl Origin {
    pub fn pod(&self) -> Option<PodRef> {
        match self {
            Origin::Container { pod, .. } | Origin::PodSandbox { pod, .. } => *pod,
            Origin::Host | Origin::Unknown => None,
        }
    }

    pub fn pod_uid(&self) -> Option<&str> {
        match self {
            Origin::Container { pod_uid, .. } | Origin::PodSandbox { pod_uid, .. } => Some(pod_uid),
            Origin::Host | Origin::Unknown => None,
        }
    }

    pub fn in_container(&self) -> bool {
        matches!(self, Origin::Container { .. })
    }
}

/// Counts of attribution, for the metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AttributionStats {
    /// Cgroup ids found under no known cgroup (exited, or not indexed).
    pub unknown_cgroups: u64,
    /// Pod UIDs (from cgroup paths) the inventory does not have.
    pub unknown_pods: u64,
}

pub struct Attributor {
    cgroups: CgroupIndex,
    pods_by_uid: HashMap<String, PodRef>,
    /// Origins already worked out, by cgroup id: a container's events
    /// all name the same cgroup, and kernfs gives every directory a 64-bit
    /// id (inode and generation) that is not reused until the next boot.
    /// Cleared when it grows large and at each reload.
    known: FxHashMap<u64, Origin>,
    pub stats: AttributionStats,
}

/// Cgroup ids remembered at most (a few hundred containers a node is usual).
const MAX_KNOWN: usize = 1 << 16;

impl Attributor {
    /// Attribution under the cgroup2 mount at `cgroup_root`.
    pub fn new(cgroup_root: &Path) -> Attributor {
        Attributor {
            // Rescanning on a miss at most once a second bounds the cost of
            // a storm of events from cgroups that are already gone.
            cgroups: CgroupIndex::new(cgroup_root, Duration::from_secs(1)),
            pods_by_uid: HashMap::new(),
            known: FxHashMap::default(),
            stats: AttributionStats::default(),
        }
    }

    /// Joins pod UIDs to `inventory` (called again after every reload).
    pub fn use_inventory(&mut self, inventory: &Inventory) {
        self.known.clear();
        self.pods_by_uid = inventory
            .workloads
            .iter()
            .enumerate()
            .flat_map(|(w, workload)| {
                workload
                    .pods
                    .iter()
                    .enumerate()
                    .filter_map(move |(p, pod)| {
                        pod.uid
                            .as_ref()
                            .map(|uid| (uid.to_ascii_lowercase(), (w, p)))
                    })
            })
            .collect();
    }

    pub fn origin(&mut self, cgroup_id: u64) -> Origin {
        if let Some(origin) = self.known.get(&cgroup_id).cloned() {
            self.count_miss(&origin);
            return origin;
        }
        let origin = self.work_out(cgroup_id);
        if self.known.len() >= MAX_KNOWN {
            self.known.clear();
        }
        // Unknown cgroups are asked again: the index may learn them.
        if origin != Origin::Unknown {
            self.known.insert(cgroup_id, origin.clone());
        }
        origin
    }

    /// A remembered origin still counts as a miss each time it is one.
    fn count_miss(&mut self, origin: &Origin) {
        if origin.pod_uid().is_some() && origin.pod().is_none() {
            self.stats.unknown_pods += 1;
        }
    }

    fn work_out(&mut self, cgroup_id: u64) -> Origin {
        let owner = match self.cgroups.lookup(cgroup_id) {
            Lookup::Found { owner, .. } => owner,
            Lookup::Missing => {
                self.stats.unknown_cgroups += 1;
                return Origin::Unknown;
            }
        };
        match owner {
            Owner::Container {
                pod_uid,
                container_id,
                ..
            } => {
                let pod = self.pod(&pod_uid);
                Origin::Container {
                    pod_uid,
                    container_id,
                    pod,
                }
            }
            Owner::Pod { pod_uid, .. } => {
                let pod = self.pod(&pod_uid);
                Origin::PodSandbox { pod_uid, pod }
            }
            Owner::Host(_) => Origin::Host,
            Owner::Unrecognised(_) => {
                self.stats.unknown_cgroups += 1;
                Origin::Unknown
            }
        }
    }

    fn pod(&mut self, uid: &str) -> Option<PodRef> {
        let pod = self.pods_by_uid.get(&uid.to_ascii_lowercase()).copied();
        if pod.is_none() {
            self.stats.unknown_pods += 1;
        }
        pod
    }
}
