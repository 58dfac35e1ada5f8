//! The `--endpoints` file: which pod had which address, for captures of
//! clusters whose manifests carry no pod status (applied manifests rather
//! than a `kubectl get -o yaml` dump). One mapping per line,
//! `ADDRESS NAMESPACE/POD`, separated by spaces, tabs or a comma; `#`
//! starts a comment. POD may be a pod name of the inventory, a workload
//! name, or a pod name derived from a workload's (`checkout-7d9f-x2x4`).

use std::net::IpAddr;

use palisade_inventory::{Inventory, PodInstance};

use crate::resolve::Resolver;

/// Adds the file's addresses to the inventory's pods (creating pods of the
/// named workloads where needed). Returns one message per line that could
/// not be applied, with its line number.
pub fn apply_endpoints(inventory: &mut Inventory, file: &str, text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut placements = Vec::new();
    {
        let resolver = Resolver::new(inventory, &[]);
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            match parse_line(line) {
                Ok((ip, namespace, pod)) => match resolver.workload_of_pod(namespace, pod) {
                    Some(placement) => placements.push((ip, pod.to_string(), placement)),
                    None => problems.push(format!(
                        "{file}:{}: {namespace}/{pod} matches no pod or workload of the inventory",
                        n + 1
                    )),
                },
                Err(reason) => problems.push(format!("{file}:{}: {reason}", n + 1)),
            }
        }
    }
    for (ip, pod_name, (workload, pod)) in placements {
        let w = &mut inventory.workloads[workload];
        match pod {
            Some(p) => {
                if !w.pods[p].ips.contains(&ip) {
                    w.pods[p].ips.push(ip);
                }
            }
            None => w.pods.push(PodInstance {
                name: pod_name,
                uid: None,
                ips: vec![ip],
                node_name: None,
                host_ip: None,
                labels: w.template.labels.clone(),
                source: None,
            }),
        }
    }
    problems
}

fn parse_line(line: &str) -> Result<(IpAddr, &str, &str), String> {
    let mut fields = line
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|f| !f.is_empty());
    let (Some(address), Some(name), None) = (fields.next(), fields.next(), fields.next()) else {
        return Err(format!("expected `ADDRESS NAMESPACE/POD`, got {line:?}"));
    };
    let ip: IpAddr = address
        .parse()
        .map_err(|_| format!("{address:?} is not an IP address"))?;
    let (namespace, pod) = name
        .split_once('/')
        .filter(|(ns, pod)| !ns.is_empty() && !pod.is_empty())
        .ok_or_else(|| format!("{name:?} is not NAMESPACE/POD"))?;
    Ok((ip, namespace, pod))
}
