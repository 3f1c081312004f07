//! Metric names and publishing. The stages keep plain counters (`LogStats` in the buffer, and
//! [`ForwarderStats`] and [`Appended`], defined here); this module turns them into `metrics`
//! facade values, so the names live in one place. It imports no stage: what it publishes is
//! handed to it as plain figures. Names follow `rgw_<component>_<noun>_<unit>[_total]`; labels are bounded; every drop is
//! counted with its `reason` and whether it was `intentional`; a retry is never a drop.
//!
//! Without an installed recorder (the `/metrics` endpoint comes with the operations work) these
//! calls cost nothing.

use std::time::Duration;

use metrics::{counter, gauge, histogram, Counter, Gauge};

use crate::buffer::{Backlog, LogStats};
use crate::model::Severity;

/// Counters of the stage that appends samples to the telemetry log.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Samples that reached the stage.
    pub received: u64,
    pub lines: u64,
    /// Fields not written because they were not finite.
    pub skipped_fields: u64,
    /// Samples the log refused (I/O error, oversized): lost, and logged.
    pub refused: u64,
}

/// Counters of the forwarder, shared with whoever reports on them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForwarderStats {
    /// Lines InfluxDB accepted.
    pub sent_lines: u64,
    pub requests_2xx: u64,
    pub requests_4xx: u64,
    pub requests_5xx: u64,
    /// Requests without an HTTP answer (connect error, timeout).
    pub request_failures: u64,
    pub dead_lettered: u64,
    /// Dead-lettered lines removed again to keep the dead-letter file within its cap.
    pub dead_letter_rotated_out: u64,
    /// Waits before a retry (their lengths go to the retry-delay histogram).
    pub retries: u64,
    /// InfluxDB refused the credentials or the bucket/database (401/403/404) on the last try.
    pub unauthorized: bool,
    /// The last answer was not an acknowledgement: a 2xx with a body (a captive portal), or a
    /// 400/422 that says nothing about the data even for a single line (a proxy).
    pub not_acknowledged: bool,
}

/// The counter of records dropped for `reason`.
fn dropped(reason: &'static str, intentional: &'static str) -> Counter {
    counter!("rgw_log_dropped_records_total", "reason" => reason, "intentional" => intentional)
}

/// The telemetry log's and its stage's metrics, looked up once: the stage publishes them every
/// second, and a lookup by name and labels cost more than setting the figure.
pub struct LogMetrics {
    appended: Counter,
    corrupted: Counter,
    torn_bytes: Counter,
    quarantined: Counter,
    dropped_max_size: Counter,
    dropped_disk_full: Counter,
    dropped_missing_segment: Counter,
    dropped_corrupt: Counter,
    cursor_resets: Counter,
    bytes: Gauge,
    pending: Gauge,
    oldest_unsent_age: Gauge,
    received: Counter,
    skipped_fields: Counter,
    dropped_append_failed: Counter,
}

impl LogMetrics {
    /// Looks the metrics up in the installed recorder (install it first).
    pub fn register() -> LogMetrics {
        LogMetrics {
            appended: counter!("rgw_log_appended_records_total"),
            corrupted: counter!("rgw_log_corrupted_records_total"),
            torn_bytes: counter!("rgw_log_torn_bytes_total"),
            quarantined: counter!("rgw_log_quarantined_segments_total"),
            dropped_max_size: dropped("max_size", "true"),
            dropped_disk_full: dropped("disk_full", "true"),
            dropped_missing_segment: dropped("missing_segment", "false"),
            dropped_corrupt: dropped("corrupt", "false"),
            cursor_resets: counter!("rgw_log_cursor_resets_total"),
            bytes: gauge!("rgw_log_bytes"),
            pending: gauge!("rgw_log_pending_records"),
            oldest_unsent_age: gauge!("rgw_log_oldest_unsent_age_seconds"),
            received: counter!("rgw_telemetry_received_samples_total"),
            skipped_fields: counter!("rgw_telemetry_skipped_fields_total", "reason" => "not_finite"),
            dropped_append_failed: dropped("append_failed", "false"),
        }
    }

