//! The HTTP endpoints: routing, authentication per endpoint, and the
//! translation between requests and the store.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use palisade_flow::parse_rfc3339;
use palisade_inventory::severity::Severity;
use palisade_store::{
    AlertQuery, AlertReader, AlertRecord, Delivery, StoreError, StoredAlert, SubmitError,
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::auth::{Refusal, Scope};
use crate::ingest::{Rejected, check_body};
use crate::{AppState, count, now_us};

type Shared = State<Arc<AppState>>;

pub(crate) fn router(
    state: Arc<AppState>,
    max_body: usize,
    timeout: std::time::Duration,
    metrics_here: bool,
) -> Router {
    // The live stream lasts as long as the page: no timeout there.
    let mut live = Router::new().route("/api/v1/events", get(events));
    if metrics_here {
        live = live.route("/metrics", get(metrics));
    }
    Router::new()
        .route("/api/v1/ingest/alerts", post(ingest_alerts))
        .route("/api/v1/ingest/findings", post(ingest_findings))
        .route("/api/v1/findings", get(list_findings))
        .route("/api/v1/ingest/k8s-audit", post(ingest_audit))
        .route("/api/v1/ingest/fluent-bit", post(ingest_fluent_bit))
        .route("/api/v1/alerts", get(list_alerts))
        .route("/api/v1/sinks", get(list_sinks))
        .route("/api/v1/graph", get(graph))
        .route("/api/v1/snapshots", get(list_snapshots))
        .route("/api/v1/snapshots/{version}", get(one_snapshot))
        .route("/", get(crate::dashboard::index))
        .route("/assets/{file}", get(crate::dashboard::asset))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/api/v1/openapi.json", get(openapi))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .merge(live)
        .with_state(state)
}

/// This API, described (OpenAPI 3.1). A test checks that it names every
/// route the router has.
const OPENAPI: &str = include_str!("../assets/openapi.json");

async fn openapi() -> Response {
    let content_type = HeaderValue::from_static("application/json");
    ([(header::CONTENT_TYPE, content_type)], OPENAPI).into_response()
}

/// An error answer: a status and a JSON body that says why.
pub(crate) struct Failure {
    status: StatusCode,
    reason: String,
    retry_after: Option<u32>,
}

impl Failure {
    fn new(status: StatusCode, reason: impl Into<String>) -> Failure {
        Failure {
            status,
            reason: reason.into(),
            retry_after: None,
        }
    }

    fn busy(reason: impl Into<String>) -> Failure {
        Failure {
            retry_after: Some(1),
            ..Failure::new(StatusCode::SERVICE_UNAVAILABLE, reason)
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.reason });
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Lets the request through when its bearer token holds `scope`, or when
/// authentication is off (no tokens: only on loopback).
fn authorize(state: &AppState, headers: &HeaderMap, scope: Scope) -> Result<(), Failure> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    authorize_token(state, token, scope)
}

fn authorize_token(state: &AppState, token: Option<&str>, scope: Scope) -> Result<(), Failure> {
    if state.tokens.is_empty() {
        return within_rate(state, "");
    }
    match state.tokens.authorize(token, scope) {
        Ok(client) => within_rate(state, client),
        Err(refusal) => {
            count(&state.counters.refused_auth, 1);
            Err(match refusal {
                Refusal::Unauthenticated => {
                    Failure::new(StatusCode::UNAUTHORIZED, "a valid bearer token is required")
                }
                Refusal::Forbidden => Failure::new(
                    StatusCode::FORBIDDEN,
                    format!("the token lacks the `{scope}` scope"),
                ),
            })
        }
    }
}

/// The client's rate limit, when one is set.
fn within_rate(state: &AppState, client: &str) -> Result<(), Failure> {
    let Some(limiter) = &state.limiter else {
        return Ok(());
    };
    limiter
        .admit(client, std::time::Instant::now())
        .map_err(|seconds| {
            count(&state.counters.rate_limited, 1);
            Failure {
                retry_after: Some(seconds),
                ..Failure::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "over this client's rate limit: retry after Retry-After seconds",
                )
            }
        })
}

#[derive(Serialize)]
struct IngestAnswer {
    accepted: usize,
    rejected: Vec<Rejected>,
}

