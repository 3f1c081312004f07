//! Every rule kind on synthetic series with explicit sample times (no clocks involved): raise
//! after the hold, hysteresis, clear after the clear hold, and the DOMAIN.md worked examples.

use std::sync::Arc;

use super::*;
use crate::config::{load, EnvOverlay};
use crate::model::{Field, Severity, Value};
use crate::rules::publishers::ADOPTIONS_PER_MINUTE;

const S: i64 = 1_000_000_000;
const T0: i64 = 1_764_150_000 * S;

const FIELDS: [&str; 20] = [
    "total_m3",
    "p",
    "p_set",
    "flow",
    "ua_v",
    "ub_v",
    "uc_v",
    "uab_v",
    "ubc_v",
    "uca_v",
    "fault_word",
    "makeup",
    "t2s",
    "t2r",
    "p2r",
    "level",
    "outlet_pressure_mpa",
    "outlet_flow_m3h",
    "frequency_hz",
    "room_c",
];

/// An engine for one device `dev` (kind `test`, every field of FIELDS, the given `[device.site]`
/// lines and tags) and the given rules.
fn engine(
    rules: &str,
    site: &str,
    tags: &str,
    state: Option<PathBuf>,
) -> (tempfile::TempDir, RuleEngine) {
    engine_with(rules, site, tags, state, "")
}

/// As [`engine`], with `extra` TOML after the `[alarms]` section (overrides, more devices).
pub(crate) fn engine_with(
    rules: &str,
    site: &str,
    tags: &str,
    state: Option<PathBuf>,
    extra: &str,
) -> (tempfile::TempDir, RuleEngine) {
    let dir = tempfile::tempdir().expect("temp dir");
    let profile: String = FIELDS
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let kind = if *name == "fault_word" { "u16" } else { "f32" };
            format!(
                "[[point]]\nname = \"{name}\"\nfc = 3\naddress = {}\ntype = \"{kind}\"\n",
                i * 2
            )
        })
        .collect();
    std::fs::create_dir(dir.path().join("profiles")).expect("dir");
    std::fs::write(
        dir.path().join("profiles/test.toml"),
        format!("kind = \"test\"\n{profile}"),
    )
    .expect("profile");
    std::fs::write(dir.path().join("rules.toml"), rules).expect("rules");
    let site = if site.is_empty() {
        String::new()
    } else {
        format!("[device.site]\n{site}\n")
    };
    std::fs::write(
        dir.path().join("gateway.toml"),
        format!(
            "[gateway]\nid = \"gw\"\nsite = \"s\"\n[[bus]]\nid = \"b\"\ntransport = \"tcp\"\naddress = \"127.0.0.1:1\"\n\
             [[device]]\nid = \"dev\"\nbus = \"b\"\nunit = 1\nprofile = \"test\"\ninterval = \"1s\"\ntags = {{ {tags} }}\n{site}\
             [alarms]\nrule_packs = [\"rules.toml\"]\n{extra}"
        ),
    )
    .expect("config");
    let config =
        load(&dir.path().join("gateway.toml"), EnvOverlay::None).unwrap_or_else(|e| panic!("{e}"));
    let engine = RuleEngine::new(&config, state, T0);
    (dir, engine)
}

fn sample(t: i64, values: &[(&str, f64)]) -> Sample {
    sample_at(T0 + t * S, values)
}

/// A sample of `dev` (kind `test`) at `time_ns`.
pub(crate) fn sample_at(time_ns: i64, values: &[(&str, f64)]) -> Sample {
    Sample {
        measurement: Arc::from("test"),
        device: Arc::from("dev"),
        tags: Vec::new().into(),
        fields: values
            .iter()
            .map(|(n, v)| Field {
                name: Arc::from(*n),
                value: Value::Float(*v),
            })
            .collect(),
        time_ns,
        receipt: crate::model::Receipt::none(),
    }
}

/// Feeds (seconds, values) and returns (seconds, rule, firing) of every event.
fn feed(engine: &mut RuleEngine, series: &[(i64, Vec<(&str, f64)>)]) -> Vec<(i64, String, bool)> {
    series
        .iter()
        .flat_map(|(t, values)| {
            engine
                .evaluate(&sample(*t, values))
                .into_iter()
                .map(|e| ((e.time_ns - T0) / S, e.rule.to_string(), e.firing))
                .collect::<Vec<_>>()
        })
        .collect()
}

pub(crate) fn rule(body: &str) -> String {
    format!("[[rule]]\ndescription = \"d\"\nsource = \"s\"\nmeasurement = \"test\"\n{body}\n")
}

#[test]
fn threshold_raises_after_its_hold_keeps_firing_inside_the_margin_and_clears() {
    let rules = rule("id = \"W12\"\nvariant = \"low\"\nkind = \"threshold\"\nseverity = \"warn\"\nfield = \"level\"\nbelow = 0.6\nclear_margin = 0.09\nfor = \"30s\"");
    let (_dir, mut e) = engine(&rules, "", "", None);
    let l = |v: f64| vec![("level", v)];
    let events = feed(
        &mut e,
        &[
            (0, l(0.5)),
            (29, l(0.5)),
            (30, l(0.55)),
            (40, l(0.65)),
            (50, l(0.70)),
            (79, l(0.70)),
            (80, l(0.7)),
        ],
    );
    // Raised at 30 s; 0.65 is inside the limit but not by the margin; clear from 50 s held 30 s.
    assert_eq!(
        events,
        vec![(30, "W12.low".into(), true), (80, "W12.low".into(), false)]
    );
}

