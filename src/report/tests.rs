//! Monthly figures from stored days, by hand: rates from counts, the worst day, trust marks,
//! and a page that carries everything in itself.

use super::notes::ReportNotes;
use super::*;
use crate::kpi::KpiValue;

fn value(kpi: &str, device: &str, value: f64, counts: Option<(f64, f64)>) -> KpiValue {
    KpiValue {
        kpi: kpi.into(),
        device: device.into(),
        subject: None,
        severity: None,
        value,
        numerator: counts.map(|c| c.0),
        denominator: counts.map(|c| c.1),
    }
}

fn day(date: &str, values: Vec<KpiValue>) -> DayRecord {
    DayRecord {
        day: day_of(date).expect("date"),
        date: date.into(),
        complete: true,
        values,
        notable: vec![NotableAlarm {
            id: "prv-outlet/W5/1".into(),
            device: "prv-outlet".into(),
            rule: "W5".into(),
            severity: "warn".into(),
            raised_ns: 1_764_500_000_000_000_000,
            cleared_ns: Some(1_764_500_600_000_000_000),
            message: "<script>alert(1)</script> 顶层压力不足".into(),
        }],
        cleared: Vec::new(),
        active_at_end: Vec::new(),
    }
}

fn stored_month() -> (tempfile::TempDir, KpiStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = KpiStore::new(dir.path());
    let days = [
        // Pressure 90 of 100, 99 of 200, 100 of 100 samples compliant; completeness 80 %, 90 %,
        // 70 % of the expected; unbalance P95 1.2, 2.5, 0.8 %.
        ("2025-12-01", 90.0, 100.0, 80.0, 1.2),
        ("2025-12-02", 198.0, 200.0, 90.0, 2.5),
        ("2025-12-03", 100.0, 100.0, 70.0, 0.8),
    ];
    let records: Vec<DayRecord> = days
        .iter()
        .map(|(date, inside, total, complete, p95)| {
            day(
                date,
                vec![
                    value(
                        "pressure_compliance",
                        "prv-outlet",
                        100.0 * inside / total,
                        Some((*inside, *total)),
                    ),
                    value(
                        "completeness",
                        "prv-outlet",
                        *complete,
                        Some((*complete, 100.0)),
                    ),
                    value(
                        "voltage_unbalance_p95",
                        "tx1-meter",
                        *p95,
                        Some((*p95, 1440.0)),
                    ),
                    value("completeness", "tx1-meter", 100.0, Some((100.0, 100.0))),
                ],
            )
        })
        .collect();
    store.append(&records).expect("stored");
    (dir, store)
}

#[test]
fn a_month_is_made_from_the_days_counts_with_its_worst_days_and_trust() {
    let (_dir, store) = stored_month();
    let report = MonthReport::build(&store, "2025-12", &[], ("幸福小区", "gw")).expect("report");
    assert_eq!((report.days_with_data, report.days_in_month), (3, 31));
    let pressure = report.of("pressure_compliance").next().expect("pressure");
    // (90 + 198 + 100) / (100 + 200 + 100) = 388 / 400 = 97 %, not the mean of 90, 99, 100.
    assert!((pressure.value - 97.0).abs() < 1e-9, "{}", pressure.value);
    assert_eq!(pressure.met(), Some(true));
    assert_eq!(
        pressure.worst_days(3),
        vec![("2025-12-01".to_string(), 90.0)]
    );
    // Completeness (80 + 90 + 70) / 300 = 80 %: the figure rests on too little data.
    assert!((pressure.completeness.expect("measured") - 80.0).abs() < 1e-9);
    assert!(!pressure.trusted());
    // The month's 95th percentile is the worst day's, against ≤ 2 %.
    let unbalance = report
        .of("voltage_unbalance_p95")
        .next()
        .expect("unbalance");
    assert_eq!((unbalance.value, unbalance.met()), (2.5, Some(false)));
    assert!(unbalance.trusted());
    assert_eq!(report.notable.len(), 3);
    assert!(report.notable.iter().all(|n| n.cleared_ns.is_some()));
}

