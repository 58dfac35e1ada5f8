//! The conntrack sensor, for nodes where BPF is not allowed: connection
//! tracking events (ctnetlink NEW, UPDATE, DESTROY) of every container's
//! network namespace and the node's own, through `netlink-packet-netfilter`.
//!
//! Conntrack tables are per namespace, so each namespace has a thread of
//! its own, entered into it, listening on a netlink socket. A table tracks
//! nothing until a ruleset needs it (a `ct state` rule, kube-proxy's
//! iptables); NAT is seen in the reply tuple. It gives no process and no
//! cgroup: the agent resolves both ends by address. When the kernel could
//! not queue events for a listener (ENOBUFS) the loss is counted and the
//! table dumped again, so what is open is known again.
//!
//! Enforcers that log what they drop to an NFLOG group (kube-router logs
//! policy drops to group 100; an nftables rule `log group N drop`) are
//! heard too: each logged packet is a [`CtKind::Dropped`] event, with the
//! rule's prefix.

use std::collections::HashSet;
use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use netlink_packet_core::{
    NLM_F_CREATE, NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_netfilter::conntrack::{
    ConntrackAttribute, ConntrackMessage, IPTuple, ProtoTuple, Protocol, Status, Tuple,
};
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
};
use netlink_sys::{Socket, protocols::NETLINK_NETFILTER};

use crate::namespaces::namespaces_with_inodes;

/// ctnetlink's multicast groups (NFNLGRP_CONNTRACK_NEW, _UPDATE, _DESTROY).
const GROUPS: [u32; 3] = [1, 2, 3];
/// Receive buffer per listener: at about 45 k messages a second 8 MiB
/// still overflowed once in the measurements (../shared/notes/agent.md).
const RECEIVE_BUFFER: usize = 16 << 20;
const ENOBUFS: i32 = 105;
/// The sequence number of dump requests.
const DUMP_SEQUENCE: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtKind {
    New,
    Update,
    Destroy,
    /// An entry that was there when the table was dumped (at the start, or
    /// again after a loss).
    Existing,
    /// A packet an enforcer logged to an NFLOG group (and dropped).
    Dropped,
}

/// One conntrack event: the original direction's tuple (initiator first)
/// and what the entry's status says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CtEvent {
    pub kind: CtKind,
    /// The inode of the network namespace whose table it is.
    pub netns: u64,
    pub protocol: u8,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// Traffic came back (IPS_SEEN_REPLY): the destination answered.
    pub replied: bool,
    pub assured: bool,
    /// NFLOG: the logging rule's prefix.
    pub prefix: Option<String>,
}

pub struct ConntrackSensor {
    cgroup_root: PathBuf,
    /// NFLOG groups listened to in every namespace.
    nflog_groups: Vec<u16>,
    events: Receiver<CtEvent>,
    send: Sender<CtEvent>,
    watched: HashSet<u64>,
    last_scan: Instant,
    lost: Arc<AtomicU64>,
    undecodable: Arc<AtomicU64>,
    /// Namespaces whose listener could not start, with why.
    pub failures: Vec<String>,
}

/// How often new containers' namespaces are looked for.
const RESCAN: Duration = Duration::from_secs(5);

impl ConntrackSensor {
    /// Listens to conntrack, and to `nflog_groups`, in every namespace.
    pub fn start(cgroup_root: &Path, nflog_groups: &[u16]) -> Result<ConntrackSensor, String> {
        let (send, events) = channel();
        let mut sensor = ConntrackSensor {
            cgroup_root: cgroup_root.to_path_buf(),
            nflog_groups: nflog_groups.to_vec(),
            events,
            send,
            watched: HashSet::new(),
            last_scan: Instant::now(),
            lost: Arc::default(),
            undecodable: Arc::default(),
            failures: Vec::new(),
        };
        sensor.watch_new_namespaces();
        if sensor.watched.is_empty() {
            return Err(format!(
                "no conntrack listener could start: {}",
                sensor.failures.join("; ")
            ));
        }
        Ok(sensor)
    }

    /// Every event waiting; new namespaces are watched every few seconds.
    pub fn drain(&mut self, sink: &mut dyn FnMut(CtEvent)) -> usize {
        if self.last_scan.elapsed() >= RESCAN {
            self.watch_new_namespaces();
        }
        let mut n = 0;
        while let Ok(event) = self.events.try_recv() {
            n += 1;
            sink(event);
        }
        n
    }

    /// Times a listener's queue overflowed (each followed by a re-dump).
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    pub fn undecodable(&self) -> u64 {
        self.undecodable.load(Ordering::Relaxed)
    }

