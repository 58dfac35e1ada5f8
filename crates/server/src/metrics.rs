//! The server's Prometheus metrics, rendered at scrape time from the
//! counters the ingest, the store's committer and the sink workers keep
//! (text exposition format 0.0.4). Names follow Prometheus conventions:
//! a `palisade_` prefix, `_total` counters, base units. Labels are
//! bounded: rule ids, severities, sink names, outcomes; never addresses,
//! pods or alert ids.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use palisade_sinks::worker::LATENCY_BUCKETS;
use palisade_store::OutboxDepth;

use crate::AppState;

/// Exposition text, one metric family after another.
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{k}=\"{}\"", escape(v));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }
}

/// Label values escape backslash, double quote and newline.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn load(counter: &AtomicU64) -> f64 {
    counter.load(Ordering::Relaxed) as f64
}

pub(crate) fn render(state: &AppState, outbox: &[OutboxDepth]) -> String {
    let mut e = Exposition::default();
    let c = &state.counters;
    e.family("palisade_build_info", "gauge", "The server's version.");
    e.sample(
        "palisade_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );

    e.family(
        "palisade_ingest_requests_total",
        "counter",
        "Ingest requests answered, by outcome.",
    );
    for (outcome, n) in [
        ("handled", &c.requests),
        ("unauthorized", &c.refused_auth),
        ("busy", &c.busy),
        ("rate_limited", &c.rate_limited),
    ] {
        e.sample(
            "palisade_ingest_requests_total",
            &[("outcome", outcome)],
            load(n),
        );
    }
    e.family(
        "palisade_ingest_alerts_total",
        "counter",
        "Alerts received, by status (committed or rejected as invalid).",
    );
    e.sample(
        "palisade_ingest_alerts_total",
        &[("status", "committed")],
        load(&c.accepted),
    );
    e.sample(
        "palisade_ingest_alerts_total",
        &[("status", "rejected")],
        load(&c.rejected),
    );
    e.family(
        "palisade_alerts_total",
        "counter",
        "Alerts committed, by rule and severity (updates and redeliveries included).",
    );
    for ((rule, severity), n) in c.by_rule.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        e.sample(
            "palisade_alerts_total",
            &[("rule", rule), ("severity", severity)],
            *n as f64,
        );
    }

    e.family(
        "palisade_bus_messages_total",
        "counter",
        "Messages fetched from NATS JetStream.",
    );
    e.sample("palisade_bus_messages_total", &[], load(&c.bus_received));
    e.family(
        "palisade_bus_errors_total",
        "counter",
        "Failures of the NATS connection (each followed by a reconnect).",
    );
    e.sample("palisade_bus_errors_total", &[], load(&c.bus_errors));

    e.family(
        "palisade_manifest_reloads_total",
        "counter",
        "New versions of the cluster's manifests taken without a restart.",
    );
    e.sample("palisade_manifest_reloads_total", &[], load(&c.reloads));

    e.family(
        "palisade_tls_handshake_failures_total",
        "counter",
        "Connections whose TLS handshake failed or timed out.",
    );
    e.sample(
        "palisade_tls_handshake_failures_total",
        &[],
        load(&c.tls_refused),
    );

    let s = state.commit.stats();
    e.family(
        "palisade_store_transactions_total",
        "counter",
        "Store transactions committed.",
    );
    e.sample(
        "palisade_store_transactions_total",
        &[],
        load(&s.transactions),
    );
    e.family(
        "palisade_store_records_total",
        "counter",
        "Alert records committed.",
    );
    e.sample("palisade_store_records_total", &[], load(&s.records));
    e.family(
        "palisade_store_failures_total",
        "counter",
        "Store transactions that failed.",
    );
    e.sample("palisade_store_failures_total", &[], load(&s.failures));
    e.family(
        "palisade_store_commit_seconds_total",
        "counter",
        "Time spent committing.",
    );
    e.sample(
        "palisade_store_commit_seconds_total",
        &[],
        load(&s.commit_micros) / 1e6,
    );
    e.family(
        "palisade_store_pruned_total",
        "counter",
        "Alerts removed by retention.",
    );
    e.sample("palisade_store_pruned_total", &[], load(&s.pruned));
    e.family(
        "palisade_store_queue_depth",
        "gauge",
        "Batches waiting for the store's committer.",
    );
    e.sample("palisade_store_queue_depth", &[], load(&s.queued));

    sinks(&mut e, state, outbox);
    if let Some(watch) = &state.inventory_watch {
        inventory_watch(&mut e, watch);
    }
    e.text
}

