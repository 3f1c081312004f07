//! Things a valid config may still get wrong on the machine it runs on: more space promised to
//! the buffers than the card has, and secrets sent in clear text over the internet. Reported by
//! `check-config` and logged at start-up; neither stops the gateway.

use std::net::IpAddr;
use std::path::Path;

use super::LoadedConfig;
use crate::buffer::outbox::OUTBOX_BYTES;
use crate::buffer::reserve::{space, RESERVE_BYTES};

/// One warning, with the key it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    pub path: String,
    pub problem: String,
}

impl std::fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "warning: {}: {}", self.path, self.problem)
    }
}

/// Every warning for `config` on this machine.
pub fn warnings(config: &LoadedConfig) -> Vec<ConfigWarning> {
    let mut found = Vec::new();
    storage(config, &mut found);
    clear_text_secrets(config, &mut found);
    found
}

/// The most the buffers and capped files may take, against the room the card has for them.
fn storage(config: &LoadedConfig, found: &mut Vec<ConfigWarning>) {
    let gateway = &config.gateway;
    let data_dir = &gateway.gateway.data_dir;
    let mut promised = RESERVE_BYTES;
    if let Some(influx) = &gateway.outputs.influxdb {
        promised += (gateway.buffer.max_size_mb << 20) + (influx.dead_letter_max_mb << 20);
    }
    let outboxes = gateway.alarms.webhook.len() as u64 + u64::from(gateway.alarms.mqtt.is_some());
    promised += outboxes * OUTBOX_BYTES;
    if let Some(file) = &gateway.outputs.line_protocol {
        if file.path != "-" {
            promised += file.max_size_mb << 20;
        }
    }
    // The directory may not exist yet: ask the nearest one that does.
    let Some(existing) = data_dir.ancestors().find(|p| p.is_dir()) else {
        return;
    };
    let Ok(room) = space(existing) else {
        return;
    };
    // What the buffers hold already counts as theirs.
    let available = room.available + used_bytes(data_dir);
    if promised > available {
        found.push(ConfigWarning {
            path: "buffer.max_size_mb".into(),
            problem: format!(
                "the telemetry log ({} MiB), {outboxes} alarm outbox(es) ({} MiB each) and capped files may take {} MiB, but {} has {} MiB for them; on a full card the oldest unsent readings are dropped (expected a smaller max_size_mb or a larger card)",
                gateway.buffer.max_size_mb,
                OUTBOX_BYTES >> 20,
                promised >> 20,
                data_dir.display(),
                available >> 20
            ),
        });
    }
}

/// Bytes of the files under `dir` (0 where it cannot be read).
fn used_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => used_bytes(&entry.path()),
            Ok(_) => entry.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

/// A token or password over plain HTTP or MQTT to an address outside the local networks.
fn clear_text_secrets(config: &LoadedConfig, found: &mut Vec<ConfigWarning>) {
    let gateway = &config.gateway;
    if let Some(influx) = &gateway.outputs.influxdb {
        let secret = influx.token_file.is_some()
            || influx.token_env.is_some()
            || influx.password_file.is_some()
            || influx.password_env.is_some();
        if let Some(host) = influx.url.strip_prefix("http://").map(host_of) {
            if secret && !is_local(host) {
                found.push(ConfigWarning {
                    path: "outputs.influxdb.url".into(),
                    problem: format!(
                        "the InfluxDB token or password would travel unencrypted to {host} (expected https:// for an address outside the local network)"
                    ),
                });
            }
        }
    }
    let brokers = [
        (
            "mqtt_source",
            gateway.mqtt_source.as_ref().map(|m| m.broker("")),
        ),
        (
            "alarms.mqtt",
            gateway.alarms.mqtt.as_ref().map(|m| m.broker("")),
        ),
    ];
    for (section, broker) in brokers {
        let Some(broker) = broker else { continue };
        let secret = broker.password_file.is_some() || broker.password_env.is_some();
        if secret && broker.tls.is_none() && !is_local(broker.host) {
            found.push(ConfigWarning {
                path: format!("{section}.host"),
                problem: format!(
                    "the MQTT password would travel unencrypted to {} (expected [{section}.tls] for a broker outside the local network)",
                    broker.host
                ),
            });
        }
    }
}

/// The host of `authority/path` (without user info and port).
fn host_of(rest: &str) -> &str {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit('@').next().unwrap_or_default();
    if let Some(bracketed) = authority.strip_prefix('[') {
        return bracketed.split(']').next().unwrap_or_default();
    }
    authority.split(':').next().unwrap_or_default()
}

/// Loopback, private (RFC 1918, unique local, link-local) or a single-label or `.local` name.
fn is_local(host: &str) -> bool {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => ip.is_loopback() || ip.is_private() || ip.is_link_local(),
        Ok(IpAddr::V6(ip)) => {
            ip.is_loopback()
                || (ip.segments()[0] & 0xfe00) == 0xfc00
                || (ip.segments()[0] & 0xffc0) == 0xfe80
        }
        Err(_) => host == "localhost" || !host.contains('.') || host.ends_with(".local"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_read_from_urls() {
        assert_eq!(host_of("influx.example.cn:8086/write"), "influx.example.cn");
        assert_eq!(host_of("user:pw@10.0.0.5:8086"), "10.0.0.5");
        assert_eq!(host_of("[fd00::1]:8086/api"), "fd00::1");
    }

    #[test]
    fn local_networks_are_told_from_the_internet() {
        for local in [
            "127.0.0.1",
            "10.2.3.4",
            "192.168.1.9",
            "172.20.0.1",
            "::1",
            "fd00::1",
            "localhost",
            "influx",
            "gw.local",
        ] {
            assert!(is_local(local), "{local}");
        }
        for remote in ["8.8.8.8", "influx.example.cn", "2001:db8::1", "172.32.0.1"] {
            assert!(!is_local(remote), "{remote}");
        }
    }
}
