//! The server under test: a plain-HTTP URL whose host is a loopback address.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::{bail, Context};
use hyper::header::HeaderValue;
use hyper::Uri;

/// Where requests go.
#[derive(Debug, Clone)]
pub struct Target {
    /// The address to connect to.
    pub addr: SocketAddr,
    /// The `Host` header.
    pub host: HeaderValue,
    /// `POST /v1/events`, under the URL's path.
    pub single_path: String,
    /// `POST /v1/events/batch`, under the URL's path.
    pub batch_path: String,
}

impl Target {
    /// Reads `http://HOST[:PORT][/prefix]`, refusing any host that is not a loopback address.
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let uri: Uri = url
            .trim()
            .parse()
            .with_context(|| format!("--url {url:?} is not a URL"))?;
        if uri.scheme_str() != Some("http") {
            bail!("--url {url:?}: only http:// is supported");
        }
        if uri.query().is_some() {
            bail!("--url {url:?}: a query string is not expected");
        }
        let authority = uri
            .authority()
            .with_context(|| format!("--url {url:?} names no host"))?;
        let host = authority.host();
        let ip = if host.eq_ignore_ascii_case("localhost") {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .with_context(|| {
                    format!("--url {url:?}: the host must be a loopback address such as 127.0.0.1")
                })?
        };
        if !ip.is_loopback() {
            bail!("--url {url:?}: {ip} is not a loopback address; this tool only targets the local machine");
        }
        let port = authority.port_u16().unwrap_or(80);
        let prefix = uri.path().trim_end_matches('/');
        Ok(Self {
            addr: SocketAddr::new(ip, port),
            host: HeaderValue::from_str(authority.as_str())
                .context("the URL's host cannot go into a header")?,
            single_path: format!("{prefix}/v1/events"),
            batch_path: format!("{prefix}/v1/events/batch"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls_are_taken() -> anyhow::Result<()> {
        let t = Target::parse("http://127.0.0.1:18080")?;
        assert_eq!(t.addr.to_string(), "127.0.0.1:18080");
        assert_eq!(t.host, "127.0.0.1:18080");
        assert_eq!(t.single_path, "/v1/events");
        assert_eq!(t.batch_path, "/v1/events/batch");
        assert_eq!(
            Target::parse("http://localhost/")?.addr.to_string(),
            "127.0.0.1:80"
        );
        assert_eq!(
            Target::parse("http://[::1]:9000")?.addr.to_string(),
            "[::1]:9000"
        );
        assert_eq!(
            Target::parse("http://127.0.0.2:1/api/")?.single_path,
            "/api/v1/events"
        );
        Ok(())
    }

    #[test]
    fn other_hosts_are_refused() {
        for url in [
            "http://10.0.0.1:8080",
            "http://example.com",
            "https://127.0.0.1:8443",
            "127.0.0.1:8080",
            "http://0.0.0.0:8080",
            "http://127.0.0.1:8080/?x=1",
        ] {
            assert!(Target::parse(url).is_err(), "{url}");
        }
    }
}
