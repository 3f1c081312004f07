//! The `kpi` measurement end to end, against the real servers `scripts/test.sh` starts: the PRV
//! inlet transmitter's samples of the day before yesterday go through the rules stage, the day
//! is closed on the stage's next tick, and every figure of the stored day arrives in InfluxDB
//! 1.x (v1 API) and VictoriaMetrics (v2 API) with its value; the whole community's figures of
//! today, asked for on demand, arrive with `final = false`.
//!
//! Only one device sends for the past day: the stage may close that day on any tick while the
//! samples are still coming (the later ones are then late, as they would be in the field), so
//! which figures the day has must not depend on how many samples came before the close.

mod common;

use std::path::Path;
use std::time::{Duration, SystemTime};

use common::services::{eventually, influxql, service_url, victoria_values};
use retrofit_gateway::config::{load, ConfigDuration, EnvOverlay, InfluxApi, InfluxOutput};
use retrofit_gateway::demo::replay::Replay;
use retrofit_gateway::demo::DEMO_MQTT_PREFIX;
use retrofit_gateway::kpi::ledger::day_start_ns;
use retrofit_gateway::kpi::store::KpiStore;
use retrofit_gateway::kpi::{local_day, DayRecord};
use retrofit_gateway::model::unix_nanos;
use retrofit_gateway::pipeline::{Options, Pipeline};

const DATABASE: &str = "retrofit_tests";
/// The device that sends for the past day.
const PAST_DEVICE: &str = "prv-inlet";
const OFFSET_H: f64 = 8.0;

/// What a run left: the gateway id, the stored day, and how many devices sent samples today.
struct Published {
    gateway: String,
    day: DayRecord,
    devices_today: usize,
}

/// Runs the rules stage with the demo config in front of `output`: half an hour of the day
/// before yesterday, then ten minutes of today with the figures asked for on demand; returns
/// once everything is delivered.
async fn publish(output: InfluxOutput, name: &str) -> Published {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo.toml");
    let mut config = load(&demo, EnvOverlay::None).unwrap_or_else(|e| panic!("{e}"));
    let data = tempfile::tempdir().expect("temp dir");
    let gateway = format!(
        "kpi-{name}-{}-{}",
        std::process::id(),
        unix_nanos(SystemTime::now())
    );
    config.gateway.gateway.id = gateway.clone();
    config.gateway.gateway.data_dir = data.path().to_path_buf();
    config.gateway.outputs.line_protocol = None;
    config.gateway.outputs.influxdb = Some(output);
    // The replay plays the devices: nothing is polled or subscribed to.
    config.gateway.bus.clear();
    config.gateway.mqtt_source = None;
    let pipeline = Pipeline::start(&config, Options::default()).expect("pipeline starts");
    let input = pipeline.input();
    let view = std::sync::Arc::clone(&pipeline.observed().view);

    let now_s = unix_nanos(SystemTime::now()) / 1_000_000_000;
    let today = local_day(now_s * 1_000_000_000, OFFSET_H);
    let past = day_start_ns(today - 2, OFFSET_H) / 1_000_000_000 + 10 * 3600;
    let mut replay = Replay::new(&config, past as f64, 11, DEMO_MQTT_PREFIX);
    for t in (past..past + 1800).step_by(60) {
        for sample in replay.step(t).expect("replayed") {
            if &*sample.device == PAST_DEVICE {
                input.send(sample).await.expect("stage runs");
            }
        }
    }
    // The stage closes that day on its next tick and stores it.
    let store = KpiStore::new(data.path());
    let month = retrofit_gateway::kpi::date_of(today - 2)[..7].to_string();
    let day = until(Duration::from_secs(10), "the day is closed", || {
        store
            .month(&month)
            .expect("readable")
            .days
            .into_iter()
            .find(|d| d.day == today - 2)
    })
    .await;
    // Ten minutes of today; once the stage has taken them all, today's figures on demand.
    let mut replay = Replay::new(&config, (now_s - 600) as f64, 12, DEMO_MQTT_PREFIX);
    let mut devices = std::collections::BTreeSet::new();
    let last = now_s - 60;
    for t in (now_s - 600..=last).step_by(60) {
        for sample in replay.step(t).expect("replayed") {
            devices.insert(sample.device.to_string());
            input.send(sample).await.expect("stage runs");
        }
    }
    until(
        Duration::from_secs(10),
        "the stage took today's samples",
        || {
            let latest = view.latest();
            devices
                .iter()
                .all(|d| {
                    latest
                        .get(d)
                        .is_some_and(|s| s.time_ns == last * 1_000_000_000)
                })
                .then_some(())
        },
    )
    .await;
    assert!(view.publish_kpi(), "the first request is taken");
    // Everything the stage wrote is in the log once the pipeline has stopped; started again,
    // the pipeline delivers what its last run left there.
    drop(input);
    pipeline.shutdown(Duration::from_secs(5)).await;
    common::deliver_what_is_left(&config, Duration::from_secs(15)).await;
    Published {
        gateway,
        day,
        devices_today: devices.len(),
    }
}

