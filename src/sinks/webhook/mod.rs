//! Alarm webhooks: WeCom and DingTalk group robots (markdown, Chinese) and generic JSON
//! endpoints, so property managers hear about a leak even while the uplink to InfluxDB is down.
//!
//! Each webhook drains its own alarm outbox ([`crate::buffer::outbox`]) in order: an alarm is
//! removed only when the endpoint accepted it (HTTP 2xx that is not a web page and, for the
//! robots, `errcode` 0; redirects are not followed).
//! Failures are retried with jittered backoff without limit (the outbox bounds them); sending is
//! rate-limited per webhook. The URL carries the robot's key and is never logged.

pub mod message;
pub mod rate;

use std::sync::Arc;
use std::time::Duration;

use ring::hmac;
use tokio::sync::{watch, Notify};

use crate::backoff::Backoff;
use crate::buffer::outbox::Outbox;
use crate::config::{WebhookConfig, WebhookKind};
use crate::model::{AlarmEvent, Severity};
use crate::secret::{base64, read_secret, Secret, SecretError};
use crate::sinks::influx::write::encode_query;

use rate::RateLimit;

/// A configured webhook, ready to send.
pub struct Webhook {
    pub name: String,
    kind: WebhookKind,
    url: Secret,
    signing: Option<Secret>,
    min_severity: Severity,
    rate: RateLimit,
    client: reqwest::Client,
    site: String,
    gateway: String,
}

impl Webhook {
    pub fn new(config: &WebhookConfig, site: &str, gateway: &str) -> Result<Webhook, SecretError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let url = read_secret("the webhook URL", &config.url_file, &config.url_env)?.ok_or_else(
            || SecretError {
                what: "the webhook URL",
                source_name: config.name.clone(),
                reason: "not configured".into(),
            },
        )?;
        let signing = read_secret(
            "the DingTalk secret",
            &config.secret_file,
            &config.secret_env,
        )?;
        // A redirect is never followed: a POST turned into a body-less GET to a captive
        // portal's page must not count as delivered.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout.get())
            .build()
            .map_err(|e| SecretError {
                what: "an HTTP client",
                source_name: config.name.clone(),
                reason: e.to_string(),
            })?;
        Ok(Webhook {
            name: config.name.clone(),
            kind: config.kind,
            url,
            signing,
            min_severity: config.min_severity,
            rate: RateLimit::new(config.per_minute),
            client,
            site: site.to_string(),
            gateway: gateway.to_string(),
        })
    }

    /// The URL to post to; DingTalk's signed robots want `timestamp` and `sign` added.
    fn target(&self, now_ms: i64) -> String {
        match &self.signing {
            Some(secret) => {
                let key = hmac::Key::new(hmac::HMAC_SHA256, secret.0.as_bytes());
                let tag = hmac::sign(&key, format!("{now_ms}\n{}", secret.0).as_bytes());
                let sign = encode_query(&base64(tag.as_ref()));
                let joiner = if self.url.0.contains('?') { '&' } else { '?' };
                format!("{}{joiner}timestamp={now_ms}&sign={sign}", self.url.0)
            }
            None => self.url.0.clone(),
        }
    }

    /// Sends one alarm; `Err` with a reason to retry.
    async fn send(&self, event: &AlarmEvent) -> Result<(), String> {
        let now_ms = crate::model::unix_nanos(std::time::SystemTime::now()) / 1_000_000;
        let body = message::body(self.kind, event, &self.site, &self.gateway);
        let response = self
            .client
            .post(self.target(now_ms))
            .header("Content-Type", "application/json; charset=utf-8")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    "timeout".to_string()
                } else {
                    "cannot connect or send".to_string()
                }
            })?;
        let status = response.status().as_u16();
        let html = response
            .headers()
            .get("Content-Type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/html"));
        let text = response.text().await.unwrap_or_default();
        if !(200..300).contains(&status) {
            return Err(format!("HTTP {status}"));
        }
        if html {
            // A JSON endpoint does not answer with a web page; a captive portal does.
            return Err(format!(
                "HTTP {status} with a web page, not an acknowledgement"
            ));
        }
        if self.kind != WebhookKind::Generic {
            // Both robots answer 200 with {"errcode": 0, …}; anything else is a refusal.
            let errcode = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["errcode"].as_i64());
            if errcode != Some(0) {
                return Err(format!(
                    "errcode {errcode:?}: {}",
                    text.chars().take(120).collect::<String>()
                ));
            }
        }
        Ok(())
    }

    /// Delivers the outbox until `shutdown`.
    pub async fn run(
        mut self,
        outbox: Outbox,
        appended: Arc<Notify>,
        mut shutdown: watch::Receiver<bool>,
        min_backoff: Duration,
    ) {
        let mut backoff = Backoff::new(min_backoff, Duration::from_secs(60));
        loop {
            let (seq, event) = match outbox.take().await {
                Ok(Some(next)) => next,
                Ok(None) => {
                    tokio::select! {
                        _ = appended.notified() => continue,
                        _ = tokio::time::sleep(Duration::from_secs(5)) => continue,
                        _ = shutdown.changed() => return,
                    }
                }
                Err(e) => {
                    tracing::error!(webhook = %self.name, error = %e, "Cannot read the alarm outbox");
                    if wait(backoff.next_delay(), &mut shutdown).await {
                        return;
                    }
                    continue;
                }
            };
            if event.severity >= self.min_severity {
                self.rate.acquire().await;
                if let Err(reason) = self.send(&event).await {
                    let delay = backoff.next_delay();
                    tracing::warn!(webhook = %self.name, alarm = %event.id, reason = %reason, retry_in = ?delay, "Webhook did not take the alarm");
                    if wait(delay, &mut shutdown).await {
                        return;
                    }
                    continue;
                }
                backoff.reset();
            }
            if let Err(e) = outbox.mark_delivered(seq).await {
                tracing::error!(webhook = %self.name, error = %e, "Cannot mark an alarm delivered; it may be sent twice");
            }
        }
    }
}

/// Sleeps `delay`; true when shutdown came first.
async fn wait(delay: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(delay) => false,
        _ = shutdown.changed() => true,
    }
}
