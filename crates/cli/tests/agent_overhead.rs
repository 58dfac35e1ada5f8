//! A benchmark, not a test (ignored by default; see BENCHMARKS.md): the
//! connection rate of a short-connection load between two lab pods with
//! and without `palisade agent` watching, in alternating rounds, with the
//! agent's CPU time and the events it received and lost.
//!
//! ```text
//! sudo -E cargo test --release -p palisade --test agent_overhead -- --ignored --nocapture
//! ```
//!
//! `SENSOR=conntrack` measures the conntrack sensor instead, and then
//! `conntrack -E` (conntrack-tools) listening in the client's namespace,
//! the tool a user would otherwise run, at the same load.

#[path = "../../sense/tests/lab/mod.rs"]
mod lab;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use lab::{KillOnDrop, Lab, client_and_db};

const ROUNDS: usize = 3;
const SECONDS: f64 = 4.0;
const PORT: u16 = 7000;

/// Two processes that connect, send nothing and close (RST, so no
/// TIME_WAIT runs the ports out), as fast as they can for `SECONDS`.
fn load_generator(ip: &str) -> String {
    format!(
        "import socket,struct,time,os\nlinger=struct.pack('ii',1,0)\npid=os.fork()\nn=0\nend=time.time()+{SECONDS}\nwhile time.time()<end:\n s=socket.socket()\n s.setsockopt(socket.SOL_SOCKET,socket.SO_LINGER,linger)\n try:\n  s.connect(('{ip}',{PORT}))\n  n+=1\n except OSError:\n  pass\n s.close()\nif pid==0:\n print(n,flush=True)\n os._exit(0)\n# After the child's line, so the two never interleave.\nos.waitpid(pid,0)\nprint(n,flush=True)\n"
    )
}

/// An accept loop that closes each connection at once.
fn server(ip: &str) -> String {
    format!(
        "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('{ip}',{PORT}))\ns.listen(4096)\nwhile True:\n c,_=s.accept()\n c.close()\n"
    )
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name's closing parenthesis; utime and stime
    // are the 14th and 15th fields, in clock ticks (100 a second here).
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
        f.iter().filter_map(|t| t.parse::<f64>().ok()).sum()
    });
    ticks / 100.0
}

/// `conntrack -E` in the client's namespace at the same load: its CPU and
/// the events it printed.
fn conntrack_tool(lab: &mut Lab, rate: &dyn Fn(&mut Lab) -> f64) {
    let netns = lab.pod("client").netns.clone();
    let out = std::env::temp_dir().join(format!("conntrack-e-{}.txt", std::process::id()));
    let file = std::fs::File::create(&out).unwrap();
    let mut tool = Command::new("ip")
        .args(["netns", "exec", &netns, "conntrack", "-E"])
        .stdout(file)
        .stderr(Stdio::null())
        .spawn()
        .expect("conntrack -E runs (conntrack-tools)");
    std::thread::sleep(Duration::from_millis(300));
    let before = cpu_seconds(tool.id());
    let connections = rate(lab);
    std::thread::sleep(Duration::from_millis(300));
    let cpu = cpu_seconds(tool.id()) - before;
    let _ = tool.kill();
    let _ = tool.wait();
    let lines = std::fs::read_to_string(&out)
        .map(|t| t.lines().count())
        .unwrap_or(0);
    let _ = std::fs::remove_file(&out);
    println!(
        "conntrack -E: with it {connections:.0} conn/s; {cpu:.2} CPU-s for {lines} events printed ({:.3} CPU-s per 10k connections)",
        cpu / (connections * SECONDS / 10_000.0)
    );
}

/// The kernel's run-time statistics of BPF programs (`kernel.bpf_stats_enabled`).
fn bpf_stats(on: bool) {
    let value = format!("kernel.bpf_stats_enabled={}", u8::from(on));
    let _ = Command::new("sysctl").args(["-q", &value]).status();
}