async fn ingest_alerts(
    State(state): Shared,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Failure> {
    authorize(&state, &headers, Scope::Ingest)?;
    count(&state.counters.requests, 1);
    let checked = check_body(&body, now_us())
        .map_err(|e| Failure::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let accepted = checked.records.len();
    count(&state.counters.rejected, checked.rejected.len());
    if accepted > 0 {
        store_alerts(&state, checked.records).await?;
    }
    let status = if checked.rejected.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let answer = IngestAnswer {
        accepted,
        rejected: checked.rejected,
    };
    Ok((status, axum::Json(answer)).into_response())
}

/// Commits checked alerts with their deliveries, and tells the sinks,
/// the metrics and the dashboard; the way in of every ingest path.
pub(crate) async fn store_alerts(
    state: &AppState,
    records: Vec<AlertRecord>,
) -> Result<(), Failure> {
    let accepted = records.len();
    let deliveries = route(state, &records);
    let by_rule: Vec<(String, String)> = records
        .iter()
        .map(|r| (r.rule.clone(), r.severity.as_str().to_string()))
        .collect();
    let docs: Vec<Arc<str>> = records.iter().map(|r| Arc::from(r.doc.as_str())).collect();
    commit(state, records, deliveries).await?;
    count(&state.counters.accepted, accepted);
    let mut counts = state
        .counters
        .by_rule
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    for key in by_rule {
        *counts.entry(key).or_insert(0) += 1;
    }
    drop(counts);
    state.bell.ring();
    for doc in docs {
        // No dashboard listening is not an error.
        let _ = state.live.send(doc);
    }
    Ok(())
}

/// The deliveries each record's routes call for (made only if the record
/// is new to the store).
fn route(state: &AppState, records: &[AlertRecord]) -> Vec<Delivery> {
    let mut deliveries = Vec::new();
    for record in records {
        for sink in state.sinks.iter().filter(|s| s.route.admits(record)) {
            deliveries.push(Delivery {
                alert_id: record.id.clone(),
                sink: sink.name.clone(),
            });
        }
    }
    deliveries
}

/// Hands the records to the committer and waits for their transaction:
/// the answer to the sender is the store's.
async fn commit(
    state: &AppState,
    records: Vec<AlertRecord>,
    deliveries: Vec<Delivery>,
) -> Result<(), Failure> {
    let (done, outcome) = tokio::sync::oneshot::channel();
    let reply = Box::new(move |result| {
        let _ = done.send(result);
    });
    match state.commit.try_submit(records, deliveries, reply) {
        Ok(()) => {}
        Err(SubmitError::Full) => {
            count(&state.counters.busy, 1);
            return Err(Failure::busy("the store is behind; retry"));
        }
        Err(SubmitError::Closed) => return Err(Failure::busy("the store is shutting down")),
    }
    match outcome.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(reason)) => Err(Failure::busy(format!("the store failed: {reason}"))),
        Err(_) => Err(Failure::busy("the store stopped before committing")),
    }
}

#[derive(Deserialize)]
struct AlertParams {
    since: Option<String>,
    until: Option<String>,
    namespace: Option<String>,
    workload: Option<String>,
    rule: Option<String>,
    severity: Option<String>,
    class: Option<String>,
    origin: Option<String>,
    limit: Option<usize>,
}

impl AlertParams {
    fn query(self) -> Result<AlertQuery, Failure> {
        let min_severity = severity_param(self.severity.as_deref())?;
        Ok(AlertQuery {
            since_us: time_param("since", self.since.as_deref())?,
            until_us: time_param("until", self.until.as_deref())?,
            namespace: self.namespace,
            workload: self.workload,
            rule: self.rule,
            min_severity,
            class: self.class,
            origin: self.origin,
            limit: self.limit,
        })
    }
}

/// A time filter: RFC 3339, or 400 saying which parameter is wrong.
fn time_param(name: &str, value: Option<&str>) -> Result<Option<i64>, Failure> {
    value
        .map(|v| {
            parse_rfc3339(v)
                .map_err(|e| Failure::new(StatusCode::BAD_REQUEST, format!("`{name}` `{v}`: {e}")))
        })
        .transpose()
}

/// A severity filter (that one and above), or 400.
fn severity_param(value: Option<&str>) -> Result<Option<Severity>, Failure> {
    value
        .map(|s| {
            Severity::parse(s).ok_or_else(|| {
                Failure::new(
                    StatusCode::BAD_REQUEST,
                    format!("`severity` `{s}` is unknown"),
                )
            })
        })
        .transpose()
}

#[derive(Serialize)]
struct ListedAlert<'a> {
    received: String,
    deliveries: u64,
    alert: &'a RawValue,
}

