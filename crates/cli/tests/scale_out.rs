//! Scale-out: three agents publish to NATS JetStream (Debian's
//! nats-server), two server replicas consume it as one durable consumer
//! into one PostgreSQL store, and one replica is killed with SIGKILL under
//! load, while it holds messages it has not acknowledged. Every alert the
//! stream acknowledged must be in the store once, counted once, and the
//! stream must have redelivered what the killed replica held.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use palisade_send::{SendOptions, Sender};
use palisade_store::{AlertQuery, PostgresStore, Store};
use support::{Daemon, Server, free_port, scratch};

const AGENTS: usize = 3;
const PER_AGENT: usize = 3000;
/// The most messages a replica fetches at once (`bus.rs`).
const FETCH: u64 = 1000;

/// The shared consumer's figures from nats-server's monitoring endpoint:
/// messages delivered but not acknowledged, and redeliveries (its delivery
/// count runs ahead of the stream's sequence by one per redelivery; the
/// stream and the consumer are new in each run).
fn consumer_figures(monitor: u16) -> (u64, u64) {
    let url = format!("http://127.0.0.1:{monitor}/jsz?consumers=true");
    let jsz = support::get_json(&url);
    let consumers = jsz["account_details"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|a| a["stream_detail"].as_array().into_iter().flatten())
        .flat_map(|s| s["consumer_detail"].as_array().into_iter().flatten());
    consumers
        .filter(|c| c["name"] == "palisade-serve")
        .map(|c| {
            let delivered = |k: &str| c["delivered"][k].as_u64().unwrap_or(0);
            let redelivered = delivered("consumer_seq").saturating_sub(delivered("stream_seq"));
            (c["num_ack_pending"].as_u64().unwrap_or(0), redelivered)
        })
        .fold((0, 0), |(a, r), (a2, r2)| (a + a2, r + r2))
}

fn line(run: &str, agent: usize, n: usize) -> String {
    format!(
        r#"{{"id":"{run}-{agent}-{n}","origin":"agent-{run}-{agent}","rule":"FLOW-001","severity":"critical","summary":"bypass {n}","protocol":"TCP","port":5432,"connections":1,"src":{{"namespace":"web"}},"dst":{{"namespace":"shop"}}}}"#
    )
}

#[test]
fn two_replicas_over_jetstream_and_postgres_lose_nothing_when_one_is_killed() {
    let test = "two_replicas_over_jetstream_and_postgres_lose_nothing_when_one_is_killed";
    let required = std::env::var("PALISADE_PRIVILEGED_TESTS").is_ok_and(|v| v == "require");
    let postgres = std::env::var("PALISADE_TEST_POSTGRES").ok();
    let (true, Some(postgres)) = (Path::new("/usr/sbin/nats-server").exists(), postgres) else {
        assert!(
            !required,
            "{test}: nats-server or PALISADE_TEST_POSTGRES is missing"
        );
        return eprintln!("SKIPPED {test}: needs nats-server and PALISADE_TEST_POSTGRES");
    };
    let dir = scratch("scale-out");
    let (port, monitor) = (free_port(), free_port());
    let _nats = Daemon(
        Command::new("/usr/sbin/nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string()])
            .args(["-m", &monitor.to_string(), "-sd"])
            .arg(dir.join("jetstream"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let nats = format!("nats://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nats-server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let replica = || Server::on_store(&postgres, &["--nats", &nats, "--nats-ack-wait", "2"]);
    let (first, second) = (replica(), replica());
    let run = format!("so{}", std::process::id());

    let agents: Vec<_> = (0..AGENTS)
        .map(|agent| {
            let (nats, run, spool) = (
                nats.clone(),
                run.clone(),
                dir.join(format!("spool-{agent}")),
            );
            std::thread::spawn(move || {
                let options = SendOptions {
                    server: nats,
                    token: None,
                    batch: 250,
                    patience: Duration::from_secs(30),
                    spool,
                    tls: Default::default(),
                };
                let mut sender = Sender::new(options, &format!("agent-{run}-{agent}")).unwrap();
                let mut delivered = 0;
                for chunk in (0..PER_AGENT).collect::<Vec<_>>().chunks(250) {
                    let lines: Vec<String> = chunk.iter().map(|&n| line(&run, agent, n)).collect();
                    let report = sender.send(&lines).unwrap();
                    assert_eq!(report.stopped, None);
                    delivered += report.delivered;
                }
                delivered
            })
        })
        .collect();
    let store = PostgresStore::open(&postgres, None).unwrap();
    let ids: Vec<String> = (0..AGENTS)
        .flat_map(|a| (0..PER_AGENT).map(move |n| (a, n)))
        .map(|(a, n)| format!("{run}-{a}-{n}"))
        .collect();
    // Kill one replica under load, while it holds messages it has not
    // acknowledged. A replica fetches at most 1,000 at a time, so more than
    // 1,000 pending with the first one stopped (it can no longer
    // acknowledge) means the first holds some; otherwise it is let go on
    // and caught again.
    let signal = |name: &str| {
        let pid = first.child.id().to_string();
        assert!(
            Command::new("kill")
                .args([name, &pid])
                .status()
                .unwrap()
                .success()
        );
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            Instant::now() < deadline,
            "never caught the first replica holding messages"
        );
        if consumer_figures(monitor).0 <= FETCH {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        signal("-STOP");
        std::thread::sleep(Duration::from_millis(50));
        if consumer_figures(monitor).0 > FETCH {
            break;
        }
        signal("-CONT");
    }
    first.kill();
    let published: usize = agents.into_iter().map(|a| a.join().unwrap()).sum();
    assert_eq!(
        published,
        AGENTS * PER_AGENT,
        "the stream stored every alert"
    );

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut missing = store.reader().unwrap().missing(&ids).unwrap();
    while !missing.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        missing = store.reader().unwrap().missing(&ids).unwrap();
    }
    assert!(
        missing.is_empty(),
        "{} alerts never reached the store, e.g. {:?}",
        missing.len(),
        &missing[..3.min(missing.len())]
    );
    // What the killed replica held comes back after the ack wait (2 s),
    // even when it had committed it: wait until the other acknowledged it,
    // then see that redelivery changed no count.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut figures = consumer_figures(monitor);
    while figures.0 > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        figures = consumer_figures(monitor);
    }
    let (pending, redelivered) = figures;
    assert_eq!(pending, 0, "every message was acknowledged in the end");
    assert!(
        redelivered > 0,
        "the killed replica held unacknowledged messages, redelivered to the other"
    );
    for agent in 0..AGENTS {
        let query = AlertQuery {
            origin: Some(format!("agent-{run}-{agent}")),
            limit: Some(10_000),
            ..AlertQuery::default()
        };
        let stored = store.reader().unwrap().alerts(&query).unwrap();
        assert_eq!(stored.len(), PER_AGENT, "each alert once in the store");
        let counted: u64 = stored.iter().map(|a| a.record.connections).sum();
        assert_eq!(counted, PER_AGENT as u64, "no redelivery counted twice");
    }
    second.stop();
}