/// Polls `check` until it gives a value, up to `bound`.
async fn until<T>(bound: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {bound:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn output(url: String, api: InfluxApi) -> InfluxOutput {
    InfluxOutput {
        org: Some("water".into()),
        bucket: Some("community".into()),
        database: Some(DATABASE.into()),
        flush_interval: ConfigDuration::from_millis(300),
        ..InfluxOutput::new(url, api)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_day_and_todays_figures_arrive_in_influxdb_1() {
    let Some(url) = service_url("RGW_TEST_INFLUXDB1_URL") else {
        return;
    };
    let _ = influxql(&url, DATABASE, &format!("CREATE DATABASE {DATABASE}")).await;
    let run = publish(output(url.clone(), InfluxApi::V1), "v1").await;
    let day_ns = day_start_ns(run.day.day, OFFSET_H);
    let count = |clause: String| {
        let (url, gateway) = (url.clone(), run.gateway.clone());
        async move {
            let q = format!(
                "SELECT count(\"value\") FROM \"kpi\" WHERE \"gateway\"='{gateway}' AND {clause}"
            );
            influxql(&url, DATABASE, &q).await["results"][0]["series"][0]["values"][0][1]
                .as_u64()
                .unwrap_or(0)
        }
    };
    let expected = run.day.values.len() as u64;
    // The gateway's uptime, the PRV inlet's completeness, availability and pressure
    // compliance (W6), and the site's incidents (none).
    assert_eq!(expected, 5, "{:?}", run.day.values);
    let closed = count(format!("time = {day_ns}")).await;
    assert_eq!(closed, expected, "figures of the closed day in InfluxDB");
    // One figure by value: the PRV inlet's pressure compliance.
    let stored = run
        .day
        .values
        .iter()
        .find(|v| v.kpi == "pressure_compliance" && v.device == "prv-inlet")
        .expect("the day has the PRV inlet's pressure compliance");
    let q = format!(
        "SELECT \"value\", \"final\" FROM \"kpi\" WHERE \"gateway\"='{}' AND \"kpi\"='pressure_compliance' AND \"device\"='prv-inlet'",
        run.gateway
    );
    let answer = influxql(&url, DATABASE, &q).await;
    let row = &answer["results"][0]["series"][0]["values"][0];
    assert_eq!(row[1].as_f64(), Some(stored.value), "{answer}");
    assert_eq!(row[2].as_bool(), Some(true), "{answer}");
    // Today's, asked for on demand, not final: at least each device's completeness.
    let partial = count(format!("time > {day_ns} AND \"final\" = false")).await;
    assert!(
        partial as usize > run.devices_today,
        "{partial} of today's figures for {} devices",
        run.devices_today
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_day_and_todays_figures_arrive_in_victoria_metrics() {
    let Some(url) = service_url("RGW_TEST_VICTORIA_URL") else {
        return;
    };
    let run = publish(output(url.clone(), InfluxApi::V2), "vm").await;
    let day_ms = day_start_ns(run.day.day, OFFSET_H) / 1_000_000;
    let devices: std::collections::BTreeSet<&str> =
        run.day.values.iter().map(|v| v.device.as_str()).collect();
    let points = || {
        let (url, gateway) = (url.clone(), run.gateway.clone());
        let devices: Vec<String> = devices.iter().map(|d| d.to_string()).collect();
        async move {
            let mut closed = 0;
            for device in &devices {
                let values = victoria_values(&url, "kpi_value", &gateway, device).await;
                closed += values.iter().filter(|(t, _)| *t == day_ms).count() as u64;
            }
            closed
        }
    };
    let expected = run.day.values.len() as u64;
    let arrived = eventually(expected, Duration::from_secs(20), points).await;
    assert_eq!(
        arrived, expected,
        "figures of the closed day in VictoriaMetrics"
    );
    let stored = run
        .day
        .values
        .iter()
        .find(|v| v.kpi == "completeness" && v.device == PAST_DEVICE)
        .expect("the PRV inlet's completeness");
    let values = victoria_values(&url, "kpi_value", &run.gateway, PAST_DEVICE).await;
    assert!(
        values
            .iter()
            .any(|(t, v)| *t == day_ms && (v - stored.value).abs() < 1e-9),
        "{values:?} has no {} at {day_ms}",
        stored.value
    );
    // Today's, on demand: `final` is 0.
    let today = victoria_values(&url, "kpi_final", &run.gateway, "booster-1").await;
    assert!(
        today.iter().any(|(t, v)| *t > day_ms && *v == 0.0),
        "{today:?}"
    );
}
