//! The agent's own rules, about what happens inside containers rather than
//! on the wire: raw and packet sockets (RUN-001), connections to cloud
//! metadata addresses (RUN-002), shells and network tools executed
//! (RUN-003), events the sensor lost (RUN-004), and processes new to their
//! workload's baseline (RUN-005, see `baseline`). See docs/runtime.md.

use std::collections::BTreeMap;
use std::net::IpAddr;

use palisade_detect::{
    Alert, AlertEndpoint, AlertProcess, Evidence, Place, Rule, describe_place, rfc3339,
};
use palisade_flow::RecordRef;
use palisade_inventory::Inventory;
use serde::Deserialize;

use crate::attribute::Origin;

/// What the runtime rules watch for; `--config` may replace either list.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeOptions {
    /// Executables (by file name) whose execution in a container raises
    /// RUN-003.
    pub exec_watchlist: Vec<String>,
    /// Cloud metadata addresses (RUN-002).
    pub metadata_addresses: Vec<IpAddr>,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        let tools = [
            "sh", "bash", "dash", "ash", "zsh", "ksh", "busybox", "nc", "ncat", "netcat", "socat",
            "curl", "wget", "nmap", "masscan", "tcpdump", "tshark", "telnet", "ssh", "scp", "ftp",
            "tftp", "kubectl",
        ];
        RuntimeOptions {
            exec_watchlist: tools.iter().map(|t| t.to_string()).collect(),
            metadata_addresses: [
                // AWS, GCP, Azure, OpenStack and others; AWS ECS task
                // metadata; AWS over IPv6; Alibaba Cloud.
                "169.254.169.254",
                "169.254.170.2",
                "fd00:ec2::254",
                "100.100.100.200",
            ]
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect(),
        }
    }
}

impl RuntimeOptions {
    pub fn watches(&self, executable: &str) -> bool {
        let name = executable.rsplit('/').next().unwrap_or(executable);
        self.exec_watchlist.iter().any(|w| w == name)
    }

    pub fn is_metadata(&self, ip: IpAddr) -> bool {
        self.metadata_addresses.contains(&ip)
    }
}

/// The alert endpoint for where an event came from.
pub fn origin_endpoint(inventory: &Inventory, origin: &Origin) -> AlertEndpoint {
    if let Some((index, pod)) = origin.pod() {
        let place = Place::Workload {
            index,
            pod: Some(pod),
        };
        return describe_place(inventory, &place, None);
    }
    match origin.pod_uid() {
        Some(uid) => AlertEndpoint {
            kind: "pod",
            note: Some(format!("pod UID {uid}, which the inventory does not have")),
            ..AlertEndpoint::default()
        },
        None => AlertEndpoint {
            kind: if *origin == Origin::Host {
                "node"
            } else {
                "unknown"
            },
            ..AlertEndpoint::default()
        },
    }
}

/// What a runtime alert is about.
pub struct Happening {
    pub rule: Rule,
    pub summary: String,
    pub src: AlertEndpoint,
    pub dst: AlertEndpoint,
    pub protocol: String,
    pub port: Option<u16>,
    pub process: Option<AlertProcess>,
    pub micros: i64,
    pub record: RecordRef,
    pub figures: BTreeMap<&'static str, u64>,
}

pub fn alert(h: Happening) -> Alert {
    let time = Some(rfc3339(h.micros));
    Alert {
        time: time.clone(),
        rule: h.rule.id().into(),
        name: h.rule.name().into(),
        severity: h.rule.severity(),
        summary: h.summary,
        src: h.src,
        dst: h.dst,
        protocol: h.protocol,
        port: h.port,
        connections: 1,
        first_seen: time.clone(),
        last_seen: time,
        process: h.process,
        actor: None,
        object: None,
        evidence: Evidence {
            snapshot: None,
            flow: None,
            records: vec![h.record],
            decision: None,
            figures: h.figures,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchlist_matches_file_names_and_metadata_addresses_are_known() {
        let options = RuntimeOptions::default();
        assert!(options.watches("/bin/sh"));
        assert!(options.watches("/usr/bin/curl"));
        assert!(!options.watches("/usr/bin/python3"));
        assert!(!options.watches("/usr/bin/shred"));
        assert!(options.is_metadata("169.254.169.254".parse().unwrap()));
        assert!(options.is_metadata("fd00:ec2::254".parse().unwrap()));
        assert!(!options.is_metadata("10.0.0.1".parse().unwrap()));
    }
}
