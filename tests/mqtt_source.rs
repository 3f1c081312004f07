//! MQTT ingestion against a real Mosquitto (started by `scripts/test.sh`): the simulated gas
//! regulator RTUs, valve-well sensors and room thermometers arrive as samples with exactly the
//! values and timestamps they published, and their faults raise G1, G2, G4, G5, W19, W20 and H1;
//! hand-written payloads of DOMAIN.md §3.9–3.10 and a DTU publishing Neuron's format arrive with
//! their values and timestamps, and the gas, well and room rules fire on them; a corpus of malformed and hostile payloads is counted
//! message by message without breaking the connection. With a broker of the test's own: a restart
//! of the broker is survived with backoff and a new subscription, and TLS works with the broker's
//! CA.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::expect_event;
use common::hostile::Expect;
use common::mqtt::{host_port, publisher, unique, OwnBroker};
use common::services::service_url;
use retrofit_gateway::config::{
    load, BrokerSettings, ConfigDuration, EnvOverlay, LoadedConfig, MqttTls,
};
use retrofit_gateway::model::{unix_nanos, Sample, Severity};
use retrofit_gateway::pipeline::{Options, Pipeline};
use retrofit_gateway::sources::mqtt::IngestStats;
use rumqttc::{AsyncClient, PublishOptions};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The gateway config: four mappings under `prefix` on the broker at `addr`, the water, gas and
/// heating packs, and `extra` keys in `[mqtt_source]` (credentials, TLS).
fn config(dir: &Path, addr: &str, prefix: &str, extra: &str) -> LoadedConfig {
    let (host, port) = host_port(addr);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let pack = |name: &str| root.join("config/rules").join(name);
    let text = format!(
        r#"[gateway]
id = "gw-mqtt"
site = "幸福小区"
data_dir = {data:?}
profile_dir = {profiles:?}

[alarms]
rule_packs = [{water:?}, {gas:?}, {heating:?}]

[mqtt_source]
host = "{host}"
port = {port}
client_id = "{prefix}"
{extra}

[[mqtt_source.mapping]]
topic = "{prefix}/gas/+/telemetry"
format = "flat"
measurement = "gas_regulator"
device_pattern = "GRB-*"
devices = ["probe"]
device_pointer = "/dev"
time_pointer = "/ts"
field = [
  {{ name = "p_in_mpa", from = "/p_in_mpa" }},
  {{ name = "p_out_kpa", from = "/p_out_kpa" }},
  {{ name = "slam_shut", from = "/slam_shut" }},
  {{ name = "door", from = "/door" }},
  {{ name = "lel_pct", from = "/lel_pct" }},
  {{ name = "batt_v", from = "/batt_v" }},
]

[[mqtt_source.mapping]]
topic = "{prefix}/well/status/+"
format = "flat"
measurement = "valve_well"
device_pattern = "well_*"
device_level = 3
time_pointer = "/ts"
field = [
  {{ name = "water", from = "/water" }},
  {{ name = "tilt_deg", from = "/tilt" }},
  {{ name = "battery_pct", from = "/battery" }},
]

[[mqtt_source.mapping]]
topic = "{prefix}/room/+"
format = "flat"
measurement = "room"
device_pattern = "room_*"
device_pointer = "/device_id"
time_pointer = "/ts"
field = [{{ name = "t_c", from = "/t_c" }}, {{ name = "rh_pct", from = "/rh" }}]

[[mqtt_source.mapping]]
topic = "{prefix}/neuron/+/modbus/+"
format = "neuron"
measurement = "dtu_meter"
device_pattern = "*"
tags = {{ source = "neuron" }}
field = [{{ name = "supply_temp_c", from = "t_supply", scale = 0.1 }}]
"#,
        data = dir,
        profiles = root.join("config/profiles"),
        water = pack("water.toml"),
        gas = pack("gas.toml"),
        heating = pack("heating.toml"),
    );
    let file = dir.join("gateway.toml");
    std::fs::write(&file, text).expect("config written");
    load(&file, EnvOverlay::None).unwrap_or_else(|e| panic!("{e}"))
}

struct Running {
    pipeline: Pipeline,
    samples: mpsc::Receiver<Sample>,
    events: mpsc::Receiver<retrofit_gateway::model::AlarmEvent>,
}

impl Running {
    /// What the MQTT source received.
    fn ingest_stats(&self) -> Arc<IngestStats> {
        let observed = self.pipeline.observed();
        Arc::clone(observed.mqtt.as_ref().expect("an MQTT source"))
    }
}

