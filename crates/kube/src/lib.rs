//! The live inventory: Palisade's view of the cluster kept current from the
//! Kubernetes API, the way client-go's reflector keeps an informer's cache.
//!
//! For each kind Palisade models, one thread lists the collection (in pages),
//! then watches it from the list's `resourceVersion` with bookmarks, so that
//! a watch that ends (the server's `timeoutSeconds`, a dropped connection)
//! resumes where it stopped without losing or repeating a change. When the
//! API answers that the version is too old (410 Gone, as a status or as an
//! `ERROR` event), the collection is listed afresh. The protocol is the one
//! in <https://kubernetes.io/docs/reference/using-api/api-concepts/>.
//!
//! The objects are kept decoded; [`Watcher::changed`] builds the inventory
//! from them when something changed since the last call, with a version
//! that names exactly which objects it was built from.

mod api;
pub mod reflector;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use palisade_inventory::{DecodedObject, Diagnostics, Inventory};
use sha2::{Digest, Sha256};

pub use api::{Api, ApiError};

/// A collection Palisade lists and watches.
#[derive(Debug)]
pub struct Resource {
    /// The plural name, as RBAC and the metrics call it.
    pub name: &'static str,
    /// The cluster-wide collection's path.
    pub path: &'static str,
    /// What list items are (the API leaves `apiVersion` and `kind` out of
    /// each item of a list).
    pub api_version: &'static str,
    pub kind: &'static str,
}

const fn resource(
    name: &'static str,
    path: &'static str,
    api_version: &'static str,
    kind: &'static str,
) -> Resource {
    Resource {
        name,
        path,
        api_version,
        kind,
    }
}

/// Every kind the inventory models: the objects policies select and the
/// controllers that name the workloads their pods belong to. (EndpointSlices
/// are not watched: the inventory computes a Service's endpoints from its
/// selector and the pods, and does not model selector-less Services.)
pub const RESOURCES: &[Resource] = &[
    resource("namespaces", "/api/v1/namespaces", "v1", "Namespace"),
    resource("nodes", "/api/v1/nodes", "v1", "Node"),
    resource("pods", "/api/v1/pods", "v1", "Pod"),
    resource("services", "/api/v1/services", "v1", "Service"),
    resource(
        "networkpolicies",
        "/apis/networking.k8s.io/v1/networkpolicies",
        "networking.k8s.io/v1",
        "NetworkPolicy",
    ),
    resource(
        "deployments",
        "/apis/apps/v1/deployments",
        "apps/v1",
        "Deployment",
    ),
    resource(
        "replicasets",
        "/apis/apps/v1/replicasets",
        "apps/v1",
        "ReplicaSet",
    ),
    resource(
        "statefulsets",
        "/apis/apps/v1/statefulsets",
        "apps/v1",
        "StatefulSet",
    ),
    resource(
        "daemonsets",
        "/apis/apps/v1/daemonsets",
        "apps/v1",
        "DaemonSet",
    ),
    resource("jobs", "/apis/batch/v1/jobs", "batch/v1", "Job"),
    resource("cronjobs", "/apis/batch/v1/cronjobs", "batch/v1", "CronJob"),
];

/// What one collection's reflector did, for the metrics.
#[derive(Debug, Default)]
pub struct ResourceStats {
    /// Complete lists (the first one, and each after a 410 or an error).
    pub lists: AtomicU64,
    /// Lists started again because the API said the version was gone.
    pub expired: AtomicU64,
    /// Watches resumed from the last version after they ended.
    pub rewatches: AtomicU64,
    /// Added, modified and deleted objects seen on the watch.
    pub events: AtomicU64,
    pub bookmarks: AtomicU64,
    /// Failed requests and unreadable answers (then retried with backoff).
    pub errors: AtomicU64,
    /// Objects now held.
    pub objects: AtomicU64,
}

#[derive(Default)]
struct Collection {
    /// By `namespace/name`: the object's resourceVersion and its decoding.
    objects: BTreeMap<String, (String, DecodedObject)>,
    /// The first complete list arrived.
    synced: bool,
    last_error: Option<String>,
}

pub(crate) struct Shared {
    collections: Mutex<Vec<Collection>>,
    /// Bumped on every change, so a reader knows whether to rebuild.
    generation: AtomicU64,
    pub(crate) stats: Vec<ResourceStats>,
    pub(crate) stop: AtomicBool,
}

