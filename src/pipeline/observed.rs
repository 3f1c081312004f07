//! What the running pipeline shows of itself ([`Observed`]): the configured buses and devices
//! and the stages' shared state, read by the status page and API, `/metrics` and
//! self-monitoring. Reading it never blocks a stage for longer than a lock on the log.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{json, Value as Json};

use crate::config::LoadedConfig;
use crate::health::Health;
use crate::kpi::store::KpiStore;
use crate::metrics::DeviceCounts;
use crate::model::unix_nanos;
use crate::report::notes::ReportNotes;
use crate::selfmon::{Forwarding, Readings};
use crate::sinks::influx::forwarder::{lock_log, ForwarderStatus, SharedLog};
use crate::sources::modbus::status::{CommState, StatusBoard};
use crate::sources::mqtt::IngestStats;

use super::rules_stage::StageView;

/// A configured (polled) device.
#[derive(Debug, Clone)]
pub struct DeviceInfo {
    pub id: String,
    pub bus: Option<String>,
    pub measurement: String,
}

/// The running pipeline as the status page, `/metrics` and self-monitoring see it.
pub struct Observed {
    pub gateway: String,
    pub site: String,
    pub started: Instant,
    pub buses: Vec<(String, String)>,
    pub devices: Vec<DeviceInfo>,
    pub status: Arc<StatusBoard>,
    pub view: Arc<StageView>,
    pub health: Vec<Arc<Health>>,
    pub mqtt: Option<Arc<IngestStats>>,
    /// The telemetry log and its `max_size` in bytes.
    pub log: Option<(SharedLog, u64)>,
    /// The forwarder's counters, when forwarding.
    pub forwarder: Option<Arc<ForwarderStatus>>,
    pub metrics: Option<PrometheusHandle>,
    /// The stored KPI days, and local time's offset (hours).
    pub kpi: (KpiStore, f64),
    /// The config's rule titles and sources and device names, for the monthly report.
    pub notes: ReportNotes,
    /// The last `/api/status` body and when it was made: requests within a second of it get
    /// it again, so that polling it in a loop costs one snapshot a second.
    pub status_cache: std::sync::Mutex<Option<(Instant, Arc<str>)>>,
}

impl Observed {
    /// The configured buses and devices of `config`, with the stages' shared state still to
    /// be filled in by the caller.
    pub fn of(config: &LoadedConfig, status: Arc<StatusBoard>, view: Arc<StageView>) -> Observed {
        let gateway = &config.gateway;
        Observed {
            gateway: gateway.gateway.id.clone(),
            site: gateway.gateway.site.clone(),
            started: Instant::now(),
            buses: gateway
                .bus
                .iter()
                .map(|b| (b.id.clone(), b.transport.name().to_string()))
                .collect(),
            devices: gateway
                .device
                .iter()
                .map(|d| DeviceInfo {
                    id: d.id.clone(),
                    bus: Some(d.bus.clone()),
                    measurement: config
                        .profile_of(d)
                        .map(|p| p.kind.clone())
                        .unwrap_or_default(),
                })
                .collect(),
            status,
            view,
            health: Vec::new(),
            mqtt: None,
            log: None,
            forwarder: None,
            metrics: None,
            kpi: (
                KpiStore::new(&gateway.gateway.data_dir),
                gateway.kpi.utc_offset_h,
            ),
            notes: ReportNotes::of(config),
            status_cache: std::sync::Mutex::default(),
        }
    }

    /// The telemetry log's size and backlog, or null without one; `{"busy": true}` when the
    /// log is taken (an append waiting for the card): the status page never waits for it.
    pub fn backlog(&self) -> Json {
        let Some((log, max_bytes)) = &self.log else {
            return Json::Null;
        };
        let now_ms = unix_nanos(SystemTime::now()) / 1_000_000;
        let backlog = match log.try_lock() {
            Ok(mut log) => log.backlog(now_ms),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => {
                poisoned.into_inner().backlog(now_ms)
            }
            Err(std::sync::TryLockError::WouldBlock) => return json!({ "busy": true }),
        };
        json!({
            "bytes": backlog.bytes,
            "max_bytes": max_bytes,
            "pending_records": backlog.pending,
            "oldest_unsent_age_s": backlog.oldest_unsent.map(|age| age.as_secs_f64()),
        })
    }

    /// What self-monitoring writes at `now_ns` (reads the log: call off the runtime's thread).
    pub fn readings(&self, now_ns: i64) -> Readings {
        let states = self.status.snapshot();
        let forwarding = match (&self.log, &self.forwarder) {
            (Some((log, max_bytes)), Some(forwarder)) => {
                let (stats, backlog, disk_low) = {
                    let mut log = lock_log(log);
                    let low = log.room().ok().map(|(_, low)| low);
                    (log.stats().clone(), log.backlog(now_ns / 1_000_000), low)
                };
                let sent = forwarder.snapshot();
                Some(Forwarding {
                    log_bytes: backlog.bytes,
                    max_bytes: *max_bytes,
                    pending: backlog.pending,
                    oldest_unsent_s: backlog.oldest_unsent.map_or(0.0, |age| age.as_secs_f64()),
                    dropped_records: stats.dropped_max_size
                        + stats.dropped_disk_full
                        + stats.lost
                        + stats.corrupted,
                    unauthorized: sent.unauthorized,
                    not_acknowledged: sent.not_acknowledged,
                    dead_lettered: sent.dead_lettered,
                    disk_low,
                })
            }
            _ => None,
        };
        Readings {
            gateway: self.gateway.clone(),
            site: self.site.clone(),
            forwarding,
            devices_total: self.devices.len(),
            devices_online: states
                .values()
                .filter(|s| s.state == CommState::Online)
                .count(),
            uptime_s: self.started.elapsed().as_secs_f64(),
        }
    }

    /// Refreshes the per-device and active-alarm figures of `/metrics`.
    pub fn publish_metrics(&self) {
        let states = self.status.snapshot();
        let devices = states.iter().map(|(id, s)| {
            let counts = DeviceCounts {
                online: s.state == CommState::Online,
                samples: s.samples,
                timeouts: s.timeouts,
                exceptions: s.exceptions,
            };
            (id.as_str(), counts)
        });
        crate::metrics::publish_devices(devices, self.view.active().iter().map(|a| a.severity));
    }
}
