//! Joins the sensor's TCP records into whole events. The kernel keeps no
//! per-connection state (a hash-map update per connection costs every
//! pod's connection rate, see `bpf/sensor.bpf.c`); each TCP record names
//! its socket instead, and here:
//!
//! - a connect or failed connect takes the owner that the socket's
//!   `connecting` record saw in the process that connected (the connect
//!   itself completes in softirq, where only the socket's cgroup is right);
//! - an accept of a socket that was connecting is a simultaneous open
//!   (crossed SYNs): the socket's own connect, not an accept, and a close
//!   of a connecting socket is its failed connect;
//! - a close takes the tuple and owner of the connect or accept it ends
//!   (its own source port may read 0 again, and it runs in softirq too).
//!
//! A socket's state changes are serialised by its lock and the ring buffer
//! hands records out in the order they were reserved, so a socket's
//! records arrive in order; its address is reused only after it was
//! freed, after its close. Two things break that: a lost record, and the
//! connections read from the TCP iterator at the start, which may be
//! newer than ring records not yet read. So a join also checks that both
//! records name the same remote address and namespace; records that find
//! no partner are reported as the kernel gave them, and counted.

use std::collections::HashMap;

use rustc_hash::FxBuildHasher;

use super::event::{
    AF_INET, AF_INET6, CLOSE_FIELDS, CONN_EVENT_SIZE, DecodeError, Event, KIND_ACCEPT, KIND_CLOSE,
    KIND_CONNECT, KIND_CONNECT_FAILED, KIND_CONNECTING, NETNS, OWNER, REMOTE, REMOTE_PORT, SOCK,
    TIME, decode,
};

/// How many sockets each table holds. They hold the node's connections in
/// progress and open; past that (records were lost, or the node has more)
/// the older half by time is forgotten, and counted.
const CONNECTING_LIMIT: usize = 65_536;
const OPEN_LIMIT: usize = 262_144;

type ConnRecord = [u8; CONN_EVENT_SIZE];
type Table = HashMap<u64, ConnRecord, FxBuildHasher>;

/// The tables are keyed by socket addresses, which the kernel chooses and
/// nobody can aim at the hash, so the fast unkeyed hash is safe.
#[derive(Default)]
pub struct Joiner {
    /// The `connecting` record of each socket between SYN_SENT and its
    /// outcome.
    connecting: Table,
    /// The connect or accept record of each open connection.
    open: Table,
    unpaired: u64,
    forgotten: u64,
}

impl Joiner {
    pub fn new() -> Joiner {
        Joiner::default()
    }

