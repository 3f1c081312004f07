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