#[test]
fn threshold_over_several_fields_is_decided_by_the_worst() {
    let rules = rule("id = \"E12\"\nkind = \"threshold\"\nseverity = \"crit\"\nfields = [\"ua_v\", \"ub_v\", \"uc_v\"]\nabove = 155.0");
    let (_dir, mut e) = engine(&rules, "", "", None);
    let events = e.evaluate(&sample(
        0,
        &[("ua_v", 100.0), ("ub_v", 159.4), ("uc_v", 120.0)],
    ));
    assert_eq!(events.len(), 1);
    assert_eq!((events[0].value, events[0].limit), (159.4, 155.0));
    assert!(events[0].message.contains("ub_v"));
}

#[test]
fn deviation_from_220_v_uses_the_gb_t_12325_band() {
    let rules = rule("id = \"E1\"\nkind = \"deviation\"\nseverity = \"warn\"\nfields = [\"ua_v\", \"ub_v\", \"uc_v\"]\nnominal = 220.0\nplus_pct = 7.0\nminus_pct = 10.0\nclear_margin = 1.0");
    let (_dir, mut e) = engine(&rules, "", "", None);
    let phases = |a: f64, b: f64, c: f64| vec![("ua_v", a), ("ub_v", b), ("uc_v", c)];
    let events = feed(
        &mut e,
        &[
            (0, phases(230.0, 229.0, 231.0)),
            (1, phases(230.0, 197.9, 231.0)),
            (2, phases(230.0, 198.5, 231.0)),
            (3, phases(230.0, 199.0, 233.0)),
        ],
    );
    assert_eq!(
        events,
        vec![(1, "E1".into(), true), (3, "E1".into(), false)]
    );
    // 235.5 V is above +7 % (235.4 V).
    let events = feed(&mut e, &[(4, phases(235.5, 230.0, 230.0))]);
    assert_eq!(events, vec![(4, "E1".into(), true)]);
}

#[test]
fn unbalance_is_the_negative_sequence_ratio_of_the_line_voltages() {
    let rules = rule("id = \"E6\"\nvariant = \"crit\"\nkind = \"unbalance\"\nseverity = \"crit\"\nfields = [\"uab_v\", \"ubc_v\", \"uca_v\"]\nabove = 4.0\nclear_margin = 0.5");
    let (_dir, mut e) = engine(&rules, "", "", None);
    // Phase C lost (230 V on A and B): Uab = 398.4 V, Ubc = Uca = 230 V; U₂/U₁ = 50 %.
    let events = e.evaluate(&sample(
        0,
        &[("uab_v", 398.37), ("ubc_v", 230.0), ("uca_v", 230.0)],
    ));
    assert_eq!(events.len(), 1);
    assert!((events[0].value - 50.0).abs() < 0.01, "{}", events[0].value);
    // 400 / 398 / 402 V: 0.58 % — clear.
    let events = e.evaluate(&sample(
        1,
        &[("uab_v", 400.0), ("ubc_v", 398.0), ("uca_v", 402.0)],
    ));
    assert!(!events[0].firing);
    assert!(
        (events[0].value - 0.577).abs() < 0.001,
        "{}",
        events[0].value
    );
}

#[test]
fn status_bits_raise_on_any_masked_bit_and_ignore_the_others() {
    let rules = rule("id = \"W13\"\nkind = \"status_bits\"\nseverity = \"crit\"\nfield = \"fault_word\"\nmask = 0x0007");
    let (_dir, mut e) = engine(&rules, "", "", None);
    let w = |v: f64| vec![("fault_word", v)];
    let events = feed(&mut e, &[(0, w(256.0)), (1, w(258.0)), (2, w(256.0))]);
    assert_eq!(
        events,
        vec![(1, "W13".into(), true), (2, "W13".into(), false)]
    );
}

#[test]
fn stale_raises_after_the_silence_and_a_sample_clears_it() {
    let rules = rule("id = \"X1\"\nkind = \"stale\"\nseverity = \"warn\"\nafter = \"5m\"");
    let (_dir, mut e) = engine(&rules, "", "", None);
    assert!(e.evaluate(&sample(0, &[("p", 0.3)])).is_empty());
    assert!(e.tick(T0 + 299 * S).is_empty());
    let raised = e.tick(T0 + 300 * S);
    assert_eq!(raised.len(), 1);
    assert!(raised[0].firing && raised[0].severity == Severity::Warn);
    assert!(e.tick(T0 + 400 * S).is_empty(), "raised once");
    let cleared = e.evaluate(&sample(401, &[("p", 0.3)]));
    assert_eq!(cleared.len(), 1);
    assert!(!cleared[0].firing);
}

const ELEVEN_STOREYS: &str = "storeys = 11\nstorey_height_m = 2.9\nsensor_elevation_m = -1.0\nbranch_prv_floors = 4\ndesign_flow_m3h = 12.0";

#[test]
fn top_floor_residual_follows_the_domain_worked_example() {
    // DOMAIN.md §2: 0.47 MPa at the outlet of an 11-storey zone leaves ≈ 0.10 MPa at the top
    // fixture at design flow: lift 31.0 m, losses 15 % = 4.65 m, meter 0.01 MPa.
    let rules = rule("id = \"W5\"\nkind = \"top_floor\"\nseverity = \"warn\"\nfield = \"outlet_pressure_mpa\"\nflow_field = \"outlet_flow_m3h\"\nbelow = 0.10\nfixture_height_m = 1.0\nloss_fraction = 0.15\nmeter_loss_mpa = 0.01");
    let (_dir, mut e) = engine(&rules, ELEVEN_STOREYS, "", None);
    let at = |p: f64, q: f64| vec![("outlet_pressure_mpa", p), ("outlet_flow_m3h", q)];
    let events = e.evaluate(&sample(0, &at(0.47, 12.0)));
    assert!(events.is_empty());
    // At design flow 0.46 MPa leaves 0.46 − 0.31 − 0.0465 − 0.01 = 0.0935 MPa.
    let events = e.evaluate(&sample(1, &at(0.46, 12.0)));
    assert_eq!(events.len(), 1);
    assert!(
        (events[0].value - 0.0935).abs() < 1e-9,
        "{}",
        events[0].value
    );
    // The same outlet pressure at night (no flow, no friction) is enough: 0.14 MPa.
    let events = e.evaluate(&sample(2, &at(0.46, 0.0)));
    assert_eq!(events.len(), 1);
    assert!(!events[0].firing);
}

