//! Every KPI on synthetic series whose expected value is worked out by hand in the test, through
//! the ledger as the stage drives it (rules from a pack, samples with explicit times, ticks):
//! gaps, a restart in the middle of a day (the ledger saved and loaded), and a day on which the
//! system clock was stepped back.

use std::sync::Arc;

use super::ledger::{KpiParams, Ledger};
use super::store::KpiStore;
use super::{DayRecord, KpiValue};
use crate::model::{AlarmEvent, Sample, Severity};
use crate::rules::engine::tests::{engine_with, rule, sample_at};
use crate::rules::engine::{ActiveAlarm, RuleEngine};

const S: i64 = 1_000_000_000;
/// 2025-11-27 00:00 China Standard Time.
const MIDNIGHT: i64 = 1_764_172_800 * S;
const HOUR: i64 = 3600;

fn params() -> KpiParams {
    KpiParams {
        gateway: "gw".into(),
        utc_offset_h: 8.0,
        households: Some(420),
        night_use_l_per_household_h: 1.7,
        night_day_factor_h: 21.0,
        uptime_step_s: super::ledger::LIVE_UPTIME_STEP_S,
        heating_season: Some(crate::calendar::Season {
            start: (10, 15),
            end: (4, 15),
        }),
    }
}

fn sample(second_of_day: i64, values: &[(&str, f64)]) -> Sample {
    sample_at(MIDNIGHT + second_of_day * S, values)
}

/// Feeds one sample and one tick at the sample's own time (a live gateway).
fn feed(ledger: &mut Ledger, engine: &RuleEngine, sample: &Sample) {
    let now = sample.time_ns;
    ledger.observe(sample, now, || engine.device_rules("dev"), &params());
    ledger.tick(now, &params(), Vec::new);
}

/// Closes the day (a tick five minutes after the next midnight); its record.
fn close(ledger: &mut Ledger) -> DayRecord {
    let mut closed = ledger.tick(MIDNIGHT + (86_400 + 300) * S, &params(), Vec::new);
    assert_eq!(closed.len(), 1, "one day closed");
    closed.remove(0)
}

fn value<'a>(record: &'a DayRecord, kpi: &str, subject: Option<&str>) -> &'a KpiValue {
    record
        .values
        .iter()
        .find(|v| v.kpi == kpi && v.subject.as_deref() == subject)
        .unwrap_or_else(|| panic!("no {kpi} {subject:?} in {:?}", record.values))
}

fn close_to(actual: f64, expected: f64) {
    assert!((actual - expected).abs() < 1e-9, "{actual} ≠ {expected}");
}

#[test]
fn pressure_compliance_completeness_and_uptime_survive_a_restart_and_a_gap() {
    // W6 as a plain threshold: compliant while p ≥ 0.28 MPa.
    let rules = rule("id = \"W6\"\nkind = \"threshold\"\nseverity = \"warn\"\nfield = \"p\"\nbelow = 0.28\nclear_margin = 0.01");
    let (dir, engine) = engine_with(&rules, "", "", None, "");
    let store = KpiStore::new(dir.path());
    let mut ledger = Ledger::default();
    // One sample a second (the device's interval). 00:00–06:00, then the gateway is down
    // until 08:00, then 08:00–24:00. p = 0.25 (not compliant) 03:00–03:30 and 20:00–21:00.
    let p = |t: i64| {
        if (3 * HOUR..3 * HOUR + 1800).contains(&t) || (20 * HOUR..21 * HOUR).contains(&t) {
            0.25
        } else {
            0.30
        }
    };
    for t in 0..6 * HOUR {
        feed(&mut ledger, &engine, &sample(t, &[("p", p(t))]));
    }
    store.save_ledger(&ledger).expect("saved");
    drop(ledger);
    let mut ledger = store.load_ledger();
    for t in 8 * HOUR..24 * HOUR {
        feed(&mut ledger, &engine, &sample(t, &[("p", p(t))]));
    }
    let day = close(&mut ledger);
    assert_eq!(day.date, "2025-11-27");
    assert!(day.complete);
    // By hand: 21 600 + 57 600 = 79 200 samples, 1 800 + 3 600 = 5 400 of them below 0.28.
    let pressure = value(&day, "pressure_compliance", None);
    assert_eq!(
        (pressure.numerator, pressure.denominator),
        (Some(73_800.0), Some(79_200.0))
    );
    close_to(pressure.value, 100.0 * 73_800.0 / 79_200.0);
    // 79 200 of the 86 400 samples a 1 s device owes a day; 1 320 of 1 440 minutes seen.
    close_to(
        value(&day, "completeness", None).value,
        100.0 * 79_200.0 / 86_400.0,
    );
    close_to(
        value(&day, "availability", None).value,
        100.0 * 1_320.0 / 1_440.0,
    );
    // Uptime is counted between ticks: 21 599 s before the restart, 57 599 s after (the first
    // tick after a restart only starts the count), and the two hours down are not uptime.
    close_to(
        value(&day, "gateway_uptime", None).value,
        100.0 * 79_198.0 / 86_400.0,
    );
    // A sample of the closed day is late, not counted.
    feed(&mut ledger, &engine, &sample(23 * HOUR, &[("p", 0.1)]));
    assert_eq!(ledger.late_samples, 1);
}