impl Shared {
    pub(crate) fn replace(&self, index: usize, objects: BTreeMap<String, (String, DecodedObject)>) {
        let mut all = self.lock();
        self.stats[index]
            .objects
            .store(objects.len() as u64, Ordering::Relaxed);
        all[index].objects = objects;
        all[index].synced = true;
        all[index].last_error = None;
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn upsert(&self, index: usize, key: String, version: String, object: DecodedObject) {
        let mut all = self.lock();
        all[index].objects.insert(key, (version, object));
        self.stats[index]
            .objects
            .store(all[index].objects.len() as u64, Ordering::Relaxed);
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn remove(&self, index: usize, key: &str) {
        let mut all = self.lock();
        all[index].objects.remove(key);
        self.stats[index]
            .objects
            .store(all[index].objects.len() as u64, Ordering::Relaxed);
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn failed(&self, index: usize, why: String) {
        self.stats[index].errors.fetch_add(1, Ordering::Relaxed);
        self.lock()[index].last_error = Some(why);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Collection>> {
        self.collections.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An inventory built from the API's objects.
pub struct Snapshot {
    pub inventory: Inventory,
    /// What the inventory could not take of the objects (the API validated
    /// them, so these are rare: a field Palisade reads more strictly).
    pub diagnostics: Diagnostics,
    /// `k8s:` and a digest of every object's kind, name and
    /// resourceVersion: two snapshots of the same objects have the same
    /// version, and any change gives a new one.
    pub version: String,
}

/// The reflectors of every collection in [`RESOURCES`].
pub struct Watcher {
    shared: Arc<Shared>,
    seen: Option<u64>,
}

impl Watcher {
    /// Starts listing and watching; the threads run until the watcher is
    /// dropped.
    pub fn start(api: Api) -> std::io::Result<Watcher> {
        Watcher::start_with(api, reflector::Timing::default())
    }

    /// The same with the watch's timing given (tests shorten it).
    pub fn start_with(api: Api, timing: reflector::Timing) -> std::io::Result<Watcher> {
        let shared = Arc::new(Shared {
            collections: Mutex::new(RESOURCES.iter().map(|_| Collection::default()).collect()),
            generation: AtomicU64::new(0),
            stats: RESOURCES.iter().map(|_| ResourceStats::default()).collect(),
            stop: AtomicBool::new(false),
        });
        let api = Arc::new(api);
        for (index, resource) in RESOURCES.iter().enumerate() {
            let (api, shared, timing) = (api.clone(), shared.clone(), timing.clone());
            std::thread::Builder::new()
                .name(format!("watch-{}", resource.name))
                .spawn(move || reflector::run(&api, index, resource, &shared, &timing))?;
        }
        Ok(Watcher { shared, seen: None })
    }

    /// Waits until every collection has been listed once; the error names
    /// those that were not, with the last failure of each.
    pub fn wait_synced(&self, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        loop {
            let missing: Vec<String> = {
                let all = self.shared.lock();
                RESOURCES
                    .iter()
                    .zip(all.iter())
                    .filter(|(_, c)| !c.synced)
                    .map(|(r, c)| match &c.last_error {
                        Some(why) => format!("{}: {why}", r.name),
                        None => format!("{}: no answer yet", r.name),
                    })
                    .collect()
            };
            if missing.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the Kubernetes API was not listed within {} s: {}",
                    within.as_secs(),
                    missing.join("; ")
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The inventory, when something changed since the last call (the
    /// first call after every collection was listed always gives one).
    pub fn changed(&mut self) -> Option<Snapshot> {
        let generation = self.shared.generation.load(Ordering::Relaxed);
        if self.seen == Some(generation) {
            return None;
        }
        let (objects, version) = {
            let all = self.shared.lock();
            if !all.iter().all(|c| c.synced) {
                return None;
            }
            let mut digest = Sha256::new();
            let mut objects = Vec::new();
            for (resource, collection) in RESOURCES.iter().zip(all.iter()) {
                for (key, (version, object)) in &collection.objects {
                    digest.update(format!("{} {key} {version}\n", resource.name));
                    objects.push(object.clone());
                }
            }
            let hex: String = digest.finalize()[..8]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            (objects, format!("k8s:{hex}"))
        };
        // The generation was read before the copy: a change made since is
        // either in the copy or makes the next call build again.
        self.seen = Some(generation);
        let (inventory, diagnostics) = Inventory::from_decoded(objects);
        Some(Snapshot {
            inventory,
            diagnostics,
            version,
        })
    }

    /// Every object held now, decoded (to seed the audit-trail timeline).
    pub fn objects(&self) -> Vec<DecodedObject> {
        let all = self.shared.lock();
        all.iter()
            .flat_map(|c| c.objects.values().map(|(_, object)| object.clone()))
            .collect()
    }

    /// Per collection, in the order of [`RESOURCES`].
    pub fn stats(&self) -> &[ResourceStats] {
        &self.shared.stats
    }

    /// A handle on the counters that outlives the borrow (for metrics).
    pub fn stats_handle(&self) -> WatchStats {
        WatchStats(self.shared.clone())
    }
}

/// The reflectors' counters, shareable with a metrics endpoint.
#[derive(Clone)]
pub struct WatchStats(Arc<Shared>);

impl WatchStats {
    pub fn per_resource(&self) -> impl Iterator<Item = (&'static str, &ResourceStats)> {
        RESOURCES.iter().map(|r| r.name).zip(self.0.stats.iter())
    }
}

impl Drop for Watcher {
    /// The threads stop at their next wake-up (a watch event or its read
    /// timeout); nothing waits for them.
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}
