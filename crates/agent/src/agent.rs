//! The agent's loop: drain the sensor, attribute each event, judge it with
//! the same judge `flows verify` uses, send alerts as JSON lines the moment
//! they are raised, and reload the policy when its files change.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use palisade_detect::{
    Alert, AlertEndpoint, AlertProcess, Judge, Resolver, Rule, ScanDetector, ScanOptions, Verifier,
};
use palisade_inventory::Inventory;
use palisade_policy::{Engine, Settings};
use palisade_sense::conntrack::{ConntrackSensor, CtEvent, CtKind};
use palisade_sense::ebpf::{ConnectionKind, Event, Process, Sensor, UdpDirection};
use rustc_hash::FxHashMap;

use crate::attribute::{Attributor, Origin};
use crate::baseline::{ProcessBaseline, Verdict};
use crate::flows::{self, NETFILTER_DROP};
use crate::live::{GroupKey, LiveAlerts};
use crate::metrics::{Metrics, label};
use crate::runtime::{self, Happening, RuntimeOptions};

/// What a sensor reports.
#[derive(Clone, Debug)]
pub enum Input {
    /// The eBPF sensor's events (or recorded ones).
    Kernel(Event),
    /// The conntrack sensor's.
    Conntrack(CtEvent),
}

/// Where events come from: the eBPF or the conntrack sensor, or recorded
/// events in tests and benchmarks.
pub trait EventSource {
    /// Hands every waiting event to `sink`; returns how many records there
    /// were.
    fn drain(&mut self, sink: &mut dyn FnMut(Input)) -> usize;
    /// Events the source lost so far (cumulative).
    fn lost(&self) -> u64;
    fn undecodable(&self) -> u64;
    /// TCP records the sensor could not pair with their socket's other
    /// records, and sockets it forgot because its tables were full.
    fn join_counts(&self) -> (u64, u64) {
        (0, 0)
    }
    /// The name of a kernel drop reason.
    fn drop_reason(&self, reason: u32) -> String;
}

impl EventSource for Sensor {
    fn drain(&mut self, sink: &mut dyn FnMut(Input)) -> usize {
        Sensor::drain(self, &mut |event| sink(Input::Kernel(event)))
    }
    fn lost(&self) -> u64 {
        Sensor::lost(self)
    }
    fn undecodable(&self) -> u64 {
        Sensor::undecodable(self)
    }
    fn join_counts(&self) -> (u64, u64) {
        Sensor::join_counts(self)
    }
    fn drop_reason(&self, reason: u32) -> String {
        Sensor::drop_reason(self, reason)
    }
}

impl EventSource for ConntrackSensor {
    fn drain(&mut self, sink: &mut dyn FnMut(Input)) -> usize {
        ConntrackSensor::drain(self, &mut |event| sink(Input::Conntrack(event)))
    }
    fn lost(&self) -> u64 {
        ConntrackSensor::lost(self)
    }
    fn undecodable(&self) -> u64 {
        ConntrackSensor::undecodable(self)
    }
    fn drop_reason(&self, reason: u32) -> String {
        format!("drop reason {reason}")
    }
}

/// Where else an alert goes once it is written.
pub type Forward = Box<dyn Fn(&Alert) + Send>;

pub struct AgentOptions {
    pub settings: Settings,
    /// Repeats of an alert within this long only count (see [`LiveAlerts`]).
    pub window: Duration,
    /// How often the sensor is drained: alerts leave within about this.
    pub poll: Duration,
    /// How often the policy files are checked for changes.
    pub reload_every: Duration,
    pub runtime: RuntimeOptions,
    /// The cgroup2 mount, where cgroup ids are resolved.
    pub cgroup_root: PathBuf,
    /// The process baseline (RUN-005), learning or watching.
    pub process_baseline: Option<ProcessBaseline>,
    /// Thresholds of the scan and burst detectors (FLOW-201 to 204).
    pub scans: ScanOptions,
    /// Also hands every alert written to this (a server's forwarder).
    pub forward: Option<Forward>,
}

impl AgentOptions {
    pub fn new(cgroup_root: PathBuf) -> AgentOptions {
        AgentOptions {
            settings: Settings::default(),
            window: Duration::from_secs(60),
            poll: Duration::from_millis(100),
            reload_every: Duration::from_secs(2),
            runtime: RuntimeOptions::default(),
            cgroup_root,
            process_baseline: None,
            scans: ScanOptions::default(),
            forward: None,
        }
    }
}

