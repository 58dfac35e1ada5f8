//! The sensor's events as they come out of the ring buffer: fixed C
//! layouts (`bpf/sensor.bpf.c`), decoded by offset with bounds checks. A
//! record that is too short or of an unknown kind is an error the caller
//! counts, never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Byte sizes of the C structs; a test checks them against the object's
/// BTF, so the two cannot drift apart silently.
pub const HEAD_SIZE: usize = 48;
pub const CONN_EVENT_SIZE: usize = 120;
pub const EXEC_EVENT_SIZE: usize = 304;
pub const SOCKET_EVENT_SIZE: usize = 56;

/// A flag of TCP events (`EXISTING` in the C program).
const EXISTING: u32 = 4;

/// Kinds of records, as `enum event_kind` numbers them.
pub(crate) const KIND_CONNECT: u8 = 1;
pub(crate) const KIND_ACCEPT: u8 = 2;
pub(crate) const KIND_CONNECT_FAILED: u8 = 3;
pub(crate) const KIND_CLOSE: u8 = 4;
/// A socket began to connect: its owner, joined to the connect that
/// follows (see `join.rs`); never an [`Event`] of its own.
pub(crate) const KIND_CONNECTING: u8 = 10;

/// Where TCP records keep their fields (`struct conn_event`).
pub(crate) const OWNER: std::ops::Range<usize> = 16..48;
pub(crate) const TIME: std::ops::Range<usize> = 8..16;
/// Byte counts, flags and the socket's error: what a close reports.
pub(crate) const CLOSE_FIELDS: std::ops::Range<usize> = 88..112;
/// The remote address and port, and the network namespace.
pub(crate) const REMOTE: std::ops::Range<usize> = 64..80;
pub(crate) const REMOTE_PORT: std::ops::Range<usize> = 82..84;
pub(crate) const NETNS: std::ops::Range<usize> = 4..8;
pub(crate) const SOCK: std::ops::Range<usize> = 112..120;

pub(crate) const AF_INET: u8 = 2;
pub(crate) const AF_INET6: u8 = 10;

/// The process an event names, as the kernel saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Process {
    /// Thread-group id (what user space calls the pid); 0 when unknown.
    pub pid: u32,
    pub comm: String,
    /// The cgroup2 directory's inode: what [`crate::CgroupIndex`] resolves.
    pub cgroup_id: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionKind {
    /// This side connected (the initiator).
    Connect,
    /// This side accepted (the responder).
    Accept,
    /// A connect that never established: refused, unreachable, timed out,
    /// dropped on the way, or given up by the application (`error` 0).
    ConnectFailed,
    /// An established connection closed, with its byte counts.
    Close,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UdpDirection {
    Send,
    Receive,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Tcp {
        kind: ConnectionKind,
        netns: u32,
        time_ns: u64,
        process: Process,
        local: SocketAddr,
        remote: SocketAddr,
        bytes_sent: u64,
        bytes_received: u64,
        /// For a failed connect or a close: the socket's error as it
        /// closed (an errno; 0 for none), which [`refused`] and
        /// [`closed_by_reset`] read. A reset this side sends (an abortive
        /// close) is the peer's `closed_by_reset`.
        error: u32,
        /// The connection existed when the sensor started (its process is
        /// the listener's for an accept, unknown for a connect; its cgroup
        /// is the socket's).
        existing: bool,
    },
    Exec {
        netns: u32,
        time_ns: u64,
        process: Process,
        executable: String,
    },
    /// A UDP flow: datagrams this side sent to `remote`, or received from
    /// it. Reported once per flow and ten seconds, however many datagrams.
    Udp {
        direction: UdpDirection,
        netns: u32,
        time_ns: u64,
        process: Process,
        /// The local address is unspecified for sockets bound to any.
        local: SocketAddr,
        remote: SocketAddr,
    },
    /// A raw or packet socket was opened.
    Socket {
        netns: u32,
        time_ns: u64,
        process: Process,
        family: u8,
        socket_type: u32,
        protocol: u32,
    },
    /// The kernel dropped a packet; `netns` is its device's namespace.
    Drop {
        netns: u32,
        time_ns: u64,
        protocol: u8,
        src: SocketAddr,
        dst: SocketAddr,
        /// The kernel's `skb_drop_reason` number (named from its BTF).
        reason: u32,
    },
}

/// Whether a failed connect was answered, by a reset or an ICMP
/// destination unreachable (of any code: port, host, network, protocol,
/// administratively prohibited), as the capture reader judges the same
/// packets. Not answered: a timeout (`ETIMEDOUT`) or an attempt the
/// application gave up (no error). The kernel's mapping of ICMP codes to
/// errors is `icmp_err_convert` and `icmpv6_err_convert`.
pub fn refused(error: u32) -> bool {
    use nix::errno::Errno::*;
    [
        ECONNREFUSED,
        EHOSTUNREACH,
        ENETUNREACH,
        EHOSTDOWN,
        ENONET,
        ENOPROTOOPT,
        EOPNOTSUPP,
        EACCES,
    ]
    .iter()
    .any(|e| *e as u32 == error)
}

/// Whether a connection was closed by a reset it received: `ECONNRESET`,
/// or `EPIPE` when the peer had already closed its side (tcp_reset()).
/// An `ECONNREFUSED` left on an open socket is an ICMP error it did not
/// read, not a reset.
pub fn closed_by_reset(error: u32) -> bool {
    use nix::errno::Errno::*;
    error == ECONNRESET as u32 || error == EPIPE as u32
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("event of {got} bytes, {kind} events have {want}")]
    Short { kind: u8, got: usize, want: usize },
    #[error("unknown event kind {0}")]
    UnknownKind(u8),
    #[error("unknown address family {0}")]
    Family(u8),
    #[error("a connecting record is joined to its connect, not decoded alone")]
    Connecting,
}

