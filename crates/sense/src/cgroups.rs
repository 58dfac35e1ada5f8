//! cgroup id → cgroup path. A cgroup2 id, as `bpf_get_current_cgroup_id()`
//! and a socket's `sk_cgrp_data` give it, is the inode number of the
//! cgroup's directory in the cgroup2 file system; the index walks the tree
//! once and again when an id it has not seen turns up (a pod started since),
//! at most once per `rescan_interval`. Every miss is counted.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::cgroup_path::{Owner, classify};

/// The answer for one cgroup id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    Found {
        path: String,
        owner: Owner,
    },
    /// No cgroup with this id, even after a rescan (it may be gone already).
    Missing,
}

/// Counts that the agent reports (metrics, summary).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexStats {
    pub hits: u64,
    pub misses: u64,
    pub rescans: u64,
    /// Directories that could not be read during walks.
    pub unreadable: u64,
}

pub struct CgroupIndex {
    root: PathBuf,
    paths: HashMap<u64, String>,
    last_scan: Option<Instant>,
    rescan_interval: Duration,
    stats: IndexStats,
}

impl CgroupIndex {
    /// Indexes the cgroup2 tree mounted at `root` (see
    /// [`crate::cgroup_mounts`]).
    pub fn new(root: impl Into<PathBuf>, rescan_interval: Duration) -> CgroupIndex {
        let mut index = CgroupIndex {
            root: root.into(),
            paths: HashMap::new(),
            last_scan: None,
            rescan_interval,
            stats: IndexStats::default(),
        };
        index.rescan();
        index
    }

    pub fn stats(&self) -> IndexStats {
        self.stats
    }

    /// The cgroup2 mount the index walks.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every cgroup of the last walk: id and path (relative to the root).
    pub fn cgroups(&self) -> impl Iterator<Item = (u64, &str)> {
        self.paths.iter().map(|(id, path)| (*id, path.as_str()))
    }

    pub fn len(&self) -> usize {
        self.paths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// The path and owner of cgroup `id`.
    pub fn lookup(&mut self, id: u64) -> Lookup {
        if !self.paths.contains_key(&id) && self.may_rescan() {
            self.rescan();
        }
        match self.paths.get(&id) {
            Some(path) => {
                self.stats.hits += 1;
                Lookup::Found {
                    owner: classify(path),
                    path: path.clone(),
                }
            }
            None => {
                self.stats.misses += 1;
                Lookup::Missing
            }
        }
    }

    fn may_rescan(&self) -> bool {
        self.last_scan
            .is_none_or(|t| t.elapsed() >= self.rescan_interval)
    }

    /// Walks the whole tree again (cgroups come and go with pods).
    pub fn rescan(&mut self) {
        let mut paths = HashMap::new();
        let mut unreadable = 0;
        walk(&self.root, "", &mut paths, &mut unreadable);
        self.paths = paths;
        self.stats.unreadable += unreadable;
        self.stats.rescans += 1;
        self.last_scan = Some(Instant::now());
    }
}

/// Records `dir` (as `relative`, `/` for the root) and its subdirectories.
/// Symbolic links are not followed; cgroupfs has none.
fn walk(dir: &Path, relative: &str, paths: &mut HashMap<u64, String>, unreadable: &mut u64) {
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => {
            let shown = if relative.is_empty() { "/" } else { relative };
            paths.insert(meta.ino(), shown.to_string());
        }
        Ok(_) => return,
        Err(_) => {
            *unreadable += 1;
            return;
        }
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        *unreadable += 1;
        return;
    };
    for entry in entries.flatten() {
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_dir && let Some(name) = entry.file_name().to_str() {
            walk(
                &entry.path(),
                &format!("{relative}/{name}"),
                paths,
                unreadable,
            );
        }
    }
}
