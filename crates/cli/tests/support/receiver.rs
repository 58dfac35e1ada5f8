//! A stand-in for a destination that cannot run here (Slack, Teams,
//! Elasticsearch, Falcosidekick, a webhook): an HTTP/1.1 server on
//! loopback that records every request and answers as its script says,
//! so tests check the exact wire format the real one documents.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// Status, extra headers, body.
pub type Answer = (u16, Vec<(&'static str, String)>, String);
type Script = dyn Fn(&Request, usize) -> Answer + Send + Sync;

pub struct Receiver {
    pub url: String,
    pub requests: Arc<Mutex<Vec<Request>>>,
}

impl Receiver {
    /// Answers 200 `ok` to everything.
    pub fn ok() -> Receiver {
        Receiver::start(|_, _| (200, vec![], "ok".into()))
    }

    /// Answers each request (and its 0-based number) as `script` says.
    pub fn start(script: impl Fn(&Request, usize) -> Answer + Send + Sync + 'static) -> Receiver {
        Receiver::on(TcpListener::bind("127.0.0.1:0").unwrap(), script)
    }

    pub fn on(
        listener: TcpListener,
        script: impl Fn(&Request, usize) -> Answer + Send + Sync + 'static,
    ) -> Receiver {
        Receiver::accepting(listener, "http", script, Ok)
    }

    /// Answers each connection accepted on `listener`, once `wrap` made it
    /// the stream to speak HTTP on.
    fn accepting<S: Read + Write + Send + 'static>(
        listener: TcpListener,
        scheme: &str,
        script: impl Fn(&Request, usize) -> Answer + Send + Sync + 'static,
        wrap: impl Fn(std::net::TcpStream) -> Result<S, ()> + Send + 'static,
    ) -> Receiver {
        let url = format!("{scheme}://{}", listener.local_addr().unwrap());
        let requests: Arc<Mutex<Vec<Request>>> = Arc::default();
        let seen = requests.clone();
        let script: Arc<Script> = Arc::new(script);
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let (seen, script) = (seen.clone(), script.clone());
                let Ok(stream) = wrap(stream) else { continue };
                std::thread::spawn(move || serve(stream, &seen, script.as_ref()));
            }
        });
        Receiver { url, requests }
    }

    /// The same over https, with the certificate chain and key (PEM) given.
    pub fn https(
        cert: &Path,
        key: &Path,
        script: impl Fn(&Request, usize) -> Answer + Send + Sync + 'static,
    ) -> Receiver {
        let chain = CertificateDer::pem_file_iter(cert)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(key).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        Receiver::accepting(listener, "https", script, move |stream| {
            let connection = rustls::ServerConnection::new(config.clone()).map_err(|_| ())?;
            Ok(rustls::StreamOwned::new(connection, stream))
        })
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests came, and returns them all.
    pub fn wait_for(&self, n: usize, within: Duration) -> Vec<Request> {
        let deadline = Instant::now() + within;
        while self.requests.lock().unwrap().len() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.requests()
    }
}

/// Requests on one connection until the client closes it.
fn serve(stream: impl Read + Write, seen: &Mutex<Vec<Request>>, script: &Script) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or("").to_string(),
            parts.next().unwrap_or("").to_string(),
        );
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).is_err() {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((name, value)) = h.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
            }
        }
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let request = Request {
            method,
            path,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        };
        let n = {
            let mut seen = seen.lock().unwrap();
            seen.push(request.clone());
            seen.len() - 1
        };
        let (status, extra, body) = script(&request, n);
        let mut head = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\n", body.len());
        for (name, value) in extra {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let writer = reader.get_mut();
        if writer
            .write_all(head.as_bytes())
            .and_then(|()| writer.write_all(body.as_bytes()))
            .and_then(|()| writer.flush())
            .is_err()
        {
            return;
        }
    }
}