#[test]
fn voltage_qualification_and_unbalance_on_one_minute_means_with_a_clock_stepped_back() {
    let rules = [
        rule("id = \"E1\"\nkind = \"deviation\"\nseverity = \"warn\"\nfields = [\"ua_v\", \"ub_v\", \"uc_v\"]\nnominal = 220.0\nplus_pct = 7.0\nminus_pct = 10.0"),
        rule("id = \"E6\"\nkind = \"unbalance\"\nseverity = \"warn\"\nfields = [\"uab_v\", \"ubc_v\", \"uca_v\"]\nabove = 2.0"),
    ]
    .concat();
    let (_dir, engine) = engine_with(&rules, "", "", None, "");
    let mut ledger = Ledger::default();
    // Every 20 s: 230 V on all phases and 400 V between them, except Ua = 190 V and
    // Ubc = 360 V 10:00–10:30 (30 minutes out of 198–235.4 V) and Ub = 225 V, Ubc = 392 V
    // 14:00–17:00.
    let phases = |t: i64| {
        let (ua, ubc) = if (10 * HOUR..10 * HOUR + 1800).contains(&t) {
            (190.0, 360.0)
        } else if (14 * HOUR..17 * HOUR).contains(&t) {
            (230.0, 392.0)
        } else {
            (230.0, 400.0)
        };
        let ub = if (14 * HOUR..17 * HOUR).contains(&t) {
            225.0
        } else {
            230.0
        };
        [
            ("ua_v", ua),
            ("ub_v", ub),
            ("uc_v", 230.0),
            ("uab_v", 400.0),
            ("ubc_v", ubc),
            ("uca_v", 400.0),
        ]
    };
    let mut times: Vec<i64> = (0..12 * HOUR).step_by(20).collect();
    // At 12:00 the clock is stepped back ten minutes: 11:50–12:00 comes round a second time.
    times.extend((12 * HOUR - 600..24 * HOUR).step_by(20));
    for t in times {
        feed(&mut ledger, &engine, &sample(t, &phases(t)));
    }
    let day = close(&mut ledger);
    // By hand: 1 440 minutes + the 10 repeated = 1 450 one-minute means per phase.
    // Ua: 30 of them below 198 V ⇒ 1 420 / 1 450. Ub's 225 V is inside the band.
    let ua = value(&day, "voltage_qualification", Some("ua_v"));
    assert_eq!(
        (ua.numerator, ua.denominator),
        (Some(1_420.0), Some(1_450.0))
    );
    close_to(
        value(&day, "voltage_qualification", Some("ub_v")).value,
        100.0,
    );
    // Negative-sequence unbalance of the line voltages (DOMAIN.md E6): 1 240 minutes at 0 %,
    // 180 at 400/392/400 V = 1.338 %, 30 at 400/360/400 V = 6.79 %. The 95th percentile is rank
    // ⌈0.95 × 1 450⌉ = 1 378, which falls among the 180: 1.34 % (0.01 % steps). The phase
    // formula max|U − Ū|/Ū gave 1.46 % on 230/225/230 V.
    let p95 = value(&day, "voltage_unbalance_p95", None);
    close_to(p95.value, 1.34);
    assert_eq!(p95.denominator, Some(1_450.0));
}

