//! Self-monitoring: once a minute the gateway writes a sample of its own health, the `gateway`
//! measurement, from [`Readings`] the pipeline gathers (this module imports no stage). It goes
//! through the rules like any device's sample, and the `gateway` rule pack turns it into
//! self-alarms: the disk log above 80 % of `max_size`, InfluxDB refusing the credentials, the
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

use crate::model::{unix_nanos, Field, Sample, Value, GATEWAY_MEASUREMENT};

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

/// The telemetry log's and the forwarder's state, when forwarding.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Forwarding {
    pub log_bytes: u64,
    /// The log's `max_size`, bytes.
    pub max_bytes: u64,
    pub pending: u64,
    pub oldest_unsent_s: f64,
    /// Records dropped for any reason (size cap, full disk, lost or corrupt segments).
    pub dropped_records: u64,
    pub unauthorized: bool,
    pub not_acknowledged: bool,
    pub dead_lettered: u64,
    /// Whether the card is low on room; `None` when it cannot be read.
    pub disk_low: Option<bool>,
}

/// What the pipeline reports of itself for one sample.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Readings {
    pub gateway: String,
    pub site: String,
    pub forwarding: Option<Forwarding>,
    pub devices_total: usize,
    pub devices_online: usize,
    pub uptime_s: f64,
}

/// The `gateway` sample at `now_ns`.
pub fn sample(
    readings: &Readings,
    now_ns: i64,
    clock_jump_s: f64,
    synchronised: Option<bool>,
) -> Sample {
    let flag = |on: bool| f64::from(u8::from(on));
    let mut fields: Vec<(&str, f64)> = Vec::new();
    if let Some(f) = &readings.forwarding {
        fields.push(("log_bytes", f.log_bytes as f64));
        fields.push((
            "log_fill_pct",
            100.0 * f.log_bytes as f64 / f.max_bytes.max(1) as f64,
        ));
        fields.push(("log_pending", f.pending as f64));
        fields.push(("oldest_unsent_s", f.oldest_unsent_s));
        fields.push(("dropped_records", f.dropped_records as f64));
        fields.push(("influx_unauthorized", flag(f.unauthorized)));
        fields.push(("influx_not_acknowledged", flag(f.not_acknowledged)));
        fields.push(("dead_lettered_lines", f.dead_lettered as f64));
        if let Some(low) = f.disk_low {
            fields.push(("disk_low", flag(low)));
        }
    }
    fields.push(("devices_total", readings.devices_total as f64));
    fields.push(("devices_online", readings.devices_online as f64));
    fields.push(("uptime_s", readings.uptime_s.round()));
    fields.push(("clock_jump_s", clock_jump_s));
    if let Some(synchronised) = synchronised {
        fields.push(("clock_synchronised", flag(synchronised)));
    }
    let mut tags = vec![
        ("device".to_string(), readings.gateway.clone()),
        ("gateway".to_string(), readings.gateway.clone()),
        ("site".to_string(), readings.site.clone()),
    ];
    tags.sort();
    Sample {
        measurement: Arc::from(GATEWAY_MEASUREMENT),
        device: Arc::from(readings.gateway.as_str()),
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

/// Sends a `gateway` sample every `every` (a minute in service) into `samples` until shutdown,
/// from what `read` (run on a blocking thread: it reads the log) returns at that moment.
pub async fn run(
    read: Arc<dyn Fn(i64) -> Readings + Send + Sync>,
    every: Duration,
    samples: mpsc::Sender<Sample>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut clock = ClockWatch::default();
    let mut check = tokio::time::interval(CLOCK_CHECK.min(every));
    let mut emit = tokio::time::interval(every);
    emit.tick().await;
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
                let read = Arc::clone(&read);
                let built = tokio::task::spawn_blocking(move || {
                    let now = unix_nanos(SystemTime::now());
                    sample(&read(now), now, jump, clock_synchronised())
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