pub fn decode(record: &[u8]) -> Result<Event, DecodeError> {
    let r = Record(record);
    let kind = r.u8(0);
    let want = match kind {
        1..=4 | 7..=9 => CONN_EVENT_SIZE,
        5 => EXEC_EVENT_SIZE,
        6 => SOCKET_EVENT_SIZE,
        KIND_CONNECTING => return Err(DecodeError::Connecting),
        0 | 11.. => return Err(DecodeError::UnknownKind(kind)),
    };
    if record.len() < want {
        return Err(DecodeError::Short {
            kind,
            got: record.len(),
            want,
        });
    }
    let (family, protocol) = (r.u8(1), r.u8(2));
    let netns = r.u32(4);
    let time_ns = r.u64(8);
    let process = Process {
        pid: r.u32(16),
        cgroup_id: r.u64(24),
        comm: r.text(32, 16),
    };
    Ok(match kind {
        5 => Event::Exec {
            netns,
            time_ns,
            process,
            executable: r.text(HEAD_SIZE, 256),
        },
        6 => Event::Socket {
            netns,
            time_ns,
            process,
            family,
            socket_type: r.u32(48),
            protocol: r.u32(52),
        },
        8 | 9 => {
            let (local, remote) = r.tuple(family)?;
            Event::Udp {
                direction: if kind == 8 {
                    UdpDirection::Send
                } else {
                    UdpDirection::Receive
                },
                netns,
                time_ns,
                process,
                local,
                remote,
            }
        }
        7 => {
            let (src, dst) = r.tuple(family)?;
            Event::Drop {
                netns,
                time_ns,
                protocol,
                src,
                dst,
                reason: r.u32(104),
            }
        }
        _ => {
            let (local, remote) = r.tuple(family)?;
            Event::Tcp {
                kind: match kind {
                    KIND_CONNECT => ConnectionKind::Connect,
                    KIND_ACCEPT => ConnectionKind::Accept,
                    KIND_CONNECT_FAILED => ConnectionKind::ConnectFailed,
                    _ => ConnectionKind::Close,
                },
                netns,
                time_ns,
                process,
                local,
                remote,
                bytes_sent: r.u64(88),
                bytes_received: r.u64(96),
                error: r.u32(108),
                existing: r.u32(104) & EXISTING != 0,
            }
        }
    })
}

