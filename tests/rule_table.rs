//! The shipped rule packs against DOMAIN.md §1, transcribed by hand into the table below: every
//! rule key's severity, limits and hold time, and no rule or limit that the table does not
//! have. A pack that drifts from the domain reference (or a row of the reference that loses its
//! rule) fails here. Where a row departs from DOMAIN.md's text, its comment says why.

use std::collections::BTreeMap;
use std::path::Path;

use retrofit_gateway::config::rule_pack::RuleConfig;
use retrofit_gateway::config::{load, EnvOverlay};
use retrofit_gateway::model::Severity;

use Severity::{Crit, Info, Warn};

/// One rule as DOMAIN.md §1 gives it: key, severity, limits (by the pack's parameter names),
/// hold in seconds (`for`), and the hysteresis where the row states one.
struct Row {
    key: &'static str,
    severity: Severity,
    limits: &'static [(&'static str, f64)],
    hold_s: u64,
    clear_margin: Option<f64>,
}

const fn row(
    key: &'static str,
    severity: Severity,
    limits: &'static [(&'static str, f64)],
    hold_s: u64,
    clear_margin: Option<f64>,
) -> Row {
    Row {
        key,
        severity,
        limits,
        hold_s,
        clear_margin,
    }
}

const MIN: u64 = 60;
const HOUR: u64 = 3600;