/// What a policy check found: nothing new, a new inventory, or a new
/// version that was refused (the reason), in which case the last good one
/// stays.
pub enum Reload {
    Unchanged,
    /// A new inventory and its version (stamped on the alerts judged
    /// against it).
    Loaded(Inventory, Option<String>),
    Rejected(String),
}

/// Connections seen from one side are not judged again from the other
/// (a connection between two pods of this node is a connect and an accept).
const PAIRING_MICROS: i64 = 10_000_000;

pub struct Agent {
    options: AgentOptions,
    attributor: Attributor,
    live: LiveAlerts,
    /// The scan and burst detectors of `flows verify`, live.
    scans: ScanDetector,
    pub metrics: Metrics,
    /// Connects and accepts judged lately, initiator first, waiting for
    /// their other side.
    recent: FxHashMap<(SocketAddr, SocketAddr), (ConnectionKind, i64)>,
    /// Conntrack entries judged, and those waiting for a reply (since).
    ct_judged: FxHashMap<CtKey, i64>,
    ct_pending: FxHashMap<CtKey, i64>,
    conntrack_file: Arc<str>,
    /// Executables by pid, from exec events (bounded).
    executables: FxHashMap<u32, String>,
    /// Binaries by pid, for the process baseline (bounded).
    binaries: FxHashMap<u32, String>,
    lost_seen: u64,
    sequence: u64,
    /// Events by kind, and kernel drops by reason, since the start.
    events: BTreeMap<&'static str, u64>,
    drops: BTreeMap<String, u64>,
    file: Arc<str>,
    /// Alerts sent, first occurrences and updates.
    pub alerts_sent: u64,
    /// The version of the inventory in use, stamped on every alert.
    snapshot: Option<String>,
    /// One poll's events, kept between polls so that its room is not
    /// grown again every time.
    inputs: Vec<Input>,
}

const MAX_EXECUTABLES: usize = 1 << 16;

/// A conntrack entry: protocol and the original direction's tuple.
type CtKey = (u8, SocketAddr, SocketAddr);
/// How long an entry without a reply waits before it is judged unanswered
/// (the kernel keeps one in SYN_SENT for two minutes).
const CT_UNANSWERED_MICROS: i64 = 3_000_000;
const MAX_CONNTRACK: usize = 1 << 18;

impl Agent {
    pub fn new(options: AgentOptions) -> Agent {
        Agent {
            attributor: Attributor::new(&options.cgroup_root),
            live: LiveAlerts::new(options.window),
            scans: ScanDetector::new(options.scans.clone()),
            options,
            metrics: Metrics::default(),
            recent: FxHashMap::default(),
            ct_judged: FxHashMap::default(),
            ct_pending: FxHashMap::default(),
            conntrack_file: Arc::from("ctnetlink"),
            executables: FxHashMap::default(),
            binaries: FxHashMap::default(),
            lost_seen: 0,
            sequence: 0,
            events: BTreeMap::new(),
            drops: BTreeMap::new(),
            file: Arc::from("ebpf"),
            alerts_sent: 0,
            snapshot: None,
            inputs: Vec::new(),
        }
    }

    /// The version of the inventory `run` starts with.
    pub fn set_snapshot(&mut self, version: Option<String>) {
        self.snapshot = version;
    }

    /// Runs until `stop` is set, then drains the sensor once more and
    /// sends the updates still open. `reload` is asked every
    /// `reload_every` whether the policy changed.
    pub fn run(
        &mut self,
        source: &mut dyn EventSource,
        inventory: Inventory,
        reload: &mut dyn FnMut() -> Reload,
        out: &mut dyn Write,
        stop: &AtomicBool,
    ) -> std::io::Result<()> {
        let mut inventory = inventory;
        loop {
            self.attributor.use_inventory(&inventory);
            let engine = Engine::new(&inventory, &self.options.settings);
            let resolver = Resolver::new(&inventory, &[]);
            let mut verifier = Verifier::new(&engine, resolver, self.options.settings.clone());
            let (judge, _) = verifier.split();
            match self.watch(&inventory, judge, source, reload, out, stop)? {
                Some(next) => inventory = next,
                None => break,
            }
        }
        for update in self.live.flush() {
            self.send(out, update)?;
        }
        self.save_baseline()
    }

