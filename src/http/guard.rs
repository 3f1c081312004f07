//! Who may talk to the local endpoint. The page has no login (it is for the phone of whoever
//! stands in the pump room), so two attacks from the LAN are what matters:
//!
//! - **A web page elsewhere** that a phone on the LAN opens can send a "simple" cross-origin
//!   POST (`text/plain`, no custom header) without asking. Every request that changes
//!   something must carry the header [`WRITE_HEADER`]; a browser sends a custom header across
//!   origins only after a CORS preflight, which this endpoint never grants. An `Origin` it
//!   carries must be the endpoint's own.
//! - **DNS rebinding**: a name the attacker controls is pointed at the gateway, so the browser
//!   thinks the API is same-origin. Such a request carries the attacker's name in `Host`. A
//!   `Host` is accepted when it is an IP address (no name to rebind), `localhost`, or one of
//!   `[http] allowed_hosts`.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The header a request that changes something must carry (any value).
pub const WRITE_HEADER: &str = "x-retrofit-gateway";

/// The host names accepted besides IP addresses and `localhost` (lower case).
#[derive(Debug, Clone, Default)]
pub struct Hosts(Arc<[String]>);

impl Hosts {
    pub fn new(allowed: &[String]) -> Hosts {
        Hosts(allowed.iter().map(|h| h.to_ascii_lowercase()).collect())
    }

    /// Whether `authority` (`host[:port]`, `[v6]:port`) names this gateway.
    fn accepts(&self, authority: &str) -> bool {
        let host = host_of(authority).to_ascii_lowercase();
        host.parse::<IpAddr>().is_ok() || host == "localhost" || self.0.contains(&host)
    }
}

/// The host of `host[:port]`, without the brackets of an IPv6 literal.
fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

/// Why a request is refused, if it is: 421 for a foreign `Host`, 403 otherwise.
pub fn refusal(
    method: &Method,
    headers: &HeaderMap,
    hosts: &Hosts,
) -> Option<(StatusCode, &'static str)> {
    let host = headers
        .get(header::HOST)
        .map(|h| h.to_str().unwrap_or("\u{0}"));
    if let Some(host) = host {
        if !hosts.accepts(host) {
            return Some((
                StatusCode::MISDIRECTED_REQUEST,
                "Host is not this gateway (add the name to [http] allowed_hosts)",
            ));
        }
    }
    if matches!(*method, Method::GET | Method::HEAD) {
        return None;
    }
    if !headers.contains_key(WRITE_HEADER) {
        return Some((
            StatusCode::FORBIDDEN,
            "a request that changes something needs the X-Retrofit-Gateway header",
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("\u{0}");
        let authority = origin.split_once("://").map_or(origin, |(_, a)| a);
        let same = host.is_some_and(|h| h.eq_ignore_ascii_case(authority));
        if !same {
            return Some((StatusCode::FORBIDDEN, "Origin is not this gateway"));
        }
    }
    None
}

/// The middleware: refuses as [`refusal`] says, else passes the request on.
pub async fn guard(State(hosts): State<Hosts>, request: Request, next: Next) -> Response {
    match refusal(request.method(), request.headers(), &hosts) {
        None => next.run(request).await,
        Some((code, why)) => {
            metrics::counter!("rgw_http_refused_total").increment(1);
            (code, format!("{why}\n")).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).expect("header value"));
        }
        map
    }

    #[test]
    fn hosts_are_addresses_localhost_or_allowed_names() {
        let hosts = Hosts::new(&["Gateway.Local".to_string()]);
        for ok in [
            "192.168.1.10:9850",
            "127.0.0.1",
            "[::1]:9850",
            "[fe80::1]",
            "localhost:9850",
            "gateway.local:9850",
            "GATEWAY.LOCAL",
        ] {
            assert!(hosts.accepts(ok), "{ok}");
        }
        for refused in [
            "evil.example:9850",
            "192.168.1.10.nip.io",
            "localhost.evil",
            "",
        ] {
            assert!(!hosts.accepts(refused), "{refused}");
        }
    }

    #[test]
    fn a_simple_cross_origin_post_and_a_rebound_name_are_refused() {
        let hosts = Hosts::default();
        let post = Method::POST;
        // What a foreign page's fetch(..., {mode: "no-cors", body: "x"}) sends.
        let simple = headers(&[
            ("host", "192.168.1.10:9850"),
            ("origin", "http://evil.example"),
            ("content-type", "text/plain"),
        ]);
        assert!(refusal(&post, &simple, &hosts).is_some());
        let foreign_origin = headers(&[
            ("host", "192.168.1.10:9850"),
            ("origin", "http://evil.example"),
            (WRITE_HEADER, "1"),
        ]);
        assert!(refusal(&post, &foreign_origin, &hosts).is_some());
        let rebound = headers(&[("host", "evil.example:9850")]);
        assert_eq!(
            refusal(&Method::GET, &rebound, &hosts).map(|(code, _)| code),
            Some(StatusCode::MISDIRECTED_REQUEST)
        );
        // The gateway's own tools: curl with the header, the page's own origin.
        let curl = headers(&[("host", "127.0.0.1:9850"), (WRITE_HEADER, "1")]);
        assert_eq!(refusal(&post, &curl, &hosts), None);
        let own = headers(&[
            ("host", "192.168.1.10:9850"),
            ("origin", "http://192.168.1.10:9850"),
            (WRITE_HEADER, "1"),
        ]);
        assert_eq!(refusal(&post, &own, &hosts), None);
        assert_eq!(
            refusal(&Method::GET, &simple, &hosts),
            None,
            "reading is fine"
        );
    }
}
