//! The dashboard's files, compiled into the binary: no CDN, no build
//! step. cytoscape.js is vendored under `assets/vendor` with its licence.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");
const CYTOSCAPE: &str = include_str!("../assets/vendor/cytoscape.min.js");
const CYTOSCAPE_LICENSE: &str = include_str!("../assets/vendor/cytoscape.LICENSE");

pub(crate) async fn index() -> Response {
    page(INDEX, "text/html; charset=utf-8")
}

pub(crate) async fn asset(Path(file): Path<String>) -> Response {
    match file.as_str() {
        "app.js" => page(APP_JS, "text/javascript; charset=utf-8"),
        "app.css" => page(APP_CSS, "text/css; charset=utf-8"),
        "cytoscape.min.js" => page(CYTOSCAPE, "text/javascript; charset=utf-8"),
        "cytoscape.LICENSE" => page(CYTOSCAPE_LICENSE, "text/plain; charset=utf-8"),
        _ => (StatusCode::NOT_FOUND, "no such asset\n").into_response(),
    }
}

fn page(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // The page loads only its own files and talks only to its server.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}
