//! Requests to the Kubernetes API: the base URL, the bearer token (read
//! again for each request, as the kubelet rotates projected ServiceAccount
//! tokens in place) and the TLS trust.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use palisade_send::http::{ClientTls, client_builder};
use serde::Deserialize;

/// Where the API is and how to authenticate to it.
pub struct Api {
    base: String,
    token_file: Option<PathBuf>,
    client: reqwest::blocking::Client,
}

/// Where a pod finds its ServiceAccount's credentials.
const SERVICE_ACCOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

#[derive(Debug)]
pub enum ApiError {
    /// The version asked for is gone (410): list again.
    Gone(String),
    /// Any other refusal or failure, with the reason.
    Failed(String),
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::Gone(why) => write!(f, "gone: {why}"),
            ApiError::Failed(why) => f.write_str(why),
        }
    }
}

/// The API's `Status` object, in error answers and `ERROR` watch events.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Status {
    pub code: u16,
    pub reason: String,
    pub message: String,
}

impl Api {
    /// The API at `base` (`https://host:6443`, or `http://127.0.0.1:8001`
    /// for `kubectl proxy`), with an optional token file and TLS trust.
    /// `read_timeout` bounds each wait for data, so it must exceed the
    /// watch's `timeoutSeconds`.
    pub fn new(
        base: &str,
        token_file: Option<PathBuf>,
        tls: &ClientTls,
        read_timeout: Duration,
    ) -> Result<Api, String> {
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(format!(
                "the Kubernetes API must be an http:// or https:// URL, not `{base}`"
            ));
        }
        let client = client_builder(tls)?
            .timeout(read_timeout)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("palisade/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("the Kubernetes API client: {e}"))?;
        Ok(Api {
            base: base.trim_end_matches('/').to_string(),
            token_file,
            client,
        })
    }

    /// The API as a pod sees it: `KUBERNETES_SERVICE_HOST` and `_PORT`,
    /// the ServiceAccount token, and the cluster's CA alone as trust.
    pub fn in_cluster(read_timeout: Duration) -> Result<Api, String> {
        let host = std::env::var("KUBERNETES_SERVICE_HOST")
            .map_err(|_| "not in a pod: KUBERNETES_SERVICE_HOST is not set".to_string())?;
        let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        let tls = ClientTls {
            ca_files: vec![PathBuf::from(SERVICE_ACCOUNT).join("ca.crt")],
            identity: None,
            only_named_cas: true,
        };
        let token = Some(PathBuf::from(SERVICE_ACCOUNT).join("token"));
        Api::new(&format!("https://{host}:{port}"), token, &tls, read_timeout)
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// GET `path_and_query`; a 2xx answer's body to read, else the error
    /// the API's `Status` gives.
    pub(crate) fn get(&self, path_and_query: &str) -> Result<impl Read + use<>, ApiError> {
        let mut request = self
            .client
            .get(format!("{}{path_and_query}", self.base))
            .header("accept", "application/json");
        if let Some(token) = self.token()? {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .map_err(|e| ApiError::Failed(palisade_send::error_chain(&e)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().unwrap_or_default();
        let parsed: Status = serde_json::from_str(&text).unwrap_or_default();
        let why = if parsed.message.is_empty() {
            format!("{status}: {}", text.chars().take(200).collect::<String>())
        } else {
            format!("{status}: {}", parsed.message)
        };
        if status.as_u16() == 410 {
            Err(ApiError::Gone(why))
        } else {
            Err(ApiError::Failed(why))
        }
    }

    fn token(&self) -> Result<Option<String>, ApiError> {
        let Some(path) = &self.token_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| ApiError::Failed(format!("{}: {e}", path.display())))?;
        Ok(Some(text.trim().to_string()))
    }
}