#[rustfmt::skip]
const TABLE: &[Row] = &[
    // §1.1 Water. W2/W3/W5 for the high zone (pump outlet) and the low zone (PRV outlet).
    row("W2", Warn, &[("above", 0.35)], 5 * MIN, Some(0.01)),
    row("W2.low_zone", Warn, &[("above", 0.35)], 5 * MIN, Some(0.01)),
    row("W3", Crit, &[("above", 0.60)], 30, None),
    row("W3.low_zone", Crit, &[("above", 0.60)], 30, None),
    row("W5", Warn, &[("below", 0.10)], 2 * MIN, None),
    row("W5.crit", Crit, &[("below", 0.05)], 2 * MIN, None),
    row("W5.low_zone", Warn, &[("below", 0.10)], 2 * MIN, None),
    row("W5.low_zone_crit", Crit, &[("below", 0.05)], 2 * MIN, None),
    // 0.28 MPa for 6 storeys served directly (GB 50282).
    row("W6", Warn, &[("below", 0.28)], 10 * MIN, None),
    row("W7", Warn, &[("below", 0.14)], 10 * MIN, None),
    // |P_out − P_set| > 0.05 MPa, clear at 0.02: a margin of 0.03.
    row("W9.high", Warn, &[("above", 0.05)], MIN, Some(0.03)),
    row("W9.low", Warn, &[("below", -0.05)], MIN, Some(0.03)),
    row("W10", Crit, &[("below", -0.10)], MIN, None),
    row("W11", Crit, &[("below", 0.05)], 10, None),
    // The 3.0 m break tank: 20 %, 10 %, 95 %, hysteresis 3 %.
    row("W12.low", Warn, &[("below", 0.6)], 30, Some(0.09)),
    row("W12.dry", Crit, &[("below", 0.3)], 30, Some(0.09)),
    row("W12.high", Warn, &[("above", 2.85)], 30, Some(0.09)),
    // Any VFD fault bit (bits 0–2 of the fault word), immediately.
    row("W13", Crit, &[("mask", 7.0)], 0, None),
    // Flooding: fault word bit 8, 10 s.
    row("W14", Crit, &[("mask", 256.0)], 10, None),
    // Night power above the 7-night median × 1.3 on two nights (+0.3 kW, §4.4).
    row("W15", Warn, &[("baseline_nights", 7.0), ("ratio", 1.3), ("min_increase", 0.3), ("nights", 2.0)], 0, None),
    // Net night flow > 3 L/household/h, or MNF > 1.3 × the 14-night median and +0.3 m³/h,
    // two nights; +0.5 m³/h in one night (§4.2); 02:00–04:00.
    row("W16", Warn, &[("net_above_l_per_household_h", 3.0), ("ratio", 1.3), ("min_increase", 0.3), ("jump", 0.5), ("nights", 2.0), ("night_start_h", 2.0), ("night_end_h", 4.0)], 0, None),
    // Loss rate > 12 % warn, > 20 % crit, weekly with AMR.
    row("W17", Warn, &[("above", 12.0), ("window_s", 7.0 * 86_400.0)], 0, None),
    row("W17.crit", Crit, &[("above", 20.0), ("window_s", 7.0 * 86_400.0)], 0, None),
    // Flow +30 % and +2 m³/h (the larger) on 1-minute means, held 60 s (issue #15).
    row("W18", Crit, &[("rise", 2.0), ("rise_pct", 30.0), ("window_s", 60.0)], MIN, None),
    // Wet for 60 s; clear after 10 minutes dry (the clear hold, checked below).
    row("W19", Warn, &[("mask", 1.0)], MIN, None),
    row("W20", Warn, &[("above", 15.0)], 2, None),
    // P_out > P_set + 0.05 MPa with the day set-point 0.30 MPa.
    row("W22", Warn, &[("above", 0.35)], MIN, None),
    // W23: transmitter fault bit (fault word bit 9); frozen for an hour while the pumps run
    // (above 0.1 kW).
    row("W23.transmitter", Warn, &[("mask", 512.0)], 0, None),
    row("W23.frozen", Warn, &[("window_s", HOUR as f64), ("tolerance", 0.0), ("while_above", 0.1)], 0, None),
    // §1.2 Power.
    row("E1", Warn, &[("nominal", 220.0), ("plus_pct", 7.0), ("minus_pct", 10.0)], MIN, Some(1.0)),
    row("E1.household", Warn, &[("nominal", 220.0), ("plus_pct", 7.0), ("minus_pct", 10.0)], MIN, Some(1.0)),
    row("E2", Warn, &[("nominal", 380.0), ("plus_pct", 7.0), ("minus_pct", 7.0)], MIN, None),
    row("E3", Warn, &[("nominal", 10_000.0), ("plus_pct", 7.0), ("minus_pct", 7.0)], MIN, None),
    // DOMAIN.md: ±10 %. Below: −15 %, so that an undervoltage is E1's warning before it is a
    // crit (for 220 V single phase E1's floor is already −10 %; issue #15).
    row("E4", Crit, &[("nominal", 220.0), ("plus_pct", 10.0), ("minus_pct", 15.0)], 10, None),
    row("E5", Crit, &[("below", 110.0)], 2, None),
    row("E6", Warn, &[("above", 2.0)], 10 * MIN, None),
    row("E6.crit", Crit, &[("above", 4.0)], 3, None),
    row("E8", Warn, &[("above", 50.2), ("below", 49.8)], 10, None),
    // 80 % and 100 % of 800 kVA, hysteresis 5 %.
    row("E10", Warn, &[("above", 640.0)], 30 * MIN, Some(40.0)),
    row("E10.crit", Crit, &[("above", 800.0)], 15 * MIN, Some(40.0)),
    row("E12", Crit, &[("above", 155.0)], MIN, None),
    row("E12.trip", Crit, &[("above", 170.0)], 0, None),
    // The controller's alarm and trip relays (status bits 1 and 2).
    row("E12.relay", Crit, &[("mask", 6.0)], 0, None),
    row("E16", Info, &[("mask", 65_535.0)], 0, None),
    // §1.3 Heating.
    row("H1", Warn, &[("below", 18.0), ("season_grace_s", 72.0 * 3600.0)], 2 * HOUR, None),
    row("H1.crit", Crit, &[("below", 16.0), ("season_grace_s", 72.0 * 3600.0)], 2 * HOUR, None),
    row("H2", Crit, &[("above", 85.0)], 5 * MIN, None),
    row("H4", Warn, &[("below", -5.0)], 30 * MIN, None),
    row("H5", Crit, &[("reserve_mpa", 0.03)], MIN, None),
    row("H5.high", Crit, &[("above", 0.55)], MIN, None),
    // The 72 h grace also covers the filling at the season's start (not in DOMAIN.md).
    row("H6", Warn, &[("above", 1.0), ("season_grace_s", 72.0 * 3600.0)], HOUR, None),
    row("H6.crit", Crit, &[("above", 2.0), ("season_grace_s", 72.0 * 3600.0)], HOUR, None),
    row("H7", Info, &[("below", 3.0), ("while_above", 0.1)], HOUR, None),
    row("H7.heat_meter", Info, &[("below", 3.0), ("while_above", 0.05)], HOUR, None),
    row("H8", Warn, &[("mask", 1.0)], 0, None),
    row("H10", Crit, &[("mask", 2048.0)], 10, None),
    // §1.4 Gas. G1 on the regulator outlet: the bottom of its 2.2–2.8 kPa band, which keeps the
    // farthest appliance above 0.75 × Pn = 1.5 kPa.
    row("G1", Warn, &[("below", 2.2)], MIN, Some(0.1)),
    row("G2", Warn, &[("above", 3.0)], 10, None),
    row("G2.crit", Crit, &[("above", 3.5)], 10, None),
    // 中压B 0.01–0.2 MPa.
    row("G3", Warn, &[("above", 0.2), ("below", 0.01)], MIN, None),
    row("G4", Crit, &[("mask", 1.0)], 0, None),
    row("G5", Crit, &[("above", 25.0)], 0, None),
    row("G5.l2", Crit, &[("above", 50.0)], 0, None),
    row("G7", Warn, &[("mask", 1.0)], 10, None),
    row("G8", Info, &[("below", 3.4)], 86_400, None),
    // §1.5 X1: silent 5 minutes, or three report periods of a battery device.
    row("X1.pump_station", Warn, &[("after_s", 300.0)], 0, None),
    row("X1.prv_station", Warn, &[("after_s", 300.0)], 0, None),
    row("X1.flow_meter", Warn, &[("after_s", 300.0)], 0, None),
    row("X1.power_meter", Warn, &[("after_s", 300.0)], 0, None),
    row("X1.transformer", Warn, &[("after_s", 300.0)], 0, None),
    row("X1.heating_substation", Warn, &[("after_s", 300.0)], 0, None),
    row("X1.household_meter", Warn, &[("after_s", 900.0)], 0, None),
    row("X1.water_meter", Warn, &[("after_s", 900.0)], 0, None),
    row("X1.heat_meter", Warn, &[("after_s", 900.0)], 0, None),
    row("X1.valve_well", Warn, &[("after_s", 2700.0)], 0, None),
    row("X1.room", Warn, &[("after_s", 2700.0)], 0, None),
    row("X1.gas_regulator", Warn, &[("after_s", 2700.0)], 0, None),
    // Not in DOMAIN.md: the gateway's own health (README, self-monitoring).
    row("S1", Warn, &[("above", 80.0)], 0, None),
    row("S2", Crit, &[("above", 0.5)], 0, None),
    row("S3", Warn, &[("above", 300.0), ("below", -300.0)], 0, None),
    row("S4", Warn, &[("below", 0.5)], 10 * MIN, None),
    row("S5", Crit, &[("above", 0.5)], 0, None),
    row("S6", Warn, &[("above", 0.5)], 0, None),
    row("S7", Warn, &[("above", 0.5)], 0, None),
];

