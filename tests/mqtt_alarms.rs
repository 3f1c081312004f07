//! Alarms published to a real Mosquitto (started by `scripts/test.sh`): retained state per alarm
//! and an event stream, both QoS 1 and confirmed by PUBACK before they leave the outbox; an alarm
//! raised while the broker is down arrives when it comes up.

mod common;

use std::time::Duration;

use common::mqtt::{host_port, subscribe, unique, OwnBroker};
use common::pump_alarms::{config, fault, outbox_holds_an_alarm, raise};
use common::services::service_url;
use tokio::time::Instant;

fn mqtt_section(addr: &str, prefix: &str) -> String {
    let (host, port) = host_port(addr);
    format!("[alarms.mqtt]\nhost = \"{host}\"\nport = {port}\ntopic_prefix = \"{prefix}\"\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarms_reach_the_broker_as_retained_state_and_events() {
    let Some(addr) = service_url("RGW_TEST_MQTT_ADDR") else {
        return;
    };
    let prefix = unique("state");
    let (live, live_task) = subscribe(&addr, &format!("{prefix}/#")).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config(dir.path(), &mqtt_section(&addr, &prefix));
    let alarms = raise(&config, &[fault(1, 0), fault(0, 1_000_000_000)], || {
        live.lock().expect("lock").len() >= 4
    })
    .await;
    alarms.shutdown(Duration::from_secs(2)).await;

    let state_topic = format!("{prefix}/shuocheng-xingfu-01/alarm/booster-1/W13");
    let events_topic = format!("{prefix}/shuocheng-xingfu-01/events");
    let seen = live.lock().expect("lock").clone();
    let events: Vec<&serde_json::Value> = seen
        .iter()
        .filter(|(t, ..)| *t == events_topic)
        .map(|(_, j, _)| j)
        .collect();
    assert_eq!(events.len(), 2, "{seen:?}");
    assert_eq!(events[0]["state"], "firing");
    assert_eq!(events[1]["state"], "cleared");
    assert_eq!(events[0]["id"], events[1]["id"]);
    assert_eq!(events[0]["severity"], "crit");
    assert_eq!(events[0]["site"], "幸福小区");
    live_task.abort();

    // A subscriber that comes later gets the alarm's current state, retained.
    let (late, late_task) = subscribe(&addr, &state_topic).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while late.lock().expect("lock").is_empty() {
        assert!(Instant::now() < deadline, "no retained state");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, state, retained) = late.lock().expect("lock")[0].clone();
    assert!(retained);
    assert_eq!(state["state"], "cleared");
    late_task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_raised_while_the_broker_is_down_arrives_when_it_comes_up() {
    let Some(binary) = service_url("RGW_TEST_MOSQUITTO_BIN") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let mut broker = OwnBroker::new(binary, dir.path(), "");
    let addr = broker.addr();
    let prefix = unique("late");
    let config = config(dir.path(), &mqtt_section(&addr, &prefix));
    // The broker is not there yet: the alarm waits in the outbox while the gateway retries.
    let alarms = raise(&config, &[fault(1, 0)], || {
        outbox_holds_an_alarm(&config, "mqtt")
    })
    .await;
    broker.start().await;
    let (received, task) = subscribe(&addr, &format!("{prefix}/#")).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let state = received
            .lock()
            .expect("lock")
            .iter()
            .find(|(topic, ..)| topic.ends_with("/alarm/booster-1/W13"))
            .map(|(_, json, _)| json["state"].clone());
        if let Some(state) = state {
            assert_eq!(state, "firing");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the alarm never reached the broker"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    task.abort();
    alarms.shutdown(Duration::from_secs(2)).await;
}

/// The `state` field of the last message on `topic`, if any came.
fn last_state(received: &common::mqtt::Received, topic: &str) -> Option<String> {
    received
        .lock()
        .expect("lock")
        .iter()
        .rev()
        .find(|(t, ..)| t == topic)
        .and_then(|(_, json, _)| json["state"].as_str().map(String::from))
}

async fn until_state(received: &common::mqtt::Received, topic: &str, state: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while last_state(received, topic).as_deref() != Some(state) {
        assert!(
            Instant::now() < deadline,
            "{topic}: no {state:?}, last {:?}",
            last_state(received, topic)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The centre learns that a gateway is gone: `<prefix>/<gateway>/status` says online while it
/// runs, offline when it stops, and offline again, as the broker publishes the last will, when
/// the process is killed without a word; a subscriber that comes later gets it retained.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateways_state_is_retained_online_then_offline_when_it_stops_or_dies() {
    let Some(addr) = service_url("RGW_TEST_MQTT_ADDR") else {
        return;
    };
    let prefix = unique("status");
    let dir = tempfile::tempdir().expect("temp dir");
    let lines = dir.path().join("lines.txt");
    let extra = format!(
        "{}[outputs.line_protocol]\npath = {lines:?}\n",
        mqtt_section(&addr, &prefix)
    );
    config(dir.path(), &extra);
    let topic = format!("{prefix}/shuocheng-xingfu-01/status");
    let (received, task) = subscribe(&addr, &topic).await;
    let start = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_retrofit-gateway"))
            .args(["run", "-c"])
            .arg(dir.path().join("gateway.toml"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the gateway starts")
    };

    let mut gateway = start();
    until_state(&received, &topic, "online").await;
    let term = std::process::Command::new("kill")
        .args(["-TERM", &gateway.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(term.success());
    until_state(&received, &topic, "offline").await;
    let _ = gateway.wait();

    let mut gateway = start();
    until_state(&received, &topic, "online").await;
    gateway.kill().expect("SIGKILL");
    let _ = gateway.wait();
    until_state(&received, &topic, "offline").await;
    task.abort();

    let (late, late_task) = subscribe(&addr, &topic).await;
    until_state(&late, &topic, "offline").await;
    let (_, state, retained) = late.lock().expect("lock")[0].clone();
    assert!(retained);
    assert_eq!(state["gateway"], "shuocheng-xingfu-01");
    late_task.abort();
}
