//! The agent's test lab: pods as network namespaces on a bridge, each with a
//! cgroup named as the kubelet names pod and container cgroups (systemd or
//! cgroupfs driver), processes placed in them, and an nftables ruleset per
//! pod that enforces its ingress policy.
//!
//! Everything lives in namespaces and addresses the lab creates itself: the
//! bridge sits in a "node" namespace of its own, so the host's network is
//! never touched, and traffic only flows between lab namespaces. Dropping
//! the [`Lab`] removes all of it (processes, namespaces, cgroups), also when
//! a test panics.
//!
//! Needs root, `ip` (iproute2), `nft` (nftables) and Python 3 for the tiny
//! servers and clients. [`Lab::start`] says why it cannot run, and
//! [`skip_or_fail`] turns that into a loud skip, or a failure when
//! `PALISADE_PRIVILEGED_TESTS=require` (as in CI).

#![allow(dead_code)] // each test file uses part of the lab

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The kubelet cgroup driver a pod's cgroups are named after.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    Systemd,
    Cgroupfs,
}

#[derive(Clone, Debug)]
pub struct PodSpec {
    pub name: &'static str,
    pub driver: Driver,
    /// TCP ports other lab pods may reach (the pod's ingress policy);
    /// everything else inbound is dropped by its nftables ruleset.
    pub allowed_tcp: Vec<u16>,
}

#[derive(Debug)]
pub struct Pod {
    pub name: &'static str,
    pub uid: String,
    pub container_id: String,
    pub netns: String,
    pub ip: String,
    /// The container's cgroup directory (absolute).
    pub cgroup: PathBuf,
}

/// The usual lab: a client (systemd driver) whose ingress is closed, and
/// db (cgroupfs driver) open on `db_ports`.
pub fn client_and_db(db_ports: &[u16]) -> Vec<PodSpec> {
    vec![
        PodSpec {
            name: "client",
            driver: Driver::Systemd,
            allowed_tcp: vec![],
        },
        PodSpec {
            name: "db",
            driver: Driver::Cgroupfs,
            allowed_tcp: db_ports.to_vec(),
        },
    ]
}

/// The manifest of a lab pod in namespace `shop`, labelled `app: NAME`,
/// with its uid and address; `ports` is the YAML flow list of its
/// container ports (empty for none).
pub fn pod_manifest(lab: &Lab, name: &str, ports: &str) -> String {
    let p = lab.pod(name);
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: shop\n  uid: {}\n  labels: {{app: {name}}}\nspec:\n  containers:\n  - name: main\n    image: example\n    ports: [{ports}]\nstatus:\n  podIP: {}\n  podIPs: [{{ip: {}}}]\n",
        p.uid, p.ip, p.ip
    )
}

/// Namespace `shop`, the client and db pods, and a policy letting the
/// client reach db on `allowed` ports only.
pub fn shop_manifests(lab: &Lab, allowed: &[u16]) -> String {
    let ports: Vec<String> = allowed.iter().map(|p| format!("{{port: {p}}}")).collect();
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: shop}}\n---\n{}---\n{}---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: db-ingress, namespace: shop}}\nspec:\n  podSelector: {{matchLabels: {{app: db}}}}\n  policyTypes: [Ingress]\n  ingress:\n  - from: [{{podSelector: {{matchLabels: {{app: client}}}}}}]\n    ports: [{}]\n",
        pod_manifest(lab, "client", ""),
        pod_manifest(lab, "db", ""),
        ports.join(", ")
    )
}

pub struct Lab {
    pub id: String,
    node_netns: String,
    cgroup_base: PathBuf,
    pub pods: Vec<Pod>,
    children: Vec<Child>,
}

/// A process a test started outside the lab (the agent): killed when the
/// test ends, also when it fails, so no agent outlives its test.
pub struct KillOnDrop(pub Child);