fn seconds(d: Option<retrofit_gateway::config::ConfigDuration>) -> Option<f64> {
    d.map(|d| d.get().as_secs_f64())
}

/// The limits a rule sets, by the names the table uses.
fn limits(rule: &RuleConfig) -> BTreeMap<&'static str, f64> {
    let named: [(&str, Option<f64>); 19] = [
        ("above", rule.above),
        ("below", rule.below),
        ("nominal", rule.nominal),
        ("plus_pct", rule.plus_pct),
        ("minus_pct", rule.minus_pct),
        ("mask", rule.mask.map(|m| m as f64)),
        ("rise", rule.rise),
        ("rise_pct", rule.rise_pct),
        ("window_s", seconds(rule.window)),
        ("ratio", rule.ratio),
        ("min_increase", rule.min_increase),
        ("jump", rule.jump),
        ("nights", rule.nights.map(f64::from)),
        ("baseline_nights", rule.baseline_nights.map(|n| n as f64)),
        ("night_start_h", rule.night_start_h),
        ("night_end_h", rule.night_end_h),
        (
            "net_above_l_per_household_h",
            rule.net_above_l_per_household_h,
        ),
        ("reserve_mpa", rule.reserve_mpa),
        ("tolerance", rule.tolerance),
    ];
    let more = [
        ("after_s", seconds(rule.after)),
        ("season_grace_s", seconds(rule.season_grace)),
        ("while_above", rule.while_above),
    ];
    named
        .into_iter()
        .chain(more)
        .filter_map(|(name, value)| value.map(|v| (name, v)))
        .collect()
}

