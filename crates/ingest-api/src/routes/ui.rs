//! `/ui`: the conversion log page for operators. One self-contained HTML file (inline CSS and
//! script, nothing loaded from elsewhere) that calls the `/v1/dispatches` API from the browser
//! with the key the operator pastes; the page itself needs no key, as it holds no data.

use std::sync::OnceLock;

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use sha2::{Digest, Sha256};

/// The page, as written in `assets/ui.html`.
pub const UI_HTML: &str = include_str!("../../assets/ui.html");

/// Registers `GET /ui` and its `HEAD` (other methods: 405 with `Allow: GET, HEAD`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/ui")
            .route(super::get().to(page))
            .default_service(super::only("GET, HEAD")),
    );
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
    fn the_page_loads_nothing_from_elsewhere_and_never_writes_html() {
        assert!(!UI_HTML.contains("http://") && !UI_HTML.contains("https://"));
        assert!(!UI_HTML.contains(" src="));
        assert!(!UI_HTML.contains("innerHTML") && !UI_HTML.contains("outerHTML"));
        assert!(!UI_HTML.contains("insertAdjacentHTML") && !UI_HTML.contains("document.write"));
    }
}