    /// Works with one inventory until it is replaced (`Some`) or the agent
    /// is stopped (`None`).
    fn watch(
        &mut self,
        inventory: &Inventory,
        judge: &Judge<'_>,
        source: &mut dyn EventSource,
        reload: &mut dyn FnMut() -> Reload,
        out: &mut dyn Write,
        stop: &AtomicBool,
    ) -> std::io::Result<Option<Inventory>> {
        let mut checked = Instant::now();
        loop {
            let stopping = stop.load(Ordering::Relaxed);
            self.poll(inventory, judge, source, out)?;
            if stopping {
                return Ok(None);
            }
            if checked.elapsed() >= self.options.reload_every {
                checked = Instant::now();
                self.save_baseline()?;
                match reload() {
                    Reload::Unchanged => {}
                    Reload::Loaded(next, version) => {
                        self.snapshot = version;
                        self.metrics.add(
                            "palisade_agent_inventory_reloads_total",
                            "result=\"loaded\"",
                            1,
                        );
                        say("policy reloaded");
                        return Ok(Some(next));
                    }
                    Reload::Rejected(why) => {
                        self.metrics.add(
                            "palisade_agent_inventory_reloads_total",
                            "result=\"rejected\"",
                            1,
                        );
                        say(&format!(
                            "policy update rejected, keeping the last good version: {why}"
                        ));
                    }
                }
            }
            sleep_unless_stopped(self.options.poll, stop);
        }
    }

    /// One round: every waiting event handled, losses reported, closed
    /// windows updated.
    pub fn poll(
        &mut self,
        inventory: &Inventory,
        judge: &Judge<'_>,
        source: &mut dyn EventSource,
        out: &mut dyn Write,
    ) -> std::io::Result<()> {
        let mut inputs = std::mem::take(&mut self.inputs);
        source.drain(&mut |input| inputs.push(input));
        let micros = now_micros();
        for (n, input) in inputs.drain(..).enumerate() {
            // Every 64th event is timed: the clock costs as much as a
            // verdict.
            let started = n.is_multiple_of(64).then(Instant::now);
            match input {
                Input::Kernel(event) => {
                    self.handle(event, inventory, judge, source, out, micros)?
                }
                Input::Conntrack(event) => self.conntrack(event, judge, out, micros)?,
            }
            if let Some(started) = started {
                self.metrics
                    .observe_latency(started.elapsed().as_secs_f64());
            }
        }
        self.inputs = inputs;
        self.report_losses(source, out, micros)?;
        for update in self.live.expire(Instant::now()) {
            self.send(out, update)?;
        }
        self.recent.retain(|_, (_, t)| micros - *t < PAIRING_MICROS);
        self.unanswered_conntrack(judge, out, micros)?;
        for alert in self.scans.take_new(inventory) {
            self.offer(out, alert, micros)?;
        }
        let window = i64::try_from(self.options.window.as_micros()).unwrap_or(i64::MAX / 2);
        self.scans
            .forget_before(micros.saturating_sub(window.saturating_mul(2)));
        self.publish_gauges(source);
        Ok(())
    }

