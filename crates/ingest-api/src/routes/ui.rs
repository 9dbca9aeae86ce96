//! `/ui`: the conversion log page for operators, and `/ui/dashboard` for analysts (reports by
//! channel over time, the funnel, the models side by side, delivery health, one conversion's
//! journey). Each is one HTML file with inline CSS and script that calls the API from the
//! browser with the key the user pastes; the pages themselves need no key, as they hold no data.
//! The dashboard's charts are drawn by Chart.js (MIT), vendored in `assets/vendor` and served
//! from here, so the pages work offline.

use std::sync::OnceLock;

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use sha2::{Digest, Sha256};

/// The page, as written in `assets/ui.html`.
pub const UI_HTML: &str = include_str!("../../assets/ui.html");

/// The dashboard, as written in `assets/dashboard.html`.
pub const DASHBOARD_HTML: &str = include_str!("../../assets/dashboard.html");

/// Chart.js 4.6.2, minified, as published on npm (`dist/chart.umd.min.js`).
pub const CHART_JS: &str = include_str!("../../assets/vendor/chart.umd.min.js");

/// Chart.js's licence, served beside it.
pub const CHART_JS_LICENSE: &str = include_str!("../../assets/vendor/chart.js.LICENSE.md");

/// Registers `GET /ui`, `/ui/dashboard` and the vendored script, each with its `HEAD` (other
/// methods: 405 with `Allow: GET, HEAD`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/ui")
            .route(super::get().to(page))
            .default_service(super::only("GET, HEAD")),
    )
    .service(
        web::resource("/ui/dashboard")
            .route(super::get().to(dashboard))
            .default_service(super::only("GET, HEAD")),
    )
    .service(
        web::resource("/ui/vendor/chart.umd.min.js")
            .route(super::get().to(chart_js))
            .default_service(super::only("GET, HEAD")),
    )
    .service(
        web::resource("/ui/vendor/chart.js.LICENSE.md")
            .route(super::get().to(chart_js_license))
            .default_service(super::only("GET, HEAD")),
    );
}

/// `GET /ui/dashboard`.
async fn dashboard() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::CONTENT_SECURITY_POLICY, dashboard_csp()))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .body(DASHBOARD_HTML)
}

/// `GET /ui/vendor/chart.umd.min.js`: cached for a day (the file changes only with a release).
async fn chart_js() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=86400"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(CHART_JS)
}

/// `GET /ui/vendor/chart.js.LICENSE.md`.
async fn chart_js_license() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/markdown; charset=utf-8")
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(CHART_JS_LICENSE)
}

/// As [`csp`], with scripts from this server too (the vendored Chart.js).
fn dashboard_csp() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        format!(
            "default-src 'none'; script-src 'self' '{}'; style-src '{}'; connect-src 'self'; \
             img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            inline_hash(DASHBOARD_HTML, "<script>", "</script>"),
            inline_hash(DASHBOARD_HTML, "<style>", "</style>"),
        )
    })
}

/// `GET /ui`.
async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::CONTENT_SECURITY_POLICY, csp()))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .body(UI_HTML)
}

/// The page keeps API keys in the browser, so it may run only its own inline script and style
/// (pinned by hash), talk only to this server, and not be framed.
fn csp() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        format!(
            "default-src 'none'; script-src '{}'; style-src '{}'; connect-src 'self'; \
             img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            inline_hash(UI_HTML, "<script>", "</script>"),
            inline_hash(UI_HTML, "<style>", "</style>"),
        )
    })
}

/// `sha256-<base64>` of the text between the first `open` tag and the `close` tag after it, as
/// CSP hashes an inline element.
fn inline_hash(html: &str, open: &str, close: &str) -> String {
    let body = html
        .split_once(open)
        .and_then(|(_, rest)| rest.split_once(close))
        .map_or("", |(body, _)| body);
    format!("sha256-{}", base64(&Sha256::digest(body.as_bytes())))
}

/// Standard base64 with padding (RFC 4648), as CSP hash sources are written.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_test_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    #[test]
    fn the_policy_pins_the_one_inline_script_and_style() {
        assert_eq!(UI_HTML.matches("<script").count(), 1);
        assert_eq!(UI_HTML.matches("<style").count(), 1);
        let policy = csp();
        assert!(policy.contains("script-src 'sha256-"), "{policy}");
        assert!(policy.contains("style-src 'sha256-"), "{policy}");
        assert!(!policy.contains("unsafe"), "{policy}");
    }

    #[test]
    fn the_dashboard_loads_only_its_vendored_script_and_never_writes_html() {
        assert_eq!(DASHBOARD_HTML.matches("<script>").count(), 1);
        assert_eq!(DASHBOARD_HTML.matches("<style").count(), 1);
        assert_eq!(DASHBOARD_HTML.matches(" src=").count(), 1);
        assert!(DASHBOARD_HTML.contains(r#"<script src="/ui/vendor/chart.umd.min.js"></script>"#));
        assert!(!DASHBOARD_HTML.contains(" style=\""));
        assert!(!DASHBOARD_HTML.contains("innerHTML") && !DASHBOARD_HTML.contains("outerHTML"));
        assert!(!DASHBOARD_HTML.contains("insertAdjacentHTML"));
        assert!(!DASHBOARD_HTML.contains("document.write"));
        assert!(CHART_JS.starts_with("/*!\n * Chart.js v4.6.2"));
        assert!(CHART_JS_LICENSE.starts_with("The MIT License"));
        let policy = dashboard_csp();
        assert!(policy.contains("script-src 'self' 'sha256-"), "{policy}");
        assert!(!policy.contains("unsafe"), "{policy}");
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere_and_never_writes_html() {
        assert!(!UI_HTML.contains("http://") && !UI_HTML.contains("https://"));
        assert!(!UI_HTML.contains(" src="));
        assert!(!UI_HTML.contains("innerHTML") && !UI_HTML.contains("outerHTML"));
        assert!(!UI_HTML.contains("insertAdjacentHTML") && !UI_HTML.contains("document.write"));
    }
}
