//! `palisade probe`: verifies enforcement by trying connections. From the
//! network namespace of each pod that runs on this node (found by its
//! cgroup), it connects to pods of the inventory on the ports they declare
//! and on one they do not, and compares what got through with what the
//! policy allows: reached but denied is a bypass, blocked but allowed an
//! unexpected drop.
//!
//! Reached means the packet got through: a SYN-ACK, or a RST (the
//! destination's kernel answered: no listener, but no filter either); for
//! UDP a reply or an ICMP port unreachable. Blocked means nothing came back
//! before the timeout, or an ICMP unreachable from a filter. A UDP probe
//! that draws no answer is inconclusive (datagrams need no reply), and so
//! is SCTP, which the standard library cannot speak.
//!
//! Probes go only to addresses of the inventory's pods, one at a time per
//! source, at a bounded rate, in a bounded number; each source's probes run
//! in a helper process entered into the source pod's network namespace
//! (`nsenter --net=/proc/PID/ns/net palisade __probe-attempts`), which
//! reads its targets as JSON lines and answers each with one.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use palisade_inventory::{Inventory, Protocol};
use palisade_policy::{EndpointRef, Engine};
use palisade_sense::{CgroupIndex, Owner};
use serde::{Deserialize, Serialize};

use crate::attribute::PodRef;

/// A pod of this node: where probes from it start.
#[derive(Clone, Debug)]
pub struct LocalPod {
    pub pod: PodRef,
    /// A process in one of its containers: its network namespace is the
    /// pod's.
    pub pid: u32,
}

/// The pods of `inventory` that have a container on this node, by the
/// cgroup tree under `index`. hostNetwork pods are left out: they share
/// the node's namespace, and probing from them is probing from the node.
pub fn local_pods(inventory: &Inventory, index: &CgroupIndex) -> Vec<LocalPod> {
    let mut found: Vec<LocalPod> = Vec::new();
    for (_, path) in index.cgroups() {
        let Owner::Container { pod_uid, .. } = palisade_sense::classify(path) else {
            continue;
        };
        let Some(pod) = inventory.pod_by_uid(&pod_uid) else {
            continue;
        };
        if inventory.workloads[pod.0].template.host_network || found.iter().any(|l| l.pod == pod) {
            continue;
        }
        let procs = index
            .root()
            .join(path.trim_start_matches('/'))
            .join("cgroup.procs");
        let pid = std::fs::read_to_string(procs)
            .ok()
            .and_then(|text| text.lines().next().and_then(|l| l.trim().parse().ok()));
        if let Some(pid) = pid {
            found.push(LocalPod { pod, pid });
        }
    }
    found.sort_by_key(|l| l.pod);
    found
}

/// One connection to try.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub from: PodRef,
    pub to: PodRef,
    pub ip: IpAddr,
    pub protocol: Protocol,
    pub port: u16,
    /// The destination declares the port (a containerPort).
    pub declared: bool,
    /// The declared policy allows the connection.
    pub allowed: bool,
}

/// Which probes to make.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Only pods of these namespaces (as source or destination).
    pub namespaces: Vec<String>,
    /// Only from / to these pods.
    pub from: Option<PodRef>,
    pub to: Option<PodRef>,
    /// Only this port.
    pub port: Option<(Protocol, u16)>,
    /// At most this many pairs, spread over all of them.
    pub sample: Option<usize>,
}

/// The probes for every ordered pair of a local source and another pod of
/// the inventory, on each port the destination declares and one it does
/// not (the one after its highest, or 8080 when it declares none).
pub fn plan(
    inventory: &Inventory,
    engine: &Engine<'_>,
    local: &[LocalPod],
    selection: &Selection,
) -> Vec<Probe> {
    let in_scope = |(w, _): PodRef| {
        selection.namespaces.is_empty()
            || selection
                .namespaces
                .contains(&inventory.workloads[w].namespace)
    };
    let destinations: Vec<(PodRef, IpAddr)> = inventory
        .workloads
        .iter()
        .enumerate()
        .filter(|(_, w)| !w.template.host_network)
        .flat_map(|(w, workload)| {
            workload
                .pods
                .iter()
                .enumerate()
                .filter_map(move |(p, pod)| Some(((w, p), *pod.ips.first()?)))
        })
        .filter(|(pod, _)| selection.to.is_none_or(|to| to == *pod))
        .collect();
    let mut pairs: Vec<(PodRef, PodRef, IpAddr)> = local
        .iter()
        .filter(|l| selection.from.is_none_or(|from| from == l.pod))
        .flat_map(|l| destinations.iter().map(move |(to, ip)| (l.pod, *to, *ip)))
        .filter(|(from, to, _)| from != to && (in_scope(*from) || in_scope(*to)))
        .collect();
    if let Some(n) = selection.sample {
        pairs = spread(pairs, n);
    }
    let mut probes = Vec::new();
    for (from, to, ip) in pairs {
        for (protocol, port, declared) in ports(inventory, to.0, selection.port) {
            let allowed = engine.allowed(
                EndpointRef::Workload(from.0),
                EndpointRef::Workload(to.0),
                protocol,
                port,
            );
            probes.push(Probe {
                from,
                to,
                ip,
                protocol,
                port,
                declared,
                allowed,
            });
        }
    }
    probes
}