async fn list_alerts(
    State(state): Shared,
    headers: HeaderMap,
    Query(params): Query<AlertParams>,
) -> Result<Response, Failure> {
    authorize(&state, &headers, Scope::Read)?;
    let query = params.query()?;
    let alerts = read_store(&state, move |r| r.alerts(&query)).await?;
    listing(&alerts)
}

/// A read of the store, off the async threads (store clients block); a
/// store that fails answers "busy, retry".
async fn read_store<T: Send + 'static>(
    state: &AppState,
    read: impl FnOnce(&mut dyn AlertReader) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Failure> {
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || read(store.reader()?.as_mut()))
        .await
        .map_err(|e| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| Failure::busy(e.to_string()))
}

fn listing(alerts: &[StoredAlert]) -> Result<Response, Failure> {
    let mut listed = Vec::with_capacity(alerts.len());
    for stored in alerts {
        // The document was checked as JSON when it came in.
        let alert: &RawValue = serde_json::from_str(&stored.record.doc).map_err(|e| {
            Failure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("stored alert {}: {e}", stored.record.id),
            )
        })?;
        listed.push(ListedAlert {
            received: palisade_detect::rfc3339(stored.received_us),
            deliveries: stored.deliveries,
            alert,
        });
    }
    let body = serde_json::json!({ "count": listed.len(), "alerts": listed });
    Ok(axum::Json(body).into_response())
}

#[derive(Deserialize)]
struct SnapshotParams {
    limit: Option<usize>,
}

/// The inventory versions kept, newest first.
async fn list_snapshots(
    State(state): Shared,
    headers: HeaderMap,
    Query(params): Query<SnapshotParams>,
) -> Result<Response, Failure> {
    authorize(&state, &headers, Scope::Read)?;
    let limit = params
        .limit
        .unwrap_or(100)
        .clamp(1, palisade_store::MAX_LIMIT);
    let versions = read_store(&state, move |r| r.snapshot_versions(limit)).await?;
    let listed: Vec<serde_json::Value> = versions
        .into_iter()
        .map(|(version, taken_us)| {
            serde_json::json!({ "version": version, "taken": palisade_detect::rfc3339(taken_us) })
        })
        .collect();
    Ok(axum::Json(serde_json::json!({ "snapshots": listed })).into_response())
}

/// One version's snapshot: its counts and what its policies allowed.
async fn one_snapshot(
    State(state): Shared,
    headers: HeaderMap,
    Path(version): Path<String>,
) -> Result<Response, Failure> {
    authorize(&state, &headers, Scope::Read)?;
    let asked = version.clone();
    let Some(snapshot) = read_store(&state, move |r| r.snapshot(&asked)).await? else {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            format!("no snapshot of {version} is kept"),
        ));
    };
    let mut doc: serde_json::Value = serde_json::from_str(&snapshot.doc).unwrap_or_default();
    doc["taken"] = palisade_detect::rfc3339(snapshot.taken_us).into();
    Ok(axum::Json(doc).into_response())
}

/// Each sink's deliveries: made, waiting, retried, dead, and its last
/// error (the dashboard's status strip).
async fn list_sinks(State(state): Shared, headers: HeaderMap) -> Result<Response, Failure> {
    authorize(&state, &headers, Scope::Read)?;
    let depths = read_store(&state, |r| r.outbox()).await?;
    let n = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let sinks: Vec<serde_json::Value> = state
        .sinks
        .iter()
        .map(|sink| {
            let depth = depths.iter().find(|d| d.sink == sink.name);
            let last_error = sink
                .stats
                .last_error
                .lock()
                .map(|e| e.clone())
                .unwrap_or_default();
            serde_json::json!({
                "name": sink.name,
                "pending": depth.map_or(0, |d| d.pending),
                "dead": depth.map_or(0, |d| d.dead),
                "delivered": n(&sink.stats.delivered),
                "retried": n(&sink.stats.retried),
                "last_error": last_error,
            })
        })
        .collect();
    Ok(axum::Json(serde_json::json!({ "sinks": sinks })).into_response())
}

/// Prometheus metrics (scope `read` when tokens are configured:
/// Prometheus sends one with `authorization.credentials_file`).
/// `--metrics-listen`: `/metrics` alone on its own listener, without
/// authentication (keep that port to the scraper's network).
pub(crate) fn metrics_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(open_metrics))
        .with_state(state)
}

async fn metrics(State(state): Shared, headers: HeaderMap) -> Result<Response, Failure> {
    authorize(&state, &headers, Scope::Read)?;
    render_metrics(&state).await
}

