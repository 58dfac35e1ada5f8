//! Joins the sensor's TCP records into whole events. The kernel keeps no
//! per-connection state (a hash-map update per connection costs every
//! pod's connection rate, see `bpf/sensor.bpf.c`); each TCP record names
//! its socket instead, and here:
//!
//! - a connect or failed connect takes the owner that the socket's
//!   `connecting` record saw in the process that connected (the connect
//!   itself completes in softirq, where only the socket's cgroup is right);
//! - a close takes the tuple and owner of the connect or accept it ends
//!   (its own source port may read 0 again, and it runs in softirq too).
//!
//! The ring buffer hands records out in the order they were reserved, and
//! a socket's state changes are serialised by its lock, so a socket's
//! records arrive in order. A socket's address is reused only after it
//! was freed, after its close: a new `connecting` or connect replaces
//! whatever a lost close left behind.

use std::collections::HashMap;

use rustc_hash::FxBuildHasher;

use super::event::{
    CONN_EVENT_SIZE, COUNTS_AND_FLAGS, DecodeError, Event, KIND_ACCEPT, KIND_CLOSE, KIND_CONNECT,
    KIND_CONNECT_FAILED, KIND_CONNECTING, OWNER, SOCK, TIME, decode,
};

/// How many sockets each table holds before it is emptied: they only grow
/// past the node's connections in progress and open when records are lost
/// (a close that never came), so emptying them is rare and counted.
const CONNECTING_LIMIT: usize = 65_536;
const OPEN_LIMIT: usize = 262_144;

type Owner = [u8; OWNER.end - OWNER.start];
type ConnRecord = [u8; CONN_EVENT_SIZE];

/// The tables are keyed by socket addresses, which the kernel chooses and
/// nobody can aim at the hash, so the fast unkeyed hash is safe.
#[derive(Default)]
pub struct Joiner {
    /// The owner of each socket between SYN_SENT and its outcome.
    connecting: HashMap<u64, Owner, FxBuildHasher>,
    /// The connect or accept record of each open connection.
    open: HashMap<u64, ConnRecord, FxBuildHasher>,
    forgotten: u64,
}

impl Joiner {
    pub fn new() -> Joiner {
        Joiner::default()
    }

    /// The event `record` completes: `None` for a `connecting` record,
    /// which only waits for its connect.
    pub fn push(&mut self, record: &[u8]) -> Result<Option<Event>, DecodeError> {
        let kind = record.first().copied().unwrap_or(0);
        if !matches!(kind, KIND_CONNECT..=KIND_CLOSE | KIND_CONNECTING) {
            return decode(record).map(Some);
        }
        let Some(mut joined) = record
            .get(..CONN_EVENT_SIZE)
            .and_then(|r| ConnRecord::try_from(r).ok())
        else {
            return Err(DecodeError::Short {
                kind,
                got: record.len(),
                want: CONN_EVENT_SIZE,
            });
        };
        let sock = u64::from_ne_bytes(joined[SOCK].try_into().unwrap_or_default());
        // Records built whole (replays, `encode`) name no socket.
        if sock == 0 {
            return decode(&joined).map(Some);
        }
        match kind {
            KIND_CONNECTING => {
                let owner = joined[OWNER].try_into().unwrap_or([0; 32]);
                insert_bounded(
                    &mut self.connecting,
                    CONNECTING_LIMIT,
                    sock,
                    owner,
                    &mut self.forgotten,
                );
                return Ok(None);
            }
            KIND_CONNECT | KIND_CONNECT_FAILED => {
                if let Some(owner) = self.connecting.remove(&sock) {
                    joined[OWNER].copy_from_slice(&owner);
                }
            }
            KIND_CLOSE => {
                if let Some(open) = self.open.remove(&sock) {
                    let close = joined;
                    joined = open;
                    joined[0] = KIND_CLOSE;
                    joined[TIME].copy_from_slice(&close[TIME]);
                    joined[COUNTS_AND_FLAGS].copy_from_slice(&close[COUNTS_AND_FLAGS]);
                }
            }
            _ => {}
        }
        let event = decode(&joined)?;
        if matches!(kind, KIND_CONNECT | KIND_ACCEPT) {
            insert_bounded(
                &mut self.open,
                OPEN_LIMIT,
                sock,
                joined,
                &mut self.forgotten,
            );
        }
        Ok(Some(event))
    }

