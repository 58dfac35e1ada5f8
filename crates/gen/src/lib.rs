//! Synthetic clusters as `kubectl get -o yaml`-style manifests: seeded and
//! deterministic, so property tests can replay a failing seed and benchmarks
//! measure the same input every time.
//!
//! Label values come from small pools so that selectors both hit and miss;
//! policies mix every construct the engine must get right: default-deny,
//! matchExpressions, cross-namespace peers, ipBlocks with holes, named ports,
//! port ranges, omitted policyTypes, hostNetwork pods.

use std::fmt::Write;

/// A small, fast, deterministic PRNG (SplitMix64); no external crate needed
/// for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

#[derive(Clone, Debug)]
pub struct Params {
    pub namespaces: usize,
    pub workloads: usize,
    pub pods_per_workload: usize,
    pub policies: usize,
    pub seed: u64,
    /// Percent of workloads on the host network.
    pub host_network_percent: u64,
}

impl Params {
    /// The benchmark cluster of the foundation issue: 10,000 pods in 1,000
    /// workloads across 50 namespaces with 2,000 policies.
    pub fn benchmark(pods: usize) -> Params {
        Params {
            namespaces: (pods / 200).max(1),
            workloads: (pods / 10).max(1),
            pods_per_workload: 10,
            policies: (pods / 5).max(1),
            seed: 1,
            host_network_percent: 3,
        }
    }
}

const TIERS: [&str; 5] = ["frontend", "backend", "db", "cache", "batch"];
const ENVS: [&str; 3] = ["prod", "staging", "dev"];
const PORT_NAMES: [(&str, u16, &str); 5] = [
    ("http", 8080, "TCP"),
    ("grpc", 9090, "TCP"),
    ("metrics", 9100, "TCP"),
    ("dns", 53, "UDP"),
    ("sctp-sig", 3868, "SCTP"),
];
const PLAIN_PORTS: [u16; 6] = [53, 80, 443, 5432, 8080, 9090];
const CIDRS: [(&str, &[&str]); 6] = [
    ("0.0.0.0/0", &["10.0.0.0/8", "169.254.169.254/32"]),
    ("10.0.0.0/8", &["10.1.0.0/16"]),
    ("192.168.0.0/16", &[]),
    ("172.16.0.0/12", &["172.16.5.0/24"]),
    ("203.0.113.0/24", &[]),
    ("::/0", &["fd00::/8"]),
];

struct Workload {
    namespace: usize,
    name: String,
    tier: &'static str,
    env: &'static str,
    host_network: bool,
    ports: Vec<usize>,
}

fn team(ns: usize, params: &Params) -> usize {
    ns % (params.namespaces / 5).max(2)
}

/// Generates the cluster as one multi-document YAML text.
pub fn generate(params: &Params) -> String {
    let mut rng = Rng::new(params.seed);
    let mut out = String::with_capacity(params.workloads * params.pods_per_workload * 700);
    for ns in 0..params.namespaces {
        let _ = write!(
            out,
            "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: ns{ns}\n  labels:\n    team: t{}\n    env: {}\n",
            team(ns, params),
            rng.pick(&ENVS)
        );
    }
    let workloads: Vec<Workload> = (0..params.workloads)
        .map(|i| Workload {
            namespace: i % params.namespaces.max(1),
            name: format!("app{i}"),
            tier: TIERS[rng.below(TIERS.len())],
            env: ENVS[rng.below(ENVS.len())],
            host_network: rng.chance(params.host_network_percent),
            ports: (0..rng.below(3) + 1)
                .map(|_| rng.below(PORT_NAMES.len()))
                .collect(),
        })
        .collect();
    for (i, w) in workloads.iter().enumerate() {
        write_deployment(&mut out, w);
        for p in 0..params.pods_per_workload {
            write_pod(&mut out, w, i, p);
        }
    }
    for i in 0..params.policies {
        write_policy(&mut out, &mut rng, params, &workloads, i);
    }
    out
}

