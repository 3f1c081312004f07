//! Self-monitoring: once a minute the gateway writes a sample of its own health, the `gateway`
//! measurement, which goes through the rules like any device's. The `gateway` rule pack turns it
//! into self-alarms: the disk log above 80 % of `max_size`, InfluxDB refusing the credentials, the
//! wall clock jumping by more than 5 minutes, the clock not synchronised (a Pi has no RTC: until
//! NTP has answered, timestamps may be days off).
//!
//! Fields: `log_bytes`, `log_fill_pct`, `log_pending`, `oldest_unsent_s`, `dropped_records`,
//! `influx_unauthorized` (0/1), `influx_not_acknowledged` (0/1: a captive portal or a proxy
//! answers instead of InfluxDB), `dead_lettered_lines` (since start), `disk_low` (0/1: the card
//! has less than two segments or 5 % free) (those when forwarding), `devices_total`, `devices_online`, `uptime_s`,
//! `clock_jump_s` (the largest wall-clock jump against the monotonic clock since the last
//! sample, signed), `clock_synchronised` (0/1; absent where the kernel cannot say).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, watch};

use crate::model::{unix_nanos, Field, Sample, Value};
use crate::sinks::influx::forwarder::{ForwarderStatus, SharedLog};
use crate::sources::modbus::status::{CommState, StatusBoard};

/// The measurement and the fields it writes (the rules engine learns them from here).
pub const MEASUREMENT: &str = "gateway";
pub const FIELDS: [&str; 14] = [
    "log_bytes",
    "log_fill_pct",
    "log_pending",
    "oldest_unsent_s",
    "dropped_records",
    "influx_unauthorized",
    "influx_not_acknowledged",
    "dead_lettered_lines",
    "disk_low",
    "devices_total",
    "devices_online",
    "uptime_s",
    "clock_jump_s",
    "clock_synchronised",
];

/// How often the clock is compared with the monotonic clock between samples.
const CLOCK_CHECK: Duration = Duration::from_secs(5);

/// Detects wall-clock jumps: the wall clock's advance against the monotonic clock's.
#[derive(Debug, Default)]
pub struct ClockWatch {
    last: Option<(i64, Instant)>,
    /// The largest jump (by size) since it was last taken, seconds.
    largest: f64,
}

impl ClockWatch {
    /// Records the clocks now; returns the jump since the previous call, seconds.
    pub fn observe(&mut self, wall_ns: i64, mono: Instant) -> f64 {
        let jump = match self.last {
            Some((wall0, mono0)) => {
                let wall = (wall_ns - wall0) as f64 / 1e9;
                wall - mono.saturating_duration_since(mono0).as_secs_f64()
            }
            None => 0.0,
        };
        self.last = Some((wall_ns, mono));
        if jump.abs() > self.largest.abs() {
            self.largest = jump;
        }
        jump
    }

    /// The largest jump since the last call (then forgotten).
    pub fn take_largest(&mut self) -> f64 {
        std::mem::take(&mut self.largest)
    }
}

/// Whether the kernel considers the clock synchronised (by NTP, chrony or timesyncd):
/// `adjtimex(2)` without changing anything. `None` where it cannot say.
pub fn clock_synchronised() -> Option<bool> {
    // SAFETY: adjtimex with modes = 0 only reads the kernel's time state into the struct,
    // which is zero-initialised plain data owned by this frame.
    let (state, status) = unsafe {
        let mut timex: libc::timex = std::mem::zeroed();
        let state = libc::adjtimex(&mut timex);
        (state, timex.status)
    };
    (state >= 0).then_some(state != libc::TIME_ERROR && status & libc::STA_UNSYNC == 0)
}

/// What the sample is made from.
pub struct Sources {
    pub gateway: String,
    pub site: String,
    pub status: Arc<StatusBoard>,
    /// The configured (polled) devices.
    pub devices_total: usize,
    /// The telemetry log, its `max_size` in bytes, and the forwarder's status.
    pub forwarding: Option<(SharedLog, u64, Arc<ForwarderStatus>)>,
    pub started: Instant,
}