    fn handle(
        &mut self,
        event: Event,
        inventory: &Inventory,
        judge: &Judge<'_>,
        source: &dyn EventSource,
        out: &mut dyn Write,
        micros: i64,
    ) -> std::io::Result<()> {
        self.sequence += 1;
        let record = flows::evidence(&self.file, self.sequence);
        match event {
            Event::Tcp {
                kind,
                process,
                local,
                remote,
                error,
                ..
            } => {
                self.count_event(kind_name(kind));
                if kind == ConnectionKind::Close {
                    return Ok(());
                }
                let origin = self.attributor.origin(process.cgroup_id);
                // The node's own processes are not under NetworkPolicy
                // (hostNetwork pods are: they run in pod cgroups).
                if origin.pod_uid().is_none() {
                    self.count_event("tcp_not_in_a_pod");
                    return Ok(());
                }
                let initiator = match kind {
                    ConnectionKind::Accept => (remote, local),
                    _ => (local, remote),
                };
                if self.seen_from_the_other_side(kind, initiator, micros) {
                    return Ok(());
                }
                if kind != ConnectionKind::Accept
                    && origin.in_container()
                    && self.options.runtime.is_metadata(remote.ip())
                {
                    let alert = self.metadata_alert(inventory, &origin, &process, remote, micros);
                    self.offer(out, alert, micros)?;
                }
                if kind != ConnectionKind::ConnectFailed {
                    self.check_process(inventory, &origin, &process, out, micros)?;
                }
                let identity = origin.pod().and_then(|pod| flows::identity(inventory, pod));
                let flow = flows::tcp_flow(
                    kind,
                    palisade_sense::ebpf::event::refused(error),
                    local,
                    remote,
                    identity,
                    record,
                    micros,
                );
                let Some(flow) = flow else {
                    return Ok(());
                };
                self.judge_flow(judge, &flow, Some((&process, &origin)), out, micros)?;
            }
            Event::Udp {
                direction,
                process,
                local,
                remote,
                ..
            } => {
                self.count_event(match direction {
                    UdpDirection::Send => "udp_send",
                    UdpDirection::Receive => "udp_receive",
                });
                let origin = self.attributor.origin(process.cgroup_id);
                if origin.pod_uid().is_none() {
                    self.count_event("udp_not_in_a_pod");
                    return Ok(());
                }
                self.check_process(inventory, &origin, &process, out, micros)?;
                let identity = origin.pod().and_then(|pod| flows::identity(inventory, pod));
                let flow = flows::udp_flow(direction, local, remote, identity, record, micros);
                self.judge_flow(judge, &flow, Some((&process, &origin)), out, micros)?;
            }
            Event::Drop {
                protocol,
                src,
                dst,
                reason,
                ..
            } => {
                self.count_event("drop");
                let name = source.drop_reason(reason);
                *self.drops.entry(name.clone()).or_insert(0) += 1;
                if name == NETFILTER_DROP && involves_a_pod(judge, src, dst) {
                    let flow = flows::drop_flow(protocol, src, dst, record, micros);
                    self.judge_flow(judge, &flow, None, out, micros)?;
                }
            }
            Event::Exec {
                process,
                executable,
                ..
            } => {
                self.count_event("exec");
                if self.executables.len() >= MAX_EXECUTABLES {
                    self.executables.clear();
                }
                self.executables.insert(process.pid, executable.clone());
                self.binaries.remove(&process.pid);
                let origin = self.attributor.origin(process.cgroup_id);
                if origin.in_container() && self.options.runtime.watches(&executable) {
                    let alert = self.exec_alert(inventory, &origin, &process, record, micros);
                    self.offer(out, alert, micros)?;
                }
            }
            Event::Socket {
                process,
                family,
                socket_type,
                protocol,
                ..
            } => {
                self.count_event("socket");
                let origin = self.attributor.origin(process.cgroup_id);
                if origin.in_container() {
                    let kind = if family == 17 { "packet" } else { "raw" };
                    let who = runtime::origin_endpoint(inventory, &origin);
                    let mut figures = BTreeMap::new();
                    figures.insert("family", u64::from(family));
                    figures.insert("type", u64::from(socket_type));
                    figures.insert("protocol", u64::from(protocol));
                    let alert = runtime::alert(Happening {
                        rule: Rule::RawSocket,
                        summary: format!(
                            "{} (pid {}) opened a {kind} socket in {who}: it can forge and capture traffic that pod policy does not see",
                            process.comm, process.pid
                        ),
                        src: who,
                        dst: AlertEndpoint::default(),
                        protocol: String::new(),
                        port: None,
                        process: Some(self.process(&process, &origin)),
                        micros,
                        record,
                        figures,
                    });
                    self.offer(out, alert, micros)?;
                }
            }
        }
        Ok(())
    }

    /// RUN-005: a process opening a connection that its workload's
    /// baseline does not have (or, learning, it is added).
    fn check_process(
        &mut self,
        inventory: &Inventory,
        origin: &Origin,
        process: &Process,
        out: &mut dyn Write,
        micros: i64,
    ) -> std::io::Result<()> {
        let Some((w, _)) = origin.pod() else {
            return Ok(());
        };
        if self.options.process_baseline.is_none() || process.pid == 0 {
            return Ok(());
        }
        let executable = self.executable(process);
        let workload = inventory.workloads[w].display_name();
        let Some(baseline) = self.options.process_baseline.as_mut() else {
            return Ok(());
        };
        if baseline.check(&workload, &executable) != Verdict::New {
            return Ok(());
        }
        let who = runtime::origin_endpoint(inventory, origin);
        let alert = runtime::alert(Happening {
            rule: Rule::NewProcess,
            summary: format!(
                "{executable} (pid {}) opened a connection in {who}: no process of that name did in the baseline of {workload}",
                process.pid
            ),
            src: who,
            dst: AlertEndpoint::default(),
            protocol: String::new(),
            port: None,
            process: Some(self.process(process, origin)),
            micros,
            record: flows::evidence(&self.file, self.sequence),
            figures: BTreeMap::new(),
        });
        self.offer(out, alert, micros)
    }

