//! Self-monitoring: the `gateway` measurement and the self-alarms of the `gateway` rule pack, on
//! a gateway whose telemetry log is 85 % full and whose InfluxDB refuses the token: S1 (log
//! above 80 %) and S2 (credentials refused) are raised, and the sample carries the figures.

mod common;

use std::time::Duration;

use common::http_script::{status, ScriptedServer};
use retrofit_gateway::buffer::{LogOptions, SegmentLog};
use retrofit_gateway::config::{load, EnvOverlay};
use retrofit_gateway::pipeline::{Options, Pipeline};
use tokio::sync::mpsc;
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_log_and_a_refused_token_raise_s1_and_s2() {
    let influx = ScriptedServer::start(|_, _| status(401)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let token = dir.path().join("token");
    std::fs::write(&token, "stale-token").expect("token");
    std::fs::write(
        dir.path().join("gateway.toml"),
        format!(
            "[gateway]\nid = \"gw-self\"\nsite = \"幸福小区\"\ndata_dir = {data:?}\nprofile_dir = {profiles:?}\n\
             [outputs.influxdb]\nurl = \"{url}\"\napi = \"v2\"\norg = \"water\"\nbucket = \"community\"\ntoken_file = {token:?}\n\
             [buffer]\nsegment_size_mb = 1\nmax_size_mb = 2\n\
             [alarms]\nrule_packs = [{pack:?}]\n",
            data = dir.path(),
            profiles = root.join("config/profiles"),
            url = influx.url(),
            pack = root.join("config/rules/gateway.toml"),
        ),
    )
    .expect("config");
    let config =
        load(&dir.path().join("gateway.toml"), EnvOverlay::None).unwrap_or_else(|e| panic!("{e}"));
    // 1.7 MiB of unsent readings in a 2 MiB log: 85 %.
    {
        let options = LogOptions {
            segment_bytes: 1 << 20,
            max_bytes: 2 << 20,
            ..LogOptions::default()
        };
        let (mut log, _) = SegmentLog::open(&dir.path().join("telemetry"), options).expect("log");
        let line = format!(
            "pump_station,device=booster-1 outlet_pressure_mpa=0.47,pad=\"{}\"",
            "x".repeat(900)
        );
        while log.total_bytes() < 1_700 * 1024 {
            log.append(1_764_150_000_000, line.as_bytes())
                .expect("append");
        }
        log.sync().expect("sync");
    }

    let (listener, mut events) = mpsc::channel(64);
    let options = Options {
        alarm_listener: Some(listener),
        self_monitoring: Some(Duration::from_millis(300)),
        ..Options::default()
    };
    let pipeline = Pipeline::start(&config, options).expect("pipeline starts");
    let view = std::sync::Arc::clone(&pipeline.observed().view);
    let mut raised = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(raised.contains(&"S1".to_string()) && raised.contains(&"S2".to_string())) {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(e)) if e.firing => {
                assert_eq!(&*e.device, "gw-self");
                raised.push(e.rule.to_string());
            }
            Ok(Some(_)) => {}
            _ => panic!("raised only {raised:?}"),
        }
    }
    let sample = view.latest().remove("gw-self").expect("a gateway sample");
    assert_eq!(&*sample.measurement, "gateway");
    let field = |name: &str| sample.field(name).and_then(|v| v.as_f64());
    assert!(
        field("log_fill_pct").is_some_and(|p| (80.0..90.0).contains(&p)),
        "{sample:?}"
    );
    assert_eq!(field("influx_unauthorized"), Some(1.0));
    assert!(field("log_pending").is_some_and(|n| n > 1_000.0));
    assert!(field("oldest_unsent_s").is_some_and(|s| s > 0.0));
    assert_eq!(field("devices_total"), Some(0.0));
    assert!(field("clock_jump_s").is_some_and(|j| j.abs() < 1.0));
    assert!(field("clock_synchronised").is_some());
    pipeline.shutdown(Duration::from_secs(3)).await;
}
