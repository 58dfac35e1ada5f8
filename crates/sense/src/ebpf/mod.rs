//! The eBPF sensor: loads `bpf/sensor.bpf.c` (compiled by `build.rs`),
//! attaches its programs and hands out decoded events.
//!
//! Programs (all of them load where kprobes and fentry do not):
//! - `tp_btf/inet_sock_set_state`: TCP connect, accept, failed connect and
//!   close with byte counts and whether a received reset ended it; each
//!   record names its socket, and [`join`] joins a socket's records (the
//!   kernel keeps no per-connection state);
//! - `tp_btf/sched_process_exec`: executions;
//! - `cgroup/sock_create` at the cgroup2 root: raw and packet sockets;
//! - `cgroup/sendmsg4/6`, `connect4/6` and `recvmsg4/6` at the root: UDP
//!   flows, each reported once per ten seconds however many datagrams
//!   (the cgroup hooks always allow: the sensor watches, it never blocks);
//! - `tp_btf/kfree_skb`: packets the kernel dropped, with the reason;
//! - `iter/tcp`, once at the start: the connections and listeners that
//!   already exist, so a restart does not blind the agent.
//!
//! The programs submit without waking user space (a wake-up per event
//! costs more than the event), so [`Sensor::drain`] is called on a timer;
//! events the ring buffer had no room for are counted in the kernel and
//! read with [`Sensor::lost`].

pub mod event;
pub mod join;

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;

use aya::maps::{Array, MapData, RingBuf};
use aya::programs::{BtfTracePoint, CgroupAttachMode, CgroupSock, CgroupSockAddr, Iter};
use aya::{Btf, Ebpf};

pub use event::{
    ConnectionKind, DecodeError, Event, Process, UdpDirection, decode, encode, encode_for_socket,
};
pub use join::Joiner;

use crate::btf::{Types, drop_reasons};

/// The sensor's object; empty when the build had no clang (see build.rs).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sensor.bpf.o"));

/// Where the running kernel describes its types.
const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

#[derive(Debug, thiserror::Error)]
pub enum SensorError {
    #[error(
        "this build has no eBPF sensor: clang, bpftool or the kernel's BTF was missing when it was built"
    )]
    NotBuilt,
    #[error("reading the kernel's BTF ({KERNEL_BTF}): {0}")]
    KernelBtf(String),
    #[error("loading the sensor: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("program {name}: {error}")]
    Program {
        name: &'static str,
        error: aya::programs::ProgramError,
    },
    #[error("map {name}: {why}")]
    Map { name: &'static str, why: String },
    #[error("opening the cgroup2 root {path}: {error}")]
    Cgroup { path: String, error: std::io::Error },
}

/// The tracepoints, by program name.
const TRACEPOINTS: [(&str, &str); 3] = [
    ("on_tcp_state", "inet_sock_set_state"),
    ("on_exec", "sched_process_exec"),
    ("on_drop", "kfree_skb"),
];

pub struct Sensor {
    /// Holds the programs and their links: dropping it detaches them.
    ebpf: Ebpf,
    events: RingBuf<MapData>,
    lost: Array<MapData, u64>,
    drop_reasons: HashMap<u32, String>,
    joiner: Joiner,
    undecodable: u64,
    /// Connections that existed at the start, handed out by the first
    /// drain.
    existing: Vec<Event>,
}

impl Sensor {
    /// Loads and attaches every program; the socket hook goes on the
    /// cgroup2 hierarchy at `cgroup_root`, so it sees every container.
    pub fn start(cgroup_root: &Path) -> Result<Sensor, SensorError> {
        if OBJECT.is_empty() {
            return Err(SensorError::NotBuilt);
        }
        let kernel_btf = std::fs::read(KERNEL_BTF)
            .map_err(|e| SensorError::KernelBtf(e.to_string()))
            .and_then(|data| {
                Types::parse(&data).map_err(|e| SensorError::KernelBtf(e.to_string()))
            })?;
        let btf = Btf::from_sys_fs().map_err(|e| SensorError::KernelBtf(e.to_string()))?;
        let mut ebpf = Ebpf::load(OBJECT)?;
        for (name, tracepoint) in TRACEPOINTS {
            attach_tracepoint(&mut ebpf, &btf, name, tracepoint)?;
        }
        attach_socket_hook(&mut ebpf, cgroup_root)?;
        // After the hooks: a connection made in between is seen twice
        // rather than not at all.
        let records = existing_connections(&mut ebpf, &btf, cgroup_root)?;
        let events = take_map(&mut ebpf, "events", RingBuf::try_from)?;
        let lost = take_map(&mut ebpf, "lost", Array::try_from)?;
        let mut sensor = Sensor {
            ebpf,
            events,
            lost,
            drop_reasons: drop_reasons(&kernel_btf),
            joiner: Joiner::new(),
            undecodable: 0,
            existing: Vec::new(),
        };
        // Through the join, so that their closes find them.
        for record in records
            .iter()
            .flat_map(|r| r.chunks(event::CONN_EVENT_SIZE))
        {
            match sensor.joiner.push(record) {
                Ok(event) => sensor.existing.extend(event),
                Err(_) => sensor.undecodable += 1,
            }
        }
        Ok(sensor)
    }