/// The record `decode` reads back as `event`: for tests, fixtures and
/// replays of recorded traffic (the sensor itself writes these in C).
pub fn encode(event: &Event) -> Vec<u8> {
    let (kind, size) = match event {
        Event::Tcp { kind, .. } => (
            match kind {
                ConnectionKind::Connect => KIND_CONNECT,
                ConnectionKind::Accept => KIND_ACCEPT,
                ConnectionKind::ConnectFailed => KIND_CONNECT_FAILED,
                ConnectionKind::Close => KIND_CLOSE,
            },
            CONN_EVENT_SIZE,
        ),
        Event::Exec { .. } => (5, EXEC_EVENT_SIZE),
        Event::Socket { .. } => (6, SOCKET_EVENT_SIZE),
        Event::Drop { .. } => (7, CONN_EVENT_SIZE),
        Event::Udp { direction, .. } => match direction {
            UdpDirection::Send => (8, CONN_EVENT_SIZE),
            UdpDirection::Receive => (9, CONN_EVENT_SIZE),
        },
    };
    let mut r = vec![0u8; size];
    r[0] = kind;
    let mut put = |at: usize, bytes: &[u8]| r[at..at + bytes.len()].copy_from_slice(bytes);
    let head =
        |put: &mut dyn FnMut(usize, &[u8]), netns: u32, time_ns: u64, p: Option<&Process>| {
            put(4, &netns.to_ne_bytes());
            put(8, &time_ns.to_ne_bytes());
            if let Some(p) = p {
                put(16, &p.pid.to_ne_bytes());
                put(24, &p.cgroup_id.to_ne_bytes());
                let comm = p.comm.as_bytes();
                put(32, &comm[..comm.len().min(15)]);
            }
        };
    let tuple = |put: &mut dyn FnMut(usize, &[u8]), a: &SocketAddr, b: &SocketAddr| {
        let family = if a.is_ipv4() { AF_INET } else { AF_INET6 };
        put(1, &[family]);
        for (at, address) in [(48, a), (64, b)] {
            match address.ip() {
                IpAddr::V4(ip) => put(at, &ip.octets()),
                IpAddr::V6(ip) => put(at, &ip.octets()),
            }
        }
        put(80, &a.port().to_ne_bytes());
        put(82, &b.port().to_ne_bytes());
    };
    match event {
        Event::Tcp {
            netns,
            time_ns,
            process,
            local,
            remote,
            bytes_sent,
            bytes_received,
            error,
            existing,
            ..
        } => {
            put(2, &[6]);
            head(&mut put, *netns, *time_ns, Some(process));
            tuple(&mut put, local, remote);
            put(88, &bytes_sent.to_ne_bytes());
            put(96, &bytes_received.to_ne_bytes());
            put(104, &(u32::from(*existing) * EXISTING).to_ne_bytes());
            put(108, &error.to_ne_bytes());
        }
        Event::Udp {
            netns,
            time_ns,
            process,
            local,
            remote,
            ..
        } => {
            put(2, &[17]);
            head(&mut put, *netns, *time_ns, Some(process));
            tuple(&mut put, local, remote);
        }
        Event::Exec {
            netns,
            time_ns,
            process,
            executable,
        } => {
            head(&mut put, *netns, *time_ns, Some(process));
            let path = executable.as_bytes();
            put(HEAD_SIZE, &path[..path.len().min(255)]);
        }
        Event::Socket {
            netns,
            time_ns,
            process,
            family,
            socket_type,
            protocol,
        } => {
            put(1, &[*family]);
            head(&mut put, *netns, *time_ns, Some(process));
            put(48, &socket_type.to_ne_bytes());
            put(52, &protocol.to_ne_bytes());
        }
        Event::Drop {
            netns,
            time_ns,
            protocol,
            src,
            dst,
            reason,
        } => {
            put(2, &[*protocol]);
            head(&mut put, *netns, *time_ns, None);
            tuple(&mut put, src, dst);
            put(104, &reason.to_ne_bytes());
        }
    }
    r
}

/// A TCP event's record as the kernel writes it, naming socket `sock` (for
/// tests and replays of the join); `connecting` makes it the record of
/// SYN_SENT that carries the connecting process.
pub fn encode_for_socket(event: &Event, sock: u64, connecting: bool) -> Vec<u8> {
    let mut record = encode(event);
    if let Some(field) = record.get_mut(SOCK) {
        field.copy_from_slice(&sock.to_ne_bytes());
    }
    if connecting {
        record[0] = KIND_CONNECTING;
    }
    record
}

/// Reads at offsets already checked against the record's length.
struct Record<'a>(&'a [u8]);