/// `n` of `items`, evenly spread (deterministic, so runs can be compared).
fn spread<T>(items: Vec<T>, n: usize) -> Vec<T> {
    let total = items.len();
    if n >= total || n == 0 {
        return items;
    }
    items
        .into_iter()
        .enumerate()
        .filter(|(i, _)| (i * n) % total < n)
        .map(|(_, item)| item)
        .collect()
}

fn ports(
    inventory: &Inventory,
    workload: usize,
    only: Option<(Protocol, u16)>,
) -> Vec<(Protocol, u16, bool)> {
    let template = &inventory.workloads[workload].template;
    let mut declared: Vec<(Protocol, u16)> = template
        .containers
        .iter()
        .flat_map(|c| &c.ports)
        .map(|p| (p.protocol, p.port))
        .collect();
    declared.sort();
    declared.dedup();
    if let Some((protocol, port)) = only {
        return vec![(protocol, port, declared.contains(&(protocol, port)))];
    }
    let highest = declared.iter().map(|(_, port)| *port).max();
    let undeclared = highest.map_or(8080, |p| p.saturating_add(1));
    let mut out: Vec<(Protocol, u16, bool)> = declared
        .into_iter()
        .map(|(pr, po)| (pr, po, true))
        .collect();
    if !out
        .iter()
        .any(|(pr, po, _)| *pr == Protocol::Tcp && *po == undeclared)
    {
        out.push((Protocol::Tcp, undeclared, false));
    }
    out
}

/// What one attempt found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Observed {
    Reached,
    Blocked,
    Inconclusive,
}

/// The helper's answer for one target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub observed: Observed,
    /// What was seen: `answered`, `refused (RST)`, `no answer`...
    pub how: String,
}

/// One target, as the helper reads it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Target {
    pub ip: IpAddr,
    pub port: u16,
    pub protocol: String,
}

/// Tries one connection from the current network namespace.
pub fn attempt(target: &Target, timeout: Duration) -> Attempt {
    let address = SocketAddr::new(target.ip, target.port);
    let (observed, how) = match target.protocol.as_str() {
        "tcp" => tcp(address, timeout),
        "udp" => udp(address, timeout),
        other => (
            Observed::Inconclusive,
            format!("{other} probes are not supported"),
        ),
    };
    Attempt {
        observed,
        how: how.to_string(),
    }
}

fn tcp(address: SocketAddr, timeout: Duration) -> (Observed, String) {
    use std::io::ErrorKind::*;
    match TcpStream::connect_timeout(&address, timeout) {
        Ok(_) => (Observed::Reached, "answered".into()),
        Err(e) if e.kind() == ConnectionRefused => (Observed::Reached, "refused (RST)".into()),
        Err(e) if e.kind() == TimedOut || e.kind() == WouldBlock => {
            (Observed::Blocked, "no answer".into())
        }
        Err(e) if matches!(e.kind(), HostUnreachable | NetworkUnreachable) => {
            (Observed::Blocked, format!("unreachable ({e})"))
        }
        Err(e) => (Observed::Inconclusive, e.to_string()),
    }
}

fn udp(address: SocketAddr, timeout: Duration) -> (Observed, String) {
    use std::io::ErrorKind::*;
    let local: SocketAddr = if address.is_ipv4() {
        "0.0.0.0:0".parse().unwrap_or(address)
    } else {
        "[::]:0".parse().unwrap_or(address)
    };
    let socket = match UdpSocket::bind(local) {
        Ok(s) => s,
        Err(e) => return (Observed::Inconclusive, e.to_string()),
    };
    let sent = socket
        .connect(address)
        .and_then(|()| socket.set_read_timeout(Some(timeout)))
        .and_then(|()| socket.send(b"palisade probe"));
    if let Err(e) = sent {
        return (Observed::Inconclusive, e.to_string());
    }
    let mut buf = [0u8; 64];
    match socket.recv(&mut buf) {
        Ok(_) => (Observed::Reached, "answered".into()),
        Err(e) if e.kind() == ConnectionRefused => {
            (Observed::Reached, "refused (ICMP port unreachable)".into())
        }
        Err(e) if matches!(e.kind(), HostUnreachable | NetworkUnreachable) => {
            (Observed::Blocked, format!("unreachable ({e})"))
        }
        Err(e) if matches!(e.kind(), WouldBlock | TimedOut) => (
            Observed::Inconclusive,
            "no answer (a datagram needs none)".into(),
        ),
        Err(e) => (Observed::Inconclusive, e.to_string()),
    }
}

