//! `--send URL`: offline commands deliver their alerts to `palisade serve`
//! besides printing them. Unsent alerts wait in the spool for the next run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use palisade_detect::Alert;
use palisade_send::http::ClientTls;
use palisade_send::{SendOptions, Sender, wire_line};

#[derive(clap::Args, Clone, Debug, Default)]
pub struct SendArgs {
    /// Also deliver the alerts to a palisade server (`http://host:port`)
    /// or to NATS JetStream (`nats://host:4222`). What cannot be delivered
    /// now waits in the spool for the next run.
    #[arg(long, value_name = "URL")]
    pub send: Option<String>,
    /// The bearer token for --send, read from this file.
    #[arg(long, value_name = "FILE", requires = "send")]
    pub token_file: Option<PathBuf>,
    /// Where undelivered alerts wait (default: the user's state directory,
    /// `palisade/spool.jsonl`).
    #[arg(long, value_name = "FILE", requires = "send")]
    pub spool: Option<PathBuf>,
    /// Who the alerts come from (default: this host's name). Alerts keep
    /// their id across runs from one origin, so resending is harmless.
    #[arg(long, value_name = "NAME", requires = "send")]
    pub origin: Option<String>,
    /// Seconds to keep retrying an unreachable server before leaving the
    /// alerts in the spool.
    #[arg(long, default_value_t = 10, value_name = "SECONDS", requires = "send")]
    pub send_patience: u64,
    #[command(flatten)]
    pub tls: ClientTlsArgs,
}

/// How Palisade's clients reach a server over https, beyond the system's
/// trust store (`SSL_CERT_FILE` is honoured).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ClientTlsArgs {
    /// A CA (PEM) trusted for the server besides the system's.
    #[arg(long, value_name = "FILE")]
    pub server_ca: Option<PathBuf>,
    /// A client certificate (PEM) for a server that requires mutual TLS.
    #[arg(long, value_name = "FILE", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
}

impl ClientTlsArgs {
    pub fn client_tls(&self) -> ClientTls {
        ClientTls {
            ca_files: self.server_ca.iter().cloned().collect(),
            identity: self.client_cert.clone().zip(self.client_key.clone()),
            only_named_cas: false,
        }
    }
}

impl SendArgs {
    fn options(&self, server: &str) -> Result<SendOptions> {
        let spool = self
            .spool
            .clone()
            .unwrap_or_else(|| state_dir().join("spool.jsonl"));
        options(
            server,
            self.token_file.as_deref(),
            spool,
            self.send_patience,
            self.tls.client_tls(),
        )
    }
}

/// Delivers `alerts` when --send is given, and says on stderr what became
/// of them. An error only when nothing could be delivered nor spooled.
pub fn deliver(args: &SendArgs, alerts: &[Alert]) -> Result<()> {
    let Some(server) = &args.send else {
        return Ok(());
    };
    let origin = args.origin.clone().unwrap_or_else(host_name);
    let lines: Vec<String> = alerts.iter().map(|a| wire_line(a, &origin)).collect();
    let mut sender = Sender::new(args.options(server)?, &origin)?;
    let report = sender.send(&lines)?;
    eprintln!(
        "sent to {server}: {} delivered ({} from earlier runs), {} refused, {} left in the spool",
        report.delivered,
        report.from_spool,
        report.rejected.len(),
        report.spooled
    );
    for reason in &report.rejected {
        eprintln!("refused: {reason}");
    }
    if let Some(why) = &report.stopped {
        eprintln!("stopped sending: {why}");
    }
    Ok(())
}

/// How to reach `server`, with the token read from `token_file`.
pub fn options(
    server: &str,
    token_file: Option<&Path>,
    spool: PathBuf,
    patience_seconds: u64,
    tls: ClientTls,
) -> Result<SendOptions> {
    Ok(SendOptions {
        server: server.to_string(),
        token: token_file.map(read_token).transpose()?,
        batch: 1000,
        patience: Duration::from_secs(patience_seconds),
        spool,
        tls,
    })
}

fn read_token(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    let token = text.trim();
    if token.is_empty() {
        return Err(anyhow!("{}: the token file is empty", path.display()));
    }
    Ok(token.to_string())
}

/// The kernel's idea of this host's name.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// `$XDG_STATE_HOME/palisade`, else `~/.local/state/palisade`, else
/// `./.palisade`.
pub fn state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("palisade");
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/state/palisade"),
        None => PathBuf::from(".palisade"),
    }
}

/// `audit --send`: the report, with the run it came from, to the server.
pub fn deliver_audit(args: &SendArgs, report: &serde_json::Value) -> Result<()> {
    let Some(server) = &args.send else {
        return Ok(());
    };
    if server.starts_with("nats://") {
        return Err(anyhow!(
            "audit runs go to the server over HTTP, not to NATS"
        ));
    }
    let origin = args.origin.clone().unwrap_or_else(host_name);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    let time = palisade_detect::rfc3339(now);
    let mut doc = report.clone();
    doc["run"] =
        serde_json::json!({ "id": format!("{origin}@{time}"), "origin": origin, "time": time });
    let options = args.options(server)?;
    // Audit runs wait beside the alerts' spool, in a file of their own (a
    // run is one document, not alert lines).
    let mut name = options.spool.file_name().unwrap_or_default().to_os_string();
    name.push(".audit-runs");
    let spool = options.spool.with_file_name(name);
    let report = palisade_send::send_documents(
        &options,
        &spool,
        "/api/v1/ingest/findings",
        &doc.to_string(),
    )?;
    for answer in &report.delivered {
        eprintln!("sent to {server}: an audit run ({})", answer.trim());
    }
    for why in &report.refused {
        eprintln!("{server} refused an audit run, dropped from the spool: {why}");
    }
    if let Some(why) = &report.why_waiting {
        return Err(anyhow!(
            "{} audit run(s) wait in {} for the next run: {why}",
            report.waiting,
            spool.display()
        ));
    }
    if !report.refused.is_empty() {
        return Err(anyhow!(
            "{server} refused {} audit run(s)",
            report.refused.len()
        ));
    }
    Ok(())
}