    /// A process's binary, as the baseline names it: the file the kernel
    /// runs (`/proc/PID/exe`, links resolved, so `python3` and
    /// `python3.11` are one), read once per pid; else the path it was
    /// executed by, else its comm.
    fn executable(&mut self, process: &Process) -> String {
        if let Some(known) = self.binaries.get(&process.pid) {
            return known.clone();
        }
        let found = std::fs::read_link(format!("/proc/{}/exe", process.pid))
            .map(|p| p.display().to_string())
            .ok()
            .or_else(|| self.executables.get(&process.pid).cloned())
            .unwrap_or_else(|| process.comm.clone());
        if self.binaries.len() >= MAX_EXECUTABLES {
            self.binaries.clear();
        }
        self.binaries.insert(process.pid, found.clone());
        found
    }

    /// Saves what the process baseline learned (also at the end of `run`).
    pub fn save_baseline(&mut self) -> std::io::Result<()> {
        match self.options.process_baseline.as_mut() {
            Some(baseline) => baseline.save(),
            None => Ok(()),
        }
    }

    /// A conntrack event. An entry is judged once, whichever namespace's
    /// table reports it: established when it has seen a reply, unanswered
    /// when it is destroyed without one or has waited CT_UNANSWERED for
    /// one. Only connections with a pod of the inventory at one end.
    fn conntrack(
        &mut self,
        event: CtEvent,
        judge: &Judge<'_>,
        out: &mut dyn Write,
        micros: i64,
    ) -> std::io::Result<()> {
        self.count_event(match event.kind {
            CtKind::New => "conntrack_new",
            CtKind::Update => "conntrack_update",
            CtKind::Destroy => "conntrack_destroy",
            CtKind::Existing => "conntrack_existing",
            CtKind::Dropped => "nflog_dropped",
        });
        if !involves_a_pod(judge, event.src, event.dst) {
            return Ok(());
        }
        if event.kind == CtKind::Dropped {
            self.sequence += 1;
            let record = self.conntrack_record();
            let mut flow = flows::drop_flow(event.protocol, event.src, event.dst, record, micros);
            flow.drop_reason = Some(match &event.prefix {
                Some(prefix) => format!("NFLOG {}", prefix.trim()),
                None => "NFLOG".to_string(),
            });
            return self.judge_flow(judge, &flow, None, out, micros);
        }
        let key = (event.protocol, event.src, event.dst);
        let judged = self.ct_judged.contains_key(&key);
        if event.kind == CtKind::Destroy {
            self.ct_judged.remove(&key);
            self.ct_pending.remove(&key);
            if !judged {
                return self.judge_conntrack(judge, key, event.replied, out, micros);
            }
            return Ok(());
        }
        if judged {
            return Ok(());
        }
        if event.replied {
            self.ct_pending.remove(&key);
            self.ct_judged.insert(key, micros);
            return self.judge_conntrack(judge, key, true, out, micros);
        }
        self.ct_pending.entry(key).or_insert(micros);
        Ok(())
    }

    /// Entries that waited too long for a reply are judged unanswered.
    fn unanswered_conntrack(
        &mut self,
        judge: &Judge<'_>,
        out: &mut dyn Write,
        micros: i64,
    ) -> std::io::Result<()> {
        let overdue: Vec<CtKey> = self
            .ct_pending
            .iter()
            .filter(|(_, since)| micros - **since >= CT_UNANSWERED_MICROS)
            .map(|(key, _)| *key)
            .collect();
        for key in overdue {
            self.ct_pending.remove(&key);
            self.ct_judged.insert(key, micros);
            self.judge_conntrack(judge, key, false, out, micros)?;
        }
        if self.ct_judged.len() > MAX_CONNTRACK {
            self.ct_judged.clear();
        }
        Ok(())
    }

    fn judge_conntrack(
        &mut self,
        judge: &Judge<'_>,
        (protocol, src, dst): CtKey,
        replied: bool,
        out: &mut dyn Write,
        micros: i64,
    ) -> std::io::Result<()> {
        self.sequence += 1;
        let record = self.conntrack_record();
        let flow = flows::conntrack_flow(protocol, src, dst, replied, record, micros);
        self.judge_flow(judge, &flow, None, out, micros)
    }

