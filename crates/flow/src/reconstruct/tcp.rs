//! The TCP part of reconstruction: who initiated, whether the handshake
//! was answered, and when the connection is over.

use super::{Conn, Key, Phase, Reconstructor, is_syn};
use crate::model::{Flow, Outcome};
use crate::packet::{Packet, Skip, tcp_flags};

/// What a packet did to its connection.
enum Step {
    Continue,
    /// Both FINs seen: the connection waits for its last ACK.
    Closing,
    /// RST, or the last ACK after both FINs.
    Ended,
}

/// What to do with a packet, given what is known of its tuple.
enum Existing {
    None,
    /// A SYN with a new sequence number: the tuple is reused.
    Restart,
    /// The connection was already emitted.
    Straggler,
    /// Update the connection; the direction of the packet.
    Update(usize),
}

impl Reconstructor {
    pub(super) fn tcp(
        &mut self,
        key: Key,
        sender_is_a: bool,
        packet: &Packet,
        record: u64,
        sink: &mut dyn FnMut(Flow),
    ) -> Result<(), Skip> {
        let existing = match self.conns.get(&key) {
            None => Existing::None,
            Some(conn) if is_syn(packet.tcp_flags) && conn.syn_seq != Some(packet.tcp_seq) => {
                Existing::Restart
            }
            Some(conn) if conn.phase == Phase::Closed => Existing::Straggler,
            Some(conn) => Existing::Update(conn.direction(sender_is_a)),
        };
        match existing {
            Existing::Update(direction) => {
                self.tcp_update(key, direction, packet, sink);
                return Ok(());
            }
            Existing::Straggler => return Err(Skip("TCP packet after its connection closed")),
            Existing::Restart => {
                if let Some(old) = self.conns.remove(&key)
                    && old.phase != Phase::Closed
                {
                    self.emit(&old, sink);
                }
            }
            Existing::None => {}
        }
        if packet.tcp_flags & tcp_flags::RST != 0 {
            // Nothing to reset: a connection from before the capture, or
            // backscatter. Not worth a flow of its own.
            return Err(Skip("TCP reset outside a known connection"));
        }
        self.tcp_open(key, sender_is_a, packet, record, sink);
        Ok(())
    }

    fn tcp_open(
        &mut self,
        key: Key,
        sender_is_a: bool,
        packet: &Packet,
        record: u64,
        sink: &mut dyn FnMut(Flow),
    ) {
        let flags = packet.tcp_flags;
        let syn_ack = tcp_flags::SYN | tcp_flags::ACK;
        let (initiator_sent, inferred) = if is_syn(flags) {
            (true, false)
        } else if flags & syn_ack == syn_ack {
            // The handshake's second step names the initiator as well.
            (false, false)
        } else {
            // Mid-stream: clients use ephemeral ports, higher than the
            // service's; on a tie the first sender is as good a guess.
            (packet.src_port >= packet.dst_port, true)
        };
        let mut conn = self.new_conn(packet, sender_is_a, initiator_sent, record);
        conn.direction_inferred = inferred;
        if is_syn(flags) {
            conn.phase = Phase::Handshake;
            conn.syn_seq = Some(packet.tcp_seq);
        }
        let step = observe(&mut conn, usize::from(!initiator_sent), packet);
        self.insert(key, conn);
        self.after(key, step, sink);
    }

    fn tcp_update(
        &mut self,
        key: Key,
        direction: usize,
        packet: &Packet,
        sink: &mut dyn FnMut(Flow),
    ) {
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        let step = observe(conn, direction, packet);
        self.after(key, step, sink);
    }

    fn after(&mut self, key: Key, step: Step, sink: &mut dyn FnMut(Flow)) {
        match step {
            Step::Continue => {}
            Step::Closing => self.reschedule(key),
            Step::Ended => self.close(key, sink),
        }
    }

    /// Emits the connection and keeps it as a tombstone for a while, so
    /// that its last retransmissions do not look like a new connection.
    fn close(&mut self, key: Key, sink: &mut dyn FnMut(Flow)) {
        let Some(mut conn) = self.conns.remove(&key) else {
            return;
        };
        self.emit(&conn, sink);
        conn.phase = Phase::Closed;
        self.conns.insert(key, conn);
        self.reschedule(key);
    }
}

/// Applies one packet to the connection's state.
fn observe(conn: &mut Conn, direction: usize, packet: &Packet) -> Step {
    let flags = packet.tcp_flags;
    conn.count(direction, packet);
    if flags & tcp_flags::RST != 0 {
        if direction == 1 && conn.outcome() != Outcome::Established {
            conn.refused = true;
        }
        return Step::Ended;
    }
    let syn_ack = tcp_flags::SYN | tcp_flags::ACK;
    // During the handshake only the SYN-ACK answers; afterwards (and
    // mid-stream) any packet of the responder does.
    if direction == 1 && (flags & syn_ack == syn_ack || conn.phase != Phase::Handshake) {
        conn.answered = true;
        if conn.phase == Phase::Handshake {
            conn.phase = Phase::Open;
        }
    }
    if flags & tcp_flags::FIN != 0 {
        conn.fin[direction] = true;
        conn.last_fin_from = direction;
        if conn.fin == [true, true] && conn.phase != Phase::Closing {
            conn.phase = Phase::Closing;
            return Step::Closing;
        }
        return Step::Continue;
    }
    let pure_ack =
        flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::ACK && packet.payload_len == 0;
    if conn.phase == Phase::Closing && direction != conn.last_fin_from && pure_ack {
        return Step::Ended;
    }
    Step::Continue
}