#[test]
fn floor_inlet_checks_the_lowest_floor_without_a_branch_prv() {
    let rules = rule("id = \"W2\"\nkind = \"floor_inlet\"\nseverity = \"warn\"\nfield = \"outlet_pressure_mpa\"\nabove = 0.35\nfixture_height_m = 1.0");
    let (_dir, mut e) = engine(&rules, ELEVEN_STOREYS, "", None);
    // Floor 5 at 0.47 MPa: 0.47 − (4 × 2.9 + 1.0 + 1.0) / 100 = 0.334 MPa (DOMAIN.md §2 table).
    assert!(e
        .evaluate(&sample(0, &[("outlet_pressure_mpa", 0.47)]))
        .is_empty());
    let events = e.evaluate(&sample(1, &[("outlet_pressure_mpa", 0.50)]));
    assert_eq!(events.len(), 1);
    assert!((events[0].value - 0.364).abs() < 1e-9);
    assert_eq!(
        events[0].words.reading,
        "5层入户水压 0.364MPa，高于 0.35MPa"
    );
}

#[test]
fn difference_compares_a_value_with_its_set_point() {
    let rules = rule("id = \"W10\"\nkind = \"difference\"\nseverity = \"crit\"\nfields = [\"p\", \"p_set\"]\nbelow = -0.10\nclear_margin = 0.02\nfor = \"60s\"");
    let (_dir, mut e) = engine(&rules, "", "", None);
    let p = |v: f64| vec![("p", v), ("p_set", 0.47)];
    let events = feed(
        &mut e,
        &[
            (0, p(0.20)),
            (60, p(0.20)),
            (70, p(0.36)),
            (80, p(0.46)),
            (140, p(0.46)),
        ],
    );
    assert_eq!(
        events,
        vec![(60, "W10".into(), true), (140, "W10".into(), false)]
    );
}

#[test]
fn static_pressure_must_cover_the_highest_radiator_plus_reserve() {
    let rules = rule("id = \"H5\"\nkind = \"static_pressure\"\nseverity = \"crit\"\nfield = \"p2r\"\nfixture_height_m = 0.5\nreserve_mpa = 0.03");
    let (_dir, mut e) = engine(
        &rules,
        "storeys = 11\nstorey_height_m = 2.9\nsensor_elevation_m = 0.0",
        "",
        None,
    );
    // 10 × 2.9 + 0.5 = 29.5 m → 0.295 + 0.03 = 0.325 MPa needed.
    assert!(e.evaluate(&sample(0, &[("p2r", 0.36)])).is_empty());
    let events = e.evaluate(&sample(1, &[("p2r", 0.32)]));
    assert_eq!(events.len(), 1);
    assert!((events[0].limit - 0.325).abs() < 1e-9);
}

#[test]
fn makeup_ratio_is_a_share_of_the_circulation_flow() {
    let rules = rule("id = \"H6\"\nkind = \"makeup_ratio\"\nseverity = \"warn\"\nfield = \"makeup\"\nabove = 1.0\nclear_margin = 0.2\nfor = \"1h\"");
    let (_dir, mut e) = engine(
        &rules,
        "storeys = 11\nstorey_height_m = 2.9\ncirculation_m3h = 120.0",
        "",
        None,
    );
    let m = |v: f64| vec![("makeup", v)];
    // 0.36 m³/h is 0.3 %; 3.6 m³/h is 3 % for an hour.
    let events = feed(
        &mut e,
        &[(0, m(0.36)), (10, m(3.6)), (3609, m(3.6)), (3610, m(3.6))],
    );
    assert_eq!(events, vec![(3610, "H6".into(), true)]);
}

#[test]
fn an_alarm_that_keeps_coming_back_is_marked_flapping_and_held() {
    let rules = rule("id = \"W13\"\nkind = \"status_bits\"\nseverity = \"crit\"\nfield = \"fault_word\"\nmask = 1\nflap_limit = 2\nflap_window = \"10m\"");
    let (_dir, mut e) = engine(&rules, "", "", None);
    let w = |v: f64| vec![("fault_word", v)];
    let events = feed(
        &mut e,
        &[
            (0, w(1.0)),
            (10, w(0.0)),
            (20, w(1.0)),
            (30, w(0.0)),
            (40, w(1.0)),
            (50, w(0.0)),
            (100, w(0.0)),
        ],
    );
    // The third raise within 10 minutes makes it flapping: it is not cleared at 50 s or 100 s.
    assert_eq!(events.len(), 5, "{events:?}");
    assert!(e.active()[0].flapping);
    let events = feed(&mut e, &[(650, w(0.0))]);
    assert_eq!(events, vec![(650, "W13".into(), false)]);
}