fn write_labels(out: &mut String, indent: &str, w: &Workload) {
    let _ = write!(
        out,
        "{indent}labels:\n{indent}  app: {}\n{indent}  tier: {}\n{indent}  env: {}\n",
        w.name, w.tier, w.env
    );
}

fn write_containers(out: &mut String, indent: &str, w: &Workload) {
    if w.host_network {
        let _ = writeln!(out, "{indent}hostNetwork: true");
    }
    let _ = write!(
        out,
        "{indent}containers:\n{indent}- name: main\n{indent}  image: registry.example/{}:1.0\n{indent}  ports:\n",
        w.name
    );
    let mut seen = Vec::new();
    for &p in &w.ports {
        if seen.contains(&p) {
            continue;
        }
        seen.push(p);
        let (name, port, proto) = PORT_NAMES[p];
        let _ = write!(
            out,
            "{indent}  - name: {name}\n{indent}    containerPort: {port}\n{indent}    protocol: {proto}\n"
        );
    }
}

fn write_deployment(out: &mut String, w: &Workload) {
    let _ = write!(
        out,
        "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {}\n  namespace: ns{}\nspec:\n  selector:\n    matchLabels:\n      app: {}\n  template:\n    metadata:\n",
        w.name, w.namespace, w.name
    );
    write_labels(out, "      ", w);
    out.push_str("    spec:\n");
    write_containers(out, "      ", w);
}

/// The UID of generated pod number `n` (as the kubelet's cgroups name it).
pub fn pod_uid(n: usize) -> String {
    format!("0000a11e-0000-4000-8000-{n:012x}")
}

fn write_pod(out: &mut String, w: &Workload, index: usize, replica: usize) {
    // Pod IPs 10.(128+)x.y.z: inside 10.0.0.0/8, outside the 10.1.0.0/16 hole.
    let n = index * 64 + replica;
    let ip = format!(
        "10.{}.{}.{}",
        128 + (n >> 16) % 128,
        (n >> 8) & 255,
        n & 255
    );
    let _ = write!(
        out,
        "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}-5f7d9-{replica}\n  namespace: ns{ns}\n  uid: {uid}\n  ownerReferences:\n  - apiVersion: apps/v1\n    kind: ReplicaSet\n    name: {name}-5f7d9\n    controller: true\n",
        name = w.name,
        ns = w.namespace,
        uid = pod_uid(n)
    );
    write_labels(out, "  ", w);
    let _ = writeln!(out, "    pod-template-hash: 5f7d9");
    out.push_str("spec:\n");
    write_containers(out, "  ", w);
    let _ = write!(out, "status:\n  podIP: {ip}\n  podIPs:\n  - ip: {ip}\n");
}

fn write_selector(out: &mut String, rng: &mut Rng, indent: &str, workloads: &[Workload]) {
    match rng.below(6) {
        0 => {
            let _ = writeln!(out, "{indent}{{}}");
        }
        1 => {
            let _ = write!(
                out,
                "{indent}matchLabels:\n{indent}  app: {}\n",
                rng.pick(workloads).name
            );
        }
        2 | 3 => {
            let _ = write!(
                out,
                "{indent}matchLabels:\n{indent}  tier: {}\n",
                rng.pick(&TIERS)
            );
        }
        _ => {
            let (op, values) = match rng.below(4) {
                0 => (
                    "In",
                    format!("[{}, {}]", rng.pick(&TIERS), rng.pick(&TIERS)),
                ),
                1 => ("NotIn", format!("[{}]", rng.pick(&TIERS))),
                2 => ("Exists", String::new()),
                _ => ("DoesNotExist", String::new()),
            };
            let key = if rng.chance(70) { "tier" } else { "version" };
            let _ = write!(
                out,
                "{indent}matchExpressions:\n{indent}- key: {key}\n{indent}  operator: {op}\n"
            );
            if !values.is_empty() {
                let _ = writeln!(out, "{indent}  values: {values}");
            }
        }
    }
}