#[test]
fn room_hours_make_up_ratio_night_flow_baseline_and_leakage() {
    let rules = [
        rule("id = \"H1\"\nkind = \"threshold\"\nseverity = \"warn\"\nfield = \"room_c\"\nbelow = 18.0"),
        rule("id = \"H1\"\nvariant = \"crit\"\nkind = \"threshold\"\nseverity = \"crit\"\nfield = \"room_c\"\nbelow = 16.0"),
        rule("id = \"H6\"\nkind = \"makeup_ratio\"\nseverity = \"warn\"\nfield = \"makeup\"\nabove = 1.0"),
        rule("id = \"W16\"\nkind = \"night_flow\"\nseverity = \"warn\"\nfield = \"flow\""),
    ]
    .concat();
    let site = "storeys = 6\nstorey_height_m = 2.9\ncirculation_m3h = 120.0";
    let (_dir, engine) = engine_with(&rules, site, "", None, "");
    let mut ledger = Ledger::default();
    let mut days = Vec::new();
    // Four days, a sample every 5 minutes. Night flow 2.0 m³/h, except 02:30–03:30 when it is
    // the night's minimum m (1.5, 1.6, 1.7, 1.9 m³/h on days 0–3).
    for (d, minimum) in [1.5, 1.6, 1.7, 1.9].into_iter().enumerate() {
        let base = d as i64 * 86_400;
        for t in (0..24 * HOUR).step_by(300) {
            let hour = t / HOUR;
            // Room: 20 °C, 17 °C 16:00–20:00, no data 20:00–22:00, 19 °C after.
            let room = match hour {
                16..=19 => Some(17.0),
                20 | 21 => None,
                22 | 23 => Some(19.0),
                _ => Some(20.0),
            };
            // Make-up 1.2 m³/h (1 % of 120) until noon, 0.6 (0.5 %) after.
            let makeup = if hour < 12 { 1.2 } else { 0.6 };
            let flow = if (2 * HOUR + 1800..3 * HOUR + 1800).contains(&t) {
                minimum
            } else {
                2.0
            };
            let mut values = vec![("makeup", makeup), ("flow", flow)];
            values.extend(room.map(|r| ("room_c", r)));
            feed(&mut ledger, &engine, &sample(base + t, &values));
        }
        days.extend(ledger.tick(MIDNIGHT + (base + 86_400 + 300) * S, &params(), Vec::new));
    }
    assert_eq!(days.len(), 4);
    let first = &days[0];
    // Hours: 16 at 20 °C, 4 at 17 °C, 2 at 19 °C; the two without data do not count: 18 / 22.
    let room = value(first, "room_hours_at_18", None);
    assert_eq!((room.numerator, room.denominator), (Some(18.0), Some(22.0)));
    // Half the samples at 1 %, half at 0.5 %.
    close_to(value(first, "makeup_ratio", None).value, 0.75);
    // The lowest 1-hour mean of 15-minute means within 02:00–04:00 is the hour at the minimum.
    close_to(value(first, "mnf", None).value, 1.5);
    // Leakage: (1.5 − 420 × 1.7 L/h) × 21 h = (1.5 − 0.714) × 21 = 16.506 m³.
    close_to(
        value(first, "leakage_estimate", None).value,
        (1.5 - 0.714) * 21.0,
    );
    // No baseline before three nights; on day 3 the median of 1.5, 1.6, 1.7.
    assert!(days[..3]
        .iter()
        .all(|d| d.values.iter().all(|v| v.kpi != "mnf_baseline")));
    close_to(value(&days[3], "mnf_baseline", None).value, 1.6);
}

#[test]
fn frequency_and_gas_pressure_compliance_are_shares_of_samples_too() {
    let rules = [
        rule("id = \"E8\"\nkind = \"threshold\"\nseverity = \"warn\"\nfield = \"frequency_hz\"\nabove = 50.2\nbelow = 49.8"),
        // G1/G2 on the test profile's `p` standing in for the outlet pressure, kPa.
        rule("id = \"G1\"\nkind = \"threshold\"\nseverity = \"warn\"\nfield = \"p\"\nbelow = 1.5"),
        rule("id = \"G2\"\nkind = \"threshold\"\nseverity = \"warn\"\nfield = \"p\"\nabove = 3.0"),
    ]
    .concat();
    let (_dir, engine) = engine_with(&rules, "", "", None, "");
    let mut ledger = Ledger::default();
    // Ten samples: frequency 50.0 seven times, 50.3 twice, 49.7 once (7 / 10 within ±0.2 Hz);
    // pressure 2.0 kPa six times, 1.2 twice, 3.3 twice (6 / 10 inside 1.5–3.0).
    let frequency = [50.0, 50.0, 50.3, 50.0, 49.7, 50.0, 50.3, 50.0, 50.0, 50.0];
    let pressure = [2.0, 1.2, 2.0, 3.3, 2.0, 2.0, 1.2, 2.0, 3.3, 2.0];
    for (i, (f, p)) in frequency.iter().zip(pressure).enumerate() {
        let t = 10 * HOUR + 60 * i as i64;
        feed(
            &mut ledger,
            &engine,
            &sample(t, &[("frequency_hz", *f), ("p", p)]),
        );
    }
    let day = close(&mut ledger);
    let share = |kpi: &str| {
        let v = value(&day, kpi, None);
        (v.numerator, v.denominator)
    };
    assert_eq!(share("frequency_compliance"), (Some(7.0), Some(10.0)));
    assert_eq!(share("gas_pressure_compliance"), (Some(6.0), Some(10.0)));
    // A gas-watching site reports its gas alarm count even when it is zero.
    assert_eq!(value(&day, "gas_alarms", None).value, 0.0);
}

