//! Shared fixtures for integration tests: the simulated example community on free loopback ports
//! and the gateway polling it with `config/demo.toml`.

// Each integration test crate compiles this module and uses a different part of it.
#![allow(dead_code)]

pub mod hostile;
pub mod http_script;
pub mod mqtt;
pub mod pump_alarms;
pub mod services;
pub mod uplink;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use retrofit_gateway::config::{load, EnvOverlay, LoadedConfig};
use retrofit_gateway::demo::attach_to;
use retrofit_gateway::model::{AlarmEvent, Sample};
use retrofit_gateway::pipeline::acquisition::Acquisition;
use retrofit_gateway::pipeline::{Options, Pipeline};
use retrofit_gateway::sources::modbus::status::DeviceStatus;
use retrofit_sim::layout::Layout;
use retrofit_sim::{Community, SimOptions};
use tokio::sync::mpsc;
use tokio::time::Instant;

pub struct Site {
    pub community: Community,
    pub config: LoadedConfig,
}

impl Site {
    /// The ids of every configured device.
    pub fn device_ids(&self) -> Vec<String> {
        self.config
            .gateway
            .device
            .iter()
            .map(|d| d.id.clone())
            .collect()
    }
}

/// The example community, started, and the demo config pointed at it.
pub async fn example_site() -> Site {
    let layout = Layout::example_site(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
    let community = Community::start(&layout, SimOptions::default())
        .await
        .expect("simulated community starts on loopback");
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo.toml");
    let mut config = load(&demo, EnvOverlay::None).unwrap_or_else(|e| panic!("{e}"));
    attach_to(&mut config, &community).expect("every demo bus is simulated");
    Site { community, config }
}

/// The gateway started on `config`, with the receiving end of its samples.
pub fn start_gateway(config: &LoadedConfig) -> (Acquisition, mpsc::Receiver<Sample>) {
    let (tx, rx) = mpsc::channel(4096);
    (Acquisition::start(config, tx).expect("gateway starts"), rx)
}

/// Receives samples until every device in `devices` has produced one, or panics after `bound`.
pub async fn until_each_device_reported(
    rx: &mut mpsc::Receiver<Sample>,
    devices: &[&str],
    bound: Duration,
) -> Vec<Sample> {
    let deadline = Instant::now() + bound;
    let mut seen: Vec<Sample> = Vec::new();
    while !devices
        .iter()
        .all(|d| seen.iter().any(|s| &*s.device == *d))
    {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(sample)) => seen.push(sample),
            Ok(None) => panic!("sample channel closed"),
            Err(_) => {
                let missing: Vec<&&str> = devices
                    .iter()
                    .filter(|d| !seen.iter().any(|s| &*s.device == **d))
                    .collect();
                panic!("no sample within {bound:?} from {missing:?}");
            }
        }
    }
    seen
}

/// Every sample received during `window`, measured from now.
pub async fn collect_for(rx: &mut mpsc::Receiver<Sample>, window: Duration) -> Vec<Sample> {
    let end = Instant::now() + window;
    let mut samples = Vec::new();
    while let Ok(Some(sample)) = tokio::time::timeout_at(end, rx.recv()).await {
        samples.push(sample);
    }
    samples
}

/// Samples per device.
pub fn count_by_device(samples: &[Sample]) -> BTreeMap<Arc<str>, usize> {
    let mut counts = BTreeMap::new();
    for s in samples {
        *counts.entry(Arc::clone(&s.device)).or_insert(0) += 1;
    }
    counts
}

/// The poll interval of each configured device.
pub fn intervals(config: &LoadedConfig) -> BTreeMap<String, Duration> {
    config
        .gateway
        .device
        .iter()
        .map(|d| (d.id.clone(), d.interval.get()))
        .collect()
}

/// Samples a device polled every `interval` must produce in `window`: the window holds
/// window/interval poll instants, give or take the one at either edge.
pub fn expected_range(interval: Duration, window: Duration) -> std::ops::RangeInclusive<usize> {
    let n = (window.as_secs_f64() / interval.as_secs_f64()).round() as usize;
    n.saturating_sub(1)..=n + 1
}

