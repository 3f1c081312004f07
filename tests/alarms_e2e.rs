//! Faults injected into the running simulated community raise the rules the plan's requirements
//! map them to, with the right severity, and clear after the fault ends: the gateway polls the
//! simulators over the network and the rules stage decides (hold times shortened 1000×, so each
//! fault takes seconds; stale rules still wait three poll intervals).

mod common;

use std::time::Duration;

use common::mqtt::{host_port, subscribe, unique};
use common::services::service_url;
use common::{example_site, expect_events};
use retrofit_gateway::config::{ConfigDuration, MqttAlarmConfig};
use retrofit_gateway::demo::shorten_holds;
use retrofit_gateway::model::Severity;
use retrofit_gateway::pipeline::{Options, Pipeline};
use retrofit_sim::faults::{Fault, FaultKind};
use tokio::sync::mpsc;
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_injected_fault_raises_its_rule_and_clears_after_it_ends() {
    let mut site = example_site().await;
    shorten_holds(&mut site.config, 1000);
    let data = tempfile::tempdir().expect("temp dir");
    site.config.gateway.gateway.data_dir = data.path().to_path_buf();
    site.config.gateway.outputs.line_protocol = None;
    let (tap, mut outputs) = mpsc::channel(4096);
    tokio::spawn(async move { while outputs.recv().await.is_some() {} });
    // Against the real broker too, when scripts/test.sh started one.
    let mqtt = service_url("RGW_TEST_MQTT_ADDR");
    let mut published = None;
    if let Some(addr) = &mqtt {
        let (host, port) = host_port(addr);
        let prefix = unique("faults");
        site.config.gateway.alarms.mqtt = Some(MqttAlarmConfig {
            host,
            port,
            client_id: None,
            username: None,
            password_file: None,
            password_env: None,
            keep_alive: ConfigDuration::from_millis(30_000),
            tls: None,
            topic_prefix: prefix.clone(),
            min_severity: Severity::Info,
        });
        published = Some(subscribe(addr, &format!("{prefix}/+/events")).await);
    }
    let (listener, mut events) = mpsc::channel(1024);
    let options = Options {
        tap: Some(tap),
        alarm_listener: Some(listener),
        ..Options::default()
    };
    let pipeline = Pipeline::start(&site.config, options).expect("pipeline starts");

    let cases: [(Fault, &str, &str, Severity); 8] = [
        (
            Fault::plant(FaultKind::PumpTrip),
            "booster-1",
            "W13",
            Severity::Crit,
        ),
        (
            Fault::plant(FaultKind::PumpRoomFlooding),
            "booster-1",
            "W14",
            Severity::Crit,
        ),
        // One sag raises both (checked together: cleared and raised again in between, the
        // feeder's E1 might not clear before the second injection).
        (
            Fault::plant(FaultKind::VoltageSag),
            "tx1-meter",
            "E1",
            Severity::Warn,
        ),
        (
            Fault::plant(FaultKind::PhaseLoss),
            "tx1-meter",
            "E5",
            Severity::Crit,
        ),
        (
            Fault::plant(FaultKind::TransformerOvertemp),
            "tx1-temp",
            "E12",
            Severity::Crit,
        ),
        (
            Fault::plant(FaultKind::HeatingMakeupSurge),
            "heating-plc",
            "H6.crit",
            Severity::Crit,
        ),
        (
            Fault::plant(FaultKind::Leak),
            "dma-flow",
            "W18",
            Severity::Crit,
        ),
        (
            Fault::on(FaultKind::Silent, "dma-flow"),
            "dma-flow",
            "X1.flow_meter",
            Severity::Warn,
        ),
    ];
    let mut expected: Vec<(&str, &str, &str)> = Vec::new();
    for (fault, device, rule, severity) in cases {
        let mut wanted = vec![(device, rule)];
        if fault.kind == FaultKind::VoltageSag {
            wanted.push(("feeder-1", "E1"));
        }
        for (device, rule) in &wanted {
            expected.push((device, rule, "firing"));
            expected.push((device, rule, "cleared"));
        }
        site.community.inject(fault.clone());
        let raised = expect_events(&mut events, &wanted, true, Duration::from_secs(20)).await;
        assert_eq!(raised[0].severity, severity, "{rule} on {device}");
        if let Some(e1) = raised.get(1) {
            assert_eq!(e1.severity, Severity::Warn, "E1 on feeder-1");
        }
        site.community.clear(&fault);
        // A silent device comes back at its next probe, which may be a backoff away.
        let cleared = expect_events(&mut events, &wanted, false, Duration::from_secs(40)).await;
        for (raised, cleared) in raised.iter().zip(&cleared) {
            assert_eq!(
                cleared.id, raised.id,
                "{}: the clear names the raised alarm",
                raised.rule
            );
        }
    }
    if let Some((received, task)) = published {
        // Every raise and clear above was also published to the broker and confirmed.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let seen = received.lock().expect("lock").clone();
            let missing: Vec<String> = expected
                .iter()
                .filter(|(device, rule, state)| {
                    !seen.iter().any(|(_, json, _)| {
                        json["device"] == *device
                            && json["rule"] == *rule
                            && json["state"] == *state
                    })
                })
                .map(|(d, r, s)| format!("{d} {r} {s}"))
                .collect();
            if missing.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "not published to MQTT: {missing:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        task.abort();
    }
    pipeline.shutdown(Duration::from_secs(4)).await;
}