impl Record<'_> {
    fn array<const N: usize>(&self, at: usize) -> [u8; N] {
        let mut out = [0; N];
        out.copy_from_slice(&self.0[at..at + N]);
        out
    }

    fn u8(&self, at: usize) -> u8 {
        self.0.get(at).copied().unwrap_or(0)
    }

    fn u16(&self, at: usize) -> u16 {
        u16::from_ne_bytes(self.array(at))
    }

    fn u32(&self, at: usize) -> u32 {
        u32::from_ne_bytes(self.array(at))
    }

    fn u64(&self, at: usize) -> u64 {
        u64::from_ne_bytes(self.array(at))
    }

    /// A NUL-terminated string in a fixed field.
    fn text(&self, at: usize, len: usize) -> String {
        let field = &self.0[at..at + len];
        let end = field.iter().position(|&b| b == 0).unwrap_or(len);
        String::from_utf8_lossy(&field[..end]).into_owned()
    }

    /// The tuple at offset 48: addresses in network order, ports in host
    /// order. IPv4-mapped IPv6 addresses become IPv4 ones.
    fn tuple(&self, family: u8) -> Result<(SocketAddr, SocketAddr), DecodeError> {
        let address = |at: usize| -> Result<IpAddr, DecodeError> {
            match family {
                AF_INET => Ok(IpAddr::V4(Ipv4Addr::from(self.array::<4>(at)))),
                AF_INET6 => Ok(Ipv6Addr::from(self.array::<16>(at)).to_canonical()),
                other => Err(DecodeError::Family(other)),
            }
        };
        Ok((
            SocketAddr::new(address(48)?, self.u16(80)),
            SocketAddr::new(address(64)?, self.u16(82)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An event laid out as the C structs lay it out.
    fn record(kind: u8, family: u8, size: usize) -> Vec<u8> {
        let mut r = vec![0u8; size];
        r[0] = kind;
        r[1] = family;
        r[2] = 6;
        r[4..8].copy_from_slice(&4_026_532_000u32.to_ne_bytes());
        r[8..16].copy_from_slice(&77u64.to_ne_bytes());
        r[16..20].copy_from_slice(&4242u32.to_ne_bytes());
        r[24..32].copy_from_slice(&310u64.to_ne_bytes());
        r[32..38].copy_from_slice(b"curl\0\0");
        r
    }

    #[test]
    fn decodes_a_connect_with_its_tuple_and_owner() {
        let mut r = record(1, AF_INET, CONN_EVENT_SIZE);
        r[48..52].copy_from_slice(&[10, 200, 1, 10]);
        r[64..68].copy_from_slice(&[10, 200, 1, 11]);
        r[80..82].copy_from_slice(&40000u16.to_ne_bytes());
        r[82..84].copy_from_slice(&8080u16.to_ne_bytes());
        let Event::Tcp {
            kind,
            local,
            remote,
            process,
            netns,
            ..
        } = decode(&r).unwrap()
        else {
            panic!("not a TCP event");
        };
        assert_eq!(kind, ConnectionKind::Connect);
        assert_eq!(local, "10.200.1.10:40000".parse().unwrap());
        assert_eq!(remote, "10.200.1.11:8080".parse().unwrap());
        assert_eq!(process.comm, "curl");
        assert_eq!((process.pid, process.cgroup_id), (4242, 310));
        assert_eq!(netns, 4_026_532_000);
    }

    #[test]
    fn maps_ipv4_in_ipv6_to_ipv4_and_reads_close_counts() {
        let mut r = record(4, AF_INET6, CONN_EVENT_SIZE);
        r[48..64].copy_from_slice(&"::ffff:10.0.0.1".parse::<Ipv6Addr>().unwrap().octets());
        r[64..80].copy_from_slice(&"fd00::2".parse::<Ipv6Addr>().unwrap().octets());
        r[88..96].copy_from_slice(&5u64.to_ne_bytes());
        r[96..104].copy_from_slice(&7u64.to_ne_bytes());
        let Event::Tcp {
            local,
            remote,
            bytes_sent,
            bytes_received,
            ..
        } = decode(&r).unwrap()
        else {
            panic!("not a TCP event");
        };
        assert_eq!(local.ip(), "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(remote.ip(), "fd00::2".parse::<IpAddr>().unwrap());
        assert_eq!((bytes_sent, bytes_received), (5, 7));
    }

    #[test]
    fn decodes_exec_socket_and_drop() {
        let mut exec = record(5, 0, EXEC_EVENT_SIZE);
        exec[48..61].copy_from_slice(b"/usr/bin/curl");
        assert!(matches!(
            decode(&exec).unwrap(),
            Event::Exec { executable, .. } if executable == "/usr/bin/curl"
        ));
        let mut socket = record(6, 17, SOCKET_EVENT_SIZE);
        socket[48..52].copy_from_slice(&3u32.to_ne_bytes());
        assert!(matches!(
            decode(&socket).unwrap(),
            Event::Socket {
                family: 17,
                socket_type: 3,
                ..
            }
        ));
        let mut drop = record(7, AF_INET, CONN_EVENT_SIZE);
        drop[104..108].copy_from_slice(&12u32.to_ne_bytes());
        assert!(matches!(
            decode(&drop).unwrap(),
            Event::Drop { reason: 12, .. }
        ));
    }

    #[test]
    fn encode_is_the_inverse_of_decode() {
        let process = Process {
            pid: 7,
            comm: "nginx".into(),
            cgroup_id: 99,
        };
        let events = [
            Event::Tcp {
                kind: ConnectionKind::Close,
                netns: 1,
                time_ns: 2,
                process: process.clone(),
                local: "[fd00::1]:80".parse().unwrap(),
                remote: "[fd00::2]:5000".parse().unwrap(),
                bytes_sent: 3,
                bytes_received: 4,
                error: 104,
                existing: true,
            },
            Event::Exec {
                netns: 1,
                time_ns: 2,
                process: process.clone(),
                executable: "/bin/sh".into(),
            },
            Event::Socket {
                netns: 1,
                time_ns: 2,
                process,
                family: 17,
                socket_type: 3,
                protocol: 768,
            },
            Event::Drop {
                netns: 1,
                time_ns: 2,
                protocol: 17,
                src: "10.0.0.1:53".parse().unwrap(),
                dst: "10.0.0.2:5353".parse().unwrap(),
                reason: 12,
            },
            Event::Udp {
                direction: UdpDirection::Receive,
                netns: 1,
                time_ns: 2,
                process: Process {
                    pid: 1,
                    comm: "dns".into(),
                    cgroup_id: 3,
                },
                local: "0.0.0.0:53".parse().unwrap(),
                remote: "10.0.0.9:40000".parse().unwrap(),
            },
        ];
        for event in events {
            assert_eq!(decode(&encode(&event)), Ok(event));
        }
    }

    #[test]
    fn a_socket_error_tells_an_answer_from_a_timeout_and_a_reset_from_an_icmp_error() {
        use nix::errno::Errno;
        for answered in [Errno::ECONNREFUSED, Errno::EHOSTUNREACH, Errno::EACCES] {
            assert!(refused(answered as u32), "{answered}");
        }
        for unanswered in [0, Errno::ETIMEDOUT as u32] {
            assert!(!refused(unanswered));
        }
        assert!(closed_by_reset(Errno::ECONNRESET as u32));
        assert!(closed_by_reset(Errno::EPIPE as u32));
        assert!(
            !closed_by_reset(Errno::ECONNREFUSED as u32),
            "an unread ICMP error"
        );
        assert!(!closed_by_reset(0));
    }

    #[test]
    fn malformed_records_are_errors() {
        assert_eq!(decode(&[]), Err(DecodeError::UnknownKind(0)));
        assert_eq!(decode(&[11; 200]), Err(DecodeError::UnknownKind(11)));
        assert_eq!(decode(&[10; 200]), Err(DecodeError::Connecting));
        assert_eq!(
            decode(&record(5, 0, 100)),
            Err(DecodeError::Short {
                kind: 5,
                got: 100,
                want: EXEC_EVENT_SIZE
            })
        );
        assert_eq!(
            decode(&record(1, 99, CONN_EVENT_SIZE)),
            Err(DecodeError::Family(99))
        );
        for kind in 0..=11 {
            for len in 0..=CONN_EVENT_SIZE + 1 {
                let _ = decode(&record(kind, AF_INET, EXEC_EVENT_SIZE)[..len]);
            }
        }
    }
}
