//! What the MQTT source and the MQTT alarm sink share: client options from their settings
//! (credentials, TLS with rustls and the ring provider), and waiting for the broker's CONNACK.
//! Each keeps its own reconnect loop with jittered backoff (rumqttc reconnects on the next poll
//! with no delay, which would be a tight loop).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{Broker, Event, EventLoop, Incoming, MqttOptions, TlsConfiguration, Transport};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{BrokerSettings, MqttTls};
use crate::secret::{read_secret, SecretError};

/// The system's CA bundle on Debian and Raspberry Pi OS, used when `tls.ca_file` is not set.
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Why a broker connection cannot even be attempted.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("MQTT TLS: {file}: {reason}")]
    Tls { file: String, reason: String },
}

/// How long the broker may take for CONNACK, SUBACK or a PUBACK.
pub const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

/// Client options for `broker`, its password read from its file or variable, its TLS
/// certificates from their files.
pub fn options(broker: &BrokerSettings<'_>) -> Result<MqttOptions, BrokerError> {
    let mut options = MqttOptions::new(
        broker.client_id.clone(),
        Broker::tcp(broker.host, broker.port),
    );
    // Validation keeps keep_alive within MQTT's 16-bit count of seconds.
    let keep_alive = broker.keep_alive.get().as_secs();
    options.set_keep_alive(u16::try_from(keep_alive).unwrap_or(u16::MAX));
    if let Some(user) = broker.username {
        let password = read_secret(
            "the MQTT password",
            &broker.password_file.map(Into::into),
            &broker.password_env.map(Into::into),
        )?;
        options.set_credentials(user, password.map(|p| p.0).unwrap_or_default());
    }
    if let Some(tls) = broker.tls {
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(client_config(tls)?),
        )));
    }
    Ok(options)
}

fn tls_error(file: &Path, reason: impl ToString) -> BrokerError {
    BrokerError::Tls {
        file: file.display().to_string(),
        reason: reason.to_string(),
    }
}

/// The rustls client configuration: broker verified against the CA file, optional client
/// certificate.
fn client_config(tls: &MqttTls) -> Result<rustls::ClientConfig, BrokerError> {
    let ca_file = tls.ca_file.as_deref().unwrap_or(Path::new(SYSTEM_ROOTS));
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_file).map_err(|e| tls_error(ca_file, e))? {
        let cert = cert.map_err(|e| tls_error(ca_file, e))?;
        roots.add(cert).map_err(|e| tls_error(ca_file, e))?;
    }
    if roots.is_empty() {
        return Err(tls_error(ca_file, "no CA certificate in the file"));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(ca_file, e))?
        .with_root_certificates(roots);
    match (&tls.client_cert_file, &tls.client_key_file) {
        (Some(cert_file), Some(key_file)) => {
            let chain = CertificateDer::pem_file_iter(cert_file)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| tls_error(cert_file, e))?;
            let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| tls_error(key_file, e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| tls_error(cert_file, e))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

/// The broker's host name, for log lines.
pub fn host(options: &MqttOptions) -> &str {
    options.broker().tcp_address().map_or("?", |(host, _)| host)
}

/// The broker's `host:port`, for status lines.
pub fn address(options: &MqttOptions) -> String {
    match options.broker().tcp_address() {
        Some((host, port)) => format!("{host}:{port}"),
        None => "?".into(),
    }
}

/// Polls until the broker accepts the connection.
pub async fn connack(eventloop: &mut EventLoop) -> Result<(), rumqttc::ConnectionError> {
    loop {
        if let Event::Incoming(Incoming::ConnAck(_)) = eventloop.poll().await? {
            return Ok(());
        }
    }
}