#[test]
fn a_restart_while_firing_neither_raises_again_nor_forgets_the_clear() {
    let rules = rule("id = \"W13\"\nkind = \"status_bits\"\nseverity = \"crit\"\nfield = \"fault_word\"\nmask = 1");
    let state_dir = tempfile::tempdir().expect("temp dir");
    let state = state_dir.path().join("alarms/state.json");
    let (_dir, mut e) = engine(&rules, "", "", Some(state.clone()));
    let raised = e.evaluate(&sample(0, &[("fault_word", 1.0)]));
    assert_eq!(raised.len(), 1);
    e.save().expect("saves");
    drop(e);
    let (_dir, mut e) = engine(&rules, "", "", Some(state.clone()));
    assert!(
        e.evaluate(&sample(5, &[("fault_word", 1.0)])).is_empty(),
        "raised again"
    );
    let cleared = e.evaluate(&sample(6, &[("fault_word", 0.0)]));
    assert_eq!(cleared.len(), 1);
    assert!(!cleared[0].firing);
    assert_eq!(
        cleared[0].id, raised[0].id,
        "the clear names the alarm raised before the restart"
    );
    // A damaged state file starts clean instead of failing.
    std::fs::write(&state, b"{not json").expect("writes");
    let (_dir, e) = engine(&rules, "", "", Some(state));
    assert!(e.active().is_empty());
}

#[test]
fn tags_and_the_disabled_list_choose_which_devices_a_rule_watches() {
    let rules = format!(
        "{}{}",
        rule("id = \"E1\"\nkind = \"threshold\"\nseverity = \"warn\"\nfield = \"ua_v\"\nabove = 1.0\ntags = { side = \"lv\" }"),
        rule("id = \"E3\"\nkind = \"threshold\"\nseverity = \"warn\"\nfield = \"ua_v\"\nabove = 1.0\ntags = { side = \"hv\" }")
    );
    let (_dir, e) = engine(&rules, "", "side = \"lv\"", None);
    assert_eq!(e.rules_of("dev"), vec!["E1".to_string()]);
}

/// Inflow of a 420-household DMA, one sample a minute for `days` days from local midnight:
/// the simulator's diurnal use (5.9 m³/h mean) with ±8 % night-to-night variation, background
/// leakage 0.3 m³/h, sensor noise σ 0.05 m³/h, and `leak` m³/h more from day `leak_from`.
fn dma_inflow(days: i64, leak: f64, leak_from: i64) -> Vec<(i64, f64)> {
    let mut noise = retrofit_sim::noise::Noise::new(420);
    let mut series = Vec::new();
    for day in 0..days {
        let night_use = 1.0 + noise.gauss(0.08);
        for minute in 0..1440 {
            let hour = f64::from(minute as u16) / 60.0;
            let use_m3h = 5.9 * retrofit_sim::devices::water_use_shape(hour) * night_use;
            let extra = if day >= leak_from { leak } else { 0.0 };
            let t = day * 86_400 + minute * 60;
            series.push((t, use_m3h + 0.3 + extra + noise.gauss(0.05)));
        }
    }
    series
}

const MNF_RULE: &str = "id = \"W16\"\nkind = \"night_flow\"\nseverity = \"warn\"\nfield = \"flow\"";
/// T0 is 2025-11-26 09:40 UTC; shift the series so that it starts at local midnight.
const LOCAL_MIDNIGHT_OFFSET_S: i64 = 86_400 - (T0 / S + 8 * 3600) % 86_400;

