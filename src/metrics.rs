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
