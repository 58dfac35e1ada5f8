//! Log lines in which data planes record what their policy dropped, as the
//! flow records `flows verify` judges (format `drop-log`; outcome
//! `dropped`, the data plane's own verdict):
//!
//! - netfilter LOG lines, as Calico writes them (`calico-packet:` and the
//!   `Log` action) and any iptables/nftables `log` rule does:
//!   `... kernel: [..] PREFIX IN=eth1 OUT= ... SRC=a DST=b ... PROTO=TCP SPT=p DPT=q ...`;
//! - Cilium's `cilium monitor --type drop` lines:
//!   `xx drop (Policy denied) flow 0x0 to endpoint 0, identity 5774->23081: 10.0.0.247:38243 -> 10.0.0.61:53 udp`;
//! - OVN-Kubernetes ACL audit lines:
//!   `...|acl_log(ovn_pinctrl0)|INFO|name="ns_deny-all", verdict=drop, severity=alert: tcp,...,nw_src=a,nw_dst=b,...,tp_src=p,tp_dst=q`
//!   (only `verdict=drop` lines are drops).
//!
//! Every other line (a kernel log holds many) is skipped and counted as
//! "not a drop", and so is an OVN line of another verdict.

use std::io::BufRead;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::generic::ParsedLine;
use crate::generic::lines::read_independent_lines;
use crate::{Flow, FlowEndpoint, Format, Outcome, ReadStats, RecordRef, Transport};

/// Why a line of a drop log was not read as a flow.
pub const NOT_A_DROP: &str = "log line recording no drop";

/// Reads a drop log: each line that records a drop is a flow.
pub fn read_drop_log<R: BufRead + Send>(
    input: R,
    file: Arc<str>,
    sink: &mut dyn FnMut(Flow),
) -> ReadStats {
    read_independent_lines(
        input,
        file,
        Format::DropLog,
        parse_drop_log_line,
        &|f| f,
        sink,
    )
}

/// One line of a drop log: a flow, or a counted skip. Bytes that are not
/// UTF-8 are an error with the line's number.
pub fn parse_drop_log_line(line: &[u8], evidence: RecordRef) -> Result<ParsedLine, String> {
    let text = std::str::from_utf8(line).map_err(|e| format!("not UTF-8 text: {e}"))?;
    Ok(match parse_drop_line(text) {
        Some(drop) => ParsedLine::Flow(drop.flow_at(evidence)),
        None => ParsedLine::Skip(NOT_A_DROP),
    })
}

/// Which data plane wrote the line, and the drop it records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedDrop {
    pub writer: &'static str,
    pub transport: Transport,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// The rule or reason the line names (a LOG prefix, Cilium's reason,
    /// OVN's ACL name).
    pub reason: String,
}

impl LoggedDrop {
    /// The flow record for `flows verify`.
    pub fn flow(&self, file: &Arc<str>, line: u64) -> Flow {
        self.flow_at(RecordRef {
            file: file.clone(),
            format: Format::DropLog,
            record: line,
        })
    }

    fn flow_at(&self, evidence: RecordRef) -> Flow {
        let mut flow = Flow::new(evidence, self.transport, Outcome::Dropped);
        let endpoint = |a: SocketAddr| FlowEndpoint {
            ip: Some(a.ip()),
            port: (a.port() != 0).then_some(a.port()),
            identity: None,
        };
        flow.src = endpoint(self.src);
        flow.dst = endpoint(self.dst);
        flow.packets = [1, 0];
        flow.drop_reason = Some(format!("{}: {}", self.writer, self.reason));
        flow
    }
}

/// The drop a line records, if it is one of the known forms.
pub fn parse_drop_line(line: &str) -> Option<LoggedDrop> {
    netfilter_log(line)
        .or_else(|| cilium_drop(line))
        .or_else(|| ovn_acl_drop(line))
}

fn transport(name: &str) -> Option<Transport> {
    match name.to_ascii_lowercase().as_str() {
        "tcp" => Some(Transport::Tcp),
        "udp" => Some(Transport::Udp),
        "sctp" => Some(Transport::Sctp),
        "icmp" => Some(Transport::Icmp),
        "icmpv6" | "ipv6-icmp" | "icmp6" => Some(Transport::Icmpv6),
        _ => None,
    }
}

/// `KEY=value` fields of a netfilter LOG line.
fn netfilter_log(line: &str) -> Option<LoggedDrop> {
    let start = line.find(" IN=")?;
    let field = |key: &str| {
        line[start..]
            .split_whitespace()
            .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
    };
    let src: IpAddr = field("SRC")?.parse().ok()?;
    let dst: IpAddr = field("DST")?.parse().ok()?;
    let transport = transport(field("PROTO")?)?;
    let port = |key| field(key).and_then(|p| p.parse::<u16>().ok()).unwrap_or(0);
    // The prefix is what precedes IN=, after the kernel's timestamp.
    let head = &line[..start];
    let prefix = head
        .rsplit_once(']')
        .map_or(head, |(_, after)| after)
        .trim()
        .to_string();
    Some(LoggedDrop {
        writer: "netfilter log",
        transport,
        src: SocketAddr::new(src, port("SPT")),
        dst: SocketAddr::new(dst, port("DPT")),
        reason: if prefix.is_empty() {
            "LOG".to_string()
        } else {
            prefix
        },
    })
}

/// `... drop (REASON) flow ... : SRC:PORT -> DST:PORT PROTO`
fn cilium_drop(line: &str) -> Option<LoggedDrop> {
    let at = line.find("drop (")?;
    let rest = &line[at + "drop (".len()..];
    let (reason, rest) = rest.split_once(')')?;
    let tuple = rest.rsplit_once(": ")?.1;
    let mut words = tuple.split_whitespace();
    let src = words.next()?;
    if words.next()? != "->" {
        return None;
    }
    let dst = words.next()?;
    let transport = transport(words.next()?)?;
    Some(LoggedDrop {
        writer: "cilium",
        transport,
        src: address(src)?,
        dst: address(dst)?,
        reason: reason.to_string(),
    })
}