async fn start(config: &LoadedConfig) -> Running {
    start_holding(config, None).await
}

/// [`start`], with the samples of device `held` handed to the test unsettled (the test decides
/// whether they were stored).
async fn start_holding(config: &LoadedConfig, held: Option<&'static str>) -> Running {
    let (tap, mut stored) = mpsc::channel::<Sample>(4096);
    let (to_test, samples) = mpsc::channel(4096);
    // The test plays the last output: a sample it receives counts as stored, so the source
    // acknowledges its message (a receipt dropped unsettled would make it reconnect).
    tokio::spawn(async move {
        while let Some(mut sample) = stored.recv().await {
            if held != Some(&*sample.device) {
                sample.receipt.settle(true);
            }
            if to_test.send(sample).await.is_err() {
                return;
            }
        }
    });
    let (listener, events) = mpsc::channel(1024);
    let options = Options {
        tap: Some(tap),
        alarm_listener: Some(listener),
        ..Options::default()
    };
    let pipeline = Pipeline::start(config, options).expect("pipeline starts");
    Running {
        pipeline,
        samples,
        events,
    }
}

/// Waits for a sample of `device`, skipping others, up to 15 s.
async fn sample_of(samples: &mut mpsc::Receiver<Sample>, device: &str) -> Sample {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match tokio::time::timeout_at(deadline, samples.recv()).await {
            Ok(Some(s)) if &*s.device == device => return s,
            Ok(Some(_)) => {}
            Ok(None) => panic!("sample channel closed"),
            Err(_) => panic!("no sample from {device} within 15 s"),
        }
    }
}

/// Publishes a probe until its sample arrives: the gateway has subscribed.
async fn until_subscribed(client: &AsyncClient, prefix: &str, run: &mut Running) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        client
            .publish(
                format!("{prefix}/gas/probe/telemetry"),
                r#"{"dev":"probe","p_out_kpa":2.4}"#,
                PublishOptions::at_least_once(),
            )
            .await
            .expect("queued");
        if let Ok(Some(_)) =
            tokio::time::timeout(Duration::from_millis(300), run.samples.recv()).await
        {
            return;
        }
        assert!(Instant::now() < deadline, "the gateway never subscribed");
    }
}