    fn conntrack_record(&self) -> palisade_flow::RecordRef {
        palisade_flow::RecordRef {
            file: self.conntrack_file.clone(),
            format: palisade_flow::Format::Conntrack,
            record: self.sequence,
        }
    }

    /// Whether this connect (accept) is the other side of an accept
    /// (connect) already judged; otherwise remembers it.
    fn seen_from_the_other_side(
        &mut self,
        kind: ConnectionKind,
        initiator: (SocketAddr, SocketAddr),
        micros: i64,
    ) -> bool {
        if !matches!(kind, ConnectionKind::Connect | ConnectionKind::Accept) {
            return false;
        }
        match self.recent.get(&initiator) {
            Some((other, _)) if *other != kind => {
                self.recent.remove(&initiator);
                true
            }
            _ => {
                self.recent.insert(initiator, (kind, micros));
                false
            }
        }
    }

    fn metadata_alert(
        &self,
        inventory: &Inventory,
        origin: &Origin,
        process: &Process,
        remote: SocketAddr,
        micros: i64,
    ) -> Alert {
        let who = runtime::origin_endpoint(inventory, origin);
        runtime::alert(Happening {
            rule: Rule::MetadataAccess,
            summary: format!(
                "{} (pid {}) in {who} connected to the cloud metadata address {remote}",
                process.comm, process.pid
            ),
            src: who,
            dst: AlertEndpoint {
                kind: "external",
                ip: Some(remote.ip()),
                note: Some("cloud metadata service".into()),
                ..AlertEndpoint::default()
            },
            protocol: "tcp".into(),
            port: Some(remote.port()),
            process: Some(self.process(process, origin)),
            micros,
            record: flows::evidence(&self.file, self.sequence),
            figures: BTreeMap::new(),
        })
    }

    fn exec_alert(
        &self,
        inventory: &Inventory,
        origin: &Origin,
        process: &Process,
        record: palisade_flow::RecordRef,
        micros: i64,
    ) -> Alert {
        let who = runtime::origin_endpoint(inventory, origin);
        let executable = self.executables.get(&process.pid).cloned();
        runtime::alert(Happening {
            rule: Rule::SuspiciousExec,
            summary: format!(
                "{} was executed in {who} (pid {})",
                executable.as_deref().unwrap_or(&process.comm),
                process.pid
            ),
            src: who,
            dst: AlertEndpoint::default(),
            protocol: String::new(),
            port: None,
            process: Some(self.process(process, origin)),
            micros,
            record,
            figures: BTreeMap::new(),
        })
    }

    /// Events the sensor lost since the last round become one alert (as
    /// Falco's dropped-events alert): what was lost was not judged.
    fn report_losses(
        &mut self,
        source: &dyn EventSource,
        out: &mut dyn Write,
        micros: i64,
    ) -> std::io::Result<()> {
        let lost = source.lost();
        if lost <= self.lost_seen {
            return Ok(());
        }
        let new = lost - self.lost_seen;
        self.lost_seen = lost;
        let mut figures = BTreeMap::new();
        figures.insert("events_lost", new);
        figures.insert("events_lost_total", lost);
        let alert = runtime::alert(Happening {
            rule: Rule::EventsLost,
            summary: format!(
                "the sensor lost {new} events ({lost} in all): its ring buffer was full, and connections in them went unjudged"
            ),
            src: AlertEndpoint {
                kind: "node",
                ..AlertEndpoint::default()
            },
            dst: AlertEndpoint::default(),
            protocol: String::new(),
            port: None,
            process: None,
            micros,
            record: flows::evidence(&self.file, self.sequence),
            figures,
        });
        // Never folded into a window: each loss is news.
        self.send(out, alert)
    }

    fn process(&self, process: &Process, origin: &Origin) -> AlertProcess {
        let executable = self.executables.get(&process.pid).cloned().or_else(|| {
            std::fs::read_link(format!("/proc/{}/exe", process.pid))
                .ok()
                .map(|p| p.display().to_string())
        });
        AlertProcess {
            pid: process.pid,
            comm: process.comm.clone(),
            executable,
            container_id: match origin {
                Origin::Container { container_id, .. } => Some(container_id.clone()),
                _ => None,
            },
            pod_uid: origin.pod_uid().map(str::to_string),
        }
    }

    fn offer(&mut self, out: &mut dyn Write, alert: Alert, micros: i64) -> std::io::Result<()> {
        match self.live.offer(alert, Instant::now(), micros) {
            Some(alert) => self.send(out, alert),
            None => Ok(()),
        }
    }

