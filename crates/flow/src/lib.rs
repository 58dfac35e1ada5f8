//! Observed traffic: the [`Flow`] model, one reader per source format, and
//! the reconstruction of connections from packets.
//!
//! Readers take `impl Read` (never paths), stream, and hand each flow to a
//! sink as soon as it is complete, so memory is bounded by the connections
//! still open, not by the input's size. What they cannot read they count
//! and describe in [`ReadStats`]; no input makes them panic.

pub mod calico;
pub mod conntrack;
pub mod diagnostics;
pub mod droplog;
pub mod generic;
pub mod hubble;
pub mod model;
pub mod packet;
pub mod pcap;
pub mod pcap_writer;
pub mod read;
pub mod reconstruct;

pub use diagnostics::{FlowDiagnostic, ReadStats};
pub use droplog::{LoggedDrop, parse_drop_line, read_drop_log};
pub use generic::time::parse_rfc3339;
pub use model::{Flow, FlowEndpoint, Format, Identity, Micros, Outcome, RecordRef, Transport};
pub use read::{read_flows, read_flows_prepared, sniff_format};