/// Nanoseconds per run and runs of the sensor's programs, from bpftool.
fn program_costs() -> String {
    let out = Command::new("bpftool")
        .args(["prog", "show"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let field = |line: &str, name: &str| -> Option<f64> {
        let at = line.split_whitespace().position(|w| w == name)?;
        line.split_whitespace().nth(at + 1)?.parse().ok()
    };
    out.lines()
        .filter(|l| {
            ["on_tcp_state", "on_sock_create", "on_drop"]
                .iter()
                .any(|p| l.contains(p))
        })
        .filter_map(|l| {
            let name = l.split_whitespace().skip_while(|w| *w != "name").nth(1)?;
            let (time, runs) = (field(l, "run_time_ns")?, field(l, "run_cnt")?);
            Some(format!("{name} {:.0} ns x {runs}", time / runs.max(1.0)))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn scrape(addr: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("metrics");
    stream.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

fn start_agent(policy: &std::path::Path, metrics: &str, sensor: &str) -> KillOnDrop {
    let mut agent = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_palisade"))
            .args(["agent", "--sensor", sensor, "--policy"])
            .arg(policy)
            .args(["--metrics-addr", metrics, "--output", "/dev/null"])
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the agent runs"),
    );
    let stderr = agent.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    assert!(
        lines.any(|l| l.is_ok_and(|l| l.contains("watching this node"))),
        "the agent did not start"
    );
    std::thread::spawn(move || lines.for_each(drop));
    agent
}

#[test]
#[ignore = "a benchmark: run it on purpose (BENCHMARKS.md)"]
fn agent_overhead_on_short_connections() {
    let pods = client_and_db(&[PORT]);
    let mut lab = Lab::start(&pods).expect("the lab (root, iproute2, nftables)");
    let ip = lab.pod("db").ip.clone();
    lab.spawn_in("db", &["/usr/bin/python3", "-c", &server(&ip)])
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let dir = std::env::temp_dir().join(format!("palisade-overhead-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let policy = dir.join("empty.yaml");
    std::fs::write(
        &policy,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: lab}\n",
    )
    .unwrap();
    let metrics = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().to_string()
    };
    let sensor = std::env::var("SENSOR").unwrap_or_else(|_| "ebpf".into());
    // The client's namespace must have a process for the conntrack sensor
    // to find it by.
    lab.keep_alive("client");
    let generator = load_generator(&ip);
    let rate = |lab: &mut Lab| -> f64 {
        let out = lab
            .run_in("client", &["/usr/bin/python3", "-c", &generator])
            .expect("the load generator runs");
        out.lines()
            .filter_map(|l| l.trim().parse::<f64>().ok())
            .sum::<f64>()
            / SECONDS
    };
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        without.push(rate(&mut lab));
        let mut agent = start_agent(&policy, &metrics, &sensor);
        let cpu_before = cpu_seconds(agent.id());
        let before = scrape(&metrics);
        let connections = rate(&mut lab);
        std::thread::sleep(Duration::from_millis(300));
        let after = scrape(&metrics);
        let cpu = cpu_seconds(agent.id()) - cpu_before;
        // The kernel's per-program statistics cost a clock read or two a
        // run, so they are taken in a round of their own, not the measured one.
        bpf_stats(true);
        rate(&mut lab);
        let programs = program_costs();
        bpf_stats(false);
        let _ = Command::new("kill")
            .args(["-TERM", &agent.id().to_string()])
            .status();
        let _ = agent.wait();
        with.push(connections);
        let events = |text: &str| {
            [
                "connect",
                "accept",
                "close",
                "conntrack_new",
                "conntrack_update",
                "conntrack_destroy",
            ]
            .iter()
            .map(|k| {
                metric(
                    text,
                    &format!("palisade_agent_events_total{{kind=\"{k}\"}}"),
                )
            })
            .sum::<f64>()
        };
        let received = events(&after) - events(&before);
        let lost = metric(&after, "palisade_agent_events_lost_total");
        println!(
            "round {round}: without {:.0} conn/s, with {connections:.0} conn/s; agent {cpu:.2} CPU-s for {received:.0} TCP events ({:.0} events/s, {:.3} CPU-s per 10k connections), {lost} lost; in the kernel: {programs}",
            without[round],
            received / SECONDS,
            cpu / (connections * SECONDS / 10_000.0),
        );
    }
    if sensor == "conntrack" {
        conntrack_tool(&mut lab, &rate);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "mean: without {:.0} conn/s, with {:.0} conn/s: {:+.1}%",
        mean(&without),
        mean(&with),
        100.0 * (mean(&with) / mean(&without) - 1.0)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