fn run_nights(engine: &mut RuleEngine, series: &[(i64, f64)]) -> Vec<(i64, bool)> {
    series
        .iter()
        .flat_map(|(t, flow)| {
            let at = LOCAL_MIDNIGHT_OFFSET_S + t;
            engine
                .evaluate(&sample(at, &[("flow", *flow)]))
                .into_iter()
                .map(|e| ((e.time_ns - T0) / S - LOCAL_MIDNIGHT_OFFSET_S, e.firing))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn minimum_night_flow_stays_quiet_over_seventeen_ordinary_nights() {
    let (_dir, mut e) = engine(&rule(MNF_RULE), "", "", None);
    let events = run_nights(&mut e, &dma_inflow(17, 0.0, 99));
    assert!(events.is_empty(), "{events:?}");
}

#[test]
fn minimum_night_flow_detects_a_half_cubic_metre_leak_after_fourteen_nights_across_a_restart() {
    let state_dir = tempfile::tempdir().expect("temp dir");
    let state = state_dir.path().join("state.json");
    let series = dma_inflow(17, 0.5, 15);
    let (before, after): (Vec<_>, Vec<_>) = series.iter().partition(|(t, _)| *t < 12 * 86_400);
    let (_dir, mut e) = engine(&rule(MNF_RULE), "", "", Some(state.clone()));
    assert!(run_nights(&mut e, &before).is_empty());
    e.save().expect("saves");
    // A restart on day 12: the baseline of the nights so far is kept.
    let (_dir, mut e) = engine(&rule(MNF_RULE), "", "", Some(state));
    let events = run_nights(&mut e, &after);
    assert_eq!(events.len(), 1, "{events:?}");
    let (at, firing) = events[0];
    assert!(firing);
    // Raised at the end of the first or second leaking night's window (04:00 on day 15 or 16).
    let day = at / 86_400;
    assert!(day == 15 || day == 16, "raised on day {day} ({at} s)");
    assert_eq!(at % 86_400, 4 * 3600, "at the end of the night window");
}

#[test]
fn step_raises_on_a_burst_holds_while_it_flows_and_clears_when_it_stops() {
    let rules = rule("id = \"W18\"\nkind = \"step\"\nseverity = \"crit\"\nfield = \"flow\"\nwindow = \"10s\"\nrise = 2.0\nrise_pct = 30.0");
    let (_dir, mut e) = engine(&rules, "", "", None);
    let series: Vec<(i64, Vec<(&str, f64)>)> = (0..60)
        .map(|i| {
            let t = i * 2;
            let flow = if (40..80).contains(&t) { 10.6 } else { 7.6 };
            (t, vec![("flow", flow)])
        })
        .collect();
    let events = feed(&mut e, &series);
    // On the means of the last 10 s (five readings): +2.4 at 46 s, above max(2, 30 % of 7.6);
    // held down to half of that, +1.2 at 84 s, +0.6 at 86 s.
    assert_eq!(
        events,
        vec![(46, "W18".into(), true), (86, "W18".into(), false)]
    );
}

#[test]
fn a_frozen_reading_while_the_pumps_run_raises_and_movement_clears_it() {
    let rules = rule("id = \"W23\"\nvariant = \"frozen\"\nkind = \"frozen\"\nseverity = \"warn\"\nfield = \"p\"\nwhile_field = \"flow\"\nwhile_above = 0.1\nwindow = \"10m\"");
    let (_dir, mut e) = engine(&rules, "", "", None);
    let mut series: Vec<(i64, Vec<(&str, f64)>)> = (0..=10)
        .map(|m| (m * 60, vec![("p", 0.471), ("flow", 4.0)]))
        .collect();
    series.push((660, vec![("p", 0.473), ("flow", 4.0)]));
    let events = feed(&mut e, &series);
    assert_eq!(
        events,
        vec![
            (600, "W23.frozen".into(), true),
            (660, "W23.frozen".into(), false)
        ]
    );
}

#[test]
fn an_override_changes_a_limit_for_the_devices_it_names() {
    let rules = rule("id = \"W12\"\nvariant = \"low\"\nkind = \"threshold\"\nseverity = \"warn\"\nfield = \"level\"\nbelow = 0.6");
    let level = |v: f64| vec![("level", v)];
    // Without the override 0.75 m is fine.
    let (_dir, mut e) = engine(&rules, "", "", None);
    assert!(feed(&mut e, &[(0, level(0.75))]).is_empty());
    // A taller tank on this device: the low limit is 0.8 m.
    let tuned = "[[alarms.override]]\nrule = \"W12.low\"\ndevices = [\"dev\"]\nbelow = 0.8\n";
    let (_dir, mut e) = engine_with(&rules, "", "", None, tuned);
    assert_eq!(
        feed(&mut e, &[(0, level(0.75))]),
        vec![(0, "W12.low".into(), true)]
    );
    // An override for another device leaves this one alone.
    let elsewhere = "[[alarms.override]]\nrule = \"W12\"\ndevices = [\"other\"]\nbelow = 0.8\n\
                     [[device]]\nid = \"other\"\nbus = \"b\"\nunit = 2\nprofile = \"test\"\ninterval = \"1s\"\n";
    let (_dir, mut e) = engine_with(&rules, "", "", None, elsewhere);
    assert!(feed(&mut e, &[(0, level(0.75))]).is_empty());
}

#[test]
fn night_pump_power_above_its_seven_night_median_raises_w15_on_the_second_night() {
    let rules = rule("id = \"W15\"\nkind = \"night_flow\"\nseverity = \"warn\"\nfield = \"p\"\naggregate = \"mean\"\nbaseline_nights = 7\nratio = 1.3\nmin_increase = 0.3");
    let (_dir, mut e) = engine(&rules, "", "", None);
    // 1.2 kW at night for 9 nights, then 1.8 kW (a leak keeps the duty pump running).
    let series: Vec<(i64, f64)> = (0..12 * 1440)
        .map(|minute| {
            let day = minute / 1440;
            (minute * 60, if day >= 9 { 1.8 } else { 1.2 })
        })
        .collect();
    let events: Vec<(i64, bool)> = series
        .iter()
        .flat_map(|(t, kw)| {
            e.evaluate(&sample(LOCAL_MIDNIGHT_OFFSET_S + t, &[("p", *kw)]))
                .into_iter()
                .map(|ev| ((ev.time_ns - T0) / S - LOCAL_MIDNIGHT_OFFSET_S, ev.firing))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        events,
        vec![(10 * 86_400 + 4 * 3600, true)],
        "raised after the second high night"
    );
}

#[test]
fn water_balance_raises_w17_on_a_day_losing_19_percent_and_clears_on_the_next() {
    let rules = rule(
        "id = \"W17\"\nkind = \"balance\"\nseverity = \"warn\"\ndevices = [\"dev\"]\nfields = [\"total_m3\"]\n\
         sub_measurement = \"test\"\nsub_fields = [\"total_m3\"]\nsub_devices = [\"m1\", \"m2\"]\nwindow = \"1d\"\nabove = 12.0\nclear_margin = 2.0",
    );
    let meters = "[[device]]\nid = \"m1\"\nbus = \"b\"\nunit = 2\nprofile = \"test\"\ninterval = \"1s\"\n\
                  [[device]]\nid = \"m2\"\nbus = \"b\"\nunit = 3\nprofile = \"test\"\ninterval = \"1s\"\n";
    let state_dir = tempfile::tempdir().expect("temp dir");
    let state = state_dir.path().join("state.json");
    let (_dir, mut e) = engine_with(&rules, "", "", Some(state.clone()), meters);
    assert_eq!(e.rules_of("dev"), vec!["W17".to_string()]);
    // Per day, the inflow and the two sub-meters in m³/h. Day 0: 8 % lost; day 1: 19.4 %
    // (DOMAIN.md §4.1's 182.5 m³ in, 147.0 m³ out); day 2: 5 %.
    let days = [
        (10.0, 6.0, 3.2),
        (182.5 / 24.0, 100.0 / 24.0, 47.0 / 24.0),
        (10.0, 6.0, 3.5),
    ];
    let (mut totals, mut events) = ([0.0_f64; 3], Vec::new());
    // Start at local midnight (UTC+8) before T0, read every 15 minutes for three days.
    let midnight = (T0 + 8 * 3600 * S).div_euclid(86_400 * S) * 86_400 * S - 8 * 3600 * S;
    for step in 0..=3 * 96 {
        let t = midnight + step * 900 * S;
        let (inflow, a, b) = days[(step as usize / 96).min(2)];
        if step == 144 {
            // A restart in the middle of day 1: the window's first readings come from disk.
            e.save().expect("saves");
            e = engine_with(&rules, "", "", Some(state.clone()), meters).1;
        }
        for (i, (device, rate)) in [("m1", a), ("m2", b), ("dev", inflow)]
            .into_iter()
            .enumerate()
        {
            let mut reading = sample(0, &[("total_m3", totals[i])]);
            reading.device = Arc::from(device);
            reading.time_ns = t;
            events.extend(
                e.evaluate(&reading)
                    .into_iter()
                    .map(|e| ((e.time_ns - midnight) / (3600 * S), e.firing, e.value)),
            );
            totals[i] += rate / 4.0;
        }
    }
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!((events[0].0, events[0].1), (48, true), "{events:?}");
    assert!(
        (events[0].2 - 35.5 / 182.5 * 100.0).abs() < 1e-6,
        "{events:?}"
    );
    assert_eq!((events[1].0, events[1].1), (72, false), "{events:?}");
}

#[test]
fn water_balance_without_sub_meters_is_not_evaluated() {
    let rules = rule(
        "id = \"W17\"\nkind = \"balance\"\nseverity = \"warn\"\nfields = [\"total_m3\"]\n\
         sub_measurement = \"water_meter\"\nsub_fields = [\"total_m3\"]\nwindow = \"7d\"\nabove = 12.0",
    );
    let (_dir, e) = engine(&rules, "", "", None);
    assert!(e.rules_of("dev").is_empty());
}

#[test]
fn a_published_device_joins_at_its_first_sample_and_its_alarm_survives_a_restart() {
    let rules = "[[rule]]\nid = \"H1\"\nkind = \"threshold\"\nseverity = \"warn\"\ndescription = \"d\"\nsource = \"s\"\n\
                 measurement = \"room\"\nfield = \"t_c\"\nbelow = 18.0\nclear_margin = 0.5\nfor = \"1h\"\n";
    let source = "[mqtt_source]\nhost = \"127.0.0.1\"\n[[mqtt_source.mapping]]\ntopic = \"r/+\"\nformat = \"flat\"\n\
                  measurement = \"room\"\nlabel = \"室温采集器\"\nnames = { room_1 = \"11号楼2单元901室\" }\ndevice_pattern = \"room_*\"\n\
                  device_level = 1\nfield = [{ name = \"t_c\", from = \"/t_c\", unit = \"°C\", label = \"温度\" }]\n";
    let state_dir = tempfile::tempdir().expect("temp dir");
    let state = state_dir.path().join("state.json");
    let room = |t: i64, celsius: f64| {
        let mut s = sample(t, &[("t_c", celsius)]);
        s.measurement = Arc::from("room");
        s.device = Arc::from("room_1");
        s
    };
    let (_dir, mut e) = engine_with(rules, "", "", Some(state.clone()), source);
    assert!(
        e.rules_of("room_1").is_empty(),
        "not known before it publishes"
    );
    assert!(e.evaluate(&room(0, 17.0)).is_empty());
    let raised = e.evaluate(&room(3600, 17.0));
    assert_eq!(raised.len(), 1);
    assert!(raised[0].firing);
    assert_eq!(raised[0].words.place, "11号楼2单元901室", "its own name");
    assert_eq!(raised[0].words.reading, "温度 17°C，低于 18°C");
    let other = |t: i64| {
        let mut s = room(t, 17.0);
        s.device = Arc::from("room_2");
        s
    };
    e.evaluate(&other(0));
    let unnamed = e.evaluate(&other(3600));
    assert_eq!(
        unnamed[0].words.place, "室温采集器 room_2",
        "the mapping's label"
    );
    e.save().expect("saves");

    let (_dir, mut e) = engine_with(rules, "", "", Some(state.clone()), source);
    assert_eq!(e.rules_of("room_1"), vec!["H1".to_string()], "remembered");
    assert!(e.evaluate(&room(3700, 17.0)).is_empty(), "no second raise");
    assert!(e.evaluate(&room(3800, 19.0)).is_empty());
    let cleared = e.evaluate(&room(7400, 19.0));
    assert_eq!(cleared.len(), 1);
    assert!(!cleared[0].firing);
    assert_eq!(cleared[0].id, raised[0].id);
    assert_eq!(cleared[0].words.place, "11号楼2单元901室");
}

#[test]
fn publishers_inventing_device_ids_are_taken_on_slowly_and_stop_at_the_limit() {
    let rules = rule(
        "id = \"X1\"\nvariant = \"room\"\nkind = \"stale\"\nseverity = \"info\"\nafter = \"45m\"",
    )
    .replace("measurement = \"test\"", "measurement = \"room\"");
    let source = "[mqtt_source]\nhost = \"127.0.0.1\"\n[[mqtt_source.mapping]]\ntopic = \"r/+\"\nformat = \"flat\"\n\
                  measurement = \"room\"\ndevice_pattern = \"room_*\"\ndevice_level = 1\nfield = [{ name = \"t_c\", from = \"/t_c\" }]\n";
    let state_dir = tempfile::tempdir().expect("temp dir");
    let state = state_dir.path().join("state.json");
    let (_dir, mut e) = engine_with(&rules, "", "", Some(state.clone()), source);
    let room = |n: usize, t: i64| {
        let mut s = sample(t, &[("t_c", 20.0)]);
        s.measurement = Arc::from("room");
        s.device = Arc::from(format!("room_{n}").as_str());
        s
    };
    e.tick(T0);
    for n in 0..100 {
        e.evaluate(&room(n, 0));
    }
    let known = |e: &RuleEngine, n: usize| !e.rules_of(&format!("room_{n}")).is_empty();
    assert!(known(&e, 59) && !known(&e, 60), "a burst of 60, then wait");
    assert!(
        !e.take_dirty(),
        "taking a device on does not rewrite the state file"
    );
    // A minute later ten more; room_60 is taken on at its next message.
    e.tick(T0 + 60 * S);
    for n in 60..100 {
        e.evaluate(&room(n, 60));
    }
    assert!(known(&e, 69) && !known(&e, 70));
    assert!(!e.take_dirty());
    e.tick(T0 + 600 * S);
    assert!(
        e.take_dirty(),
        "the list is saved ten minutes after the first new device"
    );

    // Ten a minute up to the limit, and no further.
    let mut n = 100;
    let mut minute = 11;
    while n < MAX_PUBLISHED_DEVICES + 100 {
        e.tick(T0 + minute * 60 * S);
        for _ in 0..ADOPTIONS_PER_MINUTE {
            e.evaluate(&room(n, minute * 60));
            n += 1;
        }
        minute += 1;
    }
    let published = (0..n).filter(|&k| known(&e, k)).count();
    assert_eq!(published, MAX_PUBLISHED_DEVICES);
}

#[test]
fn a_publisher_silent_for_a_week_is_forgotten_and_its_alarm_cleared() {
    let rules = rule(
        "id = \"X1\"\nvariant = \"room\"\nkind = \"stale\"\nseverity = \"info\"\nafter = \"45m\"",
    )
    .replace("measurement = \"test\"", "measurement = \"room\"");
    let source = "[mqtt_source]\nhost = \"127.0.0.1\"\nforget_after = \"7d\"\n[[mqtt_source.mapping]]\ntopic = \"r/+\"\n\
                  format = \"flat\"\nmeasurement = \"room\"\nlabel = \"室温采集器\"\ndevice_pattern = \"room_*\"\ndevice_level = 1\n\
                  field = [{ name = \"t_c\", from = \"/t_c\" }]\n";
    let (_dir, mut e) = engine_with(&rules, "", "", None, source);
    let mut room = sample(0, &[("t_c", 20.0)]);
    room.measurement = Arc::from("room");
    room.device = Arc::from("room_9");
    e.tick(T0);
    e.evaluate(&room);
    let raised = e.tick(T0 + 3600 * S);
    assert_eq!(raised.len(), 1, "silent (X1) after 45 minutes: {raised:?}");
    assert!(raised[0].firing);
    assert!(e.tick(T0 + (7 * 86_400 - 1) * S).is_empty());
    let cleared = e.tick(T0 + 7 * 86_400 * S);
    assert_eq!(cleared.len(), 1, "{cleared:?}");
    assert!(!cleared[0].firing);
    assert_eq!(cleared[0].id, raised[0].id);
    assert_eq!(
        cleared[0].words.reading,
        "已7天没有数据，不再监视此设备（重新上报后恢复）"
    );
    assert!(e.rules_of("room_9").is_empty(), "forgotten");
    assert!(e.active().is_empty());
    assert!(e.tick(T0 + 8 * 86_400 * S).is_empty(), "and stays quiet");
    // It publishes again: taken on afresh.
    room.time_ns = T0 + 9 * 86_400 * S;
    e.evaluate(&room);
    assert_eq!(e.rules_of("room_9"), vec!["X1.room".to_string()]);
}

/// W16 with the absolute test; the engine knows the 420 households of DOMAIN.md §3.1.
const MNF_ABSOLUTE_RULE: &str = "id = \"W16\"\nkind = \"night_flow\"\nseverity = \"warn\"\nfield = \"flow\"\nnet_above_l_per_household_h = 3.0";
const HOUSEHOLDS: &str = "[kpi]\nhouseholds = 420\n";

/// One reading a minute for `nights` days from local midnight, the night's flow per day.
fn night_series(nights: i64, flow: impl Fn(i64) -> f64) -> Vec<(i64, f64)> {
    (0..nights * 1440)
        .map(|minute| (minute * 60, flow(minute / 1440)))
        .collect()
}

#[test]
fn net_night_flow_above_three_litres_per_household_raises_w16_without_a_baseline() {
    // DOMAIN.md §4.2 before renovation: MNF 2.40 m³/h, less 420 × 1.7 L/h is 4.0 L per
    // household and hour, above 3 (the limit is an MNF of 420 × 4.7 L/h = 1.974 m³/h).
    let (_dir, mut e) = engine_with(&rule(MNF_ABSOLUTE_RULE), "", "", None, HOUSEHOLDS);
    let events = run_nights(&mut e, &night_series(4, |_| 2.4));
    // Suspect on the first night, raised at the end of the second (two consecutive nights).
    assert_eq!(events, vec![(86_400 + 4 * 3600, true)]);
    // 1.95 m³/h is 2.94 L per household and hour: no alarm, on any night.
    let (_dir, mut e) = engine_with(&rule(MNF_ABSOLUTE_RULE), "", "", None, HOUSEHOLDS);
    assert!(run_nights(&mut e, &night_series(20, |_| 1.95)).is_empty());
}

#[test]
fn leaking_nights_stay_out_of_the_night_flow_baseline() {
    // Installed on a leaking network (2.4 m³/h) that is repaired on day 7 (1.0 m³/h); a new
    // 0.5 m³/h leak on day 17. The leaking nights are suspect by the absolute test and do not
    // join the baseline, so the new leak is measured against 1.0, not against a median of
    // leaking and repaired nights (1.7, which 1.5 does not exceed).
    let flow = |day: i64| match day {
        0..7 => 2.4,
        7..17 => 1.0,
        _ => 1.5,
    };
    let (_dir, mut e) = engine_with(&rule(MNF_ABSOLUTE_RULE), "", "", None, HOUSEHOLDS);
    let events = run_nights(&mut e, &night_series(19, flow));
    assert_eq!(
        events,
        vec![
            (86_400 + 4 * 3600, true),
            (7 * 86_400 + 4 * 3600, false),
            (17 * 86_400 + 4 * 3600, true)
        ]
    );
}

/// Seconds from T0 to local midnight (UTC+8) of `date`.
fn local_midnight(date: &str) -> i64 {
    let day = crate::calendar::day_of(date).expect("date");
    day * 86_400 - 8 * 3600 - T0 / S
}

#[test]
fn heating_rules_keep_quiet_out_of_season_and_in_the_start_up_grace() {
    let rules = rule("id = \"H1\"\nkind = \"threshold\"\nseverity = \"warn\"\nfield = \"room_c\"\nbelow = 18.0\nfor = \"2h\"\nseason = \"heating\"\nseason_grace = \"72h\"");
    let (_dir, mut e) = engine(&rules, "", "", None);
    // 15 °C every 10 minutes from 2025-10-10 to 2025-10-20: the season (default 10-15 to
    // 04-15) begins on the 15th and the first 72 hours are the network's start-up.
    let start = local_midnight("2025-10-10");
    let series: Vec<(i64, Vec<(&str, f64)>)> = (0..10 * 144)
        .map(|i| (start + i * 600, vec![("room_c", 15.0)]))
        .collect();
    let events = feed(&mut e, &series);
    // Raised two hours after the grace ends (2025-10-18 00:00 + 2 h).
    assert_eq!(
        events,
        vec![(local_midnight("2025-10-18") + 2 * 3600, "H1".into(), true)]
    );
    // After the season's last day the rule keeps quiet again: the alarm clears after its
    // clear hold (the 2 h of `for`).
    let end = local_midnight("2026-04-16");
    let after: Vec<(i64, Vec<(&str, f64)>)> = (-1..=12)
        .map(|i| (end + i * 600, vec![("room_c", 15.0)]))
        .collect();
    assert_eq!(
        feed(&mut e, &after),
        vec![(end + 2 * 3600, "H1".into(), false)]
    );
}

#[test]
fn a_small_temperature_difference_without_flow_is_no_alarm() {
    let rules = rule("id = \"H7\"\nkind = \"difference\"\nseverity = \"info\"\nfields = [\"t2s\", \"t2r\"]\nbelow = 3.0\nwhile_field = \"flow\"\nwhile_above = 0.05");
    let (_dir, mut e) = engine(&rules, "", "", None);
    // Summer: supply and return at room temperature, no flow.
    let idle = vec![("t2s", 22.0), ("t2r", 21.5), ("flow", 0.0)];
    assert!(feed(&mut e, &[(0, idle.clone()), (60, idle)]).is_empty());
    // Water flows with 2 K between supply and return: the meter is below its minimum ΔT.
    let flowing = vec![("t2s", 45.0), ("t2r", 43.0), ("flow", 1.2)];
    assert_eq!(
        feed(&mut e, &[(120, flowing)]),
        vec![(120, "H7".into(), true)]
    );
}

#[test]
fn a_status_bit_alarm_names_the_bit_and_a_reading_carries_its_label_and_unit() {
    let rules = [
        rule("id = \"W13\"\nkind = \"status_bits\"\nseverity = \"crit\"\ntitle = \"水泵故障\"\naction = \"通知维保。\"\nfield = \"fault_word\"\nmask = 7\nbit_names = [\"1号泵变频器故障\", \"2号泵变频器故障\", \"3号泵变频器故障\"]"),
        rule("id = \"W12\"\nvariant = \"low\"\nkind = \"threshold\"\nseverity = \"warn\"\ntitle = \"水箱水位低\"\nfield = \"level\"\nbelow = 0.6"),
    ]
    .concat();
    let (_dir, mut e) = engine(&rules, "", "zone = \"high\", building = \"9,10\"", None);
    let events = e.evaluate(&sample(0, &[("fault_word", 6.0), ("level", 0.55)]));
    let words = |rule: &str| {
        let event = events.iter().find(|e| &*e.rule == rule).expect("raised");
        event.words.clone()
    };
    let pump = words("W13");
    assert_eq!(pump.title, "水泵故障");
    assert_eq!(pump.reading, "2号泵变频器故障、3号泵变频器故障");
    assert_eq!(pump.action, "通知维保。");
    assert_eq!(pump.place, "dev（9、10号楼，高区）");
    assert_eq!(pump.since_ns, T0);
    // The test profile has no labels: the field's name stands in, without a unit.
    assert_eq!(words("W12.low").reading, "level 0.55，低于 0.6");
    assert!(events
        .iter()
        .all(|e| !e.message.contains("[") && !e.message.contains("source")));
}
