//! Alerts as they happen, without a flood: the first occurrence of an
//! alert (same rule, endpoints, protocol and port) leaves at once; repeats
//! within the window only count, and when the window closes an update of
//! the same alert gives their number and the last time seen. The next
//! occurrence after that opens a new window with a new alert.
//!
//! Memory is bounded by the alert groups open in one window, not by
//! uptime: closed windows are forgotten.

use std::time::{Duration, Instant};

use palisade_detect::{Alert, Class, Place, rfc3339};
use palisade_flow::Transport;
use rustc_hash::FxHashMap;

/// What makes alerts one group.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum GroupKey {
    /// An alert already built ([`Alert::group_key`]).
    Alert(String),
    /// A verdict before its alert is built: class, source, destination,
    /// transport and port, which is what `Alert::group_key` reads of it.
    /// Hashing these is far cheaper than formatting them for every event.
    Verdict(Class, Place, Place, Transport, Option<u16>),
}

struct Open {
    alert: Alert,
    opened: Instant,
    repeats: u64,
    /// When the last repeat was seen (microseconds since the epoch).
    last_seen: Option<i64>,
}

pub struct LiveAlerts {
    window: Duration,
    open: FxHashMap<GroupKey, Open>,
}

impl LiveAlerts {
    pub fn new(window: Duration) -> LiveAlerts {
        LiveAlerts {
            window,
            open: FxHashMap::default(),
        }
    }

    /// The alert to send now, when `alert` opens a window; `None` when it
    /// repeats one already open (it is counted there).
    pub fn offer(&mut self, alert: Alert, now: Instant, micros: i64) -> Option<Alert> {
        let key = GroupKey::Alert(alert.group_key());
        if self.repeat(&key, micros) {
            return None;
        }
        self.open(key, alert.clone(), now);
        Some(alert)
    }

    /// Counts a repeat of the open window `key`; false when none is open
    /// (the caller then builds the alert and [`LiveAlerts::open`]s it).
    /// Cheaper than `offer` for repeats: no alert is built.
    pub fn repeat(&mut self, key: &GroupKey, micros: i64) -> bool {
        match self.open.get_mut(key) {
            Some(open) => {
                open.repeats += 1;
                open.last_seen = Some(micros);
                true
            }
            None => false,
        }
    }

    /// Opens the window of an alert that was just sent.
    pub fn open(&mut self, key: GroupKey, alert: Alert, now: Instant) {
        let open = Open {
            alert,
            opened: now,
            repeats: 0,
            last_seen: None,
        };
        self.open.insert(key, open);
    }

    /// Updates for the windows that closed by `now` with repeats in them.
    pub fn expire(&mut self, now: Instant) -> Vec<Alert> {
        let window = self.window;
        let mut closed = Vec::new();
        self.open.retain(|_, open| {
            let keep = now.duration_since(open.opened) < window;
            if !keep && open.repeats > 0 {
                closed.push(update(open));
            }
            keep
        });
        closed
    }

    /// Updates for every open window with repeats (at shutdown).
    pub fn flush(&mut self) -> Vec<Alert> {
        let mut closed: Vec<Alert> = self
            .open
            .values()
            .filter(|open| open.repeats > 0)
            .map(update)
            .collect();
        self.open.clear();
        closed.sort_by(|a, b| a.first_seen.cmp(&b.first_seen));
        closed
    }

    pub fn open_groups(&self) -> usize {
        self.open.len()
    }
}

fn update(open: &Open) -> Alert {
    let mut alert = open.alert.clone();
    alert.connections += open.repeats;
    if let Some(last) = open.last_seen {
        alert.last_seen = Some(rfc3339(last));
    }
    alert
        .evidence
        .figures
        .insert("repeats_in_window", open.repeats);
    alert.summary = format!(
        "{} (update: {} more in the window)",
        alert.summary, open.repeats
    );
    alert
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_detect::{AlertEndpoint, Evidence, Rule};

    fn alert(port: u16) -> Alert {
        let rule = Rule::Bypass;
        Alert {
            time: Some("t0".into()),
            rule: rule.id().into(),
            name: rule.name().into(),
            severity: rule.severity(),
            summary: "bypass".into(),
            src: AlertEndpoint {
                kind: "pod",
                namespace: Some("a".into()),
                pod: Some("p".into()),
                ..AlertEndpoint::default()
            },
            dst: AlertEndpoint::default(),
            protocol: "tcp".into(),
            port: Some(port),
            connections: 1,
            first_seen: Some("t0".into()),
            last_seen: Some("t0".into()),
            process: None,
            actor: None,
            object: None,
            evidence: Evidence {
                snapshot: None,
                flow: None,
                records: Vec::new(),
                decision: None,
                figures: Default::default(),
            },
        }
    }

    #[test]
    fn repeats_count_in_the_open_window_and_come_out_as_one_update() {
        let start = Instant::now();
        let mut live = LiveAlerts::new(Duration::from_secs(60));
        assert!(live.offer(alert(80), start, 0).is_some());
        assert!(live.offer(alert(80), start, 1_000_000).is_none());
        assert!(live.offer(alert(80), start, 2_000_000).is_none());
        assert!(live.offer(alert(443), start, 0).is_some(), "another port");
        assert!(live.expire(start + Duration::from_secs(59)).is_empty());
        let updates = live.expire(start + Duration::from_secs(60));
        assert_eq!(updates.len(), 1, "the lone 443 alert needs no update");
        assert_eq!(updates[0].connections, 3);
        assert_eq!(
            updates[0].last_seen.as_deref(),
            Some("1970-01-01T00:00:02.000000Z")
        );
        assert_eq!(live.open_groups(), 0);
        // After the window a repeat is news again.
        let later = start + Duration::from_secs(61);
        assert!(live.offer(alert(80), later, 3).is_some());
    }

    #[test]
    fn flush_reports_what_is_still_open() {
        let start = Instant::now();
        let mut live = LiveAlerts::new(Duration::from_secs(60));
        live.offer(alert(80), start, 0);
        live.offer(alert(80), start, 1);
        let updates = live.flush();
        assert_eq!(updates.len(), 1);
        assert_eq!(updates[0].evidence.figures["repeats_in_window"], 1);
    }
}