/// The `gateway` sample at `now_ns`.
pub fn sample(
    sources: &Sources,
    now_ns: i64,
    clock_jump_s: f64,
    synchronised: Option<bool>,
) -> Sample {
    let mut fields: Vec<(&str, f64)> = Vec::new();
    if let Some((log, max_bytes, forwarder)) = &sources.forwarding {
        let (stats, backlog, low_on_room) = {
            let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
            let room = log.room().ok().map(|(_, low)| low);
            (log.stats().clone(), log.backlog(now_ns / 1_000_000), room)
        };
        fields.push(("log_bytes", backlog.bytes as f64));
        fields.push((
            "log_fill_pct",
            100.0 * backlog.bytes as f64 / (*max_bytes).max(1) as f64,
        ));
        fields.push(("log_pending", backlog.pending as f64));
        fields.push((
            "oldest_unsent_s",
            backlog.oldest_unsent.map_or(0.0, |age| age.as_secs_f64()),
        ));
        fields.push((
            "dropped_records",
            (stats.dropped_max_size + stats.dropped_disk_full + stats.lost + stats.corrupted)
                as f64,
        ));
        let forwarder = forwarder.snapshot();
        let flag = |on: bool| f64::from(u8::from(on));
        fields.push(("influx_unauthorized", flag(forwarder.unauthorized)));
        fields.push(("influx_not_acknowledged", flag(forwarder.not_acknowledged)));
        fields.push(("dead_lettered_lines", forwarder.dead_lettered as f64));
        if let Some(low) = low_on_room {
            fields.push(("disk_low", flag(low)));
        }
    }
    let online = sources
        .status
        .snapshot()
        .values()
        .filter(|s| s.state == CommState::Online)
        .count();
    fields.push(("devices_total", sources.devices_total as f64));
    fields.push(("devices_online", online as f64));
    fields.push(("uptime_s", sources.started.elapsed().as_secs_f64().round()));
    fields.push(("clock_jump_s", clock_jump_s));
    if let Some(synchronised) = synchronised {
        fields.push(("clock_synchronised", f64::from(u8::from(synchronised))));
    }
    let mut tags = vec![
        ("device".to_string(), sources.gateway.clone()),
        ("gateway".to_string(), sources.gateway.clone()),
        ("site".to_string(), sources.site.clone()),
    ];
    tags.sort();
    Sample {
        measurement: Arc::from(MEASUREMENT),
        device: Arc::from(sources.gateway.as_str()),
        tags: tags.into(),
        fields: fields
            .into_iter()
            .map(|(name, v)| Field {
                name: Arc::from(name),
                value: Value::Float(v),
            })
            .collect(),
        time_ns: now_ns,
        receipt: crate::model::Receipt::none(),
    }
}

/// Starts self-monitoring of a running gateway into `samples` (the rules stage); returns the
/// switch that stops it.
pub fn start_for(
    config: &crate::config::LoadedConfig,
    gateway: &crate::runtime::Gateway,
    outputs: Option<&crate::runtime::Outputs>,
    samples: mpsc::Sender<Sample>,
    every: Duration,
) -> watch::Sender<bool> {
    let forwarding = outputs.and_then(|o| {
        Some((
            o.log.clone()?,
            config.gateway.buffer.max_size_mb << 20,
            o.forwarder_status.clone()?,
        ))
    });
    let sources = Sources {
        gateway: config.gateway.gateway.id.clone(),
        site: config.gateway.gateway.site.clone(),
        status: Arc::clone(&gateway.status),
        devices_total: config.gateway.device.len(),
        forwarding,
        started: Instant::now(),
    };
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(run(sources, every, samples, stopped));
    stop
}

/// Sends a `gateway` sample every `every` (a minute in service) into `samples` until shutdown.
pub async fn run(
    sources: Sources,
    every: Duration,
    samples: mpsc::Sender<Sample>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut clock = ClockWatch::default();
    let mut check = tokio::time::interval(CLOCK_CHECK.min(every));
    let mut emit = tokio::time::interval(every);
    emit.tick().await;
    let sources = Arc::new(sources);
    loop {
        tokio::select! {
            _ = check.tick() => {
                let jump = clock.observe(unix_nanos(SystemTime::now()), Instant::now());
                if jump.abs() > 1.0 {
                    tracing::warn!(jump_s = jump, "The wall clock jumped");
                }
            }
            _ = emit.tick() => {
                let jump = clock.take_largest();
                let shared = Arc::clone(&sources);
                let built = tokio::task::spawn_blocking(move || {
                    sample(&shared, unix_nanos(SystemTime::now()), jump, clock_synchronised())
                })
                .await;
                match built {
                    Ok(sample) => {
                        if samples.send(sample).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "Cannot build the gateway sample"),
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn a_wall_clock_step_shows_as_a_jump_and_steady_time_does_not() {
        let mut watch = ClockWatch::default();
        let t0 = Instant::now();
        let wall0 = 1_764_150_000 * S;
        assert_eq!(watch.observe(wall0, t0), 0.0);
        let steady = watch.observe(wall0 + 5 * S, t0 + Duration::from_secs(5));
        assert!(steady.abs() < 1e-9);
        // NTP steps the clock back by 6 minutes between two checks 5 s apart.
        let back = watch.observe(wall0 + 10 * S - 360 * S, t0 + Duration::from_secs(10));
        assert!((back + 360.0).abs() < 1e-9, "{back}");
        watch.observe(wall0 + 15 * S - 360 * S, t0 + Duration::from_secs(15));
        assert!((watch.take_largest() + 360.0).abs() < 1e-9);
        assert_eq!(watch.take_largest(), 0.0, "forgotten once taken");
    }

    #[test]
    fn the_kernel_answers_whether_the_clock_is_synchronised() {
        // Whatever this machine's state, the call must answer rather than fail.
        assert!(clock_synchronised().is_some());
    }
}
