//! Store-and-forward against real servers started by `scripts/test.sh`: InfluxDB 1.x through the
//! v1 `/write` API and VictoriaMetrics through `/api/v2/write`. Every sample the simulated
//! community produced must arrive, counted by querying the server; an outage of the server must
//! leave no gap in any series.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::services::{
    always_present_fields, eventually, influx_count, influxql, service_url, victoria_timestamps,
    OwnVictoria,
};
use common::{example_site, Site};
use retrofit_gateway::config::LoadedConfig;
use retrofit_gateway::config::{ConfigDuration, InfluxApi, InfluxOutput};
use retrofit_gateway::pipeline::{Options, Pipeline};
use retrofit_gateway::sources::modbus::status::DeviceStatus;

const DATABASE: &str = "retrofit_tests";

fn influx(url: String, api: InfluxApi) -> InfluxOutput {
    InfluxOutput {
        org: Some("water".into()),
        bucket: Some("community".into()),
        database: Some(DATABASE.into()),
        timeout: ConfigDuration::from_millis(2000),
        flush_interval: ConfigDuration::from_millis(500),
        ..InfluxOutput::new(url, api)
    }
}

/// A gateway id no other test run shares, so counts only see this run's lines.
fn unique_gateway(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("it-{name}-{}-{nanos}", std::process::id())
}

struct Running {
    pipeline: Pipeline,
    config: LoadedConfig,
    _data: tempfile::TempDir,
}

fn start(site: &mut Site, name: &str, output: InfluxOutput) -> (Running, String) {
    let data = tempfile::tempdir().expect("temp dir");
    let id = unique_gateway(name);
    let config = &mut site.config.gateway;
    config.gateway.id = id.clone();
    config.gateway.data_dir = data.path().to_path_buf();
    config.outputs.line_protocol = None;
    config.outputs.influxdb = Some(output);
    let pipeline = Pipeline::start(&site.config, Options::default()).expect("pipeline starts");
    (
        Running {
            pipeline,
            config: site.config.clone(),
            _data: data,
        },
        id,
    )
}