    /// The event `record` completes: `None` for a `connecting` record,
    /// which only waits for its outcome.
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
                // Checked now so that a bad one is an error, not a bad join
                // (a whole-length TCP record fails to decode only so).
                if !matches!(joined[1], AF_INET | AF_INET6) {
                    return Err(DecodeError::Family(joined[1]));
                }
                if self.open.remove(&sock).is_some() {
                    self.unpaired += 1;
                }
                self.keep_connecting(sock, joined);
                return Ok(None);
            }
            KIND_CONNECT | KIND_CONNECT_FAILED | KIND_ACCEPT => {
                if let Some(connecting) = self.take_partner(Partner::Connecting, sock, &joined) {
                    joined[OWNER].copy_from_slice(&connecting[OWNER]);
                    if kind == KIND_ACCEPT {
                        joined[0] = KIND_CONNECT;
                    }
                }
            }
            _ => {
                if let Some(open) = self.take_partner(Partner::Open, sock, &joined) {
                    let close = joined;
                    joined = open;
                    joined[0] = KIND_CLOSE;
                    joined[TIME].copy_from_slice(&close[TIME]);
                    joined[CLOSE_FIELDS].copy_from_slice(&close[CLOSE_FIELDS]);
                } else if let Some(connecting) =
                    self.take_partner(Partner::Connecting, sock, &joined)
                {
                    // A simultaneous open that failed.
                    joined[0] = KIND_CONNECT_FAILED;
                    joined[OWNER].copy_from_slice(&connecting[OWNER]);
                } else if !self.open.contains_key(&sock) && !self.connecting.contains_key(&sock) {
                    // (A mismatched entry was counted when it was found.)
                    self.unpaired += 1;
                }
            }
        }
        let event = decode(&joined)?;
        if matches!(joined[0], KIND_CONNECT | KIND_ACCEPT) {
            self.keep_open(sock, joined);
        }
        Ok(Some(event))
    }

    /// TCP records that found no partner, or whose partner never came:
    /// closes of connections the sensor did not see open (lost records,
    /// connections older than the agent that the iterator missed), and
    /// open connections or attempts whose end was lost.
    pub fn unpaired(&self) -> u64 {
        self.unpaired
    }

    /// Sockets forgotten because a table was full.
    pub fn forgotten(&self) -> u64 {
        self.forgotten
    }

    /// Sockets waiting for their connect's outcome, and open connections.
    pub fn sizes(&self) -> (usize, usize) {
        (self.connecting.len(), self.open.len())
    }

    /// The socket's earlier record in `table` when it names the same peer;
    /// one that does not is unpaired (a lost close, or an iterator record
    /// newer than this one) and stays.
    fn take_partner(
        &mut self,
        table: Partner,
        sock: u64,
        record: &ConnRecord,
    ) -> Option<ConnRecord> {
        let table = match table {
            Partner::Connecting => &mut self.connecting,
            Partner::Open => &mut self.open,
        };
        let earlier = table.get(&sock)?;
        if !same_peer(earlier, record) {
            self.unpaired += 1;
            return None;
        }
        table.remove(&sock)
    }

    fn keep_connecting(&mut self, sock: u64, record: ConnRecord) {
        if insert_bounded(
            &mut self.connecting,
            CONNECTING_LIMIT,
            sock,
            record,
            &mut self.forgotten,
        ) {
            self.unpaired += 1;
        }
    }

    fn keep_open(&mut self, sock: u64, record: ConnRecord) {
        if insert_bounded(
            &mut self.open,
            OPEN_LIMIT,
            sock,
            record,
            &mut self.forgotten,
        ) {
            self.unpaired += 1;
        }
    }
}

#[derive(Clone, Copy)]
enum Partner {
    Connecting,
    Open,
}

/// Whether two records of one socket name the same remote end in the same
/// namespace (the kernel keeps both until after the close's record).
fn same_peer(a: &ConnRecord, b: &ConnRecord) -> bool {
    a[REMOTE] == b[REMOTE] && a[REMOTE_PORT] == b[REMOTE_PORT] && a[NETNS] == b[NETNS]
}

