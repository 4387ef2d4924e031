//! The web dashboard: static pages (HTML, CSS and plain JavaScript embedded in the binary at
//! build time) that read and change the state only through the authenticated API, a session
//! cookie for browsers ([`session`]), and a stream of change notices ([`events`]).
//!
//! The pages hold no data, so they are public; every one is served with headers that keep
//! it from running anything but its own script (`Content-Security-Policy: default-src
//! 'self'`), from being framed, and from leaking its address to other sites.

pub(crate) mod csrf;
pub(crate) mod events;
pub(crate) mod session;

pub(crate) use session::Sessions;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::app::App;

/// The one HTML page: the script shows the view its path names.
const INDEX: &str = include_str!("../../web/index.html");
/// The script.
const SCRIPT: &str = include_str!("../../web/app.js");
/// The style sheet (system fonts only: no download).
const STYLE: &str = include_str!("../../web/app.css");
/// The icon.
const ICON: &str = include_str!("../../web/icon.svg");

/// Where the pages are: each serves the same document, whose script shows the view.
pub(crate) const PAGES: &[&str] = &[
    "/",
    "/login",
    "/machines",
    "/machines/{mac}",
    "/subnets",
    "/discoveries",
    "/racks",
    "/audit",
];

const POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The page and asset routes (outside `/api/v1`, without the auth layer).
pub(crate) fn routes() -> Router<App> {
    let mut router = Router::new();
    for page in PAGES {
        router = router.route(
            page,
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        );
    }
    router
        .route(
            "/static/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/static/app.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route(
            "/static/icon.svg",
            get(|| async { asset("image/svg+xml", ICON) }),
        )
        .route(
            "/favicon.ico",
            get(|| async { asset("image/svg+xml", ICON) }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests;