    fn watch_new_namespaces(&mut self) {
        self.last_scan = Instant::now();
        for (path, inode) in namespaces_with_inodes(&self.cgroup_root) {
            if self.watched.contains(&inode) {
                continue;
            }
            let (ready_tx, ready) = channel();
            let listener = Listener {
                netns: inode,
                events: self.send.clone(),
                lost: self.lost.clone(),
                undecodable: self.undecodable.clone(),
            };
            let nflog = listener.clone();
            let at = path.clone();
            std::thread::spawn(move || listener.run(&at, ready_tx));
            match ready.recv_timeout(Duration::from_secs(2)) {
                Ok(Ok(())) => {
                    self.watched.insert(inode);
                }
                Ok(Err(why)) => self.failures.push(why),
                Err(_) => self.failures.push(format!("namespace {inode}: no answer")),
            }
            for &group in &self.nflog_groups {
                let (ready_tx, ready) = channel();
                let (nflog, at) = (nflog.clone(), path.clone());
                std::thread::spawn(move || nflog.run_nflog(&at, group, ready_tx));
                if let Ok(Err(why)) = ready.recv_timeout(Duration::from_secs(2)) {
                    self.failures.push(why);
                }
            }
        }
    }
}

/// Tells the starter whether the socket opened; the socket when it did.
fn report_ready(
    opened: Result<Socket, String>,
    ready: &Sender<Result<(), String>>,
) -> Option<Socket> {
    let _ = ready.send(opened.as_ref().map(|_| ()).map_err(String::clone));
    opened.ok()
}

#[derive(Clone)]
struct Listener {
    netns: u64,
    events: Sender<CtEvent>,
    lost: Arc<AtomicU64>,
    undecodable: Arc<AtomicU64>,
}

impl Listener {
    /// Enters the namespace, subscribes, dumps the table, then listens
    /// until the namespace goes (its last process exits) or the sensor is
    /// dropped. An overflow dumps the table again to resynchronise.
    fn run(self, namespace: &Path, ready: Sender<Result<(), String>>) {
        let opened = self
            .open(namespace)
            .map_err(|why| format!("{}: {why}", namespace.display()));
        if let Some(socket) = report_ready(opened, &ready) {
            self.receive(&socket, Self::handle, &|socket| dump(socket).is_ok());
        }
    }

    fn open(&self, namespace: &Path) -> Result<Socket, String> {
        let socket = netfilter_socket_in(namespace)?;
        let _ = socket.set_rx_buf_sz(RECEIVE_BUFFER);
        for group in GROUPS {
            socket
                .add_membership(group)
                .map_err(|e| format!("joining ctnetlink group {group}: {e}"))?;
        }
        dump(&socket).map_err(|e| format!("dumping the table: {e}"))?;
        Ok(socket)
    }

    /// Listens to NFLOG `group` in the namespace until it goes. Packets
    /// lost to an overflow are gone: they are counted, nothing to redo.
    fn run_nflog(self, namespace: &Path, group: u16, ready: Sender<Result<(), String>>) {
        let opened = bind_nflog(namespace, group)
            .map_err(|why| format!("{} NFLOG group {group}: {why}", namespace.display()));
        if let Some(socket) = report_ready(opened, &ready) {
            self.receive(&socket, Self::handle_logged, &|_| true);
        }
    }