impl std::ops::Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Skips the calling test with a message, or fails it when privileged
/// tests are required.
/// Starts the built agent (`command`, with its arguments) and waits until
/// it says it is watching; its stderr is drained from then on, so that it
/// never writes into a closed pipe. `None` when it stops first.
pub fn start_agent(mut command: Command) -> Option<KillOnDrop> {
    use std::io::{BufRead, BufReader};
    let mut agent = KillOnDrop(
        command
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .ok()?,
    );
    let stderr = agent.stderr.take()?;
    let mut lines = BufReader::new(stderr).lines();
    let started = lines.any(|l| l.is_ok_and(|l| l.contains("watching this node")));
    std::thread::spawn(move || lines.for_each(drop));
    started.then_some(agent)
}

/// SIGTERM, and the agent must exit 0 (it sends its open updates first).
pub fn stop_agent(mut agent: KillOnDrop) {
    let _ = Command::new("kill")
        .args(["-TERM", &agent.id().to_string()])
        .status();
    assert!(agent.wait().unwrap().success());
}

pub fn skip_or_fail(test: &str, why: &str) {
    let required = std::env::var("PALISADE_PRIVILEGED_TESTS").is_ok_and(|v| v == "require");
    assert!(
        !required,
        "{test}: cannot run the lab ({why}) but privileged tests are required"
    );
    eprintln!("SKIPPED {test}: {why} (run as root with iproute2 and nftables)");
}

pub fn run(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args[0]))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn cgroup2_root() -> Result<PathBuf, String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
    palisade_sense::cgroup_mounts(&mountinfo)
        .unified
        .ok_or_else(|| "no cgroup2 mount".to_string())
}

/// A pod UID made from the lab id and the pod's index.
fn uid(lab: u32, n: usize) -> String {
    format!("{lab:08x}-0000-4000-8000-{n:012x}")
}

fn container_id(lab: u32, n: usize) -> String {
    format!("{lab:08x}{n:056x}")
}

impl Lab {
    /// Builds the lab, or says why it cannot on this machine.
    pub fn start(pods: &[PodSpec]) -> Result<Lab, String> {
        if !run(&["id", "-u"]).is_ok_and(|u| u.trim() == "0") {
            return Err("not root".into());
        }
        for tool in ["ip", "nft"] {
            run(&["sh", "-c", &format!("command -v {tool}")])
                .map_err(|_| format!("{tool} is not installed"))?;
        }
        // Unique per lab, also for labs of one test process.
        static LABS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let nth = LABS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let number = (std::process::id() % 10_000) * 10 + nth % 10;
        let id = format!("pl{number}");
        let root = cgroup2_root()?;
        let mut lab = Lab {
            node_netns: format!("{id}-node"),
            cgroup_base: root.join(format!("palisade-lab-{number}")),
            id,
            pods: Vec::new(),
            children: Vec::new(),
        };
        lab.build(number, pods)?;
        Ok(lab)
    }

    fn build(&mut self, number: u32, pods: &[PodSpec]) -> Result<(), String> {
        let node = self.node_netns.clone();
        run(&["ip", "netns", "add", &node])?;
        run(&["ip", "-n", &node, "link", "add", "br0", "type", "bridge"])?;
        run(&["ip", "-n", &node, "link", "set", "br0", "up"])?;
        std::fs::create_dir(&self.cgroup_base).map_err(|e| format!("cgroup: {e}"))?;
        // A subnet of 10.200.0.0/16 of the lab's own.
        let subnet = 1 + number % 250;
        for (n, spec) in pods.iter().enumerate() {
            let pod = self.add_pod(number, subnet, n, spec)?;
            self.pods.push(pod);
        }
        Ok(())
    }