#[test]
fn an_alarm_raised_before_the_month_and_still_raised_is_among_those_that_mattered() {
    let (_dir, store) = stored_month();
    let raised_ns = 1_764_000_000_000_000_000; // 2025-11-25, before December
    let mut last = day("2025-12-04", Vec::new());
    last.notable.clear();
    last.active_at_end = vec![NotableAlarm {
        id: format!("dma-flow/W17.crit/{raised_ns}"),
        device: "dma-flow".into(),
        rule: "W17.crit".into(),
        severity: "crit".into(),
        raised_ns,
        cleared_ns: None,
        message: String::new(),
    }];
    store.append(&[last]).expect("stored");
    let report = MonthReport::build(&store, "2025-12", &[], ("s", "gw")).expect("report");
    let early: Vec<&NotableAlarm> = report
        .notable
        .iter()
        .filter(|n| n.raised_ns == raised_ns)
        .collect();
    assert_eq!(early.len(), 1);
    assert_eq!(
        (early[0].rule.as_str(), early[0].cleared_ns),
        ("W17.crit", None)
    );
}

#[test]
fn the_page_holds_everything_itself_and_escapes_what_devices_say() {
    let (_dir, store) = stored_month();
    let report = MonthReport::build(&store, "2025-12", &[], ("幸福小区", "gw")).expect("report");
    let page = html::render(&report, &ReportNotes::default(), "2026-01-01 08:00");
    assert!(page.starts_with("<!doctype html>"));
    for external in ["http://", "https://", "<script", "<link", "src="] {
        assert!(!page.contains(external), "the page contains {external:?}");
    }
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt; 顶层压力不足"));
    assert!(page.contains("供水压力合格率") && page.contains("Water pressure compliance"));
    assert!(page.contains("未达标 not met"));
    assert!(page.contains("⚠ 80.0% 数据不全 incomplete"));
    assert!(page.contains("<svg"));
}

#[test]
fn an_open_day_joins_the_running_month_and_a_bad_month_is_refused() {
    let (_dir, store) = stored_month();
    let today = day(
        "2025-12-04",
        vec![value(
            "pressure_compliance",
            "prv-outlet",
            50.0,
            Some((50.0, 100.0)),
        )],
    );
    let report = MonthReport::build(&store, "2025-12", &[today], ("s", "gw")).expect("report");
    assert!(report.includes_open_day);
    let pressure = report.of("pressure_compliance").next().expect("pressure");
    assert!((pressure.value - 100.0 * 438.0 / 500.0).abs() < 1e-9);
    assert!(matches!(month_days("2025-13"), Err(ReportError::Month(_))));
    assert!(matches!(month_days("2025-1"), Err(ReportError::Month(_))));
    assert_eq!(month_days("2024-02").expect("a month").1, 29);
    let empty = MonthReport::build(&store, "2026-01", &[], ("s", "gw")).expect("report");
    assert!(
        html::render(&empty, &ReportNotes::default(), "now").contains("No figures for this month")
    );
}

#[test]
fn the_page_names_devices_and_rules_and_keeps_provenance_to_its_appendix() {
    let (_dir, store) = stored_month();
    let mut raises = value("alarm_raises", "prv-outlet", 2.0, None);
    raises.subject = Some("W5".into());
    raises.severity = Some("warn".into());
    let mut incidents = value("incidents", "幸福小区", 1.0, None);
    incidents.subject = None;
    store
        .append(&[day("2025-12-04", vec![raises, incidents])])
        .expect("stored");
    let config = crate::config::load_config(std::path::Path::new("config/demo.toml"))
        .expect("the demo config loads");
    let notes = ReportNotes::of(&config);
    let report = MonthReport::build(&store, "2025-12", &[], ("幸福小区", "gw")).expect("report");
    let page = html::render(&report, &notes, "2026-01-01 08:00");
    let w5 = notes.rule("W5").expect("W5 is in the packs");
    let place = notes.place("prv-outlet");
    assert_ne!(place, "prv-outlet", "the demo names its PRV outlet");
    let (alarms, appendix) = page
        .split_once("附录：报警规则依据")
        .expect("the page has the appendix");
    let alarms = &alarms[alarms.find("<h2>报警").expect("the alarm section")..];
    assert!(alarms.contains("本月报警 2 次，归为 1 起事件"), "{alarms}");
    assert!(alarms.contains(&format!("W5<br><small>{}</small>", w5.title)));
    assert!(alarms.contains(place), "the device by its name: {alarms}");
    assert!(
        !alarms.contains(&w5.source),
        "no provenance in the alarm tables"
    );
    assert!(appendix.contains(&w5.source) && appendix.contains(&w5.requirement));
}
