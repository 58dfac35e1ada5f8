//! Kernel events as the [`Flow`]s `flows verify` judges, so live traffic
//! goes through the same verdicts as recorded traffic.
//!
//! - connect and accept: an established connection, initiator first (for
//!   an accept the remote side is the initiator);
//! - failed connect: an attempt nothing completed (refused, dropped or
//!   timed out: the kernel does not say which), `unanswered`;
//! - netfilter drop: a packet an enforcer dropped, `dropped`, its source
//!   taken as the initiator (enforcers drop the packet that opens a
//!   connection; replies of admitted connections pass their conntrack
//!   rule). Other drop reasons are not policy and are only counted.
//!
//! The local side carries the identity of its pod when the cgroup names
//! one; the remote side is resolved by address, as in `flows verify`.

use std::net::SocketAddr;
use std::sync::Arc;

use palisade_flow::{Flow, FlowEndpoint, Format, Identity, Outcome, RecordRef, Transport};
use palisade_inventory::Inventory;
use palisade_sense::ebpf::{ConnectionKind, UdpDirection};

use crate::attribute::PodRef;

/// The drop reason enforcers built on netfilter (iptables, nftables,
/// kube-router, Calico's iptables mode) give the packets they drop.
pub const NETFILTER_DROP: &str = "NETFILTER_DROP";

/// The identity the inventory gives a local pod.
pub fn identity(inventory: &Inventory, pod: PodRef) -> Option<Arc<Identity>> {
    let workload = inventory.workloads.get(pod.0)?;
    let instance = workload.pods.get(pod.1)?;
    Some(Arc::new(Identity {
        namespace: Some(workload.namespace.clone()),
        pod: Some(instance.name.clone()),
        labels: Vec::new(),
        entity: None,
        node_local: true,
    }))
}

fn endpoint(address: SocketAddr, identity: Option<Arc<Identity>>) -> FlowEndpoint {
    FlowEndpoint {
        ip: Some(address.ip()),
        port: (address.port() != 0).then_some(address.port()),
        identity,
    }
}

pub fn evidence(file: &Arc<str>, sequence: u64) -> RecordRef {
    RecordRef {
        file: file.clone(),
        format: Format::Ebpf,
        record: sequence,
    }
}

/// The flow a TCP event stands for; `None` for a close (the connection
/// was judged when it opened). A failed connect that drew a reset or an
/// ICMP unreachable was refused: the destination (or a filter that
/// rejects) answered, as the capture reader judges the same packets.
pub fn tcp_flow(
    kind: ConnectionKind,
    refused: bool,
    local: SocketAddr,
    remote: SocketAddr,
    local_identity: Option<Arc<Identity>>,
    evidence: RecordRef,
    micros: i64,
) -> Option<Flow> {
    let (outcome, initiator_is_local) = match kind {
        ConnectionKind::Connect => (Outcome::Established, true),
        ConnectionKind::Accept => (Outcome::Established, false),
        ConnectionKind::ConnectFailed if refused => (Outcome::Refused, true),
        ConnectionKind::ConnectFailed => (Outcome::Unanswered, true),
        ConnectionKind::Close => return None,
    };
    let mut flow = Flow::new(evidence, Transport::Tcp, outcome);
    let (local, remote) = (endpoint(local, local_identity), endpoint(remote, None));
    let (src, dst) = if initiator_is_local {
        (local, remote)
    } else {
        (remote, local)
    };
    flow.src = src;
    // The initiator's ephemeral port says nothing the policy reads.
    flow.dst = dst;
    flow.first_seen = Some(micros);
    flow.last_seen = Some(micros);
    flow.packets = if outcome == Outcome::Established {
        [1, 1]
    } else {
        [1, 0]
    };
    Some(flow)
}

/// The flow a UDP event stands for. A send shows only the source's side
/// (was it delivered? the receiver's node says), so it is recorded as the
/// source's egress: what the destination's ingress denies is not this
/// side's alert. A receive shows the datagram got through.
pub fn udp_flow(
    direction: UdpDirection,
    local: SocketAddr,
    remote: SocketAddr,
    local_identity: Option<Arc<Identity>>,
    evidence: RecordRef,
    micros: i64,
) -> Flow {
    let mut local = endpoint(local, local_identity);
    if local.ip.is_some_and(|ip| ip.is_unspecified()) {
        // Bound to any address: the pod's identity says who it is.
        local.ip = None;
    }
    let remote = endpoint(remote, None);
    let (outcome, src, dst) = match direction {
        UdpDirection::Send => (Outcome::Unanswered, local, remote),
        UdpDirection::Receive => (Outcome::Established, remote, local),
    };
    let mut flow = Flow::new(evidence, Transport::Udp, outcome);
    flow.src = src;
    flow.dst = dst;
    flow.first_seen = Some(micros);
    flow.last_seen = Some(micros);
    flow.packets = [1, 0];
    if direction == UdpDirection::Send {
        flow.reporter = Some("egress".into());
    }
    flow
}