    fn add_pod(
        &mut self,
        number: u32,
        subnet: u32,
        n: usize,
        spec: &PodSpec,
    ) -> Result<Pod, String> {
        let netns = format!("{}-{}", self.id, spec.name);
        let (pod_if, node_if) = (format!("{}p{n}", self.id), format!("{}n{n}", self.id));
        let ip = format!("10.200.{subnet}.{}", 10 + n);
        run(&["ip", "netns", "add", &netns])?;
        run(&[
            "ip", "link", "add", &pod_if, "type", "veth", "peer", "name", &node_if,
        ])?;
        run(&["ip", "link", "set", &pod_if, "netns", &netns])?;
        run(&["ip", "link", "set", &node_if, "netns", &self.node_netns])?;
        run(&["ip", "-n", &netns, "link", "set", &pod_if, "name", "eth0"])?;
        run(&[
            "ip",
            "-n",
            &netns,
            "addr",
            "add",
            &format!("{ip}/24"),
            "dev",
            "eth0",
        ])?;
        run(&["ip", "-n", &netns, "link", "set", "eth0", "up"])?;
        run(&["ip", "-n", &netns, "link", "set", "lo", "up"])?;
        run(&[
            "ip",
            "-n",
            &self.node_netns,
            "link",
            "set",
            &node_if,
            "master",
            "br0",
        ])?;
        run(&["ip", "-n", &self.node_netns, "link", "set", &node_if, "up"])?;
        self.enforce(&netns, &spec.allowed_tcp)?;
        let (uid, container_id) = (uid(number, n), container_id(number, n));
        let cgroup = self.pod_cgroup(spec.driver, &uid, &container_id)?;
        Ok(Pod {
            name: spec.name,
            uid,
            container_id,
            netns,
            ip,
            cgroup,
        })
    }

    /// The pod's ingress policy as its own nftables table: replies and the
    /// allowed TCP ports pass, every other new inbound connection is dropped.
    fn enforce(&self, netns: &str, allowed_tcp: &[u16]) -> Result<(), String> {
        let ports = allowed_tcp
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let accept_ports = if ports.is_empty() {
            String::new()
        } else {
            format!("tcp dport {{ {ports} }} accept\n")
        };
        let ruleset = format!(
            "table inet palisade_lab {{\n chain input {{\n  type filter hook input priority 0; policy drop;\n  ct state established,related accept\n  iif lo accept\n  {accept_ports} }}\n}}\n"
        );
        let file = std::env::temp_dir().join(format!("{netns}.nft"));
        std::fs::write(&file, ruleset).map_err(|e| e.to_string())?;
        let result = run(&[
            "ip",
            "netns",
            "exec",
            netns,
            "nft",
            "-f",
            &file.to_string_lossy(),
        ]);
        let _ = std::fs::remove_file(&file);
        result.map(|_| ())
    }

    /// Creates the pod and container cgroups as the kubelet and containerd
    /// name them; returns the container's.
    fn pod_cgroup(&self, driver: Driver, uid: &str, container_id: &str) -> Result<PathBuf, String> {
        let relative = match driver {
            Driver::Systemd => format!(
                "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{container_id}.scope",
                uid.replace('-', "_")
            ),
            Driver::Cgroupfs => format!("kubepods/besteffort/pod{uid}/{container_id}"),
        };
        let mut at = self.cgroup_base.clone();
        for part in relative.split('/') {
            at.push(part);
            if !at.exists() {
                std::fs::create_dir(&at).map_err(|e| format!("cgroup {}: {e}", at.display()))?;
            }
        }
        Ok(at)
    }

    pub fn pod(&self, name: &str) -> &Pod {
        self.pods
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no lab pod {name}"))
    }

    /// `argv` to run inside pod `name`: in its container cgroup (the
    /// shell moves itself there before it execs) and its network namespace.
    fn in_pod(&self, name: &str, argv: &[&str]) -> Command {
        let pod = self.pod(name);
        let procs = pod.cgroup.join("cgroup.procs");
        let script = format!(
            "echo $$ > '{}' && exec ip netns exec '{}' \"$@\"",
            procs.display(),
            pod.netns
        );
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(script)
            .arg("lab")
            .args(argv)
            .stdin(Stdio::null());
        command
    }

