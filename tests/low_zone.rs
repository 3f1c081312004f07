//! The low zone (the six-storey blocks fed from the PRV, DOMAIN.md §3.1) is watched through the
//! PRV outlet transmitter with the shipped rule packs and `config/demo.toml`: the top floor at
//! the night set-point, a set-point too low for the sixth floor, and a PRV that fails open.

use std::path::Path;
use std::sync::Arc;

use retrofit_gateway::config::{load, EnvOverlay};
use retrofit_gateway::model::{Field, Receipt, Sample, Value};
use retrofit_gateway::rules::engine::RuleEngine;

const S: i64 = 1_000_000_000;
/// 2025-11-26 00:00 in Shuozhou (UTC+8).
const MIDNIGHT: i64 = 1_764_086_400 * S;

fn sample(measurement: &str, device: &str, field: &str, value: f64, t: i64) -> Sample {
    Sample {
        measurement: Arc::from(measurement),
        device: Arc::from(device),
        tags: Vec::new().into(),
        fields: vec![Field {
            name: Arc::from(field),
            value: Value::Float(value),
        }],
        time_ns: MIDNIGHT + t * S,
        receipt: Receipt::none(),
    }
}

/// Ten minutes of the PRV outlet at `outlet` MPa (every second) and the DMA flow at `flow`
/// m³/h (every two seconds, when given), from 01:00; the rules (with their variant) raised.
fn raised(outlet: f64, flow: Option<f64>) -> Vec<String> {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo.toml");
    let config = load(&demo, EnvOverlay::None).unwrap_or_else(|e| panic!("{e}"));
    let mut engine = RuleEngine::new(&config, None, MIDNIGHT);
    let mut rules = Vec::new();
    for t in 3600..3600 + 600 {
        if let Some(flow) = flow.filter(|_| t % 2 == 0) {
            let events =
                engine.evaluate(&sample("flow_meter", "dma-flow", "flow_rate_m3h", flow, t));
            rules.extend(events.into_iter().map(|e| e.rule.to_string()));
        }
        let events = engine.evaluate(&sample(
            "prv_station",
            "prv-outlet",
            "pressure_mpa",
            outlet,
            t,
        ));
        rules.extend(
            events
                .into_iter()
                .filter(|e| e.firing)
                .map(|e| e.rule.to_string()),
        );
    }
    rules.sort();
    rules
}

#[test]
fn the_night_set_point_leaves_the_sixth_floor_its_pressure() {
    // 0.28 MPa at night with 1.5 m³/h through the DMA: 0.28 − (5 × 2.9 + 1.0 + 0.5) / 100
    // − 0.01 (meter) − friction at (1.5 / 35)^1.85 of design ≈ 0.110 MPa at the top fixture.
    assert_eq!(raised(0.28, Some(1.5)), Vec::<String>::new());
}

#[test]
fn a_night_set_point_of_0_26_leaves_the_sixth_floor_short() {
    // DOMAIN.md §3.1: 0.26 MPa left about 0.08–0.09 MPa at the sixth floor: W5 (warn) after
    // its two minutes, not the 0.05 MPa crit.
    assert_eq!(raised(0.26, Some(1.5)), vec!["W5.low_zone".to_string()]);
}

#[test]
fn without_the_zone_flow_the_design_losses_apply() {
    // No DMA reading: 15 % of the 17 m lift is lost as at peak flow, 0.28 MPa leaves 0.0845 MPa.
    assert_eq!(raised(0.28, None), vec!["W5.low_zone".to_string()]);
}

#[test]
fn a_prv_failing_open_raises_w22_and_the_inlet_pressure_limit() {
    // The municipal 0.42 MPa passes through: W22 after 60 s; the first-floor inlet sees
    // 0.42 − 0.015 = 0.405 MPa, above 0.35 (W2, after 5 minutes), below the 0.60 of W3.
    assert_eq!(
        raised(0.42, Some(1.5)),
        vec!["W2.low_zone".to_string(), "W22".to_string()]
    );
}