/// The flow a conntrack entry stands for, both ends by address: established
/// when it saw a reply, unanswered when it never did.
pub fn conntrack_flow(
    protocol: u8,
    src: SocketAddr,
    dst: SocketAddr,
    replied: bool,
    evidence: RecordRef,
    micros: i64,
) -> Flow {
    let outcome = if replied {
        Outcome::Established
    } else {
        Outcome::Unanswered
    };
    let mut flow = Flow::new(evidence, transport(protocol), outcome);
    flow.src = endpoint(src, None);
    flow.dst = endpoint(dst, None);
    flow.first_seen = Some(micros);
    flow.last_seen = Some(micros);
    flow.packets = [1, u64::from(replied)];
    flow
}

fn transport(protocol: u8) -> Transport {
    match protocol {
        6 => Transport::Tcp,
        17 => Transport::Udp,
        132 => Transport::Sctp,
        1 => Transport::Icmp,
        58 => Transport::Icmpv6,
        other => Transport::Other(other),
    }
}

/// The flow a netfilter drop stands for.
pub fn drop_flow(
    protocol: u8,
    src: SocketAddr,
    dst: SocketAddr,
    evidence: RecordRef,
    micros: i64,
) -> Flow {
    let mut flow = Flow::new(evidence, transport(protocol), Outcome::Dropped);
    flow.src = endpoint(src, None);
    flow.dst = endpoint(dst, None);
    flow.first_seen = Some(micros);
    flow.last_seen = Some(micros);
    flow.packets = [1, 0];
    flow.drop_reason = Some(NETFILTER_DROP.to_string());
    flow
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_udp_send_is_the_sources_side_and_a_receive_got_through() {
        let file: Arc<str> = Arc::from("ebpf");
        let send = udp_flow(
            UdpDirection::Send,
            sa("0.0.0.0:40000"),
            sa("10.0.0.2:53"),
            None,
            evidence(&file, 1),
            5,
        );
        assert_eq!(send.src.ip, None, "bound to any address");
        assert!(send.shows_source_side_only());
        let receive = udp_flow(
            UdpDirection::Receive,
            sa("10.0.0.2:53"),
            sa("10.0.0.1:40000"),
            None,
            evidence(&file, 2),
            5,
        );
        assert_eq!(receive.src.ip, Some("10.0.0.1".parse().unwrap()));
        assert!(receive.reached_destination());
    }

    #[test]
    fn an_accept_puts_the_remote_client_first() {
        let file: Arc<str> = Arc::from("ebpf");
        let flow = tcp_flow(
            ConnectionKind::Accept,
            false,
            sa("10.0.0.2:5432"),
            sa("10.0.0.1:40000"),
            None,
            evidence(&file, 1),
            5,
        )
        .unwrap();
        assert_eq!(flow.src.ip, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(flow.dst.port, Some(5432));
        assert_eq!(flow.outcome, Outcome::Established);
    }

    #[test]
    fn a_failed_connect_is_unanswered_and_a_close_is_no_flow() {
        let file: Arc<str> = Arc::from("ebpf");
        let refused = tcp_flow(
            ConnectionKind::ConnectFailed,
            true,
            sa("10.0.0.1:40000"),
            sa("10.0.0.2:6379"),
            None,
            evidence(&file, 2),
            5,
        )
        .unwrap();
        assert_eq!(refused.outcome, Outcome::Refused);
        let failed = tcp_flow(
            ConnectionKind::ConnectFailed,
            false,
            sa("10.0.0.1:0"),
            sa("10.0.0.2:6379"),
            None,
            evidence(&file, 2),
            5,
        )
        .unwrap();
        assert_eq!(failed.outcome, Outcome::Unanswered);
        assert_eq!(failed.src.port, None, "port 0: not yet bound");
        let close = tcp_flow(
            ConnectionKind::Close,
            false,
            sa("10.0.0.1:1"),
            sa("10.0.0.2:2"),
            None,
            evidence(&file, 3),
            5,
        );
        assert!(close.is_none());
    }
}
