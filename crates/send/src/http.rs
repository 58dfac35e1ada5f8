//! Every HTTP client Palisade builds (senders, sinks, the Kubernetes watch)
//! comes from here, so that all of them speak https the same way: rustls
//! with the ring provider, the system's trust store (as rustls-native-certs
//! reads it, so `SSL_CERT_FILE` and `SSL_CERT_DIR` are honoured) plus any
//! CA the caller names, and optionally a client certificate (mTLS).
//!
//! The TLS configuration is handed to reqwest ready-made rather than
//! installing a process-wide crypto provider: a library should not change
//! global state, and a client built elsewhere without this module fails
//! loudly instead of silently using another trust store.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// What a client trusts and how it identifies itself, beyond the defaults.
#[derive(Clone, Debug, Default)]
pub struct ClientTls {
    /// PEM files of CAs trusted in addition to the system's.
    pub ca_files: Vec<PathBuf>,
    /// A client certificate chain and its key, both PEM.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// Trust only `ca_files`, not the system's store (the Kubernetes API's
    /// own CA is all a watch should trust).
    pub only_named_cas: bool,
}

/// A blocking client builder with Palisade's TLS set up; the caller adds
/// timeouts and the rest.
pub fn client_builder(tls: &ClientTls) -> Result<reqwest::blocking::ClientBuilder, String> {
    let config = client_config(tls)?;
    Ok(reqwest::blocking::Client::builder().tls_backend_preconfigured(config))
}

/// A plain blocking client with the default trust (for tests and tools).
pub fn client() -> reqwest::blocking::Client {
    client_builder(&ClientTls::default())
        .and_then(|builder| builder.build().map_err(|e| e.to_string()))
        .expect("the default HTTP client needs no configuration that can fail")
}

fn client_config(tls: &ClientTls) -> Result<rustls::ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    if !tls.only_named_cas {
        roots.roots.extend(system_roots().roots.iter().cloned());
    }
    for path in &tls.ca_files {
        for cert in read_certificates(path)? {
            roots
                .add(cert)
                .map_err(|e| format!("{}: not a usable CA certificate: {e}", path.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let mut config = match &tls.identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = read_certificates(cert)?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("{}: no private key: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("{}: {e}", cert.display()))?
        }
    };
    // reqwest negotiates HTTP/1.1 only (no http2 feature); say so in ALPN.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The system's trust store, read once per process. Certificates the
/// store holds but rustls cannot parse are skipped (as every client of
/// rustls-native-certs does); an unreadable store leaves only the named CAs.
fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(found.certs);
        roots
    })
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{}: no PEM certificate in the file",
            path.display()
        ));
    }
    Ok(certs)
}