#[test]
fn sample_flat_hours_count_only_in_the_heating_season() {
    let p = params();
    let day = |date: &str| super::day_of(date).expect("a date");
    assert!(p.in_heating_season(day("2025-10-15")) && p.in_heating_season(day("2026-04-15")));
    assert!(p.in_heating_season(day("2025-12-31")) && p.in_heating_season(day("2026-01-01")));
    assert!(!p.in_heating_season(day("2025-10-14")) && !p.in_heating_season(day("2026-04-16")));
    // A cold July day in a sample flat is no heating failure.
    let rules = rule(
        "id = \"H1\"\nkind = \"threshold\"\nseverity = \"warn\"\nfield = \"room_c\"\nbelow = 18.0",
    );
    let (_dir, engine) = engine_with(&rules, "", "", None, "");
    let mut ledger = Ledger::default();
    let july = super::ledger::day_start_ns(day("2025-07-01"), 8.0);
    for hour in 0..24 {
        let sample = sample_at(july + hour * HOUR * S, &[("room_c", 17.0)]);
        ledger.observe(&sample, sample.time_ns, || engine.device_rules("dev"), &p);
    }
    let closed = ledger.tick(july + (86_400 + 300) * S, &p, Vec::new);
    assert!(closed[0].values.iter().all(|v| v.kpi != "room_hours_at_18"));
    assert!(closed[0].values.iter().any(|v| v.kpi == "completeness"));
}

#[test]
fn water_loss_is_the_inflow_not_found_on_the_sub_meters_over_the_day() {
    // `dev` is the inflow (totaliser `total_m3`); m1 and m2 are its sub-meters (their
    // totaliser is the test profile's `level` field, standing in for a water meter's).
    let rules = rule("id = \"W17\"\nkind = \"balance\"\nseverity = \"warn\"\ndevices = [\"dev\"]\nfields = [\"total_m3\"]\nsub_measurement = \"test\"\nsub_fields = [\"level\"]\nsub_devices = [\"m1\", \"m2\"]\nabove = 12.0\nwindow = \"1d\"");
    let meters = "[[device]]\nid = \"m1\"\nbus = \"b\"\nunit = 2\nprofile = \"test\"\ninterval = \"1h\"\n\
                  [[device]]\nid = \"m2\"\nbus = \"b\"\nunit = 3\nprofile = \"test\"\ninterval = \"1h\"\n";
    let (_dir, engine) = engine_with(&rules, "", "", None, meters);
    let mut ledger = Ledger::default();
    let reading = |device: &str, hour: i64, value: f64| {
        let mut sample = sample(hour * HOUR, &[("total_m3", value), ("level", value)]);
        sample.device = Arc::from(device);
        sample
    };
    // Hourly readings 00:00–23:00: the inflow 1 000 → 1 100 m³, m1 500 → 540; m2 200 → 245 but
    // silent after 22:00 (22 of the inflow's 23 hours, above 90 %).
    for hour in 0..24 {
        let h = hour as f64;
        let mut samples = vec![reading("dev", hour, 1_000.0 + 100.0 * h / 23.0)];
        samples.push(reading("m1", hour, 500.0 + 40.0 * h / 23.0));
        if hour <= 22 {
            samples.push(reading("m2", hour, 200.0 + 45.0 * h / 22.0));
        }
        for s in &samples {
            ledger.observe(s, s.time_ns, || engine.device_rules(&s.device), &params());
        }
    }
    let day = close(&mut ledger);
    // By hand: m2's 45 m³ over 22 h scaled to the inflow's 23 h; loss = 100 − 40 − 45 × 23/22.
    let loss = 100.0 - 40.0 - 45.0 * 23.0 / 22.0;
    let rate = value(&day, "water_loss_rate", None);
    assert_eq!(rate.device, "dev");
    close_to(rate.value, loss);
    close_to(rate.denominator.expect("the inflow"), 100.0);
    assert!(
        day.values
            .iter()
            .filter(|v| v.kpi == "water_loss_rate")
            .count()
            == 1
    );
}