    /// The log's state and counters, and those of the stage that appends to it.
    pub fn publish(&self, stats: &LogStats, backlog: &Backlog, appended: &Appended) {
        self.appended.absolute(stats.appended);
        self.corrupted.absolute(stats.corrupted);
        self.torn_bytes.absolute(stats.torn_bytes);
        self.quarantined.absolute(stats.quarantined);
        self.dropped_max_size.absolute(stats.dropped_max_size);
        self.dropped_disk_full.absolute(stats.dropped_disk_full);
        self.dropped_missing_segment.absolute(stats.lost);
        self.dropped_corrupt.absolute(stats.corrupted);
        self.cursor_resets.absolute(stats.cursor_resets);
        self.bytes.set(backlog.bytes as f64);
        self.pending.set(backlog.pending as f64);
        self.oldest_unsent_age
            .set(backlog.oldest_unsent.map_or(0.0, |age| age.as_secs_f64()));
        self.received.absolute(appended.received);
        self.skipped_fields.absolute(appended.skipped_fields);
        self.dropped_append_failed.absolute(appended.refused);
    }
}

/// The InfluxDB forwarder.
pub fn publish_forwarder(stats: &ForwarderStats) {
    counter!("rgw_influx_sent_lines_total").absolute(stats.sent_lines);
    counter!("rgw_influx_requests_total", "class" => "2xx").absolute(stats.requests_2xx);
    counter!("rgw_influx_requests_total", "class" => "4xx").absolute(stats.requests_4xx);
    counter!("rgw_influx_requests_total", "class" => "5xx").absolute(stats.requests_5xx);
    counter!("rgw_influx_requests_total", "class" => "no_answer").absolute(stats.request_failures);
    counter!("rgw_influx_dead_lettered_lines_total").absolute(stats.dead_lettered);
    counter!("rgw_log_dropped_records_total", "reason" => "dead_letter_rotated", "intentional" => "true")
        .absolute(stats.dead_letter_rotated_out);
    gauge!("rgw_influx_not_acknowledged").set(if stats.not_acknowledged { 1.0 } else { 0.0 });
    counter!("rgw_influx_retries_total").absolute(stats.retries);
    gauge!("rgw_influx_unauthorized").set(if stats.unauthorized { 1.0 } else { 0.0 });
}

/// One polled device's communication counters, as `/metrics` shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceCounts {
    pub online: bool,
    pub samples: u64,
    pub timeouts: u64,
    pub exceptions: u64,
}

/// Each polled device's communication counters and whether it is online, and the alarms raised
/// now by severity (refreshed at every scrape; labels are bounded by the configured devices).
pub fn publish_devices<'a>(
    devices: impl IntoIterator<Item = (&'a str, DeviceCounts)>,
    active: impl IntoIterator<Item = Severity>,
) {
    for (device, s) in devices {
        gauge!("rgw_device_online", "device" => device.to_string())
            .set(f64::from(u8::from(s.online)));
        counter!("rgw_device_samples_total", "device" => device.to_string()).absolute(s.samples);
        counter!("rgw_device_timeouts_total", "device" => device.to_string()).absolute(s.timeouts);
        counter!("rgw_device_exceptions_total", "device" => device.to_string())
            .absolute(s.exceptions);
    }
    let mut by_severity = [0usize; 3];
    for severity in active {
        by_severity[severity as usize] += 1;
    }
    for severity in [Severity::Info, Severity::Warn, Severity::Crit] {
        gauge!("rgw_alarms_active", "severity" => severity.name())
            .set(by_severity[severity as usize] as f64);
    }
}

/// One wait before a retry.
pub fn record_retry_delay(delay: Duration) {
    histogram!("rgw_influx_retry_delay_seconds").record(delay.as_secs_f64());
}

