//! Application-level logs that tell of connections: Envoy and Istio access
//! log lines (the default format, and Istio's, with response flags and
//! RBAC denials), and CoreDNS `log` plugin lines (queries and their
//! answers). The rules read them: upstream connect failures to a
//! destination the policy allows, RBAC denials, NXDOMAIN bursts and long
//! query names.

/// One Envoy access log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvoyAccess {
    pub time: String,
    pub method: String,
    pub path: String,
    pub protocol: String,
    /// 0 when the connection never got a response.
    pub status: u16,
    /// `UF` upstream connect failure, `URX` retries exhausted, `UH` no
    /// healthy upstream, `NR` no route, `UO` overflow...
    pub flags: Vec<String>,
    /// Istio's `%RESPONSE_CODE_DETAILS%` (`rbac_access_denied_matched_policy[none]`).
    pub details: Option<String>,
    /// `%UPSTREAM_HOST%`: the address Envoy connected (or tried) to.
    pub upstream_host: Option<String>,
    /// Istio's `%UPSTREAM_CLUSTER%`: `outbound|8080||svc...` when the
    /// sidecar connected out of its pod, `inbound|...` when to its own app.
    pub upstream_cluster: Option<String>,
    pub user_agent: Option<String>,
}

impl EnvoyAccess {
    pub fn upstream_connect_failure(&self) -> bool {
        self.flags
            .iter()
            .any(|f| f == "UF" || f == "URX" || f == "UH")
    }

    /// The Istio AuthorizationPolicy that denied the request, when one did
    /// (`none` when no ALLOW policy matched).
    pub fn rbac_denied_by(&self) -> Option<&str> {
        let details = self.details.as_deref()?;
        let inner = details.strip_prefix("rbac_access_denied_matched_policy[")?;
        inner.strip_suffix(']')
    }
}

/// Splits a log line into its fields: bare words, `"quoted strings"` and
/// `[bracketed]` ones, with `-` meaning absent.
fn fields(line: &str) -> Vec<Option<&str>> {
    let mut out = Vec::new();
    let mut rest = line.trim();
    while !rest.is_empty() {
        let (field, next) = match rest.as_bytes()[0] {
            b'"' => match rest[1..].find('"') {
                Some(end) => (&rest[1..=end], &rest[end + 2..]),
                None => (&rest[1..], ""),
            },
            b'[' => match rest.find(']') {
                Some(end) => (&rest[1..end], &rest[end + 1..]),
                None => (&rest[1..], ""),
            },
            _ => match rest.find(' ') {
                Some(end) => (&rest[..end], &rest[end..]),
                None => (rest, ""),
            },
        };
        out.push((field != "-").then_some(field));
        rest = next.trim_start();
    }
    out
}

/// `[%START_TIME%] "%REQ(:METHOD)% %PATH% %PROTOCOL%" %RESPONSE_CODE% %RESPONSE_FLAGS% ...`
/// Istio adds `%RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS%
/// "%UPSTREAM_TRANSPORT_FAILURE_REASON%"` after the flags, where the
/// default format has the byte counts.
pub fn parse_envoy(line: &str) -> Option<EnvoyAccess> {
    if !line.starts_with('[') {
        return None;
    }
    let f = fields(line);
    let time = f.first().copied().flatten()?.to_string();
    let request = f.get(1).copied().flatten()?;
    let mut parts = request.split(' ');
    let (method, path, protocol) = (parts.next()?, parts.next()?, parts.next()?);
    let status: u16 = f.get(2).copied().flatten()?.parse().ok()?;
    let flags = f
        .get(3)
        .copied()
        .flatten()
        .map(|flags| flags.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    // Istio's format: a word with letters where the default has a number.
    let istio = f
        .get(4)
        .copied()
        .flatten()
        .is_some_and(|w| !w.bytes().all(|b| b.is_ascii_digit()));
    let details = istio
        .then(|| f.get(4).copied().flatten().map(str::to_string))
        .flatten();
    // Istio inserts three fields: the details, the connection termination
    // details and the upstream transport failure reason.
    let shift = if istio { 3 } else { 0 };
    // Then: bytes received, bytes sent, duration, upstream service time,
    // X-Forwarded-For, user agent, request id, authority, upstream host.
    let at = |i: usize| f.get(i + shift).copied().flatten().map(str::to_string);
    Some(EnvoyAccess {
        time,
        method: method.to_string(),
        path: path.to_string(),
        protocol: protocol.to_string(),
        status,
        flags,
        details,
        user_agent: at(9),
        upstream_host: at(12),
        upstream_cluster: istio.then(|| at(13)).flatten(),
    })
}

/// One CoreDNS `log` plugin line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsQuery {
    pub client: String,
    pub qtype: String,
    pub name: String,
    pub rcode: String,
    pub duration: Option<String>,
}

