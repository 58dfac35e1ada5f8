//! Container hygiene that matters for monitoring and incident response.

use std::net::IpAddr;

use palisade_inventory::{Direction, Inventory};
use palisade_policy::{EndpointRef, Engine};

use crate::bypass::{container_finding, pod_spec_path, workload_resource};
use crate::checks::*;
use crate::coverage::{Facts, api_server_addresses};
use crate::finding::Finding;

/// Whether workload `w`'s egress reaches the API server. With no known
/// address, only unrestricted egress counts as reaching it.
fn reaches_api_server(engine: &Engine<'_>, facts: &Facts<'_>, w: usize, api: &[IpAddr]) -> bool {
    if api.is_empty() {
        return !facts.isolated(w, Direction::Egress);
    }
    api.iter().any(|ip| {
        !engine
            .conns(EndpointRef::Workload(w), engine.endpoint_of_ip(*ip))
            .is_empty()
    })
}

pub fn check(
    inventory: &Inventory,
    engine: &Engine<'_>,
    facts: &Facts<'_>,
    out: &mut Vec<Finding>,
) {
    let api = api_server_addresses(inventory);
    for (wi, w) in inventory.workloads.iter().enumerate() {
        let spec = pod_spec_path(w);
        let t = &w.template;
        // Defaults to true; a service account may also opt out, which the
        // manifests here do not show.
        if t.automount_service_account_token != Some(false)
            && reaches_api_server(engine, facts, wi, &api)
        {
            out.push(TOKEN_WITH_API_REACH.finding(
                workload_resource(w, None),
                format!("{spec}.automountServiceAccountToken"),
                format!(
                    "{} mounts a service account token and its egress reaches the API server",
                    w.display_name()
                ),
                w.source.clone(),
            ));
        }
        for list in [&t.containers, &t.init_containers] {
            for (i, c) in list.iter().enumerate() {
                let path = format!("{spec}.{}[{i}]", c.kind.field());
                let mut push = |check: &'static Check, field: String, message: String| {
                    out.push(container_finding(check, w, &c.name, field, message));
                };
                if c.security.read_only_root_filesystem != Some(true) {
                    push(
                        &WRITABLE_ROOT_FS,
                        format!("{path}.securityContext.readOnlyRootFilesystem"),
                        format!("container {} has a writable root filesystem", c.name),
                    );
                }
                if !(c.cpu_limit && c.memory_limit) {
                    let missing = match (c.cpu_limit, c.memory_limit) {
                        (false, false) => "cpu and memory limits",
                        (false, true) => "cpu limit",
                        _ => "memory limit",
                    };
                    push(
                        &NO_LIMITS,
                        format!("{path}.resources.limits"),
                        format!("container {} has no {missing}", c.name),
                    );
                }
                if !c.image.contains("@sha256:") {
                    let tag = image_tag(&c.image);
                    let how = match tag {
                        None => "has no tag (means latest)".to_string(),
                        Some("latest") => "uses the latest tag".to_string(),
                        Some(t) => format!("uses tag {t} without a digest"),
                    };
                    push(
                        &MUTABLE_IMAGE,
                        format!("{path}.image"),
                        format!("container {} image {:?} {how}", c.name, c.image),
                    );
                }
            }
        }
    }
}

/// The tag of an image reference, if any (`registry:5000/app:1.2` → `1.2`).
fn image_tag(image: &str) -> Option<&str> {
    let last = image.rsplit('/').next().unwrap_or(image);
    last.split_once(':').map(|(_, tag)| tag)
}

#[cfg(test)]
mod tests {
    #[test]
    fn image_tags() {
        assert_eq!(super::image_tag("nginx"), None);
        assert_eq!(super::image_tag("nginx:1.27"), Some("1.27"));
        assert_eq!(super::image_tag("registry:5000/team/app"), None);
        assert_eq!(
            super::image_tag("registry:5000/team/app:latest"),
            Some("latest")
        );
    }
}
