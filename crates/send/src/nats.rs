//! Alerts over NATS JetStream, for clusters: each alert is one message on
//! `palisade.alerts.<node>` in a file-backed stream, acknowledged by the
//! stream once stored. Its `Nats-Msg-Id` is the alert's id and count, so a
//! redelivery of the same alert is dropped by the stream's duplicate
//! window while an update (a higher count) goes through.
//!
//! The transport runs its own small runtime: senders are plain threads.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use serde::Deserialize;

use crate::{Attempt, SendError, Transport};

pub const STREAM: &str = "PALISADE_ALERTS";
pub const SUBJECTS: &str = "palisade.alerts.>";

/// The stream every sender and server replica agrees on (creating it is
/// idempotent only with the same configuration).
pub fn stream_config() -> stream::Config {
    stream::Config {
        name: STREAM.to_string(),
        subjects: vec![SUBJECTS.to_string()],
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    }
}

/// The subject of `origin`'s alerts; characters NATS reserves in subject
/// tokens become `_`.
pub fn subject(origin: &str) -> String {
    let token: String = origin
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "palisade.alerts.{}",
        if token.is_empty() { "_" } else { &token }
    )
}

#[derive(Deserialize)]
struct Identity {
    id: String,
    #[serde(default)]
    connections: u64,
}

/// `id:count` of a wire line; `None` when the line has no id (it is sent
/// without one and the server refuses it, as over HTTP).
pub fn message_id(line: &str) -> Option<String> {
    let identity: Identity = serde_json::from_str(line).ok()?;
    Some(format!("{}:{}", identity.id, identity.connections))
}

pub struct JetStream {
    runtime: tokio::runtime::Runtime,
    url: String,
    subject: String,
    context: Option<jetstream::Context>,
}

impl JetStream {
    /// Prepares the transport; the connection is made at the first
    /// attempt (and again after a failure), so an unreachable bus only
    /// delays delivery.
    pub fn connect(url: &str, origin: &str) -> Result<JetStream, SendError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| SendError::Client(e.to_string()))?;
        Ok(JetStream {
            runtime,
            url: url.to_string(),
            subject: subject(origin),
            context: None,
        })
    }

    async fn context(url: &str) -> Result<jetstream::Context, String> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let context = jetstream::new(client);
        context
            .get_or_create_stream(stream_config())
            .await
            .map_err(|e| format!("{url}: stream {STREAM}: {e}"))?;
        Ok(context)
    }

    async fn publish(
        context: &jetstream::Context,
        subject: &str,
        lines: &[String],
    ) -> Result<(), String> {
        let mut acks = Vec::with_capacity(lines.len());
        for line in lines {
            let mut headers = async_nats::HeaderMap::new();
            if let Some(id) = message_id(line) {
                headers.insert("Nats-Msg-Id", id.as_str());
            }
            let ack = context
                .publish_with_headers(subject.to_string(), headers, line.clone().into())
                .await
                .map_err(|e| format!("publishing: {e}"))?;
            acks.push(ack);
        }
        // The stream stored each message once its acknowledgement is in.
        for ack in acks {
            ack.await
                .map_err(|e| format!("the stream did not store a message: {e}"))?;
        }
        Ok(())
    }
}

impl Transport for JetStream {
    fn attempt(&mut self, lines: &[String]) -> Attempt {
        let (url, subject) = (self.url.clone(), self.subject.clone());
        let context = self.context.take();
        let outcome = self.runtime.block_on(async move {
            let context = match context {
                Some(c) => c,
                None => JetStream::context(&url).await?,
            };
            JetStream::publish(&context, &subject, lines)
                .await
                .map(|()| context)
        });
        match outcome {
            Ok(context) => {
                self.context = Some(context);
                Attempt::Committed {
                    rejected: Vec::new(),
                }
            }
            Err(why) => Attempt::Retry { after: None, why },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_one_token_per_origin() {
        assert_eq!(subject("node-a"), "palisade.alerts.node-a");
        assert_eq!(
            subject("ip-10.0.1.5 x*>"),
            "palisade.alerts.ip-10_0_1_5_x__"
        );
        assert_eq!(subject(""), "palisade.alerts._");
    }

    #[test]
    fn an_update_has_its_own_message_id_and_a_redelivery_the_same() {
        let first = r#"{"id":"a1","connections":1,"rule":"FLOW-001"}"#;
        let update = r#"{"id":"a1","connections":7,"rule":"FLOW-001"}"#;
        assert_eq!(message_id(first).as_deref(), Some("a1:1"));
        assert_eq!(message_id(update).as_deref(), Some("a1:7"));
        assert_eq!(message_id("not json"), None);
    }
}