#[test]
fn alarms_are_counted_per_rule_with_their_time_to_clear() {
    let (_dir, _engine) = engine_with(
        &rule(
            "id = \"W13\"\nkind = \"threshold\"\nseverity = \"crit\"\nfield = \"p\"\nabove = 1.0",
        ),
        "",
        "",
        None,
        "",
    );
    let mut ledger = Ledger::default();
    let event = |rule: &str, severity: Severity, raised: i64, at: i64, firing: bool| AlarmEvent {
        id: format!("dev/{rule}/{}", MIDNIGHT + raised * S),
        rule: Arc::from(rule),
        device: Arc::from("dev"),
        severity,
        firing,
        flapping: false,
        value: 1.0,
        limit: 0.0,
        message: format!("{rule} message"),
        time_ns: MIDNIGHT + at * S,
        words: Default::default(),
    };
    let p = params();
    // W13 raised twice (10:00, cleared 10:30; 15:00, cleared 16:00), G5 raised once.
    for (raised, cleared) in [(10 * HOUR, 10 * HOUR + 1800), (15 * HOUR, 16 * HOUR)] {
        ledger.alarm(&event("W13", Severity::Crit, raised, raised, true), &p);
        ledger.alarm(&event("W13", Severity::Crit, raised, cleared, false), &p);
    }
    ledger.alarm(&event("G5", Severity::Crit, 20 * HOUR, 20 * HOUR, true), &p);
    ledger.alarm(&event("X1", Severity::Info, 21 * HOUR, 21 * HOUR, true), &p);
    // A third raise at 23:00 is cleared the next day, after this day closed.
    ledger.alarm(
        &event("W13", Severity::Crit, 23 * HOUR, 23 * HOUR, true),
        &p,
    );
    let day = close(&mut ledger);
    ledger.alarm(
        &event("W13", Severity::Crit, 23 * HOUR, 25 * HOUR, false),
        &p,
    );
    let next = ledger.tick(MIDNIGHT + (2 * 86_400 + 300) * S, &p, Vec::new);
    let late_clear = format!("dev/W13/{}", MIDNIGHT + 23 * HOUR * S);
    assert_eq!(
        next[0].cleared,
        vec![(late_clear, MIDNIGHT + 25 * HOUR * S)]
    );
    assert_eq!(value(&day, "alarm_raises", Some("W13")).value, 3.0);
    // (1 800 + 3 600) / 2 = 2 700 s.
    close_to(value(&day, "alarm_clear_time", Some("W13")).value, 2_700.0);
    assert_eq!(value(&day, "gas_alarms", None).value, 1.0);
    // The warn and crit raises are kept for the report, with their clears; info is not.
    let notable: Vec<(&str, Option<i64>)> = day
        .notable
        .iter()
        .map(|n| (n.rule.as_str(), n.cleared_ns.map(|c| (c - n.raised_ns) / S)))
        .collect();
    assert_eq!(
        notable,
        vec![
            ("W13", Some(1800)),
            ("W13", Some(3600)),
            ("G5", None),
            ("W13", None)
        ]
    );
}

#[test]
fn a_closed_day_records_the_warn_and_crit_alarms_still_raised() {
    let mut ledger = Ledger::default();
    let p = params();
    // Two ticks: the second counts uptime, which opens the day.
    for t in [10 * HOUR, 10 * HOUR + 1] {
        ledger.tick(MIDNIGHT + t * S, &p, || panic!("no day closes yet"));
    }
    let active = |rule: &str, severity: Severity| ActiveAlarm {
        device: "dma-flow".into(),
        rule: rule.into(),
        severity,
        raised_ns: MIDNIGHT - 86_400 * S,
        flapping: false,
    };
    let closed = ledger.tick(MIDNIGHT + (86_400 + 300) * S, &p, || {
        vec![
            active("W17.crit", Severity::Crit),
            active("X1", Severity::Info),
        ]
    });
    let still: Vec<&str> = closed[0]
        .active_at_end
        .iter()
        .map(|a| a.rule.as_str())
        .collect();
    assert_eq!(still, vec!["W17.crit"]);
    assert_eq!(
        closed[0].active_at_end[0].id,
        format!("dma-flow/W17.crit/{}", MIDNIGHT - 86_400 * S)
    );
}

