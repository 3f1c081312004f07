//! A month of the renovated community without faults raises no alarm and tells the robots of no
//! incident: `demo-month --no-faults` (December 2025, after its two weeks of night-flow
//! baselines, every device once a minute through the shipped rule packs and the KPI ledger).
//! The other half of `fault_notifications.rs`: every rule that catches its fault there must stay
//! quiet through a month of ordinary days, winter heating and night use included.

use retrofit_gateway::demo::month::{run, MonthOptions};

#[test]
fn a_month_of_the_renovated_community_raises_no_alarm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = MonthOptions {
        config: None,
        month: "2025-12".into(),
        data_dir: dir.path().join("data"),
        output: dir.path().join("report.html"),
        faults: false,
    };
    let summary = run(&options).unwrap_or_else(|e| panic!("the month runs: {e:#}"));
    println!(
        "{} days, {} samples, {} alarms in {} incidents: {:?}",
        summary.days,
        summary.samples,
        summary.alarms_raised,
        summary.incidents,
        summary.raised_by_rule
    );
    assert_eq!(summary.days, 31);
    // Every device once a minute, all month: the replay really ran.
    assert!(summary.samples > 31 * 1440 * 30, "{}", summary.samples);
    assert_eq!(summary.alarms_raised, 0, "{:?}", summary.raised_by_rule);
    assert_eq!(summary.incidents, 0);
    let report = std::fs::read_to_string(&options.output).expect("the report is written");
    assert!(report.contains("本月无报警"), "the report says so");
}
