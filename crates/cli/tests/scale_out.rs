//! Scale-out: three agents publish to NATS JetStream (Debian's
//! nats-server), two server replicas consume it as one durable consumer
//! into one PostgreSQL store, and one replica is killed with SIGKILL under
//! load. Every alert the stream acknowledged must be in the store once.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use palisade_send::{SendOptions, Sender};
use palisade_store::{AlertQuery, PostgresStore, Store};
use support::{Daemon, Server, free_port, scratch};

const AGENTS: usize = 3;
const PER_AGENT: usize = 3000;

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
    let port = free_port();
    let _nats = Daemon(
        Command::new("/usr/sbin/nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
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
    // Kill one replica while the agents are publishing.
    std::thread::sleep(Duration::from_millis(700));
    first.kill();
    let published: usize = agents.into_iter().map(|a| a.join().unwrap()).sum();
    assert_eq!(
        published,
        AGENTS * PER_AGENT,
        "the stream stored every alert"
    );

    let store = PostgresStore::open(&postgres, None).unwrap();
    let ids: Vec<String> = (0..AGENTS)
        .flat_map(|a| (0..PER_AGENT).map(move |n| (a, n)))
        .map(|(a, n)| format!("{run}-{a}-{n}"))
        .collect();
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
    for agent in 0..AGENTS {
        let query = AlertQuery {
            origin: Some(format!("agent-{run}-{agent}")),
            limit: Some(10_000),
            ..AlertQuery::default()
        };
        let stored = store.reader().unwrap().alerts(&query).unwrap();
        assert_eq!(stored.len(), PER_AGENT, "each alert once in the store");
    }
    second.stop();
}