#[test]
fn closed_days_are_stored_by_month_and_damage_is_skipped_and_counted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = KpiStore::new(dir.path());
    let record = |day: i64, value: f64| DayRecord {
        day,
        date: super::date_of(day),
        complete: true,
        values: vec![KpiValue {
            kpi: "completeness".into(),
            device: "dev".into(),
            subject: None,
            severity: None,
            value,
            numerator: Some(value),
            denominator: Some(100.0),
        }],
        notable: Vec::new(),
        cleared: Vec::new(),
        active_at_end: Vec::new(),
    };
    let nov_30 = super::day_of("2025-11-30").expect("date");
    store
        .append(&[
            record(nov_30 - 1, 90.0),
            record(nov_30, 95.0),
            record(nov_30 + 1, 99.0),
        ])
        .expect("appended");
    // The same day again (re-closed) counts once, as last written; a torn line is skipped.
    store.append(&[record(nov_30, 96.0)]).expect("appended");
    let file = dir.path().join("kpi/2025-11.jsonl");
    let mut text = std::fs::read_to_string(&file).expect("month file");
    text.push_str("{\"day\": 20");
    std::fs::write(&file, text).expect("damaged");
    let november = store.month("2025-11").expect("read");
    let values: Vec<f64> = november.days.iter().map(|d| d.values[0].value).collect();
    assert_eq!(values, vec![90.0, 96.0]);
    assert_eq!(november.unreadable_lines, 1);
    assert_eq!(store.month("2025-12").expect("read").days.len(), 1);
    // A damaged ledger is set aside and counting starts again.
    std::fs::write(dir.path().join("kpi/ledger.json"), "{not json").expect("damaged");
    assert_eq!(store.load_ledger().late_samples, 0);
    assert!(dir.path().join("kpi/ledger.json.bad").is_file());
}

#[test]
fn a_day_becomes_kpi_lines_at_its_local_midnight() {
    let record = DayRecord {
        day: super::day_of("2025-11-27").expect("date"),
        date: "2025-11-27".into(),
        complete: false,
        values: vec![KpiValue {
            kpi: "voltage_qualification".into(),
            device: "feeder-1".into(),
            subject: Some("ua_v".into()),
            severity: None,
            value: 97.5,
            numerator: Some(1_404.0),
            denominator: Some(1_440.0),
        }],
        notable: Vec::new(),
        cleared: Vec::new(),
        active_at_end: Vec::new(),
    };
    let mut line = String::new();
    for sample in super::lines::samples(&record, "幸福小区", "gw", 8.0) {
        crate::line_protocol::encode(&sample, &mut line);
    }
    assert_eq!(
        line,
        "kpi,device=feeder-1,gateway=gw,kpi=voltage_qualification,site=幸福小区,subject=ua_v \
         value=97.5,target=95,numerator=1404,denominator=1440,final=false 1764172800000000000\n"
    );
}

#[test]
fn leaking_nights_stay_out_of_the_mnf_baseline() {
    let rules = rule("id = \"W16\"\nkind = \"night_flow\"\nseverity = \"warn\"\nfield = \"flow\"\nnet_above_l_per_household_h = 3.0");
    let (_dir, engine) = engine_with(&rules, "", "", None, "[kpi]\nhouseholds = 420\n");
    let mut ledger = Ledger::default();
    let mut days = Vec::new();
    // Three nights at 2.4 m³/h (4.0 L per household and hour net, above 3), then four at 1.0
    // after a repair; a sample every 5 minutes.
    for (d, flow) in [2.4, 2.4, 2.4, 1.0, 1.0, 1.0, 1.0].into_iter().enumerate() {
        let base = d as i64 * 86_400;
        for t in (0..24 * HOUR).step_by(300) {
            feed(&mut ledger, &engine, &sample(base + t, &[("flow", flow)]));
        }
        days.extend(ledger.tick(MIDNIGHT + (base + 86_400 + 300) * S, &params(), Vec::new));
    }
    assert_eq!(days.len(), 7);
    // The leaking nights never joined the baseline: none until three repaired nights are in
    // (day 6), and then their median, 1.0 (with the leaking nights: 1.7).
    assert!(days[..6]
        .iter()
        .all(|d| d.values.iter().all(|v| v.kpi != "mnf_baseline")));
    close_to(value(&days[6], "mnf_baseline", None).value, 1.0);
}