fn now_s() -> i64 {
    unix_nanos(SystemTime::now()) / 1_000_000_000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_devices_arrive_with_their_values_and_times_and_their_rules_fire() {
    let Some(addr) = service_url("RGW_TEST_MQTT_ADDR") else {
        return;
    };
    let prefix = unique("ingest");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config(dir.path(), &addr, &prefix, "");
    let mut run = start(&config).await;
    let (client, driver) = publisher(&addr).await;
    until_subscribed(&client, &prefix, &mut run).await;
    let publish = |topic: String, payload: String| {
        let client = client.clone();
        async move {
            client
                .publish(topic, payload, PublishOptions::at_least_once())
                .await
                .expect("queued")
        }
    };
    let gas = |dev: &str, ts: i64, p_out: f64, lel: f64| {
        publish(
            format!("{prefix}/gas/{dev}/telemetry"),
            format!(
                r#"{{"ts": {ts}, "dev": "{dev}", "p_in_mpa": 0.186, "p_out_kpa": {p_out}, "t_c": 4.2,
                "slam_shut": 0, "relief_open": 0, "door": 0, "lel_pct": {lel}, "batt_v": 3.58, "rssi": -79, "alarm": []}}"#
            ),
        )
    };
    let t0 = now_s() - 1200;

    // The DOMAIN.md §3.9 message, value by value and with its own timestamp.
    gas("GRB-01", t0, 2.46, 0.0).await;
    let first = sample_of(&mut run.samples, "GRB-01").await;
    assert_eq!(&*first.measurement, "gas_regulator");
    assert_eq!(first.time_ns, t0 * 1_000_000_000);
    let value = |s: &Sample, f: &str| s.field(f).and_then(|v| v.as_f64());
    assert_eq!(value(&first, "p_out_kpa"), Some(2.46));
    assert_eq!(value(&first, "p_in_mpa"), Some(0.186));
    assert_eq!(value(&first, "batt_v"), Some(3.58));
    assert_eq!(value(&first, "slam_shut"), Some(0.0));
    assert_eq!(first.fields.len(), 6);
    assert!(first
        .tags
        .iter()
        .any(|(k, v)| k == "site" && v == "幸福小区"));

    // G5: 30 % LEL raises at once and clears when the gas is gone.
    gas("GRB-01", t0 + 10, 2.46, 30.0).await;
    let raised = expect_event(
        &mut run.events,
        "GRB-01",
        "G5",
        true,
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(raised.severity, Severity::Crit);
    gas("GRB-01", t0 + 20, 2.46, 0.0).await;
    expect_event(
        &mut run.events,
        "GRB-01",
        "G5",
        false,
        Duration::from_secs(15),
    )
    .await;

    // G1: outlet pressure 1.2 kPa held for 60 s, then back to 2.4 kPa for 60 s.
    for (dt, p) in [(30, 1.2), (60, 1.2), (91, 1.2), (120, 2.4), (181, 2.4)] {
        gas("GRB-01", t0 + dt, p, 0.0).await;
    }
    let raised = expect_event(
        &mut run.events,
        "GRB-01",
        "G1",
        true,
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(raised.severity, Severity::Warn);
    assert_eq!(
        raised.time_ns,
        (t0 + 91) * 1_000_000_000,
        "decided on the payload's clock"
    );
    expect_event(
        &mut run.events,
        "GRB-01",
        "G1",
        false,
        Duration::from_secs(15),
    )
    .await;

    // G2: 3.2 kPa for 10 s on another regulator.
    for dt in [0, 5, 11] {
        gas("GRB-02", t0 + dt, 3.2, 0.0).await;
    }
    let raised = expect_event(
        &mut run.events,
        "GRB-02",
        "G2",
        true,
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(raised.severity, Severity::Warn);

    // W19: water in a valve well for a minute; W20: a cover tilted 22° for 3 s.
    let well = |id: &str, ts: i64, water: u8, tilt: f64| {
        publish(
            format!("{prefix}/well/status/{id}"),
            format!(
                r#"{{"device_id": "{id}", "tilt": {tilt}, "water": {water}, "battery": 89, "status": "abnormal", "ts": {ts}}}"#
            ),
        )
    };
    for dt in [0, 30, 61] {
        well("well_07", t0 + dt, 1, 0.5).await;
    }
    expect_event(
        &mut run.events,
        "well_07",
        "W19",
        true,
        Duration::from_secs(15),
    )
    .await;
    for dt in [0, 1, 3] {
        well("well_08", t0 + dt, 0, 22.4).await;
    }
    expect_event(
        &mut run.events,
        "well_08",
        "W20",
        true,
        Duration::from_secs(15),
    )
    .await;

    // H1: a sample flat at 17.4 °C for more than two hours (a report every 15 minutes).
    let start = now_s() - 9000;
    for k in 0..=10 {
        publish(
            format!("{prefix}/room/11-2-0901"),
            format!(r#"{{"device_id": "room_11-2-0901", "t_c": 17.4, "rh": 31, "battery": 95, "ts": {}}}"#, start + k * 900),
        )
        .await;
    }
    let raised = expect_event(
        &mut run.events,
        "room_11-2-0901",
        "H1",
        true,
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(raised.severity, Severity::Warn);

    // A DTU publishing Neuron's values format: device from `node`, time in milliseconds.
    publish(
        format!("{prefix}/neuron/dtu-7/modbus/g1"),
        format!(
            r#"{{"timestamp": {}, "node": "dtu-7", "group": "g1", "values": {{"t_supply": 652}}}}"#,
            t0 * 1000 + 250
        ),
    )
    .await;
    let dtu = sample_of(&mut run.samples, "dtu-7").await;
    assert_eq!(dtu.time_ns, t0 * 1_000_000_000 + 250_000_000);
    assert!((value(&dtu, "supply_temp_c").expect("t_supply") - 65.2).abs() < 1e-9);
    assert!(dtu.tags.iter().any(|(k, v)| k == "source" && v == "neuron"));

    driver.abort();
    run.pipeline.shutdown(Duration::from_secs(4)).await;
}

/// The hostile corpus (`common::hostile::cases`, over a hundred topics and payloads) through a
/// real broker into the pipeline, one message at a time: each is dropped and counted, refused
/// for its device id and counted, never delivered (a topic outside every filter), or arrives as
/// exactly the sample it describes; no sample ever speaks for a polled device, and the
/// connection is never dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hostile_message_meets_its_expected_outcome_and_no_polled_device_is_spoken_for() {
    let Some(addr) = service_url("RGW_TEST_MQTT_ADDR") else {
        return;
    };
    let prefix = unique("hostile");
    let dir = tempfile::tempdir().expect("temp dir");
    // Two polled devices on a bus nobody answers: no sample of theirs can come from polling.
    let polled = "[[bus]]\nid = \"pump-room\"\ntransport = \"tcp\"\naddress = \"127.0.0.1:9\"\n\
                  [[device]]\nid = \"booster-1\"\nbus = \"pump-room\"\nunit = 1\nprofile = \"booster-pump-cdab\"\ninterval = \"1m\"\n\
                  [[device]]\nid = \"prv-outlet\"\nbus = \"pump-room\"\nunit = 2\nprofile = \"pressure-transmitter\"\ninterval = \"1m\"\n";
    let config = config(dir.path(), &addr, &prefix, polled);
    let mut run = start(&config).await;
    let stats: Arc<_> = run.ingest_stats();
    let (client, driver) = publisher(&addr).await;
    until_subscribed(&client, &prefix, &mut run).await;
    let cases = common::hostile::cases();
    assert!(cases.len() >= 100, "{} cases", cases.len());
    let marker_topic = format!("{prefix}/gas/marker/telemetry");
    let mut outcomes = Vec::new();
    for (n, case) in cases.iter().enumerate() {
        let topic = format!("{prefix}/{}", case.topic);
        let (errors, refused) = (stats.errors_on(&topic), stats.refused());
        client
            .publish(
                topic.clone(),
                case.payload.clone(),
                PublishOptions::at_least_once(),
            )
            .await
            .expect("queued");
        // One publisher, one subscriber: the broker hands them on in order, so once the
        // marker is a sample, the case has been dealt with.
        let marker = format!("GRB-marker-{n}");
        client
            .publish(
                marker_topic.clone(),
                format!(r#"{{"dev":"{marker}","p_out_kpa":1}}"#),
                PublishOptions::at_least_once(),
            )
            .await
            .expect("queued");
        let mut before_marker = Vec::new();
        loop {
            let sample = sample_any(&mut run.samples).await;
            if *sample.device == *marker {
                break;
            }
            before_marker.push(sample);
        }
        assert!(
            before_marker
                .iter()
                .all(|s| !["booster-1", "prv-outlet"].contains(&&*s.device)),
            "{}: a sample speaks for a polled device",
            case.what
        );
        let counted = stats.errors_on(&topic) - errors;
        let refusals = stats.refused() - refused;
        let outcome = match &case.expect {
            Expect::Dropped => before_marker.is_empty() && counted == 1 && refusals == 0,
            Expect::Refused => before_marker.is_empty() && counted == 1 && refusals == 1,
            Expect::NotSubscribed => before_marker.is_empty() && counted == 0 && refusals == 0,
            Expect::Sample {
                device,
                fields,
                flagged,
            } => {
                let got: Vec<(&str, f64)> = before_marker
                    .first()
                    .map(|s| {
                        s.fields
                            .iter()
                            .map(|f| (&*f.name, f.value.as_f64().unwrap_or(f64::NAN)))
                            .collect()
                    })
                    .unwrap_or_default();
                before_marker.len() == 1
                    && *before_marker[0].device == **device
                    && got == *fields
                    && counted == u64::from(*flagged)
                    && refusals == 0
            }
        };
        println!(
            "{:<40} {:<12} samples {} errors {counted} refused {refusals}",
            case.what,
            match case.expect {
                Expect::Dropped => "dropped",
                Expect::Refused => "refused",
                Expect::NotSubscribed => "unsubscribed",
                Expect::Sample { .. } => "sample",
            },
            before_marker.len()
        );
        outcomes.push((case.what.clone(), outcome, before_marker));
    }
    let wrong: Vec<_> = outcomes.iter().filter(|(_, ok, _)| !ok).collect();
    assert!(
        wrong.is_empty(),
        "{} of {} not as expected: {wrong:#?}",
        wrong.len(),
        outcomes.len()
    );
    let (_, _, attempts, connections) = stats.totals();
    assert_eq!(
        (attempts, connections),
        (1, 1),
        "no reconnect on any message"
    );
    driver.abort();
    run.pipeline.shutdown(Duration::from_secs(4)).await;
}

/// The next sample of any device, up to 15 s.
async fn sample_any(samples: &mut mpsc::Receiver<Sample>) -> Sample {
    match tokio::time::timeout(Duration::from_secs(15), samples.recv()).await {
        Ok(Some(sample)) => sample,
        Ok(None) => panic!("sample channel closed"),
        Err(_) => panic!("no sample within 15 s"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_is_survived_with_backoff_and_a_new_subscription() {
    let Some(binary) = service_url("RGW_TEST_MOSQUITTO_BIN") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let mut broker = OwnBroker::new(binary, dir.path(), "");
    broker.start().await;
    let prefix = unique("restart");
    let config = config(dir.path(), &broker.addr(), &prefix, "");
    let mut run = start(&config).await;
    let stats = run.ingest_stats();
    let (client, driver) = publisher(&broker.addr()).await;
    until_subscribed(&client, &prefix, &mut run).await;
    driver.abort();

    // Down for 6 s: the broker forgets every session and subscription (no persistence).
    broker.stop();
    let (_, _, before, _) = stats.totals();
    tokio::time::sleep(Duration::from_secs(6)).await;
    broker.start().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while stats.totals().3 < 2 {
        assert!(
            Instant::now() < deadline,
            "never reconnected: {:?}",
            stats.totals()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, _, after, _) = stats.totals();
    // Delays of at least 0.5, 1, 2, 4 … s: at most 5 attempts fit in the outage, plus the one
    // that succeeded. A loop without backoff would make hundreds.
    let attempts = after - before;
    eprintln!("connection attempts over a 6 s outage: {attempts}");
    assert!((2..=6).contains(&attempts), "{attempts} attempts");
    // Subscribed again: a new message arrives.
    let (client, driver) = publisher(&broker.addr()).await;
    until_subscribed(&client, &prefix, &mut run).await;
    driver.abort();
    run.pipeline.shutdown(Duration::from_secs(4)).await;
}

/// A CA and a server certificate for 127.0.0.1 made with openssl in `dir`: (CA file, the lines
/// a Mosquitto listener needs).
fn certificates(dir: &Path) -> (std::path::PathBuf, String) {
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs (scripts/test.sh installs it)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").expect("ext file");
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=rgw test CA",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
    let listener = format!(
        "cafile {}\ncertfile {}\nkeyfile {}\n",
        dir.join("ca.pem").display(),
        dir.join("server.pem").display(),
        dir.join("server.key").display()
    );
    (dir.join("ca.pem"), listener)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingests_over_tls_verified_against_the_brokers_ca() {
    let Some(binary) = service_url("RGW_TEST_MOSQUITTO_BIN") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let (ca, listener) = certificates(dir.path());
    let mut broker = OwnBroker::new(binary, dir.path(), &listener);
    broker.start().await;
    let prefix = unique("tls");
    let tls = format!("tls = {{ ca_file = {ca:?} }}");
    let trusting = config(dir.path(), &broker.addr(), &prefix, &tls);
    let mut run = start(&trusting).await;
    let stats = run.ingest_stats();
    let (client, driver) = tls_publisher(&broker.addr(), &ca);
    until_subscribed(&client, &prefix, &mut run).await;
    assert_eq!(stats.totals().3, 1);
    driver.abort();
    run.pipeline.shutdown(Duration::from_secs(4)).await;

    // A gateway that trusts another CA is refused by its own verification.
    let other = tempfile::tempdir().expect("temp dir");
    let (other_ca, _) = certificates(other.path());
    let tls = format!("tls = {{ ca_file = {other_ca:?} }}");
    let wrong = config(other.path(), &broker.addr(), &unique("tls-wrong"), &tls);
    let run = start(&wrong).await;
    let stats = run.ingest_stats();
    let deadline = Instant::now() + Duration::from_secs(15);
    while stats.totals().2 < 2 {
        assert!(
            Instant::now() < deadline,
            "no second attempt: {:?}",
            stats.totals()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        stats.totals().3,
        0,
        "connected to a broker it should not trust"
    );
    run.pipeline.shutdown(Duration::from_secs(4)).await;
}

/// A publishing client over TLS trusting `ca`.
fn tls_publisher(addr: &str, ca: &Path) -> (AsyncClient, tokio::task::JoinHandle<()>) {
    let (host, port) = host_port(addr);
    let tls = MqttTls {
        ca_file: Some(ca.to_path_buf()),
        client_cert_file: None,
        client_key_file: None,
    };
    let options = retrofit_gateway::mqtt::options(&BrokerSettings {
        host: &host,
        port,
        client_id: unique("tls-pub"),
        username: None,
        password_file: None,
        password_env: None,
        keep_alive: ConfigDuration::from_millis(30_000),
        tls: Some(&tls),
    })
    .expect("TLS options");
    let (client, mut eventloop) = AsyncClient::builder(options).capacity(64).build();
    let task = tokio::spawn(async move {
        loop {
            if let Err(e) = eventloop.poll().await {
                eprintln!("TLS publisher: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });
    (client, task)
}

/// Collects alarm events until every one of `wanted` (device, rule, firing) has been seen, up
/// to `bound`; returns all collected so far.
async fn until_events(
    events: &mut mpsc::Receiver<retrofit_gateway::model::AlarmEvent>,
    seen: &mut Vec<retrofit_gateway::model::AlarmEvent>,
    wanted: &[(&str, &str, bool)],
    bound: Duration,
) {
    let deadline = Instant::now() + bound;
    loop {
        let missing: Vec<_> = wanted
            .iter()
            .filter(|(d, r, f)| {
                !seen
                    .iter()
                    .any(|e| &*e.device == *d && &*e.rule == *r && e.firing == *f)
            })
            .collect();
        if missing.is_empty() {
            return;
        }
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(e)) => seen.push(e),
            Ok(None) => panic!("event channel closed"),
            Err(_) => panic!("within {bound:?}, not seen: {missing:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_devices_arrive_as_published_and_their_faults_raise_their_rules() {
    use retrofit_sim::faults::{Fault, FaultKind};
    let Some(addr) = service_url("RGW_TEST_MQTT_ADDR") else {
        return;
    };
    let (host, port) = host_port(&addr);
    // Two levels, as demo.toml's "site/xingfu": the well mapping takes the device from level 4.
    let prefix = format!("site/{}", unique("sim"));
    // config/demo.toml's MQTT devices only, on this broker and prefix, holds shortened 1000×
    // (H1's two hours become 7.2 s).
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo.toml");
    let mut config = load(&demo, EnvOverlay::None).unwrap_or_else(|e| panic!("{e}"));
    let data = tempfile::tempdir().expect("temp dir");
    config.gateway.gateway.data_dir = data.path().to_path_buf();
    config.gateway.bus.clear();
    config.gateway.device.clear();
    let source = config
        .gateway
        .mqtt_source
        .as_mut()
        .expect("demo.toml has [mqtt_source]");
    (source.host, source.port, source.client_id) = (host.clone(), port, Some(unique("sim")));
    for mapping in &mut source.mappings {
        mapping.topic = mapping
            .topic
            .replace(retrofit_gateway::demo::DEMO_MQTT_PREFIX, &prefix);
    }
    retrofit_gateway::demo::shorten_holds(&mut config, 1000);
    let mut run = start(&config).await;

    let layout = retrofit_sim::layout::Layout::example_site(
        std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        0,
    );
    let mut community =
        retrofit_sim::Community::start(&layout, retrofit_sim::SimOptions::default())
            .await
            .expect("community starts");
    let sent = community.publish(retrofit_sim::PublishOptions {
        host,
        port,
        prefix: prefix.clone(),
        interval: Duration::from_millis(1000),
    });

    // Every simulated device arrives, each sample equal to a message it published: same
    // timestamp, and every mapped field equal to the payload's value.
    let source = config.gateway.mqtt_source.as_ref().expect("source");
    let devices: Vec<String> = layout.published.iter().map(|p| p.id.clone()).collect();
    let mut checked: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while checked.len() < devices.len() {
        let sample = match tokio::time::timeout_at(deadline, run.samples.recv()).await {
            Ok(Some(sample)) => sample,
            _ => panic!("only {checked:?} of {devices:?} arrived"),
        };
        let mapping = source
            .mappings
            .iter()
            .find(|m| *m.measurement == *sample.measurement)
            .expect("a mapping of the measurement");
        let log = sent.lock().expect("log").clone();
        let matching = log.iter().find(|m| {
            *m.device == *sample.device
                && m.time_ns == sample.time_ns
                && mapping.fields.iter().all(|f| {
                    let key = f.from.trim_start_matches('/');
                    sample.field(&f.name).and_then(|v| v.as_f64()) == m.values.get(key).copied()
                })
        });
        assert!(matching.is_some(), "{sample:?} matches nothing published");
        if !checked.contains(&sample.device.to_string()) {
            checked.push(sample.device.to_string());
        }
    }

    // Faults on five devices at once, then two more on the gas boxes.
    let mut seen = Vec::new();
    let first = [
        (FaultKind::GasLeak, "GRB-01", "G5"),
        (FaultKind::GasPressureLow, "GRB-02", "G1"),
        (FaultKind::WellFlooding, "well_07", "W19"),
        (FaultKind::CoverOpened, "well_08", "W20"),
        (FaultKind::ColdFlat, "room_11-2-0901", "H1"),
    ];
    let second = [
        (FaultKind::SlamShut, "GRB-01", "G4"),
        (FaultKind::GasPressureHigh, "GRB-02", "G2"),
    ];
    for phase in [&first[..], &second[..]] {
        for (kind, device, _) in phase {
            community.inject(Fault::on(*kind, device));
        }
        let raised: Vec<_> = phase.iter().map(|(_, d, r)| (*d, *r, true)).collect();
        until_events(&mut run.events, &mut seen, &raised, Duration::from_secs(30)).await;
        for (kind, device, _) in phase {
            community.clear(&Fault::on(*kind, device));
        }
        let cleared: Vec<_> = phase.iter().map(|(_, d, r)| (*d, *r, false)).collect();
        until_events(
            &mut run.events,
            &mut seen,
            &cleared,
            Duration::from_secs(30),
        )
        .await;
    }
    let severity = |device: &str, rule: &str| {
        seen.iter()
            .find(|e| &*e.device == device && &*e.rule == rule && e.firing)
            .map(|e| e.severity)
    };
    assert_eq!(severity("GRB-01", "G5"), Some(Severity::Crit));
    assert_eq!(severity("GRB-01", "G4"), Some(Severity::Crit));
    assert_eq!(severity("GRB-02", "G1"), Some(Severity::Warn));
    assert_eq!(severity("GRB-02", "G2"), Some(Severity::Warn));
    assert_eq!(severity("well_07", "W19"), Some(Severity::Warn));
    assert_eq!(severity("well_08", "W20"), Some(Severity::Warn));
    assert_eq!(severity("room_11-2-0901", "H1"), Some(Severity::Warn));
    // Nothing fired on the device without a fault.
    assert!(
        seen.iter().all(|e| &*e.device != "room_3-1-0502"),
        "the warm flat raised something: {seen:?}"
    );
    drop(community);
    run.pipeline.shutdown(Duration::from_secs(4)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_sent_while_the_gateway_is_away_arrive_when_it_comes_back() {
    let Some(addr) = service_url("RGW_TEST_MQTT_ADDR") else {
        return;
    };
    let prefix = unique("away");
    let dir = tempfile::tempdir().expect("temp dir");
    // The default clean_session = false: the broker keeps the session and queues for it.
    let config = config(dir.path(), &addr, &prefix, "");
    let mut run = start(&config).await;
    let (client, driver) = publisher(&addr).await;
    until_subscribed(&client, &prefix, &mut run).await;
    run.pipeline.shutdown(Duration::from_secs(4)).await;

    let t0 = now_s() - 60;
    for k in 0..5 {
        client
            .publish(
                format!("{prefix}/gas/GRB-09/telemetry"),
                format!(
                    r#"{{"ts": {}, "dev": "GRB-09", "p_out_kpa": 2.4{k}}}"#,
                    t0 + k
                ),
                PublishOptions::at_least_once(),
            )
            .await
            .expect("queued");
    }
    let mut back = start(&config).await;
    for k in 0..5 {
        let sample = sample_of(&mut back.samples, "GRB-09").await;
        assert_eq!(sample.time_ns, (t0 + k) * 1_000_000_000);
        let value = sample.field("p_out_kpa").and_then(|v| v.as_f64());
        assert_eq!(value, format!("2.4{k}").parse().ok());
    }
    driver.abort();
    back.pipeline.shutdown(Duration::from_secs(4)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_acknowledged_only_once_its_sample_is_stored() {
    let Some(addr) = service_url("RGW_TEST_MQTT_ADDR") else {
        return;
    };
    let prefix = unique("receipt");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config(dir.path(), &addr, &prefix, "");
    let (client, driver) = publisher(&addr).await;
    let topic = format!("{prefix}/gas/GRB-77/telemetry");
    let t0 = now_s() - 60;
    let publish = |k: i64| {
        let client = client.clone();
        let topic = topic.clone();
        async move {
            let body = format!(r#"{{"ts": {}, "dev": "GRB-77", "p_out_kpa": 2.5}}"#, t0 + k);
            client
                .publish(topic, body, PublishOptions::at_least_once())
                .await
                .expect("queued");
        }
    };
    // A sample that never reaches the disk: its message stays unacknowledged.
    let mut run = start_holding(&config, Some("GRB-77")).await;
    until_subscribed(&client, &prefix, &mut run).await;
    publish(0).await;
    let unstored = sample_of(&mut run.samples, "GRB-77").await;
    assert_eq!(unstored.time_ns, t0 * 1_000_000_000);
    run.pipeline.shutdown(Duration::from_secs(4)).await;
    drop(unstored);
    // The broker sends it again to the next connection of the same session; this time the
    // sample is stored, and so is the next one.
    let mut back = start(&config).await;
    let again = sample_of(&mut back.samples, "GRB-77").await;
    assert_eq!(
        again.time_ns,
        t0 * 1_000_000_000,
        "the unstored message again"
    );
    publish(1).await;
    let next = sample_of(&mut back.samples, "GRB-77").await;
    assert_eq!(next.time_ns, (t0 + 1) * 1_000_000_000);
    back.pipeline.shutdown(Duration::from_secs(4)).await;
    // Both were acknowledged: a new connection gets only what is published next.
    let mut last = start(&config).await;
    publish(2).await;
    let first = sample_of(&mut last.samples, "GRB-77").await;
    assert_eq!(
        first.time_ns,
        (t0 + 2) * 1_000_000_000,
        "nothing sent twice"
    );
    driver.abort();
    last.pipeline.shutdown(Duration::from_secs(4)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_wants_a_password_gets_the_one_from_the_password_file() {
    let Some(binary) = service_url("RGW_TEST_MOSQUITTO_BIN") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let passwords = dir.path().join("passwd");
    let made = std::process::Command::new("mosquitto_passwd")
        .args(["-b", "-c"])
        .arg(&passwords)
        .args(["gateway", "s3cret-水泵"])
        .status()
        .expect("mosquitto_passwd runs");
    assert!(made.success());
    let mut broker = OwnBroker::new(
        binary,
        dir.path(),
        &format!(
            "allow_anonymous false\npassword_file {}\n",
            passwords.display()
        ),
    );
    broker.start().await;
    for (password, accepted) in [("s3cret-水泵", true), ("wrong", false)] {
        let file = dir.path().join(format!("pw-{accepted}"));
        std::fs::write(&file, password).expect("password file");
        let credentials = format!("username = \"gateway\"\npassword_file = {file:?}");
        let config = config(dir.path(), &broker.addr(), &unique("auth"), &credentials);
        let run = start(&config).await;
        let stats = run.ingest_stats();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (_, _, attempts, connections) = stats.totals();
            if accepted && connections == 1 || !accepted && attempts >= 2 {
                assert_eq!(connections, u64::from(accepted), "password {password:?}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{password:?}: {:?}",
                stats.totals()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        run.pipeline.shutdown(Duration::from_secs(4)).await;
    }
}

/// A 10 MB message (QoS 1, the session kept) is larger than the gateway's client takes (2 MiB):
/// the broker would hand it over again at every reconnect of the kept session, for ever. The
/// gateway reconnects once with a clean session, which drops it (and whatever was queued behind
/// it); it is counted, and ingestion goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_megabyte_message_does_not_stop_ingestion() {
    let Some(addr) = service_url("RGW_TEST_MQTT_ADDR") else {
        return;
    };
    let prefix = unique("huge");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config(dir.path(), &addr, &prefix, "");
    let mut run = start(&config).await;
    let stats: Arc<_> = run.ingest_stats();
    let (host, port) = host_port(&addr);
    let mut options = rumqttc::MqttOptions::new(unique("big"), rumqttc::Broker::tcp(host, port));
    options.set_max_packet_size(16 << 20, 16 << 20);
    let (client, mut eventloop) = AsyncClient::builder(options).capacity(16).build();
    let driver = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    until_subscribed(&client, &prefix, &mut run).await;
    let mut huge = br#"{"dev":"GRB-01","p_out_kpa":2.4,"pad":""#.to_vec();
    huge.resize(10 << 20, b'x');
    huge.extend_from_slice(br#""}"#);
    let topic = format!("{prefix}/gas/GRB-01/telemetry");
    client
        .publish(topic.clone(), huge, PublishOptions::at_least_once())
        .await
        .expect("queued");
    // Counted, and the source connected again (with a clean session, which dropped it and
    // anything queued behind it); then ingestion goes on.
    let deadline = Instant::now() + Duration::from_secs(15);
    while stats.oversized() == 0 || stats.totals().3 < 2 {
        assert!(
            Instant::now() < deadline,
            "not past the message: {:?}",
            stats.totals()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client
        .publish(
            topic.clone(),
            r#"{"dev":"GRB-77","p_out_kpa":2.4}"#,
            PublishOptions::at_least_once(),
        )
        .await
        .expect("queued");
    sample_of(&mut run.samples, "GRB-77").await;
    let (_, _, attempts, connections) = stats.totals();
    println!("after the 10 MB message: {attempts} connection attempts, {connections} connections");
    assert_eq!(stats.oversized(), 1, "counted once, not handed over again");
    assert_eq!(connections, 2, "one reconnect, with a clean session");
    driver.abort();
    run.pipeline.shutdown(Duration::from_secs(4)).await;
}