async fn open_metrics(State(state): Shared) -> Result<Response, Failure> {
    render_metrics(&state).await
}

async fn render_metrics(state: &AppState) -> Result<Response, Failure> {
    let outbox = read_store(state, |r| r.outbox()).await?;
    let text = crate::metrics::render(state, &outbox);
    let content_type = HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8");
    Ok(([(header::CONTENT_TYPE, content_type)], text).into_response())
}

#[derive(Deserialize)]
struct GraphParams {
    since: Option<String>,
    namespace: Option<String>,
    /// Above this many workloads the graph is per namespace (default 300).
    max_nodes: Option<usize>,
}

/// The connectivity graph: declared edges and the alerts of the window.
async fn graph(
    State(state): Shared,
    headers: HeaderMap,
    Query(params): Query<GraphParams>,
) -> Result<Response, Failure> {
    authorize(&state, &headers, Scope::Read)?;
    let since_us = time_param("since", params.since.as_deref())?;
    let query = AlertQuery {
        since_us,
        namespace: params.namespace.clone(),
        limit: Some(palisade_store::MAX_LIMIT),
        ..AlertQuery::default()
    };
    let alerts = read_store(&state, move |r| r.alerts(&query)).await?;
    let declared = state
        .declared
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let graph = tokio::task::spawn_blocking(move || {
        crate::graph::build(
            declared.as_deref(),
            &alerts,
            params.max_nodes.unwrap_or(crate::graph::MAX_WORKLOAD_NODES),
            params.namespace.as_deref(),
        )
    })
    .await
    .map_err(|e| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(axum::Json(graph).into_response())
}

#[derive(Deserialize)]
struct EventParams {
    /// Browsers' EventSource cannot send headers: the token may come here.
    access_token: Option<String>,
}

/// Server-sent events: `alert` with each committed alert's document;
/// `lagged` with how many a slow listener missed.
async fn events(
    State(state): Shared,
    headers: HeaderMap,
    Query(params): Query<EventParams>,
) -> Result<Response, Failure> {
    if params.access_token.is_some() {
        authorize_token(&state, params.access_token.as_deref(), Scope::Read)?;
    } else {
        authorize(&state, &headers, Scope::Read)?;
    }
    use axum::response::sse::{Event, KeepAlive, Sse};
    use tokio::sync::broadcast::error::RecvError;
    let receiver = state.live.subscribe();
    let closing = state.closing.clone();
    let stream = futures_util::stream::unfold(
        (receiver, closing),
        |(mut receiver, mut closing)| async move {
            if *closing.borrow() {
                return None;
            }
            let event = tokio::select! {
                received = receiver.recv() => match received {
                    Ok(doc) => Event::default().event("alert").data(doc.as_ref()),
                    Err(RecvError::Lagged(n)) => Event::default().event("lagged").data(n.to_string()),
                    Err(RecvError::Closed) => return None,
                },
                // The server is stopping (or its sender is gone).
                _ = closing.changed() => return None,
            };
            Some((
                Ok::<_, std::convert::Infallible>(event),
                (receiver, closing),
            ))
        },
    );
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// The Kubernetes API server's audit webhook backend posts `EventList`s.
async fn ingest_audit(
    State(state): Shared,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Failure> {
    ingest_logs(state, headers, body, crate::logs::Kind::Audit).await
}

/// Fluent Bit's `http` output with `format json_lines`.
async fn ingest_fluent_bit(
    State(state): Shared,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Failure> {
    ingest_logs(state, headers, body, crate::logs::Kind::Container).await
}

async fn ingest_logs(
    state: Arc<AppState>,
    headers: HeaderMap,
    body: Bytes,
    kind: crate::logs::Kind,
) -> Result<Response, Failure> {
    authorize(&state, &headers, Scope::Ingest)?;
    count(&state.counters.requests, 1);
    let scanner = state.scanner.clone();
    let (answer, records) =
        tokio::task::spawn_blocking(move || crate::logs::scan(&scanner, kind, &body))
            .await
            .map_err(|e| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    if answer.records == 0 && answer.skipped > 0 {
        let reason = format!("no record could be read: {}", answer.diagnostics.join("; "));
        return Err(Failure::new(StatusCode::BAD_REQUEST, reason));
    }
    if !records.is_empty() {
        store_alerts(&state, records).await?;
    }
    Ok(axum::Json(answer).into_response())
}

#[derive(Deserialize)]
struct RunHeader {
    id: String,
    origin: String,
    #[serde(default)]
    time: Option<String>,
}

#[derive(Deserialize)]
struct PostedRun {
    run: RunHeader,
    findings: Vec<serde_json::Value>,
    summary: serde_json::Value,
}

/// One `palisade audit` run (`audit --send`): its JSON report with `run`
/// (`id`, `origin`, `time`) added. A resend of a run id replaces it.
async fn ingest_findings(
    State(state): Shared,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Failure> {
    authorize(&state, &headers, Scope::Ingest)?;
    count(&state.counters.requests, 1);
    let bad = |why: String| Failure::new(StatusCode::BAD_REQUEST, why);
    let text = std::str::from_utf8(&body).map_err(|_| bad("the body is not UTF-8".into()))?;
    let posted: PostedRun =
        serde_json::from_str(text).map_err(|e| bad(format!("not an audit run: {e}")))?;
    if posted.run.id.is_empty() || posted.run.origin.is_empty() || !posted.summary.is_object() {
        return Err(bad(
            "`run.id`, `run.origin` and `summary` are required".into()
        ));
    }
    let time_us = match posted.run.time.as_deref() {
        Some(t) => parse_rfc3339(t).map_err(|e| bad(format!("`run.time` `{t}`: {e}")))?,
        None => now_us(),
    };
    let unsuppressed = posted
        .findings
        .iter()
        .filter(|f| f.get("suppressed").is_none_or(serde_json::Value::is_null))
        .count();
    let run = palisade_store::AuditRun {
        id: posted.run.id,
        origin: posted.run.origin,
        time_us,
        findings: unsuppressed as u64,
        doc: text.to_string(),
    };
    let (done, outcome) = tokio::sync::oneshot::channel();
    let reply = Box::new(move |result| {
        let _ = done.send(result);
    });
    state
        .commit
        .commit_run(run, reply)
        .map_err(|e| Failure::busy(e.to_string()))?;
    match outcome.await {
        Ok(Ok(())) => {
            Ok(axum::Json(serde_json::json!({ "findings": unsuppressed })).into_response())
        }
        Ok(Err(why)) => Err(Failure::busy(format!("the store failed: {why}"))),
        Err(_) => Err(Failure::busy("the store stopped before committing")),
    }
}

#[derive(Deserialize)]
struct FindingParams {
    origin: Option<String>,
    namespace: Option<String>,
    severity: Option<String>,
}

/// The latest run of each origin: its summary (per-namespace scores) and
/// its findings, filtered by namespace and severity (and above).
async fn list_findings(
    State(state): Shared,
    headers: HeaderMap,
    Query(params): Query<FindingParams>,
) -> Result<Response, Failure> {
    authorize(&state, &headers, Scope::Read)?;
    let min = severity_param(params.severity.as_deref())?;
    let origin = params.origin.clone();
    let runs = read_store(&state, move |r| r.latest_runs(origin.as_deref())).await?;
    let mut listed = Vec::new();
    for run in runs {
        let doc: serde_json::Value = serde_json::from_str(&run.doc).unwrap_or_default();
        let findings: Vec<&serde_json::Value> = doc["findings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| {
                params
                    .namespace
                    .as_deref()
                    .is_none_or(|ns| f["resource"]["namespace"] == ns)
            })
            .filter(|f| {
                let severity = f["severity"].as_str().and_then(Severity::parse);
                min.is_none_or(|m| severity.is_some_and(|s| s >= m))
            })
            .collect();
        listed.push(serde_json::json!({
            "run": {"id": run.id, "origin": run.origin, "time": palisade_detect::rfc3339(run.time_us), "findings": run.findings},
            "summary": doc["summary"],
            "findings": findings,
        }));
    }
    Ok(axum::Json(serde_json::json!({ "runs": listed })).into_response())
}

#[cfg(test)]
mod tests {
    /// Every `.route("...")` of the router is in the OpenAPI document, and
    /// the document describes no route the router lacks.
    #[test]
    fn the_openapi_document_names_every_route() {
        let source = include_str!("api.rs");
        let mut routes: Vec<&str> = source
            .split(".route(\"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .filter(|route| route.starts_with('/'))
            .collect();
        routes.sort_unstable();
        routes.dedup();
        let doc: serde_json::Value = serde_json::from_str(super::OPENAPI).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let mut documented: Vec<&str> = doc["paths"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        documented.sort_unstable();
        assert_eq!(routes, documented);
    }
}
