//! The gateway binary killed with SIGKILL at random moments, 50 times, restarted each time, its
//! telemetry log kept: every reading the log had accepted arrives in VictoriaMetrics, and every
//! start succeeds.
//!
//! The simulated booster controller counts the reads it answers (`poll_counter`); the test
//! profile reads only that register, one read per poll, so a lost reading is a missing value. A
//! kill may lose the readings in memory that were not yet accepted (read from the device, not yet
//! written to the log): a missing value is allowed only when it can have been served in the last
//! half second before a kill (its neighbours' timestamps bound when it was served). Any other gap
//! fails the test.

mod common;

use std::process::{Child, Command};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::example_site;
use common::services::{service_url, victoria_values};
use tokio::time::Instant;

const BINARY: &str = env!("CARGO_BIN_EXE_retrofit-gateway");
const KILLS: usize = 50;
/// Readings served this long before a kill may be lost with it (not yet in the log).
const IN_FLIGHT_MS: i64 = 500;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Kill delays from a fixed seed (reproducible), 300–1500 ms.
fn delays(seed: u64) -> Vec<Duration> {
    let mut state = seed;
    (0..KILLS)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            Duration::from_millis(300 + (state >> 33) % 1200)
        })
        .collect()
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([name, &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_fifty_times_loses_nothing_the_log_accepted() {
    let Some(url) = service_url("RGW_TEST_VICTORIA_URL") else {
        return;
    };
    let site = example_site().await;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("profiles")).expect("profile dir");
    std::fs::write(
        dir.path().join("profiles/counter.toml"),
        r#"kind = "pump_station"
[[point]]
name = "poll_counter"
fc = 3
address = 0x001C
type = "u32"
order = "CDAB"
"#,
    )
    .expect("profile written");
    let gateway = format!("it-crash-{}-{}", std::process::id(), now_ms());
    let pump_room = site.community.address("pump-room").expect("pump room bus");
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"[gateway]
id = "{gateway}"
site = "crash-test"
data_dir = {data:?}
profile_dir = "profiles"

[[bus]]
id = "pump-room"
transport = "rtu_over_tcp"
address = "{pump_room}"

[[device]]
id = "booster-1"
bus = "pump-room"
unit = 1
profile = "counter"
interval = "100ms"

[outputs.influxdb]
url = "{url}"
api = "v2"
org = "water"
bucket = "community"
flush_interval = "200ms"
"#,
            data = dir.path().join("data"),
        ),
    )
    .expect("config written");

    let start = |run: usize| {
        let log = dir.path().join(format!("run-{run}.log"));
        let child = common::spawn_gateway(BINARY, &["run", "-c"], &config, &log);
        (child, log)
    };

    let mut kills: Vec<i64> = Vec::new();
    for (run, delay) in delays(0x5EED_2021).into_iter().enumerate() {
        let (mut child, log) = start(run);
        tokio::time::sleep(delay).await;
        let early = child.try_wait().expect("status");
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            early.is_none(),
            "run {run} exited by itself: {early:?}\n{text}"
        );
        assert!(
            text.contains("Gateway started"),
            "run {run} did not start:\n{text}"
        );
        signal(&child, "-KILL");
        kills.push(now_ms());
        let _ = child.wait();
    }

    // A last, clean run delivers the backlog; freezing the simulator stops the counter.
    let (mut child, log) = start(KILLS);
    tokio::time::sleep(Duration::from_secs(1)).await;
    site.community.set_frozen(true);
    let last = site.community.truth("booster-1").expect("booster")["poll_counter"] as i64;
    let series = "pump_station_poll_counter";
    let deadline = Instant::now() + Duration::from_secs(30);
    let values = loop {
        let values = victoria_values(&url, series, &gateway, "booster-1").await;
        if values.iter().any(|(_, v)| *v as i64 == last) {
            break values;
        }
        assert!(
            Instant::now() < deadline,
            "counter {last} never arrived; {} values so far\n{}",
            values.len(),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    signal(&child, "-TERM");
    assert!(child.wait().expect("exits").success());

    let mut seen: Vec<(i64, i64)> = values.iter().map(|(t, v)| (*v as i64, *t)).collect();
    seen.sort_unstable();
    seen.dedup_by_key(|(v, _)| *v);
    let present: std::collections::BTreeMap<i64, i64> = seen.into_iter().collect();
    let mut losses_per_kill = vec![0usize; kills.len()];
    for value in 1..=last {
        if present.contains_key(&value) {
            continue;
        }
        let before = present
            .range(..value)
            .next_back()
            .map(|(_, t)| *t)
            .unwrap_or(0);
        let after = present
            .range(value..)
            .next()
            .map(|(_, t)| *t)
            .unwrap_or(i64::MAX);
        // Served between its neighbours; lost only if that can have been within the last half
        // second before a kill.
        let kill = kills
            .iter()
            .position(|k| before <= *k && *k - IN_FLIGHT_MS <= after);
        let Some(kill) = kill else {
            panic!("reading {value} lost between {before} and {after} ms, not within {IN_FLIGHT_MS} ms before a kill");
        };
        losses_per_kill[kill] += 1;
    }
    eprintln!(
        "{last} readings, {} lost at kills ({losses_per_kill:?})",
        losses_per_kill.iter().sum::<usize>()
    );
}