/// The helper's loop: a target per input line, an attempt per output line,
/// `interval` between attempts. A line that is not a target is answered
/// as inconclusive, saying why.
pub fn serve_attempts(
    input: impl BufRead,
    mut output: impl Write,
    timeout: Duration,
    interval: Duration,
) -> std::io::Result<()> {
    for (n, line) in input.lines().enumerate() {
        if n > 0 {
            std::thread::sleep(interval);
        }
        let attempt = match serde_json::from_str::<Target>(&line?) {
            Ok(target) => attempt(&target, timeout),
            Err(e) => Attempt {
                observed: Observed::Inconclusive,
                how: format!("not a probe target: {e}"),
            },
        };
        serde_json::to_writer(&mut output, &attempt)?;
        output.write_all(b"\n")?;
        output.flush()?;
    }
    Ok(())
}

/// Runs the probes of one source pod through a helper in its network
/// namespace; an answer per probe, in order.
pub fn run_from(
    source: &LocalPod,
    probes: &[&Probe],
    helper: &Path,
    timeout: Duration,
    interval: Duration,
) -> Result<Vec<Attempt>, String> {
    let mut child = Command::new("nsenter")
        .arg(format!("--net=/proc/{}/ns/net", source.pid))
        .arg("--")
        .arg(helper)
        .arg("__probe-attempts")
        .arg(timeout.as_millis().to_string())
        .arg(interval.as_millis().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("nsenter: {e} (util-linux)"))?;
    let mut stdin = child.stdin.take().ok_or("no helper stdin")?;
    let targets: Vec<Target> = probes
        .iter()
        .map(|p| Target {
            ip: p.ip,
            port: p.port,
            protocol: p.protocol.as_str().to_ascii_lowercase(),
        })
        .collect();
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        for target in targets {
            serde_json::to_writer(&mut stdin, &target)?;
            stdin.write_all(b"\n")?;
        }
        Ok(())
    });
    let stdout = child.stdout.take().ok_or("no helper stdout")?;
    let answers: Vec<Attempt> = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .map(|line| {
            serde_json::from_str(&line).unwrap_or_else(|e| Attempt {
                observed: Observed::Inconclusive,
                how: format!("unreadable helper answer: {e}"),
            })
        })
        .collect();
    let _ = writer.join();
    let status = child.wait().map_err(|e| e.to_string())?;
    if answers.len() != probes.len() {
        let mut why = String::new();
        if let Some(mut stderr) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut stderr, &mut why);
        }
        return Err(format!(
            "the probe helper gave {} of {} answers ({status}): {}",
            answers.len(),
            probes.len(),
            why.trim()
        ));
    }
    Ok(answers)
}

/// What a probe's observation means against the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Finding {
    /// Reached, but the policy denies it.
    Bypass,
    /// Blocked, but the policy allows it.
    UnexpectedDrop,
}

pub fn finding(allowed: bool, observed: &Observed) -> Option<Finding> {
    match (allowed, observed) {
        (false, Observed::Reached) => Some(Finding::Bypass),
        (true, Observed::Blocked) => Some(Finding::UnexpectedDrop),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn findings_compare_observation_with_policy() {
        assert_eq!(finding(false, &Observed::Reached), Some(Finding::Bypass));
        assert_eq!(
            finding(true, &Observed::Blocked),
            Some(Finding::UnexpectedDrop)
        );
        assert_eq!(finding(true, &Observed::Reached), None);
        assert_eq!(finding(false, &Observed::Blocked), None);
        assert_eq!(finding(false, &Observed::Inconclusive), None);
    }

    #[test]
    fn spread_keeps_n_evenly() {
        let kept = spread((0..10).collect(), 3);
        assert_eq!(kept.len(), 3);
        assert_eq!(spread((0..3).collect::<Vec<i32>>(), 5).len(), 3);
    }

    #[test]
    fn the_helper_answers_every_line_even_malformed_ones() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open = listener.local_addr().unwrap().port();
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let input = format!(
            "{{\"ip\":\"127.0.0.1\",\"port\":{open},\"protocol\":\"tcp\"}}\n{{\"ip\":\"127.0.0.1\",\"port\":{closed},\"protocol\":\"tcp\"}}\nnot json\n{{\"ip\":\"127.0.0.1\",\"port\":1,\"protocol\":\"sctp\"}}\n"
        );
        let mut out = Vec::new();
        serve_attempts(
            input.as_bytes(),
            &mut out,
            Duration::from_millis(500),
            Duration::ZERO,
        )
        .unwrap();
        let answers: Vec<Attempt> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(answers.len(), 4);
        assert_eq!(answers[0].observed, Observed::Reached);
        assert_eq!(
            answers[1].observed,
            Observed::Reached,
            "RST: it got through"
        );
        assert_eq!(answers[1].how, "refused (RST)");
        assert_eq!(answers[2].observed, Observed::Inconclusive);
        assert!(answers[2].how.starts_with("not a probe target"));
        assert_eq!(answers[3].observed, Observed::Inconclusive);
    }
}
