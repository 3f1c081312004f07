//! One write request to InfluxDB: v2 `/api/v2/write` or v1 `/write`, gzip-compressed line
//! protocol, nanosecond precision, a timeout on every request. Secrets (token, password) are
//! read once from a file or an environment variable and never printed.

use std::io::Write as _;
use std::time::Duration;

use crate::secret::{basic_auth, read_secret, Secret};
use thiserror::Error;

use crate::config::{InfluxApi, InfluxOutput};

/// Largest error body kept for classification and the dead-letter note.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Why the endpoint could not be set up.
#[derive(Debug, Error)]
pub enum EndpointError {
    #[error(transparent)]
    Secret(#[from] crate::secret::SecretError),
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// Percent-encodes a query or form value (RFC 3986 unreserved characters pass).
pub fn encode_query(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The answer to a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteResponse {
    pub status: u16,
    pub retry_after: Option<String>,
    /// The start of the body (error bodies are small; the rest is not needed).
    pub body: String,
}

/// The request did not get an HTTP answer.
#[derive(Debug, Error)]
#[error("{0}")]
pub struct TransportError(pub String);

/// Where and how writes go.
#[derive(Debug)]
pub struct WriteEndpoint {
    client: reqwest::Client,
    url: String,
    authorization: Option<Secret>,
    gzip: bool,
}

impl WriteEndpoint {
    pub fn new(config: &InfluxOutput) -> Result<WriteEndpoint, EndpointError> {
        // reqwest is built without a crypto provider; rustls uses ring (no aws-lc, no cmake).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let base = config.url.trim_end_matches('/');
        let (url, authorization) = match config.api {
            InfluxApi::V2 => {
                let token =
                    read_secret("the InfluxDB token", &config.token_file, &config.token_env)?;
                (
                    format!(
                        "{base}/api/v2/write?org={}&bucket={}&precision=ns",
                        encode_query(config.org.as_deref().unwrap_or_default()),
                        encode_query(config.bucket.as_deref().unwrap_or_default())
                    ),
                    token.map(|t| Secret(format!("Token {}", t.0))),
                )
            }
            InfluxApi::V1 => {
                let mut url = format!(
                    "{base}/write?db={}&precision=ns",
                    encode_query(config.database.as_deref().unwrap_or_default())
                );
                if let Some(rp) = &config.retention_policy {
                    url.push_str(&format!("&rp={}", encode_query(rp)));
                }
                let password = read_secret(
                    "the InfluxDB password",
                    &config.password_file,
                    &config.password_env,
                )?;
                let authorization = config.username.as_ref().map(|user| {
                    let password = password.as_ref().map(|p| p.0.as_str()).unwrap_or("");
                    Secret(basic_auth(user, password))
                });
                (url, authorization)
            }
        };
        // A redirect is never followed: a POST turned into a body-less GET to a captive
        // portal's page must not count as delivered.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout.get())
            .connect_timeout(config.timeout.get().min(Duration::from_secs(10)))
            .build()
            .map_err(|e| EndpointError::Client(e.to_string()))?;
        Ok(WriteEndpoint {
            client,
            url,
            authorization,
            gzip: config.gzip,
        })
    }

    /// Sends `lines` (each without its newline) as one body of line protocol.
    pub async fn write(&self, lines: &[&str]) -> Result<WriteResponse, TransportError> {
        let mut request = self
            .client
            .post(&self.url)
            .header("Content-Type", "text/plain; charset=utf-8");
        if let Some(auth) = &self.authorization {
            request = request.header("Authorization", &auth.0);
        }
        let size: usize = lines.iter().map(|l| l.len() + 1).sum();
        // The lines go into the body one by one: with gzip, no uncompressed copy of the batch
        // is made (the batch is already held once, as read from the log).
        let body = if self.gzip {
            request = request.header("Content-Encoding", "gzip");
            let mut encoder = flate2::write::GzEncoder::new(
                Vec::with_capacity(size / 4),
                flate2::Compression::fast(),
            );
            lines
                .iter()
                .try_for_each(|line| {
                    encoder.write_all(line.as_bytes())?;
                    encoder.write_all(b"\n")
                })
                .and_then(|()| encoder.finish())
                .map_err(|e| TransportError(format!("gzip: {e}")))?
        } else {
            let mut body = Vec::with_capacity(size);
            for line in lines {
                body.extend_from_slice(line.as_bytes());
                body.push(b'\n');
            }
            body
        };
        let mut response = request
            .body(body)
            .send()
            .await
            .map_err(|e| TransportError(describe(&e)))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("Retry-After")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut body = Vec::new();
        while body.len() < MAX_ERROR_BODY {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(e) => return Err(TransportError(describe(&e))),
            }
        }
        body.truncate(MAX_ERROR_BODY);
        Ok(WriteResponse {
            status,
            retry_after,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

/// An error without the URL (which may carry a database name, never a secret, but is long).
fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut text = kind.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            encode_query("water bucket/幸福"),
            "water%20bucket%2F%E5%B9%B8%E7%A6%8F"
        );
    }
}
