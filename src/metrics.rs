//! Metric names and publishing. The stages keep plain counters (`LogStats` in the buffer, and
//! [`ForwarderStats`] and [`Appended`], defined here); this module turns them into `metrics`
//! facade values, so the names live in one place. It imports no stage: what it publishes is
//! handed to it as plain figures. Names follow `rgw_<component>_<noun>_<unit>[_total]`; labels are bounded; every drop is
//! counted with its `reason` and whether it was `intentional`; a retry is never a drop.
//!
//! Without an installed recorder (the `/metrics` endpoint comes with the operations work) these
//! calls cost nothing.

use std::time::Duration;

use metrics::{counter, gauge, histogram};

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

/// The telemetry log's state and counters.
pub fn publish_log(stats: &LogStats, backlog: &Backlog) {
    counter!("rgw_log_appended_records_total").absolute(stats.appended);
    counter!("rgw_log_corrupted_records_total").absolute(stats.corrupted);
    counter!("rgw_log_torn_bytes_total").absolute(stats.torn_bytes);
    counter!("rgw_log_quarantined_segments_total").absolute(stats.quarantined);
    counter!("rgw_log_dropped_records_total", "reason" => "max_size", "intentional" => "true")
        .absolute(stats.dropped_max_size);
    counter!("rgw_log_dropped_records_total", "reason" => "disk_full", "intentional" => "true")
        .absolute(stats.dropped_disk_full);
    counter!("rgw_log_dropped_records_total", "reason" => "missing_segment", "intentional" => "false")
        .absolute(stats.lost);
    counter!("rgw_log_dropped_records_total", "reason" => "corrupt", "intentional" => "false")
        .absolute(stats.corrupted);
    counter!("rgw_log_cursor_resets_total").absolute(stats.cursor_resets);
    gauge!("rgw_log_bytes").set(backlog.bytes as f64);
    gauge!("rgw_log_pending_records").set(backlog.pending as f64);
    gauge!("rgw_log_oldest_unsent_age_seconds")
        .set(backlog.oldest_unsent.map_or(0.0, |age| age.as_secs_f64()));
}

/// The stage that appends samples to the log.
pub fn publish_appended(appended: &Appended) {
    counter!("rgw_telemetry_received_samples_total").absolute(appended.received);
    counter!("rgw_telemetry_skipped_fields_total", "reason" => "not_finite")
        .absolute(appended.skipped_fields);
    counter!("rgw_log_dropped_records_total", "reason" => "append_failed", "intentional" => "false")
        .absolute(appended.refused);
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