#[test]
fn every_shipped_rule_has_the_thresholds_and_hold_of_domain_md() {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo.toml");
    let config = load(&demo, EnvOverlay::None).unwrap_or_else(|e| panic!("{e}"));
    let shipped: BTreeMap<String, &RuleConfig> =
        config.rules.iter().map(|r| (r.key(), r)).collect();
    let mut problems = Vec::new();
    for row in TABLE {
        let Some(rule) = shipped.get(row.key) else {
            problems.push(format!("{}: in DOMAIN.md §1, not in the packs", row.key));
            continue;
        };
        if rule.severity != row.severity {
            problems.push(format!(
                "{}: severity {:?}, DOMAIN.md {:?}",
                row.key, rule.severity, row.severity
            ));
        }
        let expected: BTreeMap<&str, f64> = row.limits.iter().copied().collect();
        let actual = limits(rule);
        if actual.len() != expected.len()
            || actual
                .iter()
                .any(|(name, v)| expected.get(name).is_none_or(|e| (e - v).abs() > 1e-9))
        {
            problems.push(format!(
                "{}: limits {actual:?}, DOMAIN.md {expected:?}",
                row.key
            ));
        }
        let hold = rule.hold.get().as_secs();
        if hold != row.hold_s {
            problems.push(format!(
                "{}: hold {hold} s, DOMAIN.md {} s",
                row.key, row.hold_s
            ));
        }
        if let Some(margin) = row.clear_margin {
            if (rule.clear_margin - margin).abs() > 1e-9 {
                problems.push(format!(
                    "{}: clear margin {}, DOMAIN.md {margin}",
                    row.key, rule.clear_margin
                ));
            }
        }
    }
    for (key, rule) in &shipped {
        // What a message says: a title and an action for a person, no provenance in either.
        for (what, text) in [("title", &rule.title), ("action", &rule.action)] {
            match text {
                None => problems.push(format!("{key}: no {what} for messages")),
                Some(text)
                    if ["[", "§", "DOMAIN", "GB", "CJ", "http"]
                        .iter()
                        .any(|m| text.contains(m)) =>
                {
                    problems.push(format!("{key}: {what} {text:?} carries provenance"))
                }
                Some(_) => {}
            }
        }
        let bits = rule.mask.map_or(0, u64::count_ones) as usize;
        if bits > 0 && rule.bit_names.len() != bits {
            problems.push(format!(
                "{key}: {} bit names for {bits} bits",
                rule.bit_names.len()
            ));
        }
        if !TABLE.iter().any(|row| row.key == key) {
            problems.push(format!(
                "{key}: in the packs, not in the table of DOMAIN.md §1"
            ));
        }
    }
    // W19 clears after 10 minutes dry; H1 is judged on two hours and clears after 30 minutes.
    for (key, clear_s) in [("W19", 600), ("H1", 1800), ("H1.crit", 1800)] {
        let clear = shipped
            .get(key)
            .and_then(|r| r.clear_for)
            .map(|d| d.get().as_secs());
        if clear != Some(clear_s) {
            problems.push(format!(
                "{key}: clear hold {clear:?} s, DOMAIN.md {clear_s} s"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(shipped.len(), TABLE.len());
}