impl DnsQuery {
    /// The longest label of the name (exfiltration encodes data in them).
    pub fn longest_label(&self) -> usize {
        self.name.split('.').map(str::len).max().unwrap_or(0)
    }

    /// The longest run of letters and digits in the name's labels before
    /// its last two (the registered domain, or `cluster.local`): encoded
    /// data makes long runs that mix letters and digits, where names made
    /// of words break at hyphens and dots.
    pub fn longest_run(&self) -> Run {
        let labels: Vec<&str> = self.name.trim_end_matches('.').split('.').collect();
        let asked = &labels[..labels.len().saturating_sub(2)];
        let run = asked
            .iter()
            .flat_map(|label| label.split(|c: char| !c.is_ascii_alphanumeric()))
            .max_by_key(|run| run.len())
            .unwrap_or("");
        Run::of(run)
    }
}

/// A run of characters and what tells encoded data from words.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Run {
    pub length: usize,
    /// Shannon entropy, bits per character.
    pub entropy: f64,
    pub digits: usize,
    pub letters: usize,
}

impl Run {
    pub fn of(text: &str) -> Run {
        let mut counts = [0usize; 256];
        for b in text.bytes() {
            counts[usize::from(b)] += 1;
        }
        let length = text.len();
        let entropy = counts
            .iter()
            .filter(|&&n| n > 0)
            .map(|&n| {
                let p = n as f64 / length as f64;
                -p * p.log2()
            })
            .sum();
        Run {
            length,
            entropy,
            digits: text.bytes().filter(u8::is_ascii_digit).count(),
            letters: text.bytes().filter(u8::is_ascii_alphabetic).count(),
        }
    }
}

/// Where a failed connection a log line tells of was going, as
/// `host:port` (`[v6]:port`), from the shapes common runtimes and tools
/// log: Go's `dial tcp ADDR: connect: connection refused`, Node's
/// `connect ECONNREFUSED ADDR`, nginx's `upstream: "http://ADDR/"`, curl's
/// `Failed to connect to HOST port N`, urllib3's `host='HOST', port=N`,
/// libpq's `host "HOST" ... port N`, Netty's `Connection refused: HOST/ADDR`;
/// failing those, the first `IPv4:port` in the line.
pub fn failed_destination(message: &str) -> Option<String> {
    static SHAPES: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        let host = r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)";
        regex::Regex::new(&[
            format!(r"dial (?:tcp|udp)[46]? {host}:(\d+)"),
            format!(r"(?:ECONNREFUSED|ETIMEDOUT|ECONNRESET|EHOSTUNREACH) {host}:(\d+)"),
            format!(r#"upstream: "\w+://{host}:(\d+)"#),
            format!(r"(?i:failed to connect to) {host} port (\d+)"),
            format!(r"host='{host}', port=(\d+)"),
            format!(r#"host "{host}".*? port (\d+)"#),
            format!(r"(?i:connection refused|connection timed out): (?:[A-Za-z0-9_.-]*/)?{host}:(\d+)"),
            r"\b(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})\b".to_string(),
        ]
        .join("|"))
        .expect("destination shapes compile")
    });
    let found = SHAPES.captures(message)?;
    // Each shape has its host and port groups; the one that matched holds them.
    let mut groups = found.iter().skip(1).flatten();
    let (host, port) = (groups.next()?.as_str(), groups.next()?.as_str());
    Some(format!("{host}:{port}"))
}

