//! End to end against the simulated community on loopback: every device of `config/demo.toml`
//! (Modbus devices, and the DL/T 645, CJ/T 188 and M-Bus meters behind their serial servers) is
//! polled at its interval, decodes to the simulator's own values, and a device that stops
//! answering does not slow its healthy neighbours on a shared bus.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{
    collect_for, count_by_device, example_site, expected_range, intervals, same_value,
    start_gateway,
};
use retrofit_gateway::config::ConfigDuration;
use retrofit_gateway::sources::modbus::status::CommState;
use retrofit_sim::faults::{Fault, FaultKind};

const WARM_UP_BOUND: Duration = Duration::from_secs(10);
const WINDOW: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_device_reports_every_interval_with_the_simulators_values() {
    let site = example_site().await;
    // Hold the physics still so that what the gateway decodes can be compared with what the
    // simulator serves.
    site.community.set_frozen(true);
    let (gateway, mut rx) = start_gateway(&site.config);
    let devices = site.device_ids();
    let names: Vec<&str> = devices.iter().map(String::as_str).collect();
    let first = common::until_each_device_reported(&mut rx, &names, WARM_UP_BOUND).await;
    let window = collect_for(&mut rx, WINDOW).await;
    gateway.stop(Duration::from_secs(4)).await;

    let counts = count_by_device(&window);
    let intervals = intervals(&site.config);
    for device in &devices {
        let count = counts.get(device.as_str()).copied().unwrap_or(0);
        let range = expected_range(intervals[device], WINDOW);
        assert!(
            range.contains(&count),
            "{device} every {:?}: {count} samples in {WINDOW:?}, expected {range:?}",
            intervals[device]
        );
    }

    // Every point or reading of every profile arrives (slow points in the first cycle) and
    // equals the engineering value the simulator encoded.
    for device in &site.config.gateway.device {
        let profile = site.config.profile_of(device).expect("profile loaded");
        let truth = site.community.truth(&device.id).expect("simulated device");
        let mut seen = BTreeSet::new();
        for sample in first
            .iter()
            .chain(&window)
            .filter(|s| *s.device == *device.id)
        {
            assert_eq!(&*sample.measurement, profile.kind.as_str());
            for field in &sample.fields {
                let value = field.value.as_f64().expect("numeric field");
                let expected = truth
                    .get(&*field.name)
                    .unwrap_or_else(|| panic!("{}: simulator has no {}", device.id, field.name));
                assert!(
                    same_value(value, *expected),
                    "{}.{}: decoded {value}, simulator serves {expected}",
                    device.id,
                    field.name
                );
                seen.insert(field.name.to_string());
            }
        }
        let all: BTreeSet<String> = profile.field_names().map(String::from).collect();
        assert_eq!(
            seen, all,
            "{}: points or readings never reported",
            device.id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_device_does_not_change_the_sample_rate_of_its_bus_neighbours() {
    let mut site = example_site().await;
    // A long timeout, as 4G DTUs need, makes every unanswered read expensive: three of them
    // (one poll of a silent meter, read by read) would outlast the 2 s poll interval.
    for bus in &mut site.config.gateway.bus {
        bus.timeout = ConfigDuration::from_millis(900);
    }
    // One silent device on a Modbus TCP bus and two on a shared RTU-over-TCP connection, where a
    // timeout also tears down the connection the healthy devices use. Without backoff the two
    // would take 3 s of timeouts out of every 2 s poll cycle of that bus.
    let silent = ["prv-outlet", "tx2-meter", "feeder-2"];
    for device in silent {
        site.community.inject(Fault::on(FaultKind::Silent, device));
    }
    let healthy = [
        "prv-inlet",
        "dma-flow",
        "hv-meter",
        "tx1-meter",
        "feeder-1",
        "tx1-temp",
        "tx2-temp",
    ];
    let (window, status) =
        common::assert_unslowed(&site.config, &healthy, WARM_UP_BOUND, WINDOW).await;
    let counts = count_by_device(&window);
    for device in silent {
        assert_eq!(counts.get(device), None, "{device} is silent");
        assert_eq!(status[device].state, CommState::Offline, "{device}");
        assert!(
            status[device].timeouts >= 3,
            "{device}: {:?}",
            status[device]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exceptions_and_slow_replies_are_told_apart_from_link_failures() {
    let site = example_site().await;
    site.community
        .inject(Fault::on(FaultKind::Exception, "dma-flow"));
    site.community
        .inject(Fault::on(FaultKind::SlowReplies, "break-tank"));
    let (gateway, mut rx) = start_gateway(&site.config);
    common::until_each_device_reported(&mut rx, &["prv-inlet", "break-tank"], WARM_UP_BOUND).await;
    let window = collect_for(&mut rx, Duration::from_secs(4)).await;
    let status = gateway.status.snapshot();
    gateway.stop(Duration::from_secs(4)).await;

    let counts: BTreeMap<_, _> = count_by_device(&window);
    let refused = &status["dma-flow"];
    assert!(refused.exceptions >= 2, "{refused:?}");
    assert_eq!(refused.timeouts + refused.link_errors, 0, "{refused:?}");
    assert_eq!(refused.state, CommState::Degraded);
    assert_eq!(counts.get("dma-flow"), None);

    // 300 ms late is within the 500 ms timeout: late but answered.
    let slow = &status["break-tank"];
    assert_eq!(slow.timeouts, 0, "{slow:?}");
    assert_eq!(slow.state, CommState::Online);
    assert!(counts.get("break-tank").copied().unwrap_or(0) >= 1);
}

/// A device whose register map has holes (exception 2 on registers 0x0C–0x0F, between its
/// points, and on 0x22–0x23, which hold `runtime_pump2_h`) behind a bus whose `max_gap` reads
/// across both: from the first poll every other point arrives, at the device's rate and at the
/// simulator's values; the refused point is skipped; once learned, no read is refused again,
/// and the status says what the plan avoids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_with_holes_in_its_register_map_keeps_reporting_every_other_point() {
    use retrofit_sim::registers::Table;
    let site = example_site().await;
    site.community.set_frozen(true);
    site.community
        .unmap("booster-1", Table::Holding, 0x0C..0x10);
    site.community
        .unmap("booster-1", Table::Holding, 0x22..0x24);
    // Its own data directory: the lessons are kept there.
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = site.config.clone();
    config.gateway.gateway.data_dir = dir.path().to_path_buf();
    let (gateway, mut rx) = start_gateway(&config);
    let first = common::until_each_device_reported(&mut rx, &["booster-1"], WARM_UP_BOUND).await;
    let learned = gateway.status.snapshot()["booster-1"].clone();
    let window = collect_for(&mut rx, WINDOW).await;
    let after = gateway.status.snapshot()["booster-1"].clone();
    gateway.stop(Duration::from_secs(4)).await;

    let device = site
        .config
        .gateway
        .device
        .iter()
        .find(|d| d.id == "booster-1")
        .expect("configured");
    let profile = site.config.profile_of(device).expect("profile");
    let truth = site.community.truth("booster-1").expect("simulated");
    let expected: BTreeSet<String> = profile
        .field_names()
        .filter(|name| *name != "runtime_pump2_h")
        .map(String::from)
        .collect();
    let booster: Vec<_> = first
        .iter()
        .chain(&window)
        .filter(|s| &*s.device == "booster-1")
        .collect();
    // Points read at the device's own interval are in every sample; the slower counters
    // (runtime hours, energy) in the polls they are due in, the first among them.
    let every_poll: BTreeSet<String> = profile
        .points
        .iter()
        .filter(|p| p.interval.is_none())
        .map(|p| p.name.clone())
        .collect();
    let mut seen = BTreeSet::new();
    for sample in &booster {
        let names: BTreeSet<String> = sample.fields.iter().map(|f| f.name.to_string()).collect();
        assert!(names.is_subset(&expected), "{names:?}");
        assert!(names.is_superset(&every_poll), "{names:?}");
        seen.extend(names);
        for field in &sample.fields {
            let value = field.value.as_f64().expect("numeric");
            assert!(same_value(value, truth[&*field.name]), "{}", field.name);
        }
    }
    assert_eq!(seen, expected, "every point but the refused one");
    let in_window = booster.len() - 1;
    let range = expected_range(Duration::from_secs(1), WINDOW);
    assert!(
        range.contains(&in_window),
        "{in_window} polls in {WINDOW:?}"
    );
    // Learned in the first poll, which cost a few refused reads; none after it.
    assert!(learned.exceptions > 0, "{learned:?}");
    assert_eq!(after.exceptions, learned.exceptions, "{after:?}");
    assert_eq!(after.state, CommState::Online);
    let adapted = after.adapted.expect("the status says what the plan avoids");
    assert!(adapted.contains("12–15"), "{adapted}");
    assert!(
        adapted.contains("runtime_pump2_h（寄存器 34）"),
        "{adapted}"
    );

    // Kept on the card: `plan` shows the learned plan, and a restart starts with it (no
    // refused read at all, every point but the refused one in its first poll).
    let kept = dir.path().join("modbus/lessons-pump-room.json");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !kept.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "no {}",
            kept.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let plan = retrofit_gateway::commands::plan_report(&config);
    let booster = plan
        .split("  booster-1 ")
        .nth(1)
        .and_then(|rest| rest.split("\n  break-tank").next())
        .expect("booster-1 in the plan");
    assert!(
        booster.contains("adapted") && booster.contains("12–15"),
        "{plan}"
    );
    let (again, mut rx) = start_gateway(&config);
    let first = common::until_each_device_reported(&mut rx, &["booster-1"], WARM_UP_BOUND).await;
    let restarted = again.status.snapshot()["booster-1"].clone();
    again.stop(Duration::from_secs(4)).await;
    assert_eq!(restarted.exceptions, 0, "{restarted:?}");
    let sample = first
        .iter()
        .find(|s| &*s.device == "booster-1")
        .expect("a sample");
    let names: BTreeSet<String> = sample.fields.iter().map(|f| f.name.to_string()).collect();
    assert_eq!(names, expected, "the first poll after a restart");
}