    /// Receives datagrams, each through `handle`, until it says the sensor
    /// is gone or the socket fails. An overflow (ENOBUFS) is counted as
    /// loss and then `resync` runs (false: give up).
    fn receive(
        &self,
        socket: &Socket,
        handle: fn(&Self, &[u8]) -> bool,
        resync: &dyn Fn(&Socket) -> bool,
    ) {
        let mut buffer = vec![0u8; 1 << 16];
        loop {
            match socket.recv(&mut &mut buffer[..], 0) {
                Ok(n) => {
                    if !handle(self, &buffer[..n.min(buffer.len())]) {
                        return;
                    }
                }
                Err(e) if e.raw_os_error() == Some(ENOBUFS) => {
                    self.lost.fetch_add(1, Ordering::Relaxed);
                    if !resync(socket) {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    }

    /// Sends the conntrack events of one datagram; false when the sensor
    /// is gone.
    fn handle(&self, bytes: &[u8]) -> bool {
        self.handle_with(bytes, event_of)
    }

    /// Sends the logged packets of one datagram.
    fn handle_logged(&self, bytes: &[u8]) -> bool {
        self.handle_with(bytes, logged_packet)
    }

    /// Sends what `event` makes of each message of a datagram (a netlink
    /// datagram may hold several).
    fn handle_with(
        &self,
        mut bytes: &[u8],
        event: fn(&NetlinkMessage<NetfilterMessage>, u64) -> Option<CtEvent>,
    ) -> bool {
        while !bytes.is_empty() {
            let Ok(message) = NetlinkMessage::<NetfilterMessage>::deserialize(bytes) else {
                self.undecodable.fetch_add(1, Ordering::Relaxed);
                return true;
            };
            let length = (message.header.length as usize).max(1);
            if let Some(event) = event(&message, self.netns)
                && self.events.send(event).is_err()
            {
                return false;
            }
            bytes = bytes.get(length..).unwrap_or_default();
        }
        true
    }
}

/// A netfilter netlink socket opened from inside `namespace` (the calling
/// thread moves there: call it on a thread of its own).
fn netfilter_socket_in(namespace: &Path) -> Result<Socket, String> {
    let target = File::open(namespace).map_err(|e| e.to_string())?;
    nix::sched::setns(&target, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("setns: {e}"))?;
    let mut socket = Socket::new(NETLINK_NETFILTER).map_err(|e| e.to_string())?;
    socket.bind_auto().map_err(|e| e.to_string())?;
    Ok(socket)
}

/// Binds NFLOG `group`, copying each packet's headers.
fn bind_nflog(namespace: &Path, group: u16) -> Result<Socket, String> {
    use netlink_packet_netfilter::nflog::{ConfigCmd, ConfigMode, config_request};
    let socket = netfilter_socket_in(namespace)?;
    let _ = socket.set_rx_buf_sz(RECEIVE_BUFFER);
    // One bind serves every family (the family of config messages only
    // mattered to kernels before 3.17).
    let packet = config_request(
        NetfilterProtoFamily::IPv4,
        group,
        vec![ConfigCmd::Bind.into(), ConfigMode::PACKET_MAX.into()],
    );
    let mut buffer = vec![0; packet.header.length as usize];
    packet.serialize(&mut buffer[..]);
    socket.send(&buffer[..], 0).map_err(|e| e.to_string())?;
    // The acknowledgement (an error message with no error) or a refusal.
    let mut answer = vec![0u8; 4096];
    let n = socket
        .recv(&mut &mut answer[..], 0)
        .map_err(|e| e.to_string())?;
    if let Ok(reply) = NetlinkMessage::<NetfilterMessage>::deserialize(&answer[..n])
        && let NetlinkPayload::Error(e) = reply.payload
        && let Some(code) = e.code
    {
        return Err(format!("binding refused (error {code})"));
    }
    Ok(socket)
}

/// The packet an NFLOG message carries, as a dropped flow.
pub fn logged_packet(message: &NetlinkMessage<NetfilterMessage>, netns: u64) -> Option<CtEvent> {
    use netlink_packet_netfilter::nflog::{PacketNla, ULogMessage};
    let NetlinkPayload::InnerMessage(NetfilterMessage {
        inner: NetfilterMessageInner::ULog(ULogMessage::Packet(nlas)),
        ..
    }) = &message.payload
    else {
        return None;
    };
    let mut prefix = None;
    let mut packet = None;
    for nla in nlas {
        match nla {
            PacketNla::Prefix(p) => prefix = Some(p.to_string_lossy().into_owned()),
            PacketNla::Payload(bytes) => packet = Some(bytes),
            _ => {}
        }
    }
    let (protocol, src, dst) = parse_ip_packet(packet?)?;
    Some(CtEvent {
        kind: CtKind::Dropped,
        netns,
        protocol,
        src,
        dst,
        replied: false,
        assured: false,
        prefix,
    })
}

/// Protocol and addresses of an IPv4 or IPv6 packet (ports for TCP, UDP
/// and SCTP; IPv6 extension headers are not followed).
pub fn parse_ip_packet(packet: &[u8]) -> Option<(u8, SocketAddr, SocketAddr)> {
    let version = packet.first()? >> 4;
    let (protocol, src, dst, transport): (u8, IpAddr, IpAddr, usize) = match version {
        4 => {
            let header = usize::from(packet.first()? & 0x0f) * 4;
            let src: [u8; 4] = packet.get(12..16)?.try_into().ok()?;
            let dst: [u8; 4] = packet.get(16..20)?.try_into().ok()?;
            (*packet.get(9)?, src.into(), dst.into(), header)
        }
        6 => {
            let src: [u8; 16] = packet.get(8..24)?.try_into().ok()?;
            let dst: [u8; 16] = packet.get(24..40)?.try_into().ok()?;
            (*packet.get(6)?, src.into(), dst.into(), 40)
        }
        _ => return None,
    };
    let ports = matches!(protocol, 6 | 17 | 132)
        .then(|| packet.get(transport..transport + 4))
        .flatten();
    let (sport, dport) = ports.map_or((0, 0), |p| {
        (
            u16::from_be_bytes([p[0], p[1]]),
            u16::from_be_bytes([p[2], p[3]]),
        )
    });
    Some((
        protocol,
        SocketAddr::new(src, sport),
        SocketAddr::new(dst, dport),
    ))
}

/// Asks for every entry of the table (IPv4 and IPv6).
fn dump(socket: &Socket) -> std::io::Result<()> {
    for family in [NetfilterProtoFamily::IPv4, NetfilterProtoFamily::IPv6] {
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        // The answers carry it; multicast events carry 0.
        header.sequence_number = DUMP_SEQUENCE;
        let mut packet = NetlinkMessage::new(
            header,
            NetlinkPayload::from(NetfilterMessage::new(
                NetfilterHeader::new(family, 0, 0),
                ConntrackMessage::Get(vec![]),
            )),
        );
        packet.finalize();
        let mut buffer = vec![0; packet.buffer_len()];
        packet.serialize(&mut buffer[..]);
        socket.send(&buffer[..], 0)?;
    }
    Ok(())
}

/// The event a ctnetlink message is, if it is one.
pub fn event_of(message: &NetlinkMessage<NetfilterMessage>, netns: u64) -> Option<CtEvent> {
    let NetlinkPayload::InnerMessage(inner) = &message.payload else {
        return None;
    };
    let NetfilterMessageInner::Conntrack(conntrack) = &inner.inner else {
        return None;
    };
    let (kind, attributes) = match conntrack {
        // NEW and UPDATE share a type: a creation carries NLM_F_CREATE; a
        // dump's answers carry neither flag nor a multicast group.
        ConntrackMessage::New(attributes) if message.header.flags & NLM_F_CREATE != 0 => {
            (CtKind::New, attributes)
        }
        ConntrackMessage::New(attributes) if message.header.sequence_number != DUMP_SEQUENCE => {
            (CtKind::Update, attributes)
        }
        ConntrackMessage::New(attributes) => (CtKind::Existing, attributes),
        ConntrackMessage::Delete(attributes) => (CtKind::Destroy, attributes),
        _ => return None,
    };
    let mut original = None;
    let mut status = Status::empty();
    for attribute in attributes {
        match attribute {
            ConntrackAttribute::CtaTupleOrig(tuple) => original = Some(tuple_of(tuple)?),
            ConntrackAttribute::CtaStatus(s) => status = *s,
            _ => {}
        }
    }
    let (protocol, src, dst) = original?;
    Some(CtEvent {
        kind,
        netns,
        protocol,
        src,
        dst,
        replied: status.contains(Status::SeenReply),
        assured: status.contains(Status::Assured),
        prefix: None,
    })
}

fn tuple_of(tuple: &[Tuple]) -> Option<(u8, SocketAddr, SocketAddr)> {
    let (mut src, mut dst): (Option<IpAddr>, Option<IpAddr>) = (None, None);
    let (mut sport, mut dport, mut protocol) = (0, 0, 0);
    for part in tuple {
        match part {
            Tuple::Ip(ips) => {
                for ip in ips {
                    match ip {
                        IPTuple::SourceAddress(a) => src = Some(*a),
                        IPTuple::DestinationAddress(a) => dst = Some(*a),
                        _ => {}
                    }
                }
            }
            Tuple::Proto(protos) => {
                for proto in protos {
                    match proto {
                        ProtoTuple::Protocol(p) => protocol = protocol_number(p),
                        ProtoTuple::SourcePort(p) => sport = *p,
                        ProtoTuple::DestinationPort(p) => dport = *p,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some((
        protocol,
        SocketAddr::new(src?, sport),
        SocketAddr::new(dst?, dport),
    ))
}

fn protocol_number(protocol: &Protocol) -> u8 {
    match protocol {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
        Protocol::Icmp => 1,
        Protocol::Ipv6Icmp => 58,
        Protocol::Sctp => 132,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ctnetlink message as the kernel sends it: an IPv4 TCP entry from
    /// 10.0.0.1:40000 to 10.0.0.2:5432 with `status`.
    fn message(kind: &str, flags: u16, sequence: u32, status: Status) -> Vec<u8> {
        let tuple = vec![
            Tuple::Ip(vec![
                IPTuple::SourceAddress("10.0.0.1".parse().unwrap()),
                IPTuple::DestinationAddress("10.0.0.2".parse().unwrap()),
            ]),
            Tuple::Proto(vec![
                ProtoTuple::Protocol(Protocol::Tcp),
                ProtoTuple::SourcePort(40000),
                ProtoTuple::DestinationPort(5432),
            ]),
        ];
        let attributes = vec![
            ConntrackAttribute::CtaTupleOrig(tuple),
            ConntrackAttribute::CtaStatus(status),
        ];
        let body = match kind {
            "new" => ConntrackMessage::New(attributes),
            _ => ConntrackMessage::Delete(attributes),
        };
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = sequence;
        let mut packet = NetlinkMessage::new(
            header,
            NetlinkPayload::from(NetfilterMessage::new(
                NetfilterHeader::new(NetfilterProtoFamily::IPv4, 0, 0),
                body,
            )),
        );
        packet.finalize();
        let mut bytes = vec![0; packet.buffer_len()];
        packet.serialize(&mut bytes[..]);
        bytes
    }

    fn decode(bytes: &[u8]) -> Option<CtEvent> {
        let message = NetlinkMessage::<NetfilterMessage>::deserialize(bytes).ok()?;
        event_of(&message, 7)
    }

    #[test]
    fn reads_the_addresses_and_ports_of_logged_packets() {
        let mut v4 = vec![
            0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        v4.extend_from_slice(&[0x9c, 0x40, 0x23, 0x28, 0, 0, 0, 0]);
        assert_eq!(
            parse_ip_packet(&v4),
            Some((
                6,
                "10.0.0.1:40000".parse().unwrap(),
                "10.0.0.2:9000".parse().unwrap()
            ))
        );
        let mut v6 = vec![0x60, 0, 0, 0, 0, 8, 17, 64];
        v6.extend_from_slice(&"fd00::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
        v6.extend_from_slice(&"fd00::2".parse::<std::net::Ipv6Addr>().unwrap().octets());
        v6.extend_from_slice(&[0, 53, 0, 53]);
        let (protocol, src, dst) = parse_ip_packet(&v6).unwrap();
        assert_eq!((protocol, src.port(), dst.port()), (17, 53, 53));
        // ICMP has no ports; truncated or unknown packets are no events.
        v4[9] = 1;
        assert_eq!(parse_ip_packet(&v4).unwrap().1.port(), 0);
        for end in 0..v4.len().min(20) {
            assert_eq!(parse_ip_packet(&v4[..end]), None, "{end}");
        }
        assert_eq!(parse_ip_packet(&[0x20; 40]), None);
    }

    #[test]
    fn reads_each_kind_of_event_and_the_reply_flag() {
        let new = decode(&message("new", NLM_F_CREATE, 0, Status::Confirmed)).unwrap();
        assert_eq!(new.kind, CtKind::New);
        assert_eq!(new.src, "10.0.0.1:40000".parse().unwrap());
        assert_eq!(new.dst, "10.0.0.2:5432".parse().unwrap());
        assert_eq!((new.protocol, new.netns, new.replied), (6, 7, false));
        let update = decode(&message("new", 0, 0, Status::SeenReply | Status::Assured)).unwrap();
        assert_eq!(update.kind, CtKind::Update);
        assert!(update.replied && update.assured);
        let dumped = decode(&message("new", 0, DUMP_SEQUENCE, Status::SeenReply)).unwrap();
        assert_eq!(dumped.kind, CtKind::Existing);
        let destroy = decode(&message("delete", 0, 0, Status::empty())).unwrap();
        assert_eq!(destroy.kind, CtKind::Destroy);
    }

    #[test]
    fn a_datagram_of_several_messages_and_garbage_are_handled() {
        let (events, received) = channel();
        let listener = Listener {
            netns: 1,
            events,
            lost: Arc::default(),
            undecodable: Arc::default(),
        };
        let mut datagram = message("new", NLM_F_CREATE, 0, Status::empty());
        datagram.extend(message("delete", 0, 0, Status::SeenReply));
        assert!(listener.handle(&datagram));
        let kinds: Vec<CtKind> = received.try_iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [CtKind::New, CtKind::Destroy]);
        for end in 0..datagram.len() {
            assert!(listener.handle(&datagram[..end]));
        }
        assert!(listener.handle(&[0xff; 40]));
        assert!(listener.undecodable.load(Ordering::Relaxed) > 0);
    }
}
