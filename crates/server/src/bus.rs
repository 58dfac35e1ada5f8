//! Ingest from NATS JetStream, for clusters: every replica of the server
//! pulls from one durable consumer, so the stream's messages are shared
//! out among them. A message is acknowledged only after the store
//! committed its alert; one that a replica fetched but never acknowledged
//! (it was killed) is redelivered to another after `ack_wait`, and the
//! store's upsert by alert id absorbs the repeat. An invalid message is
//! terminated (never redelivered) and counted.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::pull};
use futures_util::StreamExt;
use tokio::sync::watch;

use crate::api::store_alerts;
use crate::ingest::check_item;
use crate::{AppState, count, now_us};

#[derive(Clone, Debug)]
pub struct NatsOptions {
    pub url: String,
    /// The durable consumer all replicas share.
    pub consumer: String,
    /// How long a fetched message waits for its acknowledgement before
    /// the stream hands it to another replica.
    pub ack_wait: Duration,
}

/// Consumes until the server closes; reconnects after any failure.
pub(crate) async fn consume(
    state: Arc<AppState>,
    options: NatsOptions,
    mut closing: watch::Receiver<bool>,
) {
    while !*closing.borrow() {
        if let Err(why) = run(&state, &options, &closing).await {
            count(&state.counters.bus_errors, 1);
            eprintln!("palisade serve: NATS {}: {why}; retrying", options.url);
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = closing.changed() => {}
            }
        }
    }
}

async fn run(
    state: &AppState,
    options: &NatsOptions,
    closing: &watch::Receiver<bool>,
) -> Result<(), String> {
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .connect(&options.url)
        .await
        .map_err(|e| e.to_string())?;
    let context = jetstream::new(client);
    let stream = context
        .get_or_create_stream(palisade_send::stream_config())
        .await
        .map_err(|e| format!("stream {}: {e}", palisade_send::STREAM))?;
    let consumer: jetstream::consumer::Consumer<pull::Config> = stream
        .get_or_create_consumer(
            &options.consumer,
            pull::Config {
                durable_name: Some(options.consumer.clone()),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: options.ack_wait,
                max_ack_pending: 50_000,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("consumer {}: {e}", options.consumer))?;
    while !*closing.borrow() {
        let mut fetched = consumer
            .fetch()
            .max_messages(1000)
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .map_err(|e| format!("fetching: {e}"))?;
        let mut batch = Vec::new();
        while let Some(message) = fetched.next().await {
            batch.push(message.map_err(|e| format!("fetching: {e}"))?);
        }
        if !batch.is_empty() {
            commit_batch(state, batch).await?;
        }
    }
    Ok(())
}

async fn commit_batch(state: &AppState, batch: Vec<jetstream::Message>) -> Result<(), String> {
    count(&state.counters.bus_received, batch.len());
    let now = now_us();
    let (mut records, mut good, mut bad) = (Vec::new(), Vec::new(), Vec::new());
    for message in batch {
        let checked = std::str::from_utf8(&message.payload)
            .map_err(|_| "the message is not UTF-8".to_string())
            .and_then(|text| check_item(text, now));
        match checked {
            Ok(record) => {
                records.push(record);
                good.push(message);
            }
            Err(reason) => bad.push((message, reason)),
        }
    }
    count(&state.counters.rejected, bad.len());
    for (message, reason) in bad {
        eprintln!(
            "palisade serve: refused a message on {}: {reason}",
            message.subject
        );
        message
            .ack_with(AckKind::Term)
            .await
            .map_err(|e| e.to_string())?;
    }
    if records.is_empty() {
        return Ok(());
    }
    match store_alerts(state, records).await {
        Ok(()) => {
            for message in good {
                message
                    .ack()
                    .await
                    .map_err(|e| format!("acknowledging: {e}"))?;
            }
        }
        Err(_) => {
            // Not committed: hand them back for another try.
            count(&state.counters.busy, 1);
            for message in good {
                let _ = message
                    .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                    .await;
            }
        }
    }
    Ok(())
}