    /// Judges a flow; a verdict that matters is a repeat of an open alert
    /// (counted, nothing built) or a new alert, sent now with its process.
    fn judge_flow(
        &mut self,
        judge: &Judge<'_>,
        flow: &palisade_flow::Flow,
        process: Option<(&Process, &Origin)>,
        out: &mut dyn Write,
        micros: i64,
    ) -> std::io::Result<()> {
        let judged = judge.judge(flow);
        self.scans.observe(flow, &judged);
        if judged.class == palisade_detect::Class::Allowed {
            return Ok(());
        }
        // What [`Alert::group_key`] would make of the alert, without building it.
        let key = GroupKey::Verdict(
            judged.class,
            judged.src.clone(),
            judged.dst.clone(),
            flow.transport,
            judged.port,
        );
        if self.live.repeat(&key, micros) {
            return Ok(());
        }
        let Some(mut alert) = judge.alert(flow, &judged) else {
            return Ok(());
        };
        alert.process = process.map(|(process, origin)| self.process(process, origin));
        self.live.open(key, alert.clone(), Instant::now());
        self.send(out, alert)
    }

    fn send(&mut self, out: &mut dyn Write, mut alert: Alert) -> std::io::Result<()> {
        if alert.evidence.snapshot.is_none() {
            alert.evidence.snapshot.clone_from(&self.snapshot);
        }
        let labels = format!("rule=\"{}\"", alert.rule);
        self.metrics.add("palisade_agent_alerts_total", &labels, 1);
        self.alerts_sent += 1;
        serde_json::to_writer(&mut *out, &alert)?;
        out.write_all(b"\n")?;
        if let Some(forward) = &self.options.forward {
            forward(&alert);
        }
        out.flush()
    }

    /// Counted here and published once a round: the metrics' lock and
    /// label text cost more than an event.
    fn count_event(&mut self, kind: &'static str) {
        *self.events.entry(kind).or_insert(0) += 1;
    }

    fn publish_gauges(&self, source: &dyn EventSource) {
        let m = &self.metrics;
        for (kind, n) in &self.events {
            let labels = format!("kind=\"{kind}\"");
            m.set("palisade_agent_events_total", &labels, *n as f64);
        }
        for (reason, n) in &self.drops {
            let labels = format!("reason=\"{}\"", label(reason));
            m.set("palisade_agent_kernel_drops_total", &labels, *n as f64);
        }
        m.set("palisade_agent_events_lost_total", "", source.lost() as f64);
        m.set(
            "palisade_agent_events_undecodable_total",
            "",
            source.undecodable() as f64,
        );
        let (unpaired, forgotten) = source.join_counts();
        m.set(
            "palisade_agent_tcp_records_unpaired_total",
            "",
            unpaired as f64,
        );
        m.set(
            "palisade_agent_tcp_sockets_forgotten_total",
            "",
            forgotten as f64,
        );
        let stats = self.attributor.stats;
        let misses = "palisade_agent_attribution_misses_total";
        m.set(misses, "missing=\"cgroup\"", stats.unknown_cgroups as f64);
        m.set(misses, "missing=\"pod\"", stats.unknown_pods as f64);
        m.set(
            "palisade_agent_open_alert_groups",
            "",
            self.live.open_groups() as f64,
        );
    }
}

/// A line on stderr. Never a panic: an agent whose stderr was closed (a
/// supervisor gone) must keep watching.
pub fn say(message: &str) {
    let _ = writeln!(std::io::stderr(), "palisade agent: {message}");
}

/// Whether either address is a pod of the inventory: traffic between
/// addresses that are not is no NetworkPolicy's business.
fn involves_a_pod(judge: &Judge<'_>, a: SocketAddr, b: SocketAddr) -> bool {
    [a, b].iter().any(|address| {
        matches!(
            judge.resolver().by_ip(address.ip()),
            palisade_detect::Place::Workload { .. }
        )
    })
}

