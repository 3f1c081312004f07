//! What `/health` and `/api/status` say, computed from the running stages' shared state. Pure
//! functions of an [`Observed`] snapshot, so the schema is tested without a server.

use std::time::SystemTime;

use serde_json::{json, Map, Value as Json};

use crate::model::{unix_nanos, Value};
use crate::sources::modbus::status::CommState;

use super::Observed;

/// The problems that make the gateway unhealthy now, as (part, problem).
pub fn problems(observed: &Observed) -> Vec<(String, String)> {
    let mut problems: Vec<(String, String)> = observed
        .health
        .iter()
        .flat_map(|h| h.problems())
        .map(|(part, problem)| (part.to_string(), problem))
        .collect();
    let states = observed.status.snapshot();
    let polled = observed.devices.iter().filter(|d| d.bus.is_some()).count();
    let silent = states
        .values()
        .filter(|s| s.state == CommState::Offline)
        .count();
    if polled > 0 && silent == polled {
        problems.push((
            "polling".into(),
            format!("none of the {polled} polled devices answers"),
        ));
    }
    problems.sort();
    problems
}

/// The `/health` body and whether it is healthy.
pub fn health(observed: &Observed) -> (bool, Json) {
    let problems = problems(observed);
    let healthy = problems.is_empty();
    let body = json!({
        "status": if healthy { "ok" } else { "unhealthy" },
        "problems": problems
            .iter()
            .map(|(part, problem)| json!({ "part": part, "problem": problem }))
            .collect::<Vec<_>>(),
    });
    (healthy, body)
}

fn value_json(value: &Value) -> Json {
    match value {
        Value::Float(v) => json!(v),
        Value::Int(v) => json!(v),
        Value::UInt(v) => json!(v),
        Value::Bool(v) => json!(v),
        Value::Text(v) => json!(v),
    }
}

/// The `/api/status` document: gateway, health, buses, devices with their latest values and
/// counters, active alarms, the telemetry log's backlog and the MQTT source's counts.
pub fn status(observed: &Observed) -> Json {
    let now_ns = unix_nanos(SystemTime::now());
    let latest = observed.view.latest();
    let states = observed.status.snapshot();
    let age = |time_ns: i64| ((now_ns - time_ns) as f64 / 1e9).max(0.0);
    let values = |device: &str| -> Json {
        latest
            .get(device)
            .map(|s| {
                s.fields
                    .iter()
                    .map(|f| (f.name.to_string(), value_json(&f.value)))
                    .collect::<Map<String, Json>>()
            })
            .map_or(Json::Null, Json::Object)
    };
    let mut devices: Vec<Json> = observed
        .devices
        .iter()
        .map(|d| {
            let s = states.get(&d.id).cloned().unwrap_or_default();
            json!({
                "id": d.id,
                "bus": d.bus,
                "measurement": d.measurement,
                "state": s.state.to_string(),
                "last_sample_age_s": latest.get(&d.id).map(|x| age(x.time_ns)),
                "counters": {
                    "transactions": s.transactions,
                    "exceptions": s.exceptions,
                    "timeouts": s.timeouts,
                    "link_errors": s.link_errors,
                    "decode_errors": s.decode_errors,
                    "samples": s.samples,
                    "skipped_polls": s.skipped_polls,
                },
                "adapted": s.adapted,
                "values": values(&d.id),
            })
        })
        .collect();
    // Devices that publish are known from what they sent.
    for (id, sample) in &latest {
        if !observed.devices.iter().any(|d| d.id == *id) {
            devices.push(json!({
                "id": id,
                "bus": Json::Null,
                "measurement": sample.measurement.to_string(),
                "state": "published",
                "last_sample_age_s": age(sample.time_ns),
                "counters": Json::Null,
                "adapted": Json::Null,
                "values": values(id),
            }));
        }
    }
    let buses: Vec<Json> = observed
        .buses
        .iter()
        .map(|(id, transport)| {
            let on_bus: Vec<&str> = observed
                .devices
                .iter()
                .filter(|d| d.bus.as_deref() == Some(id.as_str()))
                .map(|d| d.id.as_str())
                .collect();
            let online = on_bus
                .iter()
                .filter(|d| {
                    states
                        .get(**d)
                        .is_some_and(|s| s.state == CommState::Online)
                })
                .count();
            json!({ "id": id, "transport": transport, "devices": on_bus, "online": online })
        })
        .collect();
    let alarms: Vec<Json> = observed
        .view
        .active()
        .iter()
        .map(|a| {
            let rule = observed.notes.rule(&a.rule);
            json!({
                "device": a.device,
                "place": observed.notes.place(&a.device),
                "rule": a.rule,
                "title": rule.map(|r| r.title.as_str()),
                "requirement": rule.map(|r| r.requirement.as_str()),
                "severity": a.severity,
                "since_ns": a.raised_ns,
                "flapping": a.flapping,
            })
        })
        .collect();
    let (healthy, health) = health(observed);
    json!({
        "gateway": {
            "id": observed.gateway,
            "site": observed.site,
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_s": observed.started.elapsed().as_secs_f64(),
            "time_ns": now_ns,
            "clock_synchronised": crate::selfmon::clock_synchronised(),
        },
        "healthy": healthy,
        "problems": health["problems"],
        "buses": buses,
        "devices": devices,
        "alarms": alarms,
        "log": observed.backlog(),
        "mqtt": observed.mqtt.as_ref().map(|m| {
            let (messages, samples, attempts, connections) = m.totals();
            json!({
                "messages": messages,
                "samples": samples,
                "connection_attempts": attempts,
                "connections": connections,
            })
        }),
    })
}