/// Polls `config` until each of `healthy` reported once (within `warm_up`), then for `window`;
/// asserts that each of `healthy` produced its interval's share of the window and skipped no
/// poll: the faulty devices beside them cost their bus nothing. Returns the window's samples
/// and the status afterwards.
pub async fn assert_unslowed(
    config: &LoadedConfig,
    healthy: &[&str],
    warm_up: Duration,
    window: Duration,
) -> (Vec<Sample>, BTreeMap<String, DeviceStatus>) {
    let (gateway, mut rx) = start_gateway(config);
    until_each_device_reported(&mut rx, healthy, warm_up).await;
    let samples = collect_for(&mut rx, window).await;
    let status = gateway.status.snapshot();
    gateway.stop(Duration::from_secs(4)).await;

    let counts = count_by_device(&samples);
    let intervals = intervals(config);
    for device in healthy {
        let count = counts.get(*device).copied().unwrap_or(0);
        let range = expected_range(intervals[*device], window);
        assert!(
            range.contains(&count),
            "{device} every {:?}: {count} samples in {window:?} beside failing devices, expected {range:?}",
            intervals[*device]
        );
        assert_eq!(status[*device].skipped_polls, 0, "{device} skipped polls");
    }
    (samples, status)
}

/// Whether a decoded value equals the simulator's: the same number up to float formatting.
pub fn same_value(decoded: f64, truth: f64) -> bool {
    (decoded - truth).abs() <= 1e-6 * truth.abs().max(1.0)
}

/// Starts the `retrofit-gateway` binary on `config`, its log (stderr) in `log`.
pub fn spawn_gateway(
    binary: &str,
    args: &[&str],
    config: &Path,
    log: &Path,
) -> std::process::Child {
    std::process::Command::new(binary)
        .args(args)
        .arg(config)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .expect("gateway starts")
}

/// Waits for an event on `device`/`rule` that is `firing` (or cleared), up to `bound`.
pub async fn expect_event(
    events: &mut mpsc::Receiver<AlarmEvent>,
    device: &str,
    rule: &str,
    firing: bool,
    bound: Duration,
) -> AlarmEvent {
    let mut found = expect_events(events, &[(device, rule)], firing, bound).await;
    found.remove(0)
}

/// Waits for an event that is `firing` (or cleared) on each (`device`, `rule`) of `wanted`, in
/// any order, up to `bound`; the events in the order of `wanted`. Other events are skipped.
pub async fn expect_events(
    events: &mut mpsc::Receiver<AlarmEvent>,
    wanted: &[(&str, &str)],
    firing: bool,
    bound: Duration,
) -> Vec<AlarmEvent> {
    let deadline = Instant::now() + bound;
    let mut found: Vec<Option<AlarmEvent>> = vec![None; wanted.len()];
    while found.iter().any(Option::is_none) {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(e)) if e.firing == firing => {
                let slot = wanted
                    .iter()
                    .position(|(d, r)| *d == &*e.device && *r == &*e.rule);
                if let Some(slot) = slot {
                    found[slot].get_or_insert(e);
                }
            }
            Ok(Some(_)) => continue,
            Ok(None) => panic!("event channel closed"),
            Err(_) => {
                let missing: Vec<_> = wanted
                    .iter()
                    .zip(&found)
                    .filter(|(_, f)| f.is_none())
                    .map(|(w, _)| w)
                    .collect();
                panic!(
                    "no {} event for {missing:?} within {bound:?}",
                    if firing { "raise" } else { "clear" }
                )
            }
        }
    }
    found.into_iter().flatten().collect()
}

/// Starts the pipeline of `config` again without its sources, so that its forwarder delivers
/// what an earlier run left in the telemetry log; waits (up to `bound`) until the log holds
/// nothing unsent, then stops it.
pub async fn deliver_what_is_left(config: &LoadedConfig, bound: Duration) {
    let mut config = config.clone();
    config.gateway.bus.clear();
    config.gateway.mqtt_source = None;
    let pipeline = Pipeline::start(&config, Options::default()).expect("pipeline restarts");
    let (log, _) = pipeline
        .observed()
        .log
        .clone()
        .expect("the InfluxDB path has a log");
    let deadline = Instant::now() + bound;
    loop {
        let pending = log.lock().unwrap_or_else(|p| p.into_inner()).pending();
        if pending == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{pending} readings undelivered after {bound:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pipeline.shutdown(Duration::from_secs(5)).await;
}
