//! `--kube`: the inventory from the Kubernetes API (list and watch) instead
//! of manifest files, for `serve`, `agent` and `up`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, anyhow};
use palisade_kube::{Api, Snapshot, Watcher};
use palisade_send::http::ClientTls;

#[derive(clap::Args, Clone, Debug, Default)]
pub struct KubeArgs {
    /// Keep the inventory current from the Kubernetes API instead of
    /// manifest files: `in-cluster` (the pod's ServiceAccount), or the
    /// API's URL (`http://127.0.0.1:8001` behind `kubectl proxy`, or
    /// `https://HOST:6443` with --kube-token-file and --kube-ca).
    #[arg(long, value_name = "URL|in-cluster")]
    pub kube: Option<String>,
    /// The bearer token for --kube, read again for each request.
    #[arg(long, value_name = "FILE", requires = "kube")]
    pub kube_token_file: Option<PathBuf>,
    /// The API server's CA (PEM); given, it is the only one trusted.
    #[arg(long, value_name = "FILE", requires = "kube")]
    pub kube_ca: Option<PathBuf>,
}

/// Watches must outlast the API's `timeoutSeconds` (300) by a margin.
const READ_TIMEOUT: Duration = Duration::from_secs(330);

/// How long the first list of every collection may take.
const SYNC_WITHIN: Duration = Duration::from_secs(60);

/// A running watch and the first inventory it gave.
pub struct Live {
    pub watcher: Watcher,
    pub first: Snapshot,
}

impl KubeArgs {
    /// Starts watching when --kube is given, and waits for every
    /// collection's first list.
    pub fn connect(&self, who: &str) -> Result<Option<Live>> {
        let Some(url) = &self.kube else {
            return Ok(None);
        };
        let api = if url == "in-cluster" {
            Api::in_cluster(READ_TIMEOUT)
        } else {
            let tls = ClientTls {
                ca_files: self.kube_ca.iter().cloned().collect(),
                identity: None,
                only_named_cas: self.kube_ca.is_some(),
            };
            Api::new(url, self.kube_token_file.clone(), &tls, READ_TIMEOUT)
        }
        .map_err(|e| anyhow!("--kube: {e}"))?;
        let base = api.base().to_string();
        let mut watcher = Watcher::start(api)?;
        watcher
            .wait_synced(SYNC_WITHIN)
            .map_err(|e| anyhow!("{e}"))?;
        let first = watcher
            .changed()
            .ok_or_else(|| anyhow!("the Kubernetes API gave no inventory"))?;
        eprintln!(
            "{who}: watching the Kubernetes API at {base}: {} ({})",
            describe(&first),
            first.version
        );
        Ok(Some(Live { watcher, first }))
    }
}

/// What a snapshot holds, in a few words, with its problems counted (the
/// API validated every object, so the inventory takes it despite them).
pub fn describe(snapshot: &Snapshot) -> String {
    let inventory = &snapshot.inventory;
    let pods: usize = inventory.workloads.iter().map(|w| w.pods.len()).sum();
    let problems = snapshot.diagnostics.problems().count();
    let mut said = format!(
        "{} namespaces, {pods} pods, {} policies",
        inventory.namespaces.len(),
        inventory.policies.len()
    );
    if problems > 0 {
        said.push_str(&format!(", {problems} objects read with problems (-v)"));
    }
    said
}