/// Every metric the gateway publishes, with its `# HELP` text (Chinese first, for the operators
/// reading Grafana; English after).
pub const DESCRIPTIONS: &[(&str, &str)] = &[
    ("rgw_build_info", "网关版本（值恒为 1）/ version, architecture and build of this gateway (always 1)"),
    ("rgw_telemetry_received_samples_total", "进入本地日志环节的读数 / samples that reached the log stage"),
    ("rgw_telemetry_skipped_fields_total", "未写入的非有限值字段 / NaN or infinite fields never written"),
    ("rgw_log_appended_records_total", "写入本地日志的读数 / readings accepted into the disk log"),
    ("rgw_log_dropped_records_total", "本地日志丢弃的记录（按原因）/ records dropped from the disk log, by reason"),
    ("rgw_log_corrupted_records_total", "恢复时发现的损坏记录 / damaged records found on recovery or read"),
    ("rgw_log_torn_bytes_total", "断电截断的字节 / bytes of records torn by a power cut"),
    ("rgw_log_quarantined_segments_total", "隔离的日志段 / log segments set aside as unreadable"),
    ("rgw_log_cursor_resets_total", "上传游标重置次数 / times the upload cursor was reset"),
    ("rgw_log_bytes", "本地日志大小（字节）/ size of the disk log in bytes"),
    ("rgw_log_pending_records", "待上传的读数 / readings not yet confirmed by InfluxDB"),
    ("rgw_log_oldest_unsent_age_seconds", "最早未上传读数的时长（秒）/ age of the oldest unsent reading"),
    ("rgw_influx_sent_lines_total", "InfluxDB 已确认的行 / lines InfluxDB acknowledged"),
    ("rgw_influx_requests_total", "写入请求（按结果）/ write requests by answer class"),
    ("rgw_influx_retries_total", "重试前的等待次数 / waits before a retry"),
    ("rgw_influx_retry_delay_seconds", "重试前的等待时长 / length of the waits before retries"),
    ("rgw_influx_dead_lettered_lines_total", "InfluxDB 拒收并另存的行 / lines InfluxDB refused, kept in the dead-letter file"),
    ("rgw_influx_unauthorized", "InfluxDB 拒绝凭据（0/1）/ InfluxDB refuses the credentials now (0/1)"),
    ("rgw_influx_not_acknowledged", "地址有应答但不是 InfluxDB 的确认（0/1）/ the address answers without acknowledging (0/1)"),
    ("rgw_device_online", "设备在线（0/1）/ device answering (0/1)"),
    ("rgw_device_samples_total", "设备产生的读数 / samples per device"),
    ("rgw_device_exceptions_total", "设备答异常的请求 / requests the device refused (Modbus exceptions)"),
    ("rgw_device_timeouts_total", "设备超时未答 / requests the device did not answer in time"),
    ("rgw_alarms_active", "当前报警（按级别）/ active alarms by severity"),
    ("rgw_mqtt_source_messages_total", "收到的 MQTT 消息 / MQTT messages received"),
    ("rgw_mqtt_source_payload_errors_total", "有问题的 MQTT 消息 / MQTT messages with a problem"),
    ("rgw_mqtt_source_refused_total", "拒收的 MQTT 消息（设备编号不在许可内）/ MQTT messages refused for their device id, by reason"),
    ("rgw_mqtt_source_oversized_total", "超大 MQTT 消息 / MQTT messages over the size limit"),
    ("rgw_mqtt_source_connection_attempts_total", "MQTT 数据源连接尝试 / connection attempts of the MQTT source"),
    ("rgw_mqtt_connection_attempts_total", "MQTT 报警发布连接尝试 / connection attempts of the MQTT alarm publisher"),
    ("rgw_http_refused_total", "本地端口拒绝的请求 / requests the local HTTP port refused"),
    ("rgw_http_connections_refused_total", "连接数满时拒绝的连接 / connections closed unserved at the connection cap"),
    ("rgw_http_connections_evicted_total", "为新连接让位的空闲连接 / idle connections closed for a newcomer at the cap"),
];

/// Installs the Prometheus recorder behind `/metrics`, with every metric described and
/// `rgw_build_info` set; `None` (logged) when a recorder is already installed.
pub fn install() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| tracing::error!(error = %e, "No metrics recorder; /metrics will be empty"))
        .ok()?;
    for (name, help) in DESCRIPTIONS {
        metrics::describe_counter!(*name, *help);
    }
    gauge!(
        "rgw_build_info",
        "version" => env!("CARGO_PKG_VERSION"),
        "arch" => std::env::consts::ARCH,
        "build" => if cfg!(feature = "demo") { "demo" } else { "field" },
    )
    .set(1.0);
    Some(handle)
}

#[cfg(test)]
mod description_tests {
    use super::DESCRIPTIONS;

    /// Every `"rgw_…"` name in the sources, found by reading them.
    fn names_in(dir: &std::path::Path, found: &mut std::collections::BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).expect("a source directory") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                names_in(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("a source file");
                for piece in text.split("\"rgw_").skip(1) {
                    let name: String = piece
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                        .collect();
                    if !name.is_empty() && piece[name.len()..].starts_with('"') {
                        found.insert(format!("rgw_{name}"));
                    }
                }
            }
        }
    }

    #[test]
    fn every_published_metric_is_described_and_nothing_else() {
        let mut used = std::collections::BTreeSet::new();
        names_in(std::path::Path::new("src"), &mut used);
        let described: std::collections::BTreeSet<String> = DESCRIPTIONS
            .iter()
            .map(|(name, _)| name.to_string())
            .collect();
        assert_eq!(used, described);
    }
}
