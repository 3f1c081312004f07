//! Each simulated fault, injected into the demo community on its own and replayed through the
//! shipped rule packs of `config/demo.toml` with their real hold times (10 s steps of simulated
//! time, a December morning), is caught by its rule and tells the group robots once: the
//! incident book turns the fault's alarms (fifteen for a voltage sag) into one message, one
//! update if it grows after ten minutes (the burst, whose low-zone pressure alarm joins later),
//! and one message when everything has cleared. Prints, per fault, the rules raised and the
//! messages as the robots get them (`cargo test --test fault_notifications -- --nocapture`).

use std::collections::BTreeSet;
use std::path::Path;

use retrofit_gateway::config::{load, EnvOverlay, LoadedConfig};
use retrofit_gateway::demo::replay::Replay;
use retrofit_gateway::demo::DEMO_MQTT_PREFIX;
use retrofit_gateway::model::AlarmEvent;
use retrofit_gateway::rules::engine::RuleEngine;
use retrofit_gateway::rules::incident::IncidentBook;
use retrofit_gateway::sinks::webhook::message::markdown;
use retrofit_sim::faults::{Fault, FaultKind};

/// 2025-12-10 09:00 in Shuozhou (UTC+8), in the heating season.
const START: i64 = 1_765_328_400;
const STEP_S: i64 = 10;
const MINUTE: i64 = 60;
/// How an update's title ends.
const UPDATE: &str = "（范围扩大）";

/// What one fault did: rules raised, robot messages (raises and updates), clears.
struct Outcome {
    raised: BTreeSet<String>,
    told: Vec<AlarmEvent>,
}

/// Replays `minutes` of the community with `fault` from the 5th minute for `lasting` minutes.
/// Devices a communication fault silences send nothing while it lasts.
fn replay(config: &LoadedConfig, fault: &Fault, lasting: i64, minutes: i64) -> Outcome {
    let mut engine = RuleEngine::new(config, None, START * 1_000_000_000);
    let mut book = IncidentBook::of(config);
    let mut world = Replay::new(config, START as f64, 11, DEMO_MQTT_PREFIX);
    let (from, to) = (START + 5 * MINUTE, START + (5 + lasting) * MINUTE);
    let silenced = matches!(fault.kind, FaultKind::Silent);
    let mut outcome = Outcome {
        raised: BTreeSet::new(),
        told: Vec::new(),
    };
    for t in (START..START + minutes * MINUTE).step_by(STEP_S as usize) {
        if t == from {
            world.world.inject(fault.clone());
        }
        if t == to {
            world.world.clear(fault);
        }
        let mut events = Vec::new();
        for sample in world.step(t).unwrap_or_else(|e| panic!("{e}")) {
            let quiet = silenced
                && (from..to).contains(&t)
                && fault.device.as_deref() == Some(&*sample.device);
            if !quiet {
                events.extend(engine.evaluate(&sample));
            }
        }
        events.extend(engine.tick(t * 1_000_000_000));
        for event in &events {
            if event.firing {
                outcome.raised.insert(event.rule.to_string());
            }
            outcome.told.extend(book.observe(event));
        }
        outcome.told.extend(book.tick(t * 1_000_000_000));
    }
    outcome
}

#[test]
fn every_fault_is_caught_by_its_rule_and_tells_the_robots_once() {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo.toml");
    let config = load(&demo, EnvOverlay::None).unwrap_or_else(|e| panic!("{e}"));
    // (fault, the rule that must catch it, minutes it lasts, minutes replayed)
    let cases: Vec<(Fault, &str, i64, i64)> = vec![
        // Long enough for the low zone's pressure alarm to join and be told as an update.
        (Fault::plant(FaultKind::Leak), "W18", 25, 45),
        (Fault::plant(FaultKind::PumpTrip), "W13", 10, 30),
        (Fault::plant(FaultKind::PumpRoomFlooding), "W14", 10, 30),
        (Fault::plant(FaultKind::VoltageSag), "E1", 10, 30),
        (Fault::plant(FaultKind::PhaseLoss), "E5", 10, 30),
        (Fault::plant(FaultKind::TransformerOvertemp), "E12", 10, 30),
        (
            Fault::plant(FaultKind::HeatingMakeupSurge),
            "H6.crit",
            75,
            170,
        ),
        (Fault::on(FaultKind::GasLeak, "GRB-01"), "G5", 10, 30),
        (Fault::on(FaultKind::GasPressureLow, "GRB-02"), "G1", 10, 30),
        (
            Fault::on(FaultKind::GasPressureHigh, "GRB-01"),
            "G2",
            10,
            30,
        ),
        (Fault::on(FaultKind::SlamShut, "GRB-02"), "G4", 10, 30),
        (Fault::on(FaultKind::WellFlooding, "well_07"), "W19", 10, 40),
        (Fault::on(FaultKind::CoverOpened, "well_08"), "W20", 10, 30),
        (
            Fault::on(FaultKind::ColdFlat, "room_11-2-0901"),
            "H1",
            150,
            200,
        ),
        (Fault::on(FaultKind::BatteryLow, "meter-03"), "E16", 10, 30),
        (
            Fault::on(FaultKind::BatteryLow, "heat-primary"),
            "H8",
            10,
            30,
        ),
        (
            Fault::on(FaultKind::LowDeltaT, "heat-04"),
            "H7.heat_meter",
            75,
            170,
        ),
        (
            Fault::on(FaultKind::Silent, "dma-flow"),
            "X1.flow_meter",
            10,
            30,
        ),
    ];
    let mut problems = Vec::new();
    for (fault, rule, lasting, minutes) in &cases {
        let outcome = replay(&config, fault, *lasting, *minutes);
        let updates = outcome
            .told
            .iter()
            .filter(|e| e.firing && e.words.title.ends_with(UPDATE))
            .count();
        let clears = outcome.told.iter().filter(|e| !e.firing).count();
        let raises = outcome.told.len() - updates - clears;
        println!(
            "{fault}: rules raised {:?}; messages: {raises} raise, {updates} update, {clears} clear",
            outcome.raised
        );
        for message in &outcome.told {
            let text = markdown(message, &config.gateway.gateway.site);
            println!("    {}", text.replace('\n', "\n    "));
        }
        if !outcome.raised.contains(*rule) {
            problems.push(format!("{fault}: {rule} not raised ({:?})", outcome.raised));
        }
        if raises != 1 || clears != 1 || updates > 1 {
            problems.push(format!(
                "{fault}: {raises} raise, {updates} update and {clears} clear messages (expected one raise, at most one update, one clear)"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
