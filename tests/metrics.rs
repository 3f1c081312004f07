//! The log's and the forwarder's metrics, as a Prometheus scrape would see them: names per the
//! house style, values that match what happened (one 500 retried, every line sent).

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::http_script::{status, ScriptedServer};
use retrofit_gateway::buffer::{LogOptions, SegmentLog};
use retrofit_gateway::config::{ConfigDuration, InfluxApi, InfluxOutput};
use retrofit_gateway::model::{Field, Sample, Value};
use retrofit_gateway::sinks::influx::forwarder::{
    with_log, Forwarder, ForwarderOptions, SharedLog,
};
use retrofit_gateway::sinks::influx::write::WriteEndpoint;
use retrofit_gateway::sinks::telemetry_log::append_samples;
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;

fn sample(i: i64) -> Sample {
    Sample {
        measurement: Arc::from("pump_station"),
        device: Arc::from("booster-1"),
        tags: vec![("device".to_string(), "booster-1".to_string())].into(),
        fields: vec![
            Field {
                name: Arc::from("outlet_pressure_mpa"),
                value: Value::Float(0.47),
            },
            Field {
                name: Arc::from("broken"),
                value: Value::Float(f64::NAN),
            },
        ],
        time_ns: 1_764_150_000_000_000_000 + i,
        receipt: retrofit_gateway::model::Receipt::none(),
    }
}

/// `name{labels} value` lines of a scrape, by series.
fn parse(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_and_forwarder_figures_reach_the_prometheus_scrape() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).expect("the only recorder in this test binary");

    let server = ScriptedServer::start(|n, _| if n == 0 { status(500) } else { status(204) }).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (log, _) =
        SegmentLog::open(&dir.path().join("telemetry"), LogOptions::default()).expect("log");
    let log: SharedLog = Arc::new(Mutex::new(log));
    let appended = Arc::new(Notify::new());
    let config = InfluxOutput {
        org: Some("water".into()),
        bucket: Some("community".into()),
        timeout: ConfigDuration::from_millis(2000),
        flush_interval: ConfigDuration::from_millis(50),
        ..InfluxOutput::new(server.url(), InfluxApi::V2)
    };
    let forwarder = Forwarder::new(
        WriteEndpoint::new(&config).expect("endpoint"),
        Arc::clone(&log),
        Arc::clone(&appended),
        ForwarderOptions {
            min_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
            ..ForwarderOptions::new(&config, dir.path().join("dead-letter.lp"))
        },
    );
    let (stop, stopped) = watch::channel(false);
    let forwarding = tokio::spawn(forwarder.run(stopped));
    let (tx, rx) = mpsc::channel(64);
    let stage = tokio::spawn(append_samples(
        rx,
        Arc::clone(&log),
        appended,
        Duration::from_millis(50),
        Arc::new(retrofit_gateway::health::Health::default()),
    ));
    for i in 0..40 {
        tx.send(sample(i)).await.expect("stage runs");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while with_log(&log, |l| l.stats().appended).await < 40
        || with_log(&log, |l| l.pending()).await > 0
    {
        assert!(Instant::now() < deadline, "not delivered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(tx);
    let counts = stage.await.expect("stage ends");
    let _ = stop.send(true);
    let _ = forwarding.await;

    let scrape = parse(&handle.render());
    let value = |series: &str| {
        *scrape
            .get(series)
            .unwrap_or_else(|| panic!("{series} missing from the scrape:\n{}", handle.render()))
    };
    assert_eq!(counts.received, 40);
    assert_eq!(value("rgw_telemetry_received_samples_total"), 40.0);
    assert_eq!(
        value("rgw_telemetry_skipped_fields_total{reason=\"not_finite\"}"),
        40.0
    );
    assert_eq!(value("rgw_log_appended_records_total"), 40.0);
    assert_eq!(value("rgw_log_pending_records"), 0.0);
    assert_eq!(value("rgw_log_oldest_unsent_age_seconds"), 0.0);
    assert_eq!(value("rgw_influx_sent_lines_total"), 40.0);
    assert_eq!(value("rgw_influx_requests_total{class=\"5xx\"}"), 1.0);
    assert!(value("rgw_influx_requests_total{class=\"2xx\"}") >= 1.0);
    assert_eq!(value("rgw_influx_retries_total"), 1.0);
    assert_eq!(value("rgw_influx_retry_delay_seconds_count"), 1.0);
    assert_eq!(
        value("rgw_log_dropped_records_total{reason=\"max_size\",intentional=\"true\"}"),
        0.0
    );
    assert!(value("rgw_log_bytes") > 0.0);
}