    /// Hands every event waiting in the ring buffer to `sink`; returns how
    /// many there were. Records that do not decode are counted
    /// ([`Sensor::undecodable`]).
    pub fn drain(&mut self, sink: &mut dyn FnMut(Event)) -> usize {
        let mut n = self.existing.len();
        for event in self.existing.drain(..) {
            sink(event);
        }
        let mut undecodable = 0;
        let (events, joiner) = (&mut self.events, &mut self.joiner);
        while let Some(record) = events.next() {
            n += 1;
            match joiner.push(&record) {
                Ok(Some(event)) => sink(event),
                Ok(None) => {}
                Err(_) => undecodable += 1,
            }
        }
        self.undecodable += undecodable;
        n
    }

    /// The ring buffer's records as the kernel wrote them (for recording
    /// fixtures); [`Sensor::drain`] decodes them.
    pub fn drain_records(&mut self, sink: &mut dyn FnMut(&[u8])) -> usize {
        let mut n = 0;
        while let Some(record) = self.events.next() {
            n += 1;
            sink(&record);
        }
        n
    }

    /// Events lost in the kernel: those the ring buffer had no room for,
    /// and runs of the tracepoint programs the kernel skipped because the
    /// program was already running on that CPU (a softirq's state change
    /// interrupting a process's).
    pub fn lost(&self) -> u64 {
        self.lost.get(&0, 0).unwrap_or(0) + self.recursion_misses()
    }

    /// The kernel counts skipped runs per program and shows them in the
    /// program descriptor's fdinfo (aya 0.14 does not expose the count).
    fn recursion_misses(&self) -> u64 {
        TRACEPOINTS
            .iter()
            .filter_map(|(name, _)| {
                let fd = self.ebpf.program(name)?.fd().ok()?.as_fd().as_raw_fd();
                let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
                fdinfo_field(&info, "recursion_misses")
            })
            .sum()
    }

    pub fn undecodable(&self) -> u64 {
        self.undecodable
    }

    /// What the join of TCP records could not pair, and forgot (see
    /// [`Joiner::unpaired`] and [`Joiner::forgotten`]).
    pub fn join_counts(&self) -> (u64, u64) {
        (self.joiner.unpaired(), self.joiner.forgotten())
    }

    /// The running kernel's name for a drop reason (`NETFILTER_DROP`).
    pub fn drop_reason(&self, reason: u32) -> String {
        self.drop_reasons
            .get(&reason)
            .cloned()
            .unwrap_or_else(|| format!("drop reason {reason}"))
    }
}

/// A numeric field of an fdinfo file (`name:\tvalue` lines).
fn fdinfo_field(info: &str, name: &str) -> Option<u64> {
    info.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == name).then(|| value.trim().parse().ok())?
    })
}

/// The records of the TCP connections that exist now (a buffer for each
/// namespace), in every network
/// namespace of a container under `cgroup_root` and the agent's own, from
/// the TCP iterator (which also fills the listener map). The iterator sees
/// the sockets of the namespace it is read in, so each namespace is read
/// from a thread entered into it.
fn existing_connections(
    ebpf: &mut Ebpf,
    btf: &Btf,
    cgroup_root: &Path,
) -> Result<Vec<Vec<u8>>, SensorError> {
    let name = "dump_tcp";
    let failed = |error| SensorError::Program { name, error };
    let iter: &mut Iter = program(ebpf, name)?.try_into().map_err(failed)?;
    iter.load("tcp", btf).map_err(failed)?;
    let mut links = Vec::new();
    for namespace in crate::namespaces::network_namespaces(cgroup_root) {
        let link = iter.attach().map_err(failed)?;
        links.push((namespace, iter.take_link(link).map_err(failed)?));
    }
    let mut records = Vec::new();
    for (namespace, link) in links {
        // A namespace gone since (its pod stopped) has nothing to report.
        if let Ok(Some(more)) = std::thread::spawn(move || read_in(&namespace, link)).join() {
            records.push(more);
        }
    }
    Ok(records)
}

/// Reads an iterator from inside `namespace` (on the calling thread,
/// which it moves there: call it on a thread of its own).
fn read_in(namespace: &Path, link: aya::programs::iter::IterLink) -> Option<Vec<u8>> {
    use std::io::Read;
    let target = File::open(namespace).ok()?;
    nix::sched::setns(&target, nix::sched::CloneFlags::CLONE_NEWNET).ok()?;
    let mut records = Vec::new();
    link.into_file().ok()?.read_to_end(&mut records).ok()?;
    Some(records)
}

fn attach_tracepoint(
    ebpf: &mut Ebpf,
    btf: &Btf,
    name: &'static str,
    tracepoint: &str,
) -> Result<(), SensorError> {
    let failed = |error| SensorError::Program { name, error };
    let program: &mut BtfTracePoint = program(ebpf, name)?.try_into().map_err(failed)?;
    program.load(tracepoint, btf).map_err(failed)?;
    program.attach().map_err(failed)?;
    Ok(())
}

