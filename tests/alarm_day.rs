//! A fault-free day of the whole simulated community raises no alarm: the simulator's world is
//! replayed through 24 hours (every 10 s of simulated time, from local midnight in late
//! November, heating season) and every device's values go through the rule packs of
//! `config/demo.toml` with their real hold times: the polled devices' register values, the
//! meters' readings, and the publishing devices' JSON messages through the demo's MQTT mappings and the gateway's payload
//! decoder. Any alarm here is a threshold that does not fit a healthy community.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;

use retrofit_gateway::config::{load, EnvOverlay};
use retrofit_gateway::model::{AlarmEvent, Field, Sample, Value};
use retrofit_gateway::rules::engine::RuleEngine;
use retrofit_gateway::sources::mqtt::{payload, topic};
use retrofit_sim::clock::SimClock;
use retrofit_sim::faults::{Fault, FaultKind};
use retrofit_sim::layout::Layout;
use retrofit_sim::world::World;

/// 2025-11-26 00:00 in Shuozhou (UTC+8).
const MIDNIGHT: i64 = 1_764_086_400;
const STEP_S: i64 = 10;

/// Replays a day with `fault` active between the given seconds after midnight; returns the
/// alarm events and how many device samples were evaluated.
fn replay(fault: Option<(i64, i64, Fault)>) -> (Vec<AlarmEvent>, usize) {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo.toml");
    let config = load(&demo, EnvOverlay::None).unwrap_or_else(|e| panic!("{e}"));
    assert!(config.rules.len() > 40, "the rule packs are loaded");
    let mut engine = RuleEngine::new(&config, None, MIDNIGHT * 1_000_000_000);
    let layout = Layout::example_site(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
    let mut world = World::new(&layout, SimClock::new(MIDNIGHT as f64, 0.0), 7);

    let mut events = Vec::new();
    let mut evaluated = 0usize;
    for t in (MIDNIGHT..MIDNIGHT + 86_400).step_by(STEP_S as usize) {
        world.advance_to(t as f64);
        if let Some((start, end, fault)) = &fault {
            if t - MIDNIGHT == *start {
                world.inject(fault.clone());
            }
            if t - MIDNIGHT == *end {
                world.clear(fault);
            }
        }
        let time_ns = t * 1_000_000_000;
        for device in &config.gateway.device {
            let profile = config.profile_of(device).expect("profile");
            let truth = world.truth(&device.id).expect("simulated device");
            let fields: Vec<Field> = profile
                .field_names()
                .filter_map(|name| {
                    truth.get(name).map(|v| Field {
                        name: Arc::from(name),
                        value: Value::Float(*v),
                    })
                })
                .collect();
            assert_eq!(
                fields.len(),
                profile.field_names().count(),
                "{} has every field its profile reads",
                device.id
            );
            let sample = Sample {
                measurement: Arc::from(profile.kind.as_str()),
                device: Arc::from(device.id.as_str()),
                tags: Vec::new().into(),
                fields,
                time_ns,
            };
            events.extend(engine.evaluate(&sample));
            evaluated += 1;
        }
        let source = config
            .gateway
            .mqtt_source
            .as_ref()
            .expect("demo.toml has MQTT devices");
        for message in world.messages(retrofit_gateway::demo::DEMO_MQTT_PREFIX) {
            let mapping = source
                .mappings
                .iter()
                .find(|m| topic::matches(&m.topic, &message.topic))
                .unwrap_or_else(|| panic!("no mapping for {}", message.topic));
            let decoded = payload::decode(
                mapping,
                &[],
                &message.topic,
                message.payload.as_bytes(),
                time_ns,
            )
            .unwrap_or_else(|e| panic!("{e}: {}", message.payload));
            assert!(decoded.problems.is_empty(), "{:?}", decoded.problems);
            events.extend(engine.evaluate(&decoded.sample));
            evaluated += 1;
        }
        if t % 60 == 0 {
            events.extend(engine.tick(time_ns));
        }
    }
    let rules_in_use: usize = config
        .gateway
        .device
        .iter()
        .map(|d| engine.rules_of(&d.id).len())
        .sum();
    assert!(rules_in_use > 40, "only {rules_in_use} device rules in use");
    (events, evaluated)
}

#[test]
fn a_fault_free_day_of_the_whole_community_raises_no_alarm() {
    let (events, evaluated) = replay(None);
    let described: Vec<String> = events
        .iter()
        .map(|e| {
            format!(
                "{} {} at +{} s: {}",
                e.device,
                e.rule,
                e.time_ns / 1_000_000_000 - MIDNIGHT,
                e.message
            )
        })
        .collect();
    assert!(
        described.is_empty(),
        "{} alarms over a fault-free day:\n{}",
        described.len(),
        described.join("\n")
    );
    // 13 polled Modbus devices, 17 meters and 6 publishing devices every 10 s.
    assert_eq!(evaluated, 8640 * (13 + 17 + 6));
}

#[test]
fn the_same_day_with_a_pump_trip_at_noon_raises_and_clears_w13_only_then() {
    let noon = 12 * 3600;
    let (events, _) = replay(Some((noon, noon + 600, Fault::plant(FaultKind::PumpTrip))));
    let w13: Vec<(bool, i64)> = events
        .iter()
        .filter(|e| &*e.rule == "W13")
        .map(|e| (e.firing, e.time_ns / 1_000_000_000 - MIDNIGHT))
        .collect();
    assert_eq!(w13, vec![(true, noon), (false, noon + 600)]);
    assert!(
        events.iter().all(|e| &*e.device == "booster-1"),
        "{events:?}"
    );
}
