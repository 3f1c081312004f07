//! The local HTTP endpoint of a gateway polling the simulated community and forwarding to a
//! scripted InfluxDB: `/health` turns 503 with the reason while InfluxDB fails and 200 when it
//! is back; `/metrics` is valid Prometheus text (checked by the prometheus-parse crate) with the
//! device and alarm figures; `/api/status` has the documented schema and lists a raised alarm;
//! the status page, its assets and the monthly report are served from the binary; today's KPIs
//! can be asked for (with the write header, once in ten seconds), and neither a foreign page's
//! simple POST nor a rebound host name gets through.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::example_site;
use common::http_script::{status, ScriptedServer};
use common::services::http;
use retrofit_gateway::config::{InfluxApi, InfluxOutput};
use retrofit_gateway::pipeline::{Options, Pipeline};
use retrofit_sim::faults::{Fault, FaultKind};
use serde_json::Value as Json;
use tokio::time::Instant;

struct Running {
    site: common::Site,
    pipeline: Pipeline,
    base: String,
    _data: tempfile::TempDir,
}

/// The example site polled, forwarded to `influx`, with the endpoint on a free port.
async fn start(
    influx: &str,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
) -> Running {
    let mut site = example_site().await;
    let data = tempfile::tempdir().expect("temp dir");
    let config = &mut site.config;
    config.gateway.gateway.data_dir = data.path().to_path_buf();
    config.gateway.outputs.line_protocol = None;
    config.gateway.outputs.influxdb = Some(InfluxOutput {
        org: Some("water".into()),
        bucket: Some("community".into()),
        flush_interval: retrofit_gateway::config::ConfigDuration::from_millis(200),
        ..InfluxOutput::new(influx, InfluxApi::V2)
    });
    config.gateway.mqtt_source = None;
    config.gateway.http.listen = "127.0.0.1:0".into();
    let options = Options {
        metrics,
        ..Options::default()
    };
    let pipeline = Pipeline::start(config, options).expect("pipeline starts");
    let address =
        retrofit_gateway::http::start_for(config, pipeline.observed(), pipeline.stopping())
            .await
            .expect("the endpoint starts");
    Running {
        site,
        pipeline,
        base: format!("http://{address}"),
        _data: data,
    }
}

impl Running {
    async fn get(&self, path: &str) -> (u16, String) {
        let response = http()
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("the endpoint answers");
        let code = response.status().as_u16();
        (code, response.text().await.expect("a body"))
    }

