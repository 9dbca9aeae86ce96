//! The API's own documentation, served by the binary so that it matches the running version and
//! works with no internet access: the OpenAPI document (`/openapi.yaml`), the JSON Schemas it
//! refers to (`/schemas/{file}`, so that its relative `$ref`s resolve in a browser too), and a
//! rendered page (`/docs`) whose renderer, Redoc, is vendored in `assets/` (see its README).

use actix_web::http::header;
use actix_web::{web, HttpResponse};

use crate::problem::ApiError;

/// The OpenAPI document, as written at the root of the repository.
pub const OPENAPI_YAML: &str = include_str!("../../../../openapi.yaml");

/// The JSON Schemas of `schemas/`, by file name.
const SCHEMAS: [(&str, &str); 7] = [
    ("lead.json", include_str!("../../../../schemas/lead.json")),
    ("sale.json", include_str!("../../../../schemas/sale.json")),
    ("event.json", include_str!("../../../../schemas/event.json")),
    ("batch.json", include_str!("../../../../schemas/batch.json")),
    ("click.json", include_str!("../../../../schemas/click.json")),
    (
        "problem.json",
        include_str!("../../../../schemas/problem.json"),
    ),
    (
        "common.json",
        include_str!("../../../../schemas/common.json"),
    ),
];

/// The files of the rendered page: name, content type, bytes.
const ASSETS: [(&str, &str, &[u8]); 3] = [
    (
        "redoc.standalone.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/redoc.standalone.js"),
    ),
    (
        "redoc.standalone.js.LICENSE.txt",
        "text/plain; charset=utf-8",
        include_bytes!("../../assets/redoc.standalone.js.LICENSE.txt"),
    ),
    (
        "redoc.LICENSE",
        "text/plain; charset=utf-8",
        include_bytes!("../../assets/redoc.LICENSE"),
    ),
];

/// The page of `/docs`. Its addresses are relative, so that it also works behind a path prefix.
const DOCS_HTML: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Convrelay API</title>
<style>body { margin: 0; padding: 0; }</style>
</head>
<body>
<noscript>This page needs JavaScript; the API description itself is at <a href="openapi.yaml">openapi.yaml</a>.</noscript>
<redoc spec-url="openapi.yaml" path-in-middle-panel="true" hide-hostname="false" required-props-first="true" expand-responses="200,202"></redoc>
<script src="docs/assets/redoc.standalone.js"></script>
</body>
</html>
"#;

/// Registers `/openapi.yaml`, `/schemas/{file}`, `/docs` and `/docs/assets/{file}`; each answers
/// GET and HEAD only (other methods: 405 with `Allow: GET, HEAD`) and needs no key.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(get_only("/openapi.yaml").route(super::get().to(openapi)))
        .service(get_only("/schemas/{file}").route(super::get().to(schema)))
        .service(get_only("/docs").route(super::get().to(page)))
        .service(get_only("/docs/assets/{file}").route(super::get().to(asset)));
}

fn get_only(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(super::only("GET, HEAD"))
}

/// Documentation changes with the binary, so caches keep it briefly.
const CACHE: (header::HeaderName, &str) = (header::CACHE_CONTROL, "public, max-age=300");

/// `GET /openapi.yaml`.
async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/yaml")
        .insert_header(CACHE)
        .body(OPENAPI_YAML)
}

/// `GET /schemas/{file}`: one of the JSON Schemas, or 404.
async fn schema(file: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let (_, body) = SCHEMAS
        .iter()
        .find(|(name, _)| *name == file.as_str())
        .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok()
        .content_type("application/schema+json")
        .insert_header(CACHE)
        .body(*body))
}

/// What the page may load: only what this server serves (Redoc would otherwise fetch its logo
/// from a CDN). Redoc needs inline styles, `eval` for its schema compiler and a blob worker.
const DOCS_CSP: &str = "default-src 'self'; script-src 'self' 'unsafe-eval' blob:; \
     worker-src 'self' blob:; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
     font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'";

/// `GET /docs`: the rendered page.
async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(CACHE)
        .insert_header((header::CONTENT_SECURITY_POLICY, DOCS_CSP))
        .body(DOCS_HTML)
}

/// `GET /docs/assets/{file}`: the renderer, or 404.
async fn asset(file: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let (_, content_type, bytes) = ASSETS
        .iter()
        .find(|(name, _, _)| *name == file.as_str())
        .ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok()
        .content_type(*content_type)
        .insert_header(CACHE)
        .body(*bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_the_document_refers_to_is_served() {
        for reference in OPENAPI_YAML
            .split("'schemas/")
            .skip(1)
            .filter_map(|rest| rest.split(['\'', '#']).next())
        {
            assert!(
                SCHEMAS.iter().any(|(name, _)| *name == reference),
                "schemas/{reference} is referred to but not served"
            );
        }
    }

    #[test]
    fn every_schema_a_schema_refers_to_is_served() {
        for (file, body) in SCHEMAS {
            for reference in body
                .split(r#""$ref": ""#)
                .skip(1)
                .filter_map(|rest| rest.split(['"', '#']).next())
                .filter(|reference| !reference.is_empty())
            {
                assert!(
                    SCHEMAS.iter().any(|(name, _)| *name == reference),
                    "{file} refers to {reference}, which is not served"
                );
            }
        }
    }

    #[test]
    fn the_page_loads_only_what_the_binary_serves() {
        assert!(DOCS_HTML.contains(r#"spec-url="openapi.yaml""#));
        assert!(DOCS_HTML.contains(r#"src="docs/assets/redoc.standalone.js""#));
        assert!(!DOCS_HTML.contains("http"));
    }
}