/// The live inventory's reflectors, by collection (a fixed set).
fn inventory_watch(e: &mut Exposition, watch: &palisade_kube::WatchStats) {
    type Pick = fn(&palisade_kube::ResourceStats) -> &AtomicU64;
    let families: [(&str, &str, &str, Pick); 7] = [
        (
            "palisade_inventory_lists_total",
            "counter",
            "Complete lists of a collection from the Kubernetes API.",
            |s| &s.lists,
        ),
        (
            "palisade_inventory_expired_total",
            "counter",
            "Lists started again because the API said the watched version was gone (410).",
            |s| &s.expired,
        ),
        (
            "palisade_inventory_rewatches_total",
            "counter",
            "Watches resumed from their last version after they ended.",
            |s| &s.rewatches,
        ),
        (
            "palisade_inventory_watch_events_total",
            "counter",
            "Objects added, modified or deleted, seen on the watch.",
            |s| &s.events,
        ),
        (
            "palisade_inventory_bookmarks_total",
            "counter",
            "Bookmarks seen on the watch.",
            |s| &s.bookmarks,
        ),
        (
            "palisade_inventory_errors_total",
            "counter",
            "Failed list or watch requests and unreadable answers (retried).",
            |s| &s.errors,
        ),
        (
            "palisade_inventory_objects",
            "gauge",
            "Objects of the collection held now.",
            |s| &s.objects,
        ),
    ];
    for (name, kind, help, pick) in families {
        e.family(name, kind, help);
        for (resource, stats) in watch.per_resource() {
            e.sample(name, &[("resource", resource)], load(pick(stats)));
        }
    }
}

fn sinks(e: &mut Exposition, state: &AppState, outbox: &[OutboxDepth]) {
    e.family(
        "palisade_sink_deliveries_total",
        "counter",
        "Delivery outcomes, by sink.",
    );
    for sink in &state.sinks {
        for (outcome, n) in [
            ("delivered", &sink.stats.delivered),
            ("retried", &sink.stats.retried),
            ("dead", &sink.stats.dead),
        ] {
            e.sample(
                "palisade_sink_deliveries_total",
                &[("sink", &sink.name), ("outcome", outcome)],
                load(n),
            );
        }
    }
    e.family(
        "palisade_sink_queue_depth",
        "gauge",
        "Deliveries waiting in the outbox, by sink.",
    );
    e.family(
        "palisade_sink_dead_letters",
        "gauge",
        "Deliveries given up and kept as dead letters, by sink.",
    );
    for sink in &state.sinks {
        let depth = outbox.iter().find(|d| d.sink == sink.name);
        let labels = [("sink", sink.name.as_str())];
        e.sample(
            "palisade_sink_queue_depth",
            &labels,
            depth.map_or(0, |d| d.pending) as f64,
        );
        e.sample(
            "palisade_sink_dead_letters",
            &labels,
            depth.map_or(0, |d| d.dead) as f64,
        );
    }
    let name = "palisade_sink_delivery_latency_seconds";
    e.family(
        name,
        "histogram",
        "From an alert's commit to its delivery, by sink.",
    );
    for sink in &state.sinks {
        let mut cumulative = 0u64;
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += sink.stats.latency[i].load(Ordering::Relaxed);
            let le = bound.to_string();
            e.sample(
                &format!("{name}_bucket"),
                &[("sink", &sink.name), ("le", &le)],
                cumulative as f64,
            );
        }
        cumulative += sink.stats.latency[LATENCY_BUCKETS.len()].load(Ordering::Relaxed);
        e.sample(
            &format!("{name}_bucket"),
            &[("sink", &sink.name), ("le", "+Inf")],
            cumulative as f64,
        );
        e.sample(
            &format!("{name}_sum"),
            &[("sink", &sink.name)],
            load(&sink.stats.latency_sum_micros) / 1e6,
        );
        e.sample(
            &format!("{name}_count"),
            &[("sink", &sink.name)],
            cumulative as f64,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut e = Exposition::default();
        e.sample("m", &[("a", "x\"y\\z\nw")], 1.0);
        assert_eq!(e.text, "m{a=\"x\\\"y\\\\z\\nw\"} 1\n");
    }
}