/// `[INFO] 10.244.0.11:46853 - 39707 "A IN example.com. udp 82 false 512" NXDOMAIN qr,rd,ra 192 0.002916556s`
pub fn parse_coredns(line: &str) -> Option<DnsQuery> {
    let f = fields(line);
    let start = usize::from(f.first().copied().flatten()? == "INFO");
    let client = f.get(start).copied().flatten()?;
    let question = f.get(start + 3).copied().flatten()?;
    let mut q = question.split(' ');
    let (qtype, _class, name) = (q.next()?, q.next()?, q.next()?);
    let rcode = f.get(start + 4).copied().flatten()?;
    if !rcode.bytes().all(|b| b.is_ascii_uppercase()) {
        return None;
    }
    Some(DnsQuery {
        client: client.to_string(),
        qtype: qtype.to_string(),
        name: name.to_string(),
        rcode: rcode.to_string(),
        duration: f.get(start + 7).copied().flatten().map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_upstream_connect_failure() {
        let line = r#"[2022-02-09T13:34:21.473Z] "GET / HTTP/1.1" 503 UF,URX upstream_reset_before_response_started{connection_failure} - "-" 0 91 24255 - "-" "curl/7.68.0" "5ab981ed-3d7a-4ad1-9fd0-d4a4b3d9e0a3" "customer.default.svc.cluster.local:8080" "172.16.0.15:8080" outbound|8080||customer.default.svc.cluster.local - 172.18.2.58:8080 192.168.205.6:34832 - default"#;
        let access = parse_envoy(line).unwrap();
        assert_eq!((access.method.as_str(), access.status), ("GET", 503));
        assert!(access.upstream_connect_failure());
        assert_eq!(access.upstream_host.as_deref(), Some("172.16.0.15:8080"));
        assert_eq!(
            access.upstream_cluster.as_deref(),
            Some("outbound|8080||customer.default.svc.cluster.local")
        );
        assert_eq!(access.user_agent.as_deref(), Some("curl/7.68.0"));
    }

    #[test]
    fn istio_rbac_denial() {
        let line = r#"[2025-07-22T17:55:52.085Z] "GET / HTTP/1.1" 403 - rbac_access_denied_matched_policy[none] - "-" 0 19 0 - "10.244.1.1" "curl/8.14.1" "020e467a-0000" "172.18.10.10" "-" inbound|80|| - 10.244.1.9:80 10.244.1.1:0 outbound_.80_._.nginx-svc.default.svc.cluster.local default"#;
        let access = parse_envoy(line).unwrap();
        assert_eq!(access.status, 403);
        assert_eq!(access.rbac_denied_by(), Some("none"));
        assert!(!access.upstream_connect_failure());
        assert_eq!(access.upstream_host, None);
    }

    #[test]
    fn envoy_default_format() {
        let line = r#"[2024-05-01T10:00:00.000Z] "POST /api HTTP/2" 200 - 12 345 6 5 "-" "grpc-go/1.60" "req-1" "api.shop:8080" "10.0.0.7:8080""#;
        let access = parse_envoy(line).unwrap();
        assert_eq!(access.details, None);
        assert_eq!(access.upstream_host.as_deref(), Some("10.0.0.7:8080"));
        assert!(access.flags.is_empty());
    }

    #[test]
    fn coredns_queries() {
        let line = r#"[INFO] 10.244.0.11:46853 - 39707 "A IN openai.com.oe5j.internal.cloudapp.net. udp 82 false 512" NXDOMAIN qr,rd,ra 192 0.002916556s"#;
        let q = parse_coredns(line).unwrap();
        assert_eq!(q.rcode, "NXDOMAIN");
        assert_eq!(q.name, "openai.com.oe5j.internal.cloudapp.net.");
        assert_eq!(q.client, "10.244.0.11:46853");
        assert_eq!(q.duration.as_deref(), Some("0.002916556s"));
        assert_eq!(q.longest_label(), 8);
    }

    #[test]
    fn the_destination_of_a_failed_connection_in_common_shapes() {
        for (line, wanted) in [
            (
                "dial tcp 10.96.0.12:5432: connect: connection refused",
                Some("10.96.0.12:5432"),
            ),
            (
                "Get \"http://api:8080/x\": dial tcp [fd00::7]:8080: i/o timeout",
                Some("[fd00::7]:8080"),
            ),
            (
                "Error: connect ECONNREFUSED 10.0.0.5:6379",
                Some("10.0.0.5:6379"),
            ),
            (
                "connect() failed (111: Connection refused) while connecting to upstream, client: 10.0.0.1, server: _, request: \"GET / HTTP/1.1\", upstream: \"http://10.0.0.9:8080/\", host: \"shop\"",
                Some("10.0.0.9:8080"),
            ),
            (
                "curl: (7) Failed to connect to payments port 443 after 2 ms: Connection refused",
                Some("payments:443"),
            ),
            (
                "HTTPConnectionPool(host='orders.shop', port=8080): Max retries exceeded",
                Some("orders.shop:8080"),
            ),
            (
                "could not connect to server: Connection refused Is the server running on host \"db\" (10.0.0.3) and accepting TCP/IP connections on port 5432?",
                Some("db:5432"),
            ),
            (
                "io.netty.channel.AbstractChannel$AnnotatedConnectException: Connection refused: db.shop.svc/10.0.0.3:5432",
                Some("10.0.0.3:5432"),
            ),
            (
                "upstream 10.1.2.3:9000 connection reset by peer",
                Some("10.1.2.3:9000"),
            ),
            (
                "ConnectionRefusedError: [Errno 111] Connection refused",
                None,
            ),
            ("12:30:45 connection timed out", None),
        ] {
            assert_eq!(failed_destination(line).as_deref(), wanted, "{line}");
        }
    }

    #[test]
    fn encoded_names_make_long_mixed_runs_and_words_do_not() {
        let run = |name: &str| {
            let query = DnsQuery {
                client: String::new(),
                qtype: "A".into(),
                name: name.into(),
                rcode: "NOERROR".into(),
                duration: None,
            };
            query.longest_run()
        };
        let encoded = run("4a6f686e20446f65206b6e6f7773.x.evil.example.");
        assert_eq!(
            (encoded.length, encoded.digits, encoded.letters),
            (28, 21, 7)
        );
        assert!(encoded.entropy > 3.0, "{}", encoded.entropy);
        let words = run("prometheus-kube-prometheus-prometheus.monitoring.svc.cluster.local.");
        assert_eq!((words.length, words.digits), (10, 0));
        // The registered domain is not the data.
        assert_eq!(run("verylongregistereddomainname1234.com.").length, 0);
        assert_eq!(run(".").length, 0);
        assert_eq!(Run::of("aaaa").entropy, 0.0);
        assert_eq!(Run::of("ab").entropy, 1.0);
    }

    #[test]
    fn other_and_damaged_lines_are_not_read() {
        for line in [
            "",
            "[x",
            "[t] \"GET\" 200",
            "hello world",
            "[INFO] plugin/reload: Running",
        ] {
            assert_eq!(parse_envoy(line), None, "{line}");
            assert_eq!(parse_coredns(line), None, "{line}");
        }
        let line = r#"[2024-05-01T10:00:00.000Z] "POST /api HTTP/2" 200 - 12 345 6 5 "-" "ua" "id" "a:1" "10.0.0.7:8080""#;
        for end in 0..line.len() {
            let _ = parse_envoy(&line[..end]);
            let _ = parse_coredns(&line[..end]);
        }
    }
}