fn write_peer(out: &mut String, rng: &mut Rng, params: &Params, workloads: &[Workload]) {
    match rng.below(5) {
        0 => {
            let (cidr, except) = rng.pick(&CIDRS);
            let _ = write!(out, "    - ipBlock:\n        cidr: {cidr}\n");
            if !except.is_empty() && rng.chance(70) {
                let _ = writeln!(out, "        except: [{}]", except.join(", "));
            }
        }
        1 => {
            out.push_str("    - namespaceSelector:\n");
            let _ = write!(
                out,
                "        matchLabels:\n          team: t{}\n",
                team(rng.below(params.namespaces), params)
            );
        }
        2 => {
            out.push_str("    - namespaceSelector:\n");
            let _ = write!(
                out,
                "        matchLabels:\n          env: {}\n",
                rng.pick(&ENVS)
            );
            out.push_str("      podSelector:\n");
            write_selector(out, rng, "        ", workloads);
        }
        _ => {
            out.push_str("    - podSelector:\n");
            write_selector(out, rng, "        ", workloads);
        }
    }
}

fn write_ports(out: &mut String, rng: &mut Rng) {
    if rng.chance(25) {
        return;
    }
    out.push_str("    ports:\n");
    for _ in 0..rng.below(2) + 1 {
        match rng.below(5) {
            0 => {
                let (name, _, proto) = rng.pick(&PORT_NAMES);
                let _ = write!(out, "    - port: {name}\n      protocol: {proto}\n");
            }
            1 => {
                let start = *rng.pick(&PLAIN_PORTS);
                let _ = write!(out, "    - port: {start}\n      endPort: {}\n", start + 100);
            }
            2 => out.push_str("    - protocol: UDP\n"),
            _ => {
                let _ = writeln!(out, "    - port: {}", rng.pick(&PLAIN_PORTS));
            }
        }
    }
}

fn write_policy(
    out: &mut String,
    rng: &mut Rng,
    params: &Params,
    workloads: &[Workload],
    i: usize,
) {
    let ns = i % params.namespaces.max(1);
    let _ = write!(
        out,
        "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: np{i}\n  namespace: ns{ns}\nspec:\n  podSelector:\n"
    );
    write_selector(out, rng, "    ", workloads);
    let (ingress, egress) = match rng.below(4) {
        0 => (true, false),
        1 => (false, true),
        _ => (true, true),
    };
    // Omitted policyTypes must be defaulted from the egress section.
    let explicit_types = rng.chance(60) || !ingress;
    if explicit_types {
        let mut types = Vec::new();
        if ingress {
            types.push("Ingress");
        }
        if egress {
            types.push("Egress");
        }
        let _ = writeln!(out, "  policyTypes: [{}]", types.join(", "));
    }
    for (enabled, section, peer_key) in [(ingress, "ingress", "from"), (egress, "egress", "to")] {
        if !enabled {
            continue;
        }
        let rules = rng.below(3);
        if rules == 0 && (explicit_types || section == "ingress") {
            continue; // default-deny for this direction
        }
        let _ = writeln!(out, "  {section}:");
        for _ in 0..rules.max(1) {
            out.push_str("  - ");
            if rng.chance(85) {
                let _ = writeln!(out, "{peer_key}:");
                for _ in 0..rng.below(2) + 1 {
                    write_peer(out, rng, params, workloads);
                }
                write_ports(out, rng);
            } else {
                out.push_str("ports:\n");
                let _ = writeln!(out, "    - port: {}", rng.pick(&PLAIN_PORTS));
            }
        }
    }
}

/// A mutated copy of `text` for robustness tests: each edit `(at, len,
/// noise)` replaces up to `max_len` bytes at `at` (both taken modulo the
/// text, kept on character boundaries) with `noise[noise % noise.len()]`.
pub fn mutate(
    text: &str,
    edits: &[(usize, usize, usize)],
    noise: &[&str],
    max_len: usize,
) -> String {
    let mut s = text.to_string();
    for &(at, len, pick) in edits {
        let mut at = at % (s.len() + 1);
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        let mut end = (at + len % max_len.max(1)).min(s.len());
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.replace_range(
            at..end,
            noise.get(pick % noise.len().max(1)).copied().unwrap_or(""),
        );
    }
    s
}