/// Inserts, first forgetting the older half of a full table; true when the
/// socket had an entry already (its end was lost).
fn insert_bounded(
    table: &mut Table,
    limit: usize,
    sock: u64,
    record: ConnRecord,
    forgotten: &mut u64,
) -> bool {
    if table.len() >= limit && !table.contains_key(&sock) {
        let time = |r: &ConnRecord| u64::from_ne_bytes(r[TIME].try_into().unwrap_or_default());
        let mut times: Vec<u64> = table.values().map(time).collect();
        let middle = times.len() / 2;
        let (_, median, _) = times.select_nth_unstable(middle);
        let median = *median;
        let before = table.len();
        table.retain(|_, r| time(r) >= median);
        if table.len() >= limit {
            // Half of them or more share one time: none is older.
            table.clear();
        }
        *forgotten += (before - table.len()) as u64;
    }
    table.insert(sock, record).is_some()
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
            error: 0,
            existing: false,
        }
    }

    /// `event` as the kernel writes it for socket `sock`.
    fn kernel(event: &Event, kind: u8, sock: u64) -> Vec<u8> {
        let mut record = encode_for_socket(event, sock, kind == KIND_CONNECTING);
        record[0] = kind;
        record
    }

    fn fields(event: &Event) -> (ConnectionKind, &str, SocketAddr, u64, u32) {
        match event {
            Event::Tcp {
                kind,
                process,
                local,
                bytes_sent,
                error,
                ..
            } => (*kind, &process.comm, *local, *bytes_sent, *error),
            other => panic!("not TCP: {other:?}"),
        }
    }

    const CLIENT: &str = "10.0.0.1:40000";
    const UNBOUND: &str = "10.0.0.1:0";
    const SERVER: &str = "10.0.0.2:80";

    fn connecting(join: &mut Joiner, sock: u64) {
        let record = kernel(
            &tcp(ConnectionKind::Connect, "curl", UNBOUND, SERVER),
            KIND_CONNECTING,
            sock,
        );
        assert_eq!(join.push(&record), Ok(None));
    }

    #[test]
    fn a_connect_takes_its_owner_from_connecting_and_a_close_its_tuple_from_the_connect() {
        let mut join = Joiner::new();
        connecting(&mut join, 5);
        // Established in softirq: the cgroup is the socket's, no process.
        let connect = tcp(ConnectionKind::Connect, "", CLIENT, SERVER);
        let event = join
            .push(&kernel(&connect, KIND_CONNECT, 5))
            .unwrap()
            .unwrap();
        assert_eq!(
            fields(&event),
            (
                ConnectionKind::Connect,
                "curl",
                CLIENT.parse().unwrap(),
                0,
                0
            )
        );
        assert_eq!(join.sizes(), (0, 1));

        let mut close = kernel(
            &tcp(ConnectionKind::Close, "", UNBOUND, SERVER),
            KIND_CLOSE,
            5,
        );
        close[88..96].copy_from_slice(&300u64.to_ne_bytes());
        close[108..112].copy_from_slice(&104u32.to_ne_bytes());
        let event = join.push(&close).unwrap().unwrap();
        assert_eq!(
            fields(&event),
            (
                ConnectionKind::Close,
                "curl",
                CLIENT.parse().unwrap(),
                300,
                104
            )
        );
        assert_eq!(join.sizes(), (0, 0));
        assert_eq!(join.unpaired(), 0);
    }

    #[test]
    fn a_failed_connect_takes_its_owner_and_leaves_nothing_behind() {
        let mut join = Joiner::new();
        connecting(&mut join, 6);
        let failed = tcp(ConnectionKind::ConnectFailed, "", UNBOUND, SERVER);
        let event = join
            .push(&kernel(&failed, KIND_CONNECT_FAILED, 6))
            .unwrap()
            .unwrap();
        assert_eq!(fields(&event).1, "curl");
        assert_eq!(join.sizes(), (0, 0));
    }

    #[test]
    fn a_simultaneous_open_is_the_sockets_own_connect_and_its_failure_a_failed_connect() {
        let mut join = Joiner::new();
        connecting(&mut join, 7);
        // SYN_SENT -> SYN_RECV -> ESTABLISHED reads as an accept.
        let crossed = tcp(ConnectionKind::Accept, "", CLIENT, SERVER);
        let event = join
            .push(&kernel(&crossed, KIND_ACCEPT, 7))
            .unwrap()
            .unwrap();
        assert_eq!(fields(&event).0, ConnectionKind::Connect);
        assert_eq!(fields(&event).1, "curl");
        assert_eq!(join.sizes(), (0, 1));

        connecting(&mut join, 8);
        let close = tcp(ConnectionKind::Close, "", CLIENT, SERVER);
        let event = join.push(&kernel(&close, KIND_CLOSE, 8)).unwrap().unwrap();
        assert_eq!(fields(&event).0, ConnectionKind::ConnectFailed);
        assert_eq!(fields(&event).1, "curl");
        assert_eq!(join.unpaired(), 0);
    }

    #[test]
    fn a_close_without_its_connect_is_reported_as_the_kernel_saw_it_and_counted() {
        let mut join = Joiner::new();
        let close = tcp(ConnectionKind::Close, "", UNBOUND, SERVER);
        let event = join.push(&kernel(&close, KIND_CLOSE, 8)).unwrap().unwrap();
        assert_eq!(event, close);
        assert_eq!(join.unpaired(), 1);
        // Whole records (replays) name no socket and pass as they are.
        let connect = tcp(ConnectionKind::Connect, "curl", CLIENT, SERVER);
        assert_eq!(join.push(&encode(&connect)), Ok(Some(connect)));
        assert_eq!(join.sizes(), (0, 0));
    }

    #[test]
    fn a_close_joins_only_the_connection_with_its_peer() {
        let mut join = Joiner::new();
        let old = "10.0.0.1:1000";
        let first = tcp(ConnectionKind::Accept, "nginx", SERVER, old);
        join.push(&kernel(&first, KIND_ACCEPT, 9)).unwrap();
        // Its close was lost; the address now holds another connection.
        let second = tcp(ConnectionKind::Accept, "nginx", SERVER, "10.0.0.3:2000");
        join.push(&kernel(&second, KIND_ACCEPT, 9)).unwrap();
        assert_eq!(join.unpaired(), 1, "the first one's end was lost");
        // A close of a different peer (read before an iterator's newer
        // record) does not take the entry.
        let stray = tcp(ConnectionKind::Close, "", SERVER, old);
        let Some(Event::Tcp { remote, .. }) = join.push(&kernel(&stray, KIND_CLOSE, 9)).unwrap()
        else {
            panic!("a close");
        };
        assert_eq!(remote, old.parse().unwrap());
        assert_eq!((join.unpaired(), join.sizes()), (2, (0, 1)));
        let close = tcp(ConnectionKind::Close, "", "10.0.0.2:0", "10.0.0.3:2000");
        let Some(Event::Tcp { local, process, .. }) =
            join.push(&kernel(&close, KIND_CLOSE, 9)).unwrap()
        else {
            panic!("a close");
        };
        assert_eq!(
            (local, process.comm.as_str()),
            (SERVER.parse().unwrap(), "nginx")
        );
        assert_eq!(join.sizes(), (0, 0));
    }

    #[test]
    fn a_full_table_forgets_its_older_half() {
        let mut join = Joiner::new();
        for sock in 1..=CONNECTING_LIMIT as u64 + 1 {
            let mut event = tcp(ConnectionKind::Connect, "x", UNBOUND, SERVER);
            if let Event::Tcp { time_ns, .. } = &mut event {
                *time_ns = sock;
            }
            join.push(&kernel(&event, KIND_CONNECTING, sock)).unwrap();
        }
        assert_eq!(join.forgotten(), CONNECTING_LIMIT as u64 / 2);
        assert_eq!(join.sizes(), (CONNECTING_LIMIT / 2 + 1, 0));
        // The newest are kept.
        let failed = tcp(ConnectionKind::ConnectFailed, "", UNBOUND, SERVER);
        let newest = CONNECTING_LIMIT as u64;
        let event = join
            .push(&kernel(&failed, KIND_CONNECT_FAILED, newest))
            .unwrap()
            .unwrap();
        assert_eq!(fields(&event).1, "x");
    }

    #[test]
    fn short_and_malformed_tcp_records_are_errors() {
        let mut join = Joiner::new();
        for kind in [KIND_CONNECT, KIND_CLOSE, KIND_CONNECTING] {
            let record = vec![kind; CONN_EVENT_SIZE - 1];
            assert!(matches!(join.push(&record), Err(DecodeError::Short { .. })));
        }
        for kind in [KIND_CONNECT, KIND_CONNECTING] {
            let mut record = kernel(&tcp(ConnectionKind::Connect, "x", CLIENT, SERVER), kind, 3);
            record[1] = 99;
            assert_eq!(join.push(&record), Err(DecodeError::Family(99)));
        }
        assert_eq!(join.sizes(), (0, 0), "an undecodable record is not kept");
        assert_eq!(join.push(&[]), Err(DecodeError::UnknownKind(0)));
    }
}