impl Running {
    /// Stops polling, waits until everything accepted is delivered, stops; returns what each
    /// device produced.
    async fn stop_when_delivered(self, bound: Duration) -> BTreeMap<String, DeviceStatus> {
        let status = std::sync::Arc::clone(&self.pipeline.observed().status);
        self.pipeline.shutdown(Duration::from_secs(5)).await;
        common::deliver_what_is_left(&self.config, bound).await;
        status.snapshot()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sample_arrives_in_influxdb_1_through_the_v1_api() {
    let Some(url) = service_url("RGW_TEST_INFLUXDB1_URL") else {
        return;
    };
    influxql(&url, DATABASE, &format!("CREATE DATABASE {DATABASE}")).await;
    let mut site = example_site().await;
    let (pipeline, gateway) = start(&mut site, "influx1", influx(url.clone(), InfluxApi::V1));
    tokio::time::sleep(Duration::from_secs(6)).await;
    let produced = pipeline.stop_when_delivered(Duration::from_secs(30)).await;

    for (device, (measurement, field)) in always_present_fields(&site.config) {
        let expected = produced[&device].samples;
        assert!(expected >= 2, "{device} produced {expected}");
        let arrived = eventually(expected, Duration::from_secs(10), || {
            influx_count(&url, DATABASE, &measurement, &field, &gateway, &device)
        })
        .await;
        assert_eq!(arrived, expected, "{device}: {measurement}.{field}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sample_arrives_in_victoria_metrics_through_the_v2_api() {
    let Some(url) = service_url("RGW_TEST_VICTORIA_URL") else {
        return;
    };
    let mut site = example_site().await;
    let (pipeline, gateway) = start(&mut site, "vm", influx(url.clone(), InfluxApi::V2));
    tokio::time::sleep(Duration::from_secs(6)).await;
    let produced = pipeline.stop_when_delivered(Duration::from_secs(30)).await;

    for (device, (measurement, field)) in always_present_fields(&site.config) {
        let expected = produced[&device].samples;
        assert!(expected >= 2, "{device} produced {expected}");
        let series = format!("{measurement}_{field}");
        let arrived = eventually(expected, Duration::from_secs(15), || async {
            victoria_timestamps(&url, &series, &gateway, &device)
                .await
                .len() as u64
        })
        .await;
        assert_eq!(arrived, expected, "{device}: {series}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_of_the_server_leaves_no_gap_in_any_series() {
    let Some(binary) = service_url("RGW_TEST_VICTORIA_BIN") else {
        return;
    };
    let outage = std::env::var("RGW_TEST_OUTAGE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let mut vm = OwnVictoria::start(binary).await;
    let mut site = example_site().await;
    let (pipeline, gateway) = start(&mut site, "outage", influx(vm.url(), InfluxApi::V2));
    tokio::time::sleep(Duration::from_secs(3)).await;
    vm.stop();
    tokio::time::sleep(Duration::from_secs(outage)).await;
    vm.restart().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let produced = pipeline.stop_when_delivered(Duration::from_secs(90)).await;

    let intervals: BTreeMap<String, Duration> = site
        .config
        .gateway
        .device
        .iter()
        .map(|d| (d.id.clone(), d.interval.get()))
        .collect();
    for (device, (measurement, field)) in always_present_fields(&site.config) {
        let expected = produced[&device].samples;
        let series = format!("{measurement}_{field}");
        let mut stamps = Vec::new();
        let arrived = eventually(expected, Duration::from_secs(15), || {
            let (url, series, gateway, device) =
                (vm.url(), series.clone(), gateway.clone(), device.clone());
            async move {
                victoria_timestamps(&url, &series, &gateway, &device)
                    .await
                    .len() as u64
            }
        })
        .await;
        assert_eq!(
            arrived, expected,
            "{device}: {series} after a {outage} s outage"
        );
        stamps.extend(victoria_timestamps(&vm.url(), &series, &gateway, &device).await);
        // No gap: consecutive samples are about one interval apart all the way through.
        let limit = (intervals[&device].as_millis() as i64) * 2 + 500;
        for pair in stamps.windows(2) {
            assert!(
                pair[1] - pair[0] <= limit,
                "{device}: gap of {} ms in {series}",
                pair[1] - pair[0]
            );
        }
    }
}

/// The InfluxQL dashboards (`deploy/central/grafana/dashboards-influxql/`, made by
/// `scripts/influxql-dashboards.py`) run on InfluxDB 1.x as Grafana sends them: every query is
/// accepted and, over one point of each measurement it reads (with the tags it filters on),
/// returns data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_influxql_dashboard_query_runs_on_influxdb_1_and_finds_its_data() {
    let Some(url) = service_url("RGW_TEST_INFLUXDB1_URL") else {
        return;
    };
    let db = "rgw_dashboards";
    influxql(&url, db, &format!("CREATE DATABASE {db}")).await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/central/grafana/dashboards-influxql");
    let mut queries = Vec::new();
    for entry in std::fs::read_dir(&root).expect("the InfluxQL dashboards") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("readable");
        let dashboard: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        for panel in dashboard["panels"].as_array().expect("panels") {
            for target in panel["targets"].as_array().expect("targets") {
                queries.push(target["query"].as_str().expect("a query").to_string());
            }
        }
    }
    assert!(queries.len() >= 39, "{} queries", queries.len());
    // One point per query: its measurement, the fields it selects, the tags it filters on.
    let now_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    let mut lines = String::new();
    for query in &queries {
        let (select, rest) = query.split_once(" FROM \"").expect("a FROM");
        let measurement = rest.split('"').next().expect("a measurement");
        let mut tags = vec![
            ("site".to_string(), "s".to_string()),
            ("device".to_string(), "d".to_string()),
            ("subject".to_string(), "x".to_string()),
            ("rule".to_string(), "r".to_string()),
            ("severity".to_string(), "warn".to_string()),
        ];
        for filter in rest.split(" AND \"").skip(1) {
            if let Some((key, value)) = filter.split_once("\" = '") {
                tags.push((
                    key.to_string(),
                    value.split('\'').next().unwrap_or("").to_string(),
                ));
            }
        }
        let fields: Vec<String> = select
            .split('"')
            .skip(1)
            .step_by(2)
            .filter(|f| !["device", "rule", "severity"].contains(f))
            .map(|f| format!("{f}=1"))
            .collect();
        let tags: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        lines.push_str(&format!(
            "{measurement},{} {} {now_ns}\n",
            tags.join(","),
            fields.join(",")
        ));
    }
    let written = common::services::http()
        .post(format!("{url}/write?db={db}"))
        .body(lines)
        .send()
        .await
        .expect("InfluxDB answers");
    assert!(written.status().is_success(), "{:?}", written.text().await);
    for query in &queries {
        let sent = query
            .replace("$timeFilter", "time > now() - 1h")
            .replace("$site", ".*")
            .replace("$__interval", "1m");
        let answer = influxql(&url, db, &sent).await;
        let result = &answer["results"][0];
        assert!(result.get("error").is_none(), "{sent}: {answer}");
        // A moving average over 14 days needs 14 days of points; one point gives none.
        if !sent.contains("moving_average") {
            assert!(
                result["series"].as_array().is_some_and(|s| !s.is_empty()),
                "{sent}: no data in {answer}"
            );
        }
    }
}