fn kind_name(kind: ConnectionKind) -> &'static str {
    match kind {
        ConnectionKind::Connect => "connect",
        ConnectionKind::Accept => "accept",
        ConnectionKind::ConnectFailed => "connect_failed",
        ConnectionKind::Close => "close",
    }
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Sleeps `total`, waking early when `stop` is set.
fn sleep_unless_stopped(total: Duration, stop: &AtomicBool) {
    let step = Duration::from_millis(20);
    let deadline = Instant::now() + total;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        std::thread::sleep(step.min(deadline - now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source that has no events and reports the losses it is told.
    struct Losing {
        lost: u64,
    }

    impl EventSource for Losing {
        fn drain(&mut self, _: &mut dyn FnMut(Input)) -> usize {
            0
        }
        fn lost(&self) -> u64 {
            self.lost
        }
        fn undecodable(&self) -> u64 {
            0
        }
        fn drop_reason(&self, reason: u32) -> String {
            reason.to_string()
        }
    }

    /// Conntrack entries (no cgroup needed: both ends by address) of a pod
    /// probing many ports of another, each destroyed without a reply.
    struct Scanning {
        ports: std::ops::Range<u16>,
    }

    impl EventSource for Scanning {
        fn drain(&mut self, sink: &mut dyn FnMut(Input)) -> usize {
            let mut n = 0;
            for port in self.ports.by_ref() {
                n += 1;
                sink(Input::Conntrack(CtEvent {
                    kind: CtKind::Destroy,
                    netns: 1,
                    protocol: 6,
                    src: "10.0.0.1:40000".parse().unwrap(),
                    dst: SocketAddr::new("10.0.0.2".parse().unwrap(), port),
                    replied: false,
                    assured: false,
                    prefix: None,
                }));
            }
            n
        }
        fn lost(&self) -> u64 {
            0
        }
        fn undecodable(&self) -> u64 {
            0
        }
        fn drop_reason(&self, reason: u32) -> String {
            reason.to_string()
        }
    }

    #[test]
    fn scans_are_detected_live() {
        let pod = |name: &str, ip: &str| {
            format!(
                "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: a, labels: {{app: {name}}}}}\nspec: {{containers: [{{name: c, image: i}}]}}\nstatus: {{podIP: {ip}}}\n"
            )
        };
        let mut loader = palisade_inventory::Loader::default();
        loader.add_text(
            "t",
            &(pod("scanner", "10.0.0.1") + &pod("target", "10.0.0.2")),
        );
        let (inventory, _) = loader.finish();
        let settings = Settings::default();
        let engine = Engine::new(&inventory, &settings);
        let mut verifier = Verifier::new(&engine, Resolver::new(&inventory, &[]), settings);
        let (judge, _) = verifier.split();
        let mut agent = Agent::new(AgentOptions::new(std::env::temp_dir()));
        let mut source = Scanning { ports: 1..200 };
        let mut out = Vec::new();
        agent
            .poll(&inventory, judge, &mut source, &mut out)
            .unwrap();
        let rules: Vec<String> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["rule"].to_string())
            .collect();
        assert!(rules.contains(&"\"FLOW-201\"".to_string()), "{rules:?}");
        // No policy: every probe was allowed and unanswered, so no blocked
        // attempts; the scan is the news.
        assert!(!rules.contains(&"\"FLOW-003\"".to_string()), "{rules:?}");
    }

    #[test]
    fn each_loss_is_one_alert_with_the_count() {
        let inventory = Inventory::default();
        let settings = Settings::default();
        let engine = Engine::new(&inventory, &settings);
        let mut verifier = Verifier::new(&engine, Resolver::new(&inventory, &[]), settings);
        let (judge, _) = verifier.split();
        let mut agent = Agent::new(AgentOptions::new(std::env::temp_dir()));
        let mut source = Losing { lost: 0 };
        let mut out = Vec::new();
        let round = |agent: &mut Agent, source: &mut Losing, out: &mut Vec<u8>| {
            agent.poll(&inventory, judge, source, out).unwrap();
        };
        round(&mut agent, &mut source, &mut out);
        assert!(out.is_empty(), "nothing lost, nothing said");
        source.lost = 5;
        round(&mut agent, &mut source, &mut out);
        round(&mut agent, &mut source, &mut out);
        source.lost = 8;
        round(&mut agent, &mut source, &mut out);
        let alerts: Vec<serde_json::Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(alerts.len(), 2);
        assert_eq!(alerts[0]["rule"], "RUN-004");
        assert_eq!(alerts[0]["evidence"]["figures"]["events_lost"], 5);
        assert_eq!(alerts[1]["evidence"]["figures"]["events_lost"], 3);
        assert_eq!(alerts[1]["evidence"]["figures"]["events_lost_total"], 8);
        assert_eq!(
            agent.metrics.value("palisade_agent_events_lost_total", ""),
            8.0
        );
    }
}