/// An `ip:port` or `[ipv6]:port` or a bare address (port 0).
fn address(text: &str) -> Option<SocketAddr> {
    text.parse::<SocketAddr>().ok().or_else(|| {
        let (ip, port) = text.rsplit_once(':')?;
        Some(SocketAddr::new(ip.parse().ok()?, port.parse().ok()?))
    })
}

/// `...|acl_log(..)|INFO|name="ACL", verdict=drop, severity=..: tcp,..,nw_src=..,nw_dst=..,tp_src=..,tp_dst=..`
fn ovn_acl_drop(line: &str) -> Option<LoggedDrop> {
    let at = line.find("acl_log(")?;
    let rest = &line[at..];
    let name = rest.split("name=\"").nth(1)?.split('"').next()?;
    if !rest.contains("verdict=drop") {
        return None;
    }
    let (_, flow) = rest.split_once(": ")?;
    let mut fields = flow.split(',');
    let transport = transport(fields.next()?.trim())?;
    let field = |key: &str| {
        flow.split(',')
            .find_map(|f| f.trim().strip_prefix(key)?.strip_prefix('='))
    };
    let ip = |key| field(key)?.parse::<IpAddr>().ok();
    let src = ip("nw_src").or_else(|| ip("ipv6_src"))?;
    let dst = ip("nw_dst").or_else(|| ip("ipv6_dst"))?;
    let port = |key| field(key).and_then(|p| p.parse::<u16>().ok()).unwrap_or(0);
    Some(LoggedDrop {
        writer: "ovn acl",
        transport,
        src: SocketAddr::new(src, port("tp_src")),
        dst: SocketAddr::new(dst, port("tp_dst")),
        reason: name.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calico_packet_log_line() {
        let line = "Sep  5 14:34:40 node-1 kernel: [158271.044316] calico-packet: IN=eth1 OUT= MAC=00:11:22:33:44:55 SRC=192.168.1.10 DST=192.168.2.20 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=1 DF PROTO=TCP SPT=42962 DPT=22 WINDOW=29200 RES=0x00 SYN URGP=0";
        let drop = parse_drop_line(line).unwrap();
        assert_eq!(drop.transport, Transport::Tcp);
        assert_eq!(drop.src, "192.168.1.10:42962".parse().unwrap());
        assert_eq!(drop.dst, "192.168.2.20:22".parse().unwrap());
        assert_eq!(drop.reason, "calico-packet:");
        let flow = drop.flow(&Arc::from("kern.log"), 7);
        assert_eq!(flow.outcome, Outcome::Dropped);
        assert_eq!(flow.dst.port, Some(22));
        assert_eq!(flow.evidence.record, 7);
    }

    #[test]
    fn cilium_monitor_drop_line() {
        let line = "xx drop (Policy denied) flow 0x0 to endpoint 0, identity 5774->23081: 10.0.0.247:38243 -> 10.0.0.61:53 udp";
        let drop = parse_drop_line(line).unwrap();
        assert_eq!(drop.writer, "cilium");
        assert_eq!(drop.reason, "Policy denied");
        assert_eq!(drop.transport, Transport::Udp);
        assert_eq!(drop.dst, "10.0.0.61:53".parse().unwrap());
        let v6 = "xx drop (Policy denied) flow 0x0 to endpoint 3, identity 2->300: [fd00::1]:4000 -> [fd00::2]:80 tcp";
        assert_eq!(parse_drop_line(v6).unwrap().dst.port(), 80);
    }

    #[test]
    fn ovn_acl_audit_line() {
        let line = r#"2021-06-13T19:33:11.590Z|00005|acl_log(ovn_pinctrl0)|INFO|name="verify-audit-logging_deny-all", verdict=drop, severity=alert: tcp,vlan_tci=0x0000,dl_src=0a:58:0a:80:02:39,dl_dst=0a:58:0a:80:02:37,nw_src=10.128.2.57,nw_dst=10.128.2.55,nw_tos=0,nw_ecn=0,nw_ttl=64,tp_src=54321,tp_dst=8080,tcp_flags=syn"#;
        let drop = parse_drop_line(line).unwrap();
        assert_eq!(drop.reason, "verify-audit-logging_deny-all");
        assert_eq!(drop.src, "10.128.2.57:54321".parse().unwrap());
        assert_eq!(drop.dst, "10.128.2.55:8080".parse().unwrap());
        let allowed = line.replace("verdict=drop", "verdict=allow");
        assert_eq!(parse_drop_line(&allowed), None, "only drops");
    }

    #[test]
    fn other_and_damaged_lines_are_no_drops() {
        for line in [
            "",
            "GET / HTTP/1.1 200",
            "kernel: IN=eth0 SRC=1.2.3.4",
            "xx drop (Policy denied) flow 0x0: 10.0.0.1:1 => 10.0.0.2:2 tcp",
            "acl_log(x)|INFO|name=\"a\", verdict=drop, severity=alert: tcp,nw_src=bad",
        ] {
            assert_eq!(parse_drop_line(line), None, "{line}");
        }
        let line = "Sep  5 kernel: [1.0] p: IN=eth1 OUT= SRC=192.168.1.10 DST=192.168.2.20 PROTO=UDP SPT=1 DPT=2";
        for end in 0..line.len() {
            if line.is_char_boundary(end) {
                let _ = parse_drop_line(&line[..end]);
            }
        }
    }
}