/// The UDP hooks, by program name (the attach point is in the section).
const UDP_HOOKS: [&str; 6] = [
    "on_udp_sendmsg4",
    "on_udp_sendmsg6",
    "on_udp_connect4",
    "on_udp_connect6",
    "on_udp_recvmsg4",
    "on_udp_recvmsg6",
];

fn attach_socket_hook(ebpf: &mut Ebpf, cgroup_root: &Path) -> Result<(), SensorError> {
    let cgroup = File::open(cgroup_root).map_err(|error| SensorError::Cgroup {
        path: cgroup_root.display().to_string(),
        error,
    })?;
    let name = "on_sock_create";
    let failed = |error| SensorError::Program { name, error };
    let sock: &mut CgroupSock = program(ebpf, name)?.try_into().map_err(failed)?;
    sock.load().map_err(failed)?;
    sock.attach(&cgroup, CgroupAttachMode::Single)
        .map_err(failed)?;
    for name in UDP_HOOKS {
        let failed = |error| SensorError::Program { name, error };
        let addr: &mut CgroupSockAddr = program(ebpf, name)?.try_into().map_err(failed)?;
        addr.load().map_err(failed)?;
        addr.attach(&cgroup, CgroupAttachMode::Single)
            .map_err(failed)?;
    }
    Ok(())
}

fn program<'e>(
    ebpf: &'e mut Ebpf,
    name: &'static str,
) -> Result<&'e mut aya::programs::Program, SensorError> {
    ebpf.program_mut(name).ok_or(SensorError::Map {
        name,
        why: "not in the object".into(),
    })
}

fn take_map<M, E: std::fmt::Display>(
    ebpf: &mut Ebpf,
    name: &'static str,
    convert: impl FnOnce(aya::maps::Map) -> Result<M, E>,
) -> Result<M, SensorError> {
    let map = ebpf.take_map(name).ok_or(SensorError::Map {
        name,
        why: "not in the object".into(),
    })?;
    convert(map).map_err(|e| SensorError::Map {
        name,
        why: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use event::{CONN_EVENT_SIZE, EXEC_EVENT_SIZE, HEAD_SIZE, SOCKET_EVENT_SIZE};

    fn le(elf: &[u8], at: usize, len: usize) -> Option<usize> {
        let bytes = elf.get(at..at + len)?;
        Some(
            bytes
                .iter()
                .rev()
                .fold(0, |n, &b| (n << 8) | usize::from(b)),
        )
    }

    /// A section of a 64-bit little-endian ELF file, by name.
    fn elf_section<'a>(elf: &'a [u8], wanted: &str) -> Option<&'a [u8]> {
        let sections = le(elf, 0x28, 8)?;
        let (entry, count, names) = (le(elf, 0x3a, 2)?, le(elf, 0x3c, 2)?, le(elf, 0x3e, 2)?);
        let header = |i: usize| sections + i * entry;
        let body = |i: usize| {
            let (offset, size) = (le(elf, header(i) + 24, 8)?, le(elf, header(i) + 32, 8)?);
            elf.get(offset..offset + size)
        };
        let names = body(names)?;
        (0..count).find_map(|i| {
            let name = names
                .get(le(elf, header(i), 4)?..)?
                .split(|&b| b == 0)
                .next()?;
            (name == wanted.as_bytes()).then(|| body(i))?
        })
    }

    #[test]
    fn reads_fdinfo_fields() {
        let info = "pos:\t0\nflags:\t02000002\nrun_cnt:\t17\nrecursion_misses:\t2\n";
        assert_eq!(fdinfo_field(info, "recursion_misses"), Some(2));
        assert_eq!(fdinfo_field(info, "run_cnt"), Some(17));
        assert_eq!(fdinfo_field(info, "missing"), None);
        assert_eq!(
            fdinfo_field("recursion_misses:\tx\n", "recursion_misses"),
            None
        );
    }

    #[test]
    fn the_decoder_agrees_with_the_sensor_on_event_sizes() {
        if OBJECT.is_empty() {
            let required = std::env::var("PALISADE_PRIVILEGED_TESTS").is_ok_and(|v| v == "require");
            assert!(
                !required,
                "the eBPF sensor was not built (clang, bpftool or BTF missing)"
            );
            eprintln!("SKIPPED: this build has no eBPF sensor");
            return;
        }
        let btf = elf_section(OBJECT, ".BTF").expect("the object has BTF");
        let types = Types::parse(btf).expect("the object's BTF parses");
        for (name, size) in [
            ("head", HEAD_SIZE),
            ("conn_event", CONN_EVENT_SIZE),
            ("exec_event", EXEC_EVENT_SIZE),
            ("socket_event", SOCKET_EVENT_SIZE),
        ] {
            assert_eq!(types.struct_size(name), Some(size as u32), "struct {name}");
        }
    }
}
