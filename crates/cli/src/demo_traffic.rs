//! The bundled example's capture, synthesised deterministically: what the
//! shop's pods did during a few seconds, with one of everything the flow
//! verification must find. `examples/shop/traffic.pcap` is this output (a
//! test keeps the two equal), so users can run `palisade flows verify` on
//! the file, tcpdump it, or open it in Wireshark.

use std::io;
use std::net::SocketAddr;

use palisade_flow::Micros;
use palisade_flow::pcap_writer::PcapWriter;

/// 2026-11-01T09:00:00Z.
const START: Micros = 1_793_523_600_000_000;
const SECOND: Micros = 1_000_000;

pub const CLIENT: &str = "198.51.100.7";
pub const WEBAPP: &str = "10.244.1.10";
pub const CHECKOUT: &str = "10.244.1.20";
pub const CART: &str = "10.244.1.21";
pub const CATALOG: &str = "10.244.2.22";
pub const PAYMENTS: &str = "10.244.2.30";
pub const POSTGRES: &str = "10.244.3.40";
pub const REDIS: &str = "10.244.3.41";
pub const REPORTS: &str = "10.244.2.60";
pub const COREDNS: &str = "10.244.0.10";
pub const PSP: &str = "203.0.113.9";
/// In the pod CIDR, but no pod of the inventory has it.
pub const STRANGER: &str = "10.244.9.99";

fn at(ip: &str, port: u16) -> SocketAddr {
    // The constants above are valid addresses; a typo fails every demo test.
    SocketAddr::new(ip.parse().unwrap_or([0, 0, 0, 0].into()), port)
}

/// The capture's bytes (classic pcap, Ethernet).
pub fn shop_capture() -> io::Result<Vec<u8>> {
    let mut w = PcapWriter::new(Vec::new())?;
    let mut t = START;
    // Allowed: a customer, the request path, DNS, the payment provider.
    t = w.tcp_connection(
        t,
        at(CLIENT, 51_000),
        at(WEBAPP, 8080),
        b"GET / HTTP/1.1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n\r\n",
    )?;
    t = w.udp_exchange(
        t,
        at(WEBAPP, 41_000),
        at(COREDNS, 53),
        b"query checkout",
        Some(b"answer 10.244.1.20"),
    )?;
    t = w.tcp_connection(
        t,
        at(WEBAPP, 41_002),
        at(CHECKOUT, 8080),
        b"POST /order",
        b"201 Created",
    )?;
    t = w.tcp_connection(
        t,
        at(CHECKOUT, 41_004),
        at(CART, 7070),
        b"GET /cart/42",
        b"3 items",
    )?;
    t = w.tcp_connection(
        t,
        at(CHECKOUT, 41_006),
        at(POSTGRES, 5432),
        b"INSERT order",
        b"INSERT 0 1",
    )?;
    t = w.tcp_connection(
        t,
        at(CHECKOUT, 41_008),
        at(PAYMENTS, 50051),
        b"Charge",
        b"OK",
    )?;
    t = w.tcp_connection(
        t,
        at(PAYMENTS, 41_010),
        at(PSP, 443),
        b"TLS hello",
        b"TLS hello",
    )?;
    // Bypass: the web tier reads the database directly; policy denies it,
    // yet the handshake completes (an enforcement gap).
    t = w.tcp_connection(
        t + SECOND,
        at(WEBAPP, 41_012),
        at(POSTGRES, 5432),
        b"SELECT * FROM cards",
        b"4111...",
    )?;
    // Unexpected drop: the policy allows webapp -> catalog, nothing answers.
    t = w.unanswered_syn(t + SECOND, at(WEBAPP, 41_014), at(CATALOG, 3550), 3)?;
    // Blocked attempt: legacy reports tries payments, which admits checkout only.
    t = w.unanswered_syn(t + SECOND, at(REPORTS, 41_016), at(PAYMENTS, 50051), 2)?;
    // A port scan from the compromised legacy pod across redis' first 100 ports.
    let scan_start = t + SECOND;
    for port in 1..=100u16 {
        w.unanswered_syn(
            scan_start + Micros::from(port) * 10_000,
            at(REPORTS, 60_000),
            at(REDIS, port),
            1,
        )?;
    }
    t = scan_start + 2 * SECOND;
    // Unresolved: an address in the pod range no pod of the inventory has.
    w.tcp_connection(
        t,
        at(STRANGER, 41_018),
        at(WEBAPP, 8080),
        b"GET /admin",
        b"403",
    )?;
    w.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed capture is exactly the generator's output;
    /// `UPDATE_GOLDEN=1` rewrites it.
    #[test]
    fn bundled_capture_is_the_generator_output() {
        let bytes = shop_capture().unwrap();
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/shop/traffic.pcap"
        );
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(path, &bytes).unwrap();
        }
        assert_eq!(
            std::fs::read(path).unwrap(),
            bytes,
            "run with UPDATE_GOLDEN=1 to regenerate"
        );
    }
}