    /// Starts `argv` inside pod `name`; the lab stops it when it goes.
    pub fn spawn_in(&mut self, name: &str, argv: &[&str]) -> Result<u32, String> {
        let child = self
            .in_pod(name, argv)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        let pid = child.id();
        self.children.push(child);
        Ok(pid)
    }

    /// The first line a process started with [`Lab::spawn_in`] prints.
    pub fn first_line_of(&mut self, pid: u32) -> Option<String> {
        use std::io::BufRead;
        let child = self.children.iter_mut().find(|c| c.id() == pid)?;
        let stdout = child.stdout.take()?;
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line).ok()?;
        Some(line)
    }

    /// A process that stays in pod `name` (as a pause container does in a
    /// cluster), once it is in the pod's cgroup: what finds the pod's
    /// namespace from its cgroup needs one.
    pub fn keep_alive(&mut self, name: &str) {
        self.spawn_in(name, &["/bin/sleep", "600"])
            .expect("sleep starts");
        let procs = self.pod(name).cgroup.join("cgroup.procs");
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read_to_string(&procs)
            .unwrap_or_default()
            .trim()
            .is_empty()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `argv` in pod `name` to its end, and returns what it printed.
    pub fn run_in(&mut self, name: &str, argv: &[&str]) -> Result<String, String> {
        let out = self
            .in_pod(name, argv)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A TCP server in pod `name` on `port` that answers each connection
    /// and closes it; returns its pid once it listens.
    pub fn serve_tcp(&mut self, name: &str, port: u16) -> Result<u32, String> {
        let ip = self.pod(name).ip.clone();
        let program = format!(
            "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind(('{ip}', {port}))\ns.listen(16)\nwhile True:\n c,_=s.accept()\n c.sendall(b'ok')\n c.close()\n"
        );
        let pid = self.spawn_in(name, &["/usr/bin/python3", "-c", &program])?;
        let netns = self.pod(name).netns.clone();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let listening = run(&[
                "ip",
                "netns",
                "exec",
                &netns,
                "ss",
                "-ltnH",
                &format!("sport = :{port}"),
            ])
            .is_ok_and(|out| !out.trim().is_empty());
            if listening {
                return Ok(pid);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("server in {name} did not listen on {port}"))
    }

    /// Tries a TCP connection from pod `from` to pod `to`, from inside
    /// `from`'s cgroup and namespace; true when it was answered.
    pub fn connect_tcp(&mut self, from: &str, to: &str, port: u16, timeout: Duration) -> bool {
        let ip = self.pod(to).ip.clone();
        let program = format!(
            "import socket,sys\ntry:\n socket.create_connection(('{ip}', {port}), timeout={}).close()\nexcept OSError:\n sys.exit(1)\n",
            timeout.as_secs_f64()
        );
        self.in_pod(from, &["/usr/bin/python3", "-c", &program])
            .status()
            .is_ok_and(|s| s.success())
    }

    /// The cgroup2 path (relative to the mount) of a process.
    pub fn cgroup_of(pid: u32) -> Option<String> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("0::"))
            .map(str::to_string)
    }

    pub fn cgroup_root(&self) -> &Path {
        self.cgroup_base.parent().unwrap_or(&self.cgroup_base)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for pod in &self.pods {
            let _ = run(&["ip", "netns", "del", &pod.netns]);
        }
        let _ = run(&["ip", "netns", "del", &self.node_netns]);
        remove_cgroups(&self.cgroup_base);
    }
}

/// Removes a cgroup tree bottom-up, once its processes are gone.
fn remove_cgroups(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroups(&entry.path());
            }
        }
    }
    for _ in 0..50 {
        if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        // Killed processes leave their cgroup a moment later.
        std::thread::sleep(Duration::from_millis(20));
    }
}