    /// Sockets dropped from a full table: their close (or connect) came, or
    /// will come, without what their earlier records said.
    pub fn forgotten(&self) -> u64 {
        self.forgotten
    }

    /// Sockets waiting for their connect's outcome, and open connections.
    pub fn sizes(&self) -> (usize, usize) {
        (self.connecting.len(), self.open.len())
    }
}

fn insert_bounded<V>(
    table: &mut HashMap<u64, V, FxBuildHasher>,
    limit: usize,
    sock: u64,
    value: V,
    forgotten: &mut u64,
) {
    if table.len() >= limit && !table.contains_key(&sock) {
        *forgotten += table.len() as u64;
        table.clear();
    }
    table.insert(sock, value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ebpf::event::{ConnectionKind, Process, encode, encode_for_socket};
    use std::net::SocketAddr;

    fn tcp(kind: ConnectionKind, comm: &str, local: &str, remote: &str) -> Event {
        Event::Tcp {
            kind,
            netns: 9,
            time_ns: 100,
            process: Process {
                pid: if comm.is_empty() { 0 } else { 42 },
                comm: comm.into(),
                cgroup_id: 7,
            },
            local: local.parse().unwrap(),
            remote: remote.parse().unwrap(),
            bytes_sent: 0,
            bytes_received: 0,
            reset_received: false,
            existing: false,
        }
    }

    /// `event` as the kernel writes it for socket `sock`.
    fn kernel(event: &Event, kind: u8, sock: u64) -> Vec<u8> {
        encode_for_socket(event, sock, kind == KIND_CONNECTING)
    }

    fn fields(event: &Event) -> (ConnectionKind, &str, SocketAddr, u64, bool) {
        match event {
            Event::Tcp {
                kind,
                process,
                local,
                bytes_sent,
                reset_received,
                ..
            } => (*kind, &process.comm, *local, *bytes_sent, *reset_received),
            other => panic!("not TCP: {other:?}"),
        }
    }

    #[test]
    fn a_connect_takes_its_owner_from_connecting_and_a_close_its_tuple_from_the_connect() {
        let mut join = Joiner::new();
        let connecting = tcp(ConnectionKind::Connect, "curl", "10.0.0.1:0", "10.0.0.2:80");
        assert_eq!(
            join.push(&kernel(&connecting, KIND_CONNECTING, 5)),
            Ok(None)
        );
        // Established in softirq: the cgroup is the socket's, no process.
        let connect = tcp(ConnectionKind::Connect, "", "10.0.0.1:40000", "10.0.0.2:80");
        let event = join
            .push(&kernel(&connect, KIND_CONNECT, 5))
            .unwrap()
            .unwrap();
        let (kind, comm, local, ..) = fields(&event);
        assert_eq!(
            (kind, comm, local.port()),
            (ConnectionKind::Connect, "curl", 40000)
        );
        assert_eq!(join.sizes(), (0, 1));

        let mut close = kernel(
            &tcp(ConnectionKind::Close, "", "10.0.0.1:0", "10.0.0.2:80"),
            KIND_CLOSE,
            5,
        );
        close[88..96].copy_from_slice(&300u64.to_ne_bytes());
        close[104..108].copy_from_slice(&1u32.to_ne_bytes());
        let event = join.push(&close).unwrap().unwrap();
        assert_eq!(
            fields(&event),
            (
                ConnectionKind::Close,
                "curl",
                "10.0.0.1:40000".parse().unwrap(),
                300,
                true
            )
        );
        assert_eq!(join.sizes(), (0, 0));
    }

    #[test]
    fn a_failed_connect_takes_its_owner_and_leaves_nothing_behind() {
        let mut join = Joiner::new();
        let connecting = tcp(
            ConnectionKind::Connect,
            "python3",
            "10.0.0.1:0",
            "10.0.0.2:81",
        );
        join.push(&kernel(&connecting, KIND_CONNECTING, 6)).unwrap();
        let failed = tcp(
            ConnectionKind::ConnectFailed,
            "",
            "10.0.0.1:0",
            "10.0.0.2:81",
        );
        let event = join
            .push(&kernel(&failed, KIND_CONNECT_FAILED, 6))
            .unwrap()
            .unwrap();
        assert_eq!(fields(&event).1, "python3");
        assert_eq!(join.sizes(), (0, 0));
    }

    #[test]
    fn a_close_without_its_connect_is_reported_as_the_kernel_saw_it() {
        let mut join = Joiner::new();
        let close = tcp(ConnectionKind::Close, "", "10.0.0.1:0", "10.0.0.2:80");
        let event = join.push(&kernel(&close, KIND_CLOSE, 8)).unwrap().unwrap();
        assert_eq!(event, close);
        // Whole records (replays) name no socket and pass as they are.
        let connect = tcp(ConnectionKind::Connect, "curl", "10.0.0.1:1", "10.0.0.2:80");
        assert_eq!(join.push(&encode(&connect)), Ok(Some(connect)));
        assert_eq!(join.sizes(), (0, 0));
    }

    #[test]
    fn a_reused_socket_address_replaces_what_a_lost_close_left() {
        let mut join = Joiner::new();
        let first = tcp(
            ConnectionKind::Accept,
            "nginx",
            "10.0.0.2:80",
            "10.0.0.1:1000",
        );
        join.push(&kernel(&first, KIND_ACCEPT, 9)).unwrap();
        let second = tcp(
            ConnectionKind::Accept,
            "nginx",
            "10.0.0.2:80",
            "10.0.0.3:2000",
        );
        join.push(&kernel(&second, KIND_ACCEPT, 9)).unwrap();
        let close = tcp(ConnectionKind::Close, "", "10.0.0.2:80", "0.0.0.0:0");
        let Some(Event::Tcp { remote, .. }) = join.push(&kernel(&close, KIND_CLOSE, 9)).unwrap()
        else {
            panic!("a close");
        };
        assert_eq!(remote, "10.0.0.3:2000".parse().unwrap());
    }

    #[test]
    fn full_tables_are_emptied_and_counted() {
        let mut join = Joiner::new();
        let connecting = tcp(ConnectionKind::Connect, "x", "10.0.0.1:0", "10.0.0.2:80");
        for sock in 1..=CONNECTING_LIMIT as u64 + 1 {
            join.push(&kernel(&connecting, KIND_CONNECTING, sock))
                .unwrap();
        }
        assert_eq!(join.forgotten(), CONNECTING_LIMIT as u64);
        assert_eq!(join.sizes(), (1, 0));
    }

    #[test]
    fn short_and_malformed_tcp_records_are_errors() {
        let mut join = Joiner::new();
        for kind in [KIND_CONNECT, KIND_CLOSE, KIND_CONNECTING] {
            let record = vec![kind; CONN_EVENT_SIZE - 1];
            assert!(matches!(join.push(&record), Err(DecodeError::Short { .. })));
        }
        let mut record = kernel(
            &tcp(ConnectionKind::Connect, "x", "10.0.0.1:1", "10.0.0.2:80"),
            KIND_CONNECT,
            3,
        );
        record[1] = 99;
        assert_eq!(join.push(&record), Err(DecodeError::Family(99)));
        assert_eq!(join.sizes(), (0, 0), "an undecodable connect is not kept");
        assert_eq!(join.push(&[]), Err(DecodeError::UnknownKind(0)));
    }
}
