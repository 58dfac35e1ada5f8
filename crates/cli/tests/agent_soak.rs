//! A benchmark, not a test (ignored by default; see BENCHMARKS.md): the
//! agent's memory over a long run at a steady rate. The lab's client makes
//! connections to db at a steady rate, most allowed and some through the
//! lab's gap (bypasses), each from a new source port; every minute the
//! agent's resident memory, CPU time, events and open alert groups are
//! printed. Memory must follow live connections and alert groups, not
//! uptime.
//!
//! ```text
//! SOAK_MINUTES=60 sudo -E cargo test --release -p palisade --test agent_soak -- --ignored --nocapture
//! ```

#[path = "../../sense/tests/lab/mod.rs"]
mod lab;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lab::{KillOnDrop, Lab, client_and_db};

/// Connections a second (one in ten through the lab's gap: a bypass).
const RATE: u32 = 500;

fn generator(ip: &str, seconds: u64) -> String {
    format!(
        "import socket,time\nend=time.time()+{seconds}\nn=0\nstart=time.time()\nwhile time.time()<end:\n port=6379 if n%10==0 else 5432\n s=socket.socket()\n try:\n  s.connect(('{ip}',port))\n except OSError:\n  pass\n s.close()\n n+=1\n ahead=n/{RATE}-(time.time()-start)\n if ahead>0:\n  time.sleep(ahead)\nprint(n,flush=True)\n"
    )
}

fn server(ip: &str, port: u16) -> String {
    format!(
        "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('{ip}',{port}))\ns.listen(4096)\nwhile True:\n c,_=s.accept()\n c.close()\n"
    )
}

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    fields.get(11..13).map_or(0.0, |f| {
        f.iter().filter_map(|t| t.parse::<f64>().ok()).sum::<f64>() / 100.0
    })
}

fn metric(addr: &str, series: &str) -> f64 {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return 0.0;
    };
    let _ = stream.write_all(b"GET /metrics HTTP/1.1\r\n\r\n");
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    // Every series of the metric (all label sets), summed.
    text.lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
#[ignore = "a benchmark: run it on purpose (BENCHMARKS.md)"]
fn agent_memory_over_a_long_run() {
    let minutes: u64 = std::env::var("SOAK_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(2);
    let mut lab = Lab::start(&client_and_db(&[5432, 6379])).expect("the lab");
    let db = lab.pod("db").ip.clone();
    for port in [5432, 6379] {
        lab.spawn_in("db", &["/usr/bin/python3", "-c", &server(&db, port)])
            .unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let dir = std::env::temp_dir().join(format!("palisade-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let policy = dir.join("shop.yaml");
    let pod = |name: &str| {
        let p = lab.pod(name);
        format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: shop, uid: {}, labels: {{app: {name}}}}}\nspec: {{containers: [{{name: main, image: x}}]}}\nstatus: {{podIP: {}}}\n",
            p.uid, p.ip
        )
    };
    let netpol = "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: db, namespace: shop}\nspec:\n  podSelector: {matchLabels: {app: db}}\n  ingress:\n  - ports: [{port: 5432}]\n";
    std::fs::write(
        &policy,
        format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: shop}}\n{}{}{netpol}",
            pod("client"),
            pod("db")
        ),
    )
    .unwrap();
    let metrics = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().to_string()
    };
    let mut agent = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_palisade"))
            .args(["agent", "--policy"])
            .arg(&policy)
            .args(["--output", "/dev/null", "--metrics-addr", &metrics])
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the agent runs"),
    );
    let mut lines = BufReader::new(agent.stderr.take().unwrap()).lines();
    assert!(lines.any(|l| l.is_ok_and(|l| l.contains("watching this node"))));
    std::thread::spawn(move || lines.for_each(drop));
    let load = lab
        .spawn_in(
            "client",
            &["/usr/bin/python3", "-c", &generator(&db, minutes * 60)],
        )
        .unwrap();
    let pid = agent.id();
    let started = Instant::now();
    println!("minute, agent RSS KiB, peak KiB, CPU s, TCP events, open alert groups, alerts sent");
    for minute in 0..=minutes {
        let due = started + Duration::from_secs(minute * 60);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let events = ["connect", "accept", "close"]
            .iter()
            .map(|k| {
                metric(
                    &metrics,
                    &format!("palisade_agent_events_total{{kind=\"{k}\"}}"),
                )
            })
            .sum::<f64>();
        println!(
            "{minute}, {}, {}, {:.1}, {events:.0}, {}, {}",
            status_kib(pid, "VmRSS:"),
            status_kib(pid, "VmHWM:"),
            cpu_seconds(pid),
            metric(&metrics, "palisade_agent_open_alert_groups"),
            metric(&metrics, "palisade_agent_alerts_total"),
        );
    }
    let made = lab.first_line_of(load).unwrap_or_default();
    println!("connections made: {}", made.trim());
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = agent.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