    async fn json(&self, path: &str) -> (u16, Json) {
        let (code, body) = self.get(path).await;
        (
            code,
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}")),
        )
    }

    /// Polls `path` until `done` holds for its (status, JSON), up to `bound`.
    async fn until(&self, path: &str, bound: Duration, done: impl Fn(u16, &Json) -> bool) -> Json {
        let deadline = Instant::now() + bound;
        loop {
            let (code, body) = self.json(path).await;
            if done(code, &body) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "{path} still {code} {body} after {bound:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn stop(self) {
        self.pipeline.shutdown(Duration::from_secs(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_503_with_the_reason_while_influxdb_fails_and_200_when_it_is_back() {
    let down = Arc::new(AtomicBool::new(true));
    let switch = Arc::clone(&down);
    let influx = ScriptedServer::start(move |_, _| {
        if switch.load(Ordering::SeqCst) {
            status(503)
        } else {
            status(204)
        }
    })
    .await;
    let running = start(&influx.url(), None).await;
    let unhealthy = running
        .until("/health", Duration::from_secs(20), |code, _| code == 503)
        .await;
    assert_eq!(unhealthy["status"], "unhealthy");
    let problem = &unhealthy["problems"][0];
    assert_eq!(problem["part"], "influxdb", "{unhealthy}");
    assert!(
        problem["problem"]
            .as_str()
            .is_some_and(|p| p.contains("HTTP 503")),
        "{unhealthy}"
    );
    down.store(false, Ordering::SeqCst);
    let healthy = running
        .until("/health", Duration::from_secs(30), |code, _| code == 200)
        .await;
    assert_eq!(
        healthy,
        serde_json::json!({ "status": "ok", "problems": [] })
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_prometheus_text_and_the_status_api_has_its_schema() {
    // As `run` installs it: every metric described, the build info set.
    let recorder =
        retrofit_gateway::metrics::install().expect("the only recorder in this test binary");
    let influx = ScriptedServer::start(|_, _| status(204)).await;
    let running = start(&influx.url(), Some(recorder)).await;
    let devices = running.site.device_ids();
    // Every device has reported, and the log has forwarded something.
    running
        .until("/api/status", Duration::from_secs(20), |_, s| {
            s["devices"].as_array().is_some_and(|d| {
                d.len() == devices.len() && d.iter().all(|d| d["state"] == "online")
            })
        })
        .await;
    running
        .site
        .community
        .inject(Fault::plant(FaultKind::PumpTrip));
    let status = running
        .until("/api/status", Duration::from_secs(20), |_, s| {
            // (A log busy with an append at that instant says only that: asked again.)
            s["log"].get("busy").is_none()
                && s["alarms"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|a| a["rule"] == "W13"))
        })
        .await;

    // The schema, field by field.
    let gateway = &status["gateway"];
    assert_eq!(gateway["id"], "shuocheng-xingfu-01");
    assert_eq!(gateway["site"], "幸福小区");
    assert!(gateway["version"].is_string() && gateway["uptime_s"].is_number());
    assert!(gateway["time_ns"].is_i64());
    assert!(gateway["clock_synchronised"].is_boolean() || gateway["clock_synchronised"].is_null());
    assert_eq!(status["healthy"], true, "{status}");
    assert_eq!(status["problems"], serde_json::json!([]));
    let buses = status["buses"].as_array().expect("buses");
    assert_eq!(buses.len(), 7);
    for bus in buses {
        assert!(bus["id"].is_string() && bus["transport"].is_string());
        assert!(bus["devices"].is_array() && bus["online"].is_u64());
    }
    for device in status["devices"].as_array().expect("devices") {
        assert!(devices.contains(&device["id"].as_str().expect("id").to_string()));
        assert!(device["bus"].is_string() && device["measurement"].is_string());
        assert!(device["last_sample_age_s"]
            .as_f64()
            .is_some_and(|a| (0.0..30.0).contains(&a)));
        let counters = device["counters"].as_object().expect("counters");
        for key in [
            "transactions",
            "exceptions",
            "timeouts",
            "link_errors",
            "decode_errors",
            "samples",
            "skipped_polls",
        ] {
            assert!(counters[key].is_u64(), "{key} in {device}");
        }
        // What adaptive reads avoid: null while the device refused nothing.
        assert!(device["adapted"].is_null(), "{device}");
        assert!(
            device["values"].as_object().is_some_and(|v| !v.is_empty()),
            "{device}"
        );
    }
    let alarm = status["alarms"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["rule"] == "W13"))
        .expect("W13");
    assert_eq!(alarm["device"], "booster-1");
    assert_eq!(alarm["severity"], "crit");
    assert!(alarm["since_ns"].is_i64() && alarm["flapping"].is_boolean());
    // For the person reading the page: the place, the rule's title and what the plan requires.
    assert!(
        alarm["place"]
            .as_str()
            .is_some_and(|p| p.contains("高区加压泵房")),
        "{alarm}"
    );
    assert!(
        alarm["title"].as_str().is_some_and(|t| !t.is_empty()),
        "{alarm}"
    );
    assert!(
        alarm["requirement"].as_str().is_some_and(|t| !t.is_empty()),
        "{alarm}"
    );
    let log = &status["log"];
    assert_eq!(log["max_bytes"], 1024u64 << 20);
    assert!(log["bytes"].is_u64() && log["pending_records"].is_u64());
    assert!(log.get("oldest_unsent_age_s").is_some());
    assert!(status["mqtt"].is_null());

    // /metrics: valid text format, with the device, alarm and log figures.
    let (code, text) = running.get("/metrics").await;
    assert_eq!(code, 200);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("not Prometheus text: {e}\n{text}"));
    let sample = |name: &str, label: Option<(&str, &str)>| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
    };
    assert_eq!(
        sample("rgw_device_online", Some(("device", "dma-flow"))),
        Some(1.0)
    );
    assert_eq!(
        sample("rgw_alarms_active", Some(("severity", "crit"))),
        Some(1.0)
    );
    assert!(
        sample("rgw_device_samples_total", Some(("device", "booster-1"))).is_some_and(|v| v > 0.0)
    );
    assert!(sample("rgw_log_bytes", None).is_some());
    assert_eq!(
        sample(
            "rgw_build_info",
            Some(("version", env!("CARGO_PKG_VERSION")))
        ),
        Some(1.0)
    );
    // Every metric has its # HELP line (histograms under their base name).
    for metric in scrape.samples.iter().map(|s| s.metric.as_str()) {
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| metric.strip_suffix(suffix))
            .filter(|base| scrape.docs.contains_key(*base))
            .unwrap_or(metric);
        assert!(scrape.docs.contains_key(base), "no HELP for {metric}");
    }
    assert!(sample("rgw_influx_sent_lines_total", None).is_some_and(|v| v > 0.0));

    // The page and its assets come from the binary.
    for (path, kind, needle) in [
        ("/", "text/html", "设备 Devices"),
        ("/app.js", "text/javascript", "/api/status"),
        ("/style.css", "text/css", "--crit"),
        ("/report", "text/html", "Monthly community report"),
        ("/api/kpi", "application/json", "["),
    ] {
        let response = http()
            .get(format!("{}{path}", running.base))
            .send()
            .await
            .expect("served");
        let content_type = response.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .to_string();
        assert!(content_type.starts_with(kind), "{path}: {content_type}");
        assert!(
            response.text().await.expect("body").contains(needle),
            "{path}"
        );
    }
    // A month that is none is refused; today's KPIs are written on request.
    let (code, body) = running.get("/report/2025-13").await;
    assert_eq!(code, 400, "{body}");
    let publish = format!("{}/api/kpi/publish", running.base);
    let response = http()
        .post(&publish)
        .header("X-Retrofit-Gateway", "1")
        .send()
        .await
        .expect("served");
    assert_eq!(response.status().as_u16(), 202);
    // Asked again at once: refused for a while, so a flood cannot keep the stage writing.
    let again = http()
        .post(&publish)
        .header("X-Retrofit-Gateway", "1")
        .send()
        .await
        .expect("served");
    assert_eq!(again.status().as_u16(), 429);
    assert_eq!(again.headers()["retry-after"], "10");
    // What a foreign web page can send without a preflight: a text/plain POST, no custom header.
    let simple = http()
        .post(&publish)
        .header("Origin", "http://evil.example")
        .header("Content-Type", "text/plain")
        .body("x")
        .send()
        .await
        .expect("served");
    assert_eq!(simple.status().as_u16(), 403);
    // DNS rebinding: the attacker's name in Host, on a page that looks same-origin to the browser.
    let rebound = http()
        .get(format!("{}/api/status", running.base))
        .header("Host", "evil.example")
        .send()
        .await
        .expect("served");
    assert_eq!(rebound.status().as_u16(), 421);
    running.stop().await;
}
