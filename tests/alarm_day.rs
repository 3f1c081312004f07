//! A fault-free day of the whole simulated community raises no alarm: the simulator's world is
//! replayed through 24 hours (every 10 s of simulated time, from local midnight in late
//! November, heating season) and every device's values go through the rule packs of
//! `config/demo.toml` with their real hold times: the polled devices' register values, the
//! meters' readings, and the publishing devices' JSON messages through the demo's MQTT mappings and the gateway's payload
//! decoder. Any alarm here is a threshold that does not fit a healthy community.

use std::path::Path;

use retrofit_gateway::config::{load, EnvOverlay};
use retrofit_gateway::demo::replay::Replay;
use retrofit_gateway::demo::DEMO_MQTT_PREFIX;
use retrofit_gateway::model::AlarmEvent;
use retrofit_gateway::rules::engine::RuleEngine;
use retrofit_sim::faults::{Fault, FaultKind};

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
    let mut replay = Replay::new(&config, MIDNIGHT as f64, 7, DEMO_MQTT_PREFIX);

    let mut events = Vec::new();
    let mut evaluated = 0usize;
    for t in (MIDNIGHT..MIDNIGHT + 86_400).step_by(STEP_S as usize) {
        if let Some((start, end, fault)) = &fault {
            if t - MIDNIGHT == *start {
                replay.world.inject(fault.clone());
            }
            if t - MIDNIGHT == *end {
                replay.world.clear(fault);
            }
        }
        for sample in replay.step(t).unwrap_or_else(|e| panic!("{e}")) {
            if let Some(profile) = config
                .gateway
                .device
                .iter()
                .find(|d| *d.id == *sample.device)
                .and_then(|d| config.profile_of(d))
            {
                assert_eq!(
                    sample.fields.len(),
                    profile.field_names().count(),
                    "{} has every field its profile reads",
                    sample.device
                );
            }
            events.extend(engine.evaluate(&sample));
            evaluated += 1;
        }
        if t % 60 == 0 {
            events.extend(engine.tick(t * 1_000_000_000));
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
    // 13 polled Modbus devices, 21 meters and 6 publishing devices every 10 s.
    assert_eq!(evaluated, 8640 * (13 + 21 + 6));
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
