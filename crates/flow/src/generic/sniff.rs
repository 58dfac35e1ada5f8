//! Recognising a flow format from the first bytes of a file, so users need
//! not say `--format` for the common cases.

use crate::model::Format;

/// The format of a file, judged from its first bytes (a few kilobytes are
/// plenty): the pcap and pcapng magic numbers, then, for text, the first
/// non-blank line. `None` when nothing is recognised, rather than a guess.
pub fn sniff(head: &[u8]) -> Option<Format> {
    if let Some(format) = capture_magic(head) {
        return Some(format);
    }
    let head = head.strip_prefix("\u{feff}".as_bytes()).unwrap_or(head);
    let line = head
        .split(|&b| b == b'\n')
        .map(|line| line.trim_ascii())
        .find(|line| !line.is_empty())?;
    if line.starts_with(b"{") {
        return sniff_json(line);
    }
    if is_conntrack(line) {
        return Some(Format::Conntrack);
    }
    if is_generic_csv_header(line) {
        return Some(Format::Csv);
    }
    // A log of drops may open with other lines (a kernel log does): any of
    // the first lines that records a drop names the format.
    let drops = head
        .split(|&b| b == b'\n')
        .take(64)
        .filter_map(|line| std::str::from_utf8(line).ok())
        .any(|line| crate::droplog::parse_drop_line(line).is_some());
    drops.then_some(Format::DropLog)
}

fn capture_magic(head: &[u8]) -> Option<Format> {
    match head.get(..4)? {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0xa1, 0xb2, 0xc3, 0xd4] => Some(Format::Pcap),
        [0x4d, 0x3c, 0xb2, 0xa1] | [0xa1, 0xb2, 0x3c, 0x4d] => Some(Format::Pcap),
        [0x0a, 0x0d, 0x0d, 0x0a] => Some(Format::Pcapng),
        _ => None,
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

/// Keys only one of the JSON formats writes. The line may be cut short by
/// the size of `head`, so no JSON parsing, only key spotting.
fn sniff_json(line: &[u8]) -> Option<Format> {
    let hubble = [
        "\"flow\":",
        "\"node_status\":",
        "\"lost_events\":",
        "\"agent_event\":",
        "\"debug_event\":",
        "\"verdict\":",
    ];
    if hubble.iter().any(|key| contains(line, key)) {
        return Some(Format::Hubble);
    }
    let calico = [
        "\"source_name_aggr\":",
        "\"dest_name_aggr\":",
        "\"num_flows\":",
        "\"source_type\":",
    ];
    if calico.iter().any(|key| contains(line, key)) {
        return Some(Format::Calico);
    }
    let generic = ["\"outcome\":", "\"src_ip\":", "\"dst_ip\":"];
    generic
        .iter()
        .any(|key| contains(line, key))
        .then_some(Format::Jsonl)
}

/// `conntrack -E` (`[NEW] tcp ...`), with or without `-o timestamp`
/// (`[1795345174.177649]\t[NEW] ...`), or `conntrack -L` (`tcp 6 ...`).
fn is_conntrack(line: &[u8]) -> bool {
    let text = String::from_utf8_lossy(line);
    let mut rest = text.trim_start();
    if let Some(after) = rest.strip_prefix('[')
        && let Some((stamp, tail)) = after.split_once(']')
        && stamp.bytes().all(|c| c.is_ascii_digit() || c == b'.')
        && !stamp.is_empty()
    {
        rest = tail.trim_start();
    }
    for event in ["[NEW]", "[UPDATE]", "[DESTROY]"] {
        if rest.starts_with(event) {
            return true;
        }
    }
    let mut words = rest.split_ascii_whitespace();
    let first = words.next().unwrap_or("");
    let listed = [
        "tcp", "udp", "icmp", "icmpv6", "sctp", "udplite", "dccp", "gre", "unknown",
    ];
    let first = if matches!(first, "ipv4" | "ipv6") {
        words.nth(1).unwrap_or("")
    } else {
        first
    };
    listed.contains(&first) && text.contains(" src=")
}

fn is_generic_csv_header(line: &[u8]) -> bool {
    let text = String::from_utf8_lossy(line).to_ascii_lowercase();
    let columns: Vec<&str> = text
        .split(',')
        .map(|c| c.trim().trim_matches('"'))
        .collect();
    columns.contains(&"protocol") && columns.contains(&"outcome")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_each_format() {
        assert_eq!(sniff(b"\n\n{\"flow\":{\"time\":"), Some(Format::Hubble));
        assert_eq!(
            sniff(br#"{"start_time":1,"source_name_aggr":"x-*""#),
            Some(Format::Calico)
        );
        assert_eq!(
            sniff(br#"{"time":1,"src_ip":"10.0.0.1"}"#),
            Some(Format::Jsonl)
        );
        assert_eq!(
            sniff(b"    [NEW] tcp      6 120 SYN_SENT src=1"),
            Some(Format::Conntrack)
        );
        assert_eq!(
            sniff(b"[1795345174.177649]\t [UPDATE] udp"),
            Some(Format::Conntrack)
        );
        assert_eq!(
            sniff(b"ipv4     2 tcp      6 431999 ESTABLISHED src=1"),
            Some(Format::Conntrack)
        );
        assert_eq!(
            sniff(b"\xef\xbb\xbfTime,Protocol,\"outcome\",src_ip"),
            Some(Format::Csv)
        );
        assert_eq!(sniff(&[0xd4, 0xc3, 0xb2, 0xa1, 2, 0]), Some(Format::Pcap));
        assert_eq!(sniff(&[0x0a, 0x0d, 0x0d, 0x0a]), Some(Format::Pcapng));
    }

    #[test]
    fn does_not_guess() {
        assert_eq!(sniff(b""), None);
        assert_eq!(sniff(b"   \n  "), None);
        assert_eq!(sniff(b"{\"kind\":\"Pod\"}"), None);
        assert_eq!(sniff(b"a,b,c"), None);
        assert_eq!(sniff(b"tcp is a protocol"), None);
    }
}
