//! `plan` on the shipped demo config: coalescing saves Modbus requests, and the report names
//! every bus and device (meters included) with its reads.

use std::path::Path;

use retrofit_gateway::commands::plan_report;
use retrofit_gateway::config::{load, EnvOverlay};
use retrofit_gateway::sources::meters::exchange_bytes;
use retrofit_gateway::sources::modbus::plan::{DevicePlan, PlanLimits};

#[test]
fn the_demo_plan_issues_fewer_requests_than_there_are_points() {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo.toml");
    let config = load(&demo, EnvOverlay::None).unwrap_or_else(|e| panic!("{e}"));
    let (mut points, mut requests) = (0, 0);
    let (mut readings, mut exchanges) = (0, 0);
    for device in &config.gateway.device {
        let profile = config.profile_of(device).expect("validated profile");
        if device.meter_address.is_some() {
            readings += profile.readings.len();
            exchanges += exchange_bytes(profile).len();
            continue;
        }
        let bus = config
            .gateway
            .bus
            .iter()
            .find(|b| b.id == device.bus)
            .expect("validated bus");
        let mut plan = DevicePlan::new(device, profile, PlanLimits::of(bus));
        let first = plan.requests(0);
        // Every point is served exactly once in the first cycle.
        let mut served: Vec<usize> = first.iter().flat_map(|r| r.points.clone()).collect();
        served.sort_unstable();
        assert_eq!(
            served,
            (0..plan.points.len()).collect::<Vec<_>>(),
            "{}",
            device.id
        );
        points += plan.points.len();
        requests += first.len();
    }
    assert_eq!(points, 184);
    assert!(
        requests * 4 < points,
        "{requests} requests for {points} points"
    );

    let report = plan_report(&config);
    for bus in &config.gateway.bus {
        assert!(report.contains(&format!("bus {} (", bus.id)), "{report}");
    }
    for device in &config.gateway.device {
        let address = match (device.unit, &device.meter_address) {
            (Some(unit), _) => format!("unit {unit}"),
            (None, Some(meter)) => format!("meter {meter}"),
            (None, None) => panic!("{} has neither unit nor meter address", device.id),
        };
        assert!(
            report.contains(&format!("  {} {address} ", device.id)),
            "{report}"
        );
    }
    // Six DL/T 645 meters read 7 identifiers one by one; the 11 heat meters send 8 readings and
    // the 4 water meters 2 in one reply each.
    assert_eq!(
        (readings, exchanges),
        (6 * 7 + 11 * 8 + 4 * 2, 6 * 7 + 11 + 4)
    );
    let total = format!(
        "total: {} points read with {} requests",
        points + readings,
        requests + exchanges
    );
    assert!(report.contains(&total), "{report}");
}
