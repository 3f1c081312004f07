//! A real full card: a 6 MiB tmpfs as `data_dir` (mostly taken by another file), InfluxDB away
//! until the telemetry log has filled it, then back. The log must keep taking readings by
//! dropping its oldest segment (counted), an alarm raised while the card is full must reach its
//! webhook, the backlog and every new reading must arrive, and the space must come back.
//! Mounting needs root, as `scripts/test.sh` runs.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::http_script::{status, ScriptedServer};
use common::services::{influxql, service_url};
use common::uplink::Uplink;
use retrofit_gateway::buffer::reserve::space;
use retrofit_gateway::model::{Field, Receipt, Sample, Value};
use retrofit_gateway::pipeline::{Options, Pipeline};
use retrofit_gateway::sinks::influx::forwarder::with_log;
use tokio::time::Instant;

/// Unmounts the tmpfs when the test ends, however it ends.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn mount_tmpfs(at: &Path, size: &str) -> Mounted {
    std::fs::create_dir_all(at).expect("mount point");
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(at)
        .status()
        .expect("mount runs");
    assert!(
        status.success(),
        "cannot mount a tmpfs at {} (the full-disk test needs root, as scripts/test.sh runs)",
        at.display()
    );
    Mounted(at.to_path_buf())
}

const START_NS: i64 = 1_764_150_000_000_000_000;

/// A reading of the pump, made large (a 400-character note) so the card fills in seconds.
fn reading(i: i64, fault_word: i64) -> Sample {
    Sample {
        measurement: Arc::from("pump_station"),
        device: Arc::from("booster-1"),
        tags: Vec::new().into(),
        fields: vec![
            Field {
                name: Arc::from("fault_word"),
                value: Value::Int(fault_word),
            },
            Field {
                name: Arc::from("note"),
                value: Value::Text("满".repeat(130)),
            },
        ],
        time_ns: START_NS + i * 1_000_000,
        receipt: Receipt::none(),
    }
}

/// Sends `n` readings with `fault_word` through the rules stage, numbering them on from `sent`.
async fn send_readings(pipeline: &Pipeline, sent: &mut i64, n: usize, fault_word: i64) {
    let input = pipeline.input();
    for _ in 0..n {
        input
            .send(reading(*sent, fault_word))
            .await
            .expect("stage runs");
        *sent += 1;
    }
}

async fn count_readings(url: &str, db: &str, from: i64, to: i64) -> u64 {
    let q = format!(
        "SELECT count(fault_word) FROM pump_station WHERE time >= {} AND time < {}",
        START_NS + from * 1_000_000,
        START_NS + to * 1_000_000
    );
    influxql(url, db, &q).await["results"][0]["series"][0]["values"][0][1]
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_card_keeps_taking_readings_delivers_the_backlog_and_the_alarm() {
    let Some(influx_url) = service_url("RGW_TEST_INFLUXDB1_URL") else {
        return;
    };
    let database = format!("retrofit_full_disk_{}", std::process::id());
    influxql(
        &influx_url,
        &database,
        &format!("CREATE DATABASE {database}"),
    )
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let _mounted = mount_tmpfs(&data, "6m");
    // Another file takes most of the card: 2.5 MiB stay free for the gateway.
    let free = space(&data).expect("statvfs").available;
    let filler = vec![0u8; (free - (5 << 19)) as usize];
    std::fs::write(data.join("other-program.log"), filler).expect("filler");

    let uplink = Uplink::start(&influx_url).await;
    let hook = ScriptedServer::start(|_, _| status(200)).await;
    std::fs::write(dir.path().join("hook.url"), format!("{}/alarm", hook.url())).expect("url");
    let extra = format!(
        "[[alarms.webhook]]\nname = \"hook\"\nkind = \"generic\"\nurl_file = {:?}\nmin_severity = \"info\"\n\
         [buffer]\nmax_size_mb = 64\nsegment_size_mb = 1\n\
         [outputs.influxdb]\nurl = \"{}\"\napi = \"v1\"\ndatabase = \"{database}\"\nflush_interval = \"200ms\"\ntimeout = \"2s\"\n",
        dir.path().join("hook.url"),
        uplink.url()
    );
    let config = common::pump_alarms::config(dir.path(), &extra);
    assert_eq!(config.gateway.gateway.data_dir, data);
    let alarms = Pipeline::start(&config, Options::default()).expect("pipeline starts");
    let log = alarms.observed().log.clone().expect("a telemetry log").0;
    let stats = || async { with_log(&log, |log| log.stats().clone()).await };

    // InfluxDB away: the log fills the card and starts dropping its oldest segment.
    let mut sent = 0i64;
    let mut lowest = u64::MAX;
    let mut look = || lowest = lowest.min(space(&data).expect("statvfs").available);
    let deadline = Instant::now() + Duration::from_secs(60);
    while stats().await.dropped_disk_full == 0 {
        look();
        assert!(
            Instant::now() < deadline,
            "the card never filled: {:?}",
            stats().await
        );
        send_readings(&alarms, &mut sent, 200, 0).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // While the card is full: readings are still taken, and a pump fault is raised and reaches
    // its webhook.
    let before = stats().await.appended;
    send_readings(&alarms, &mut sent, 3001, 1).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let delivered = hook.recorded().iter().any(|r| r.body.contains("W13"));
        let taken = stats().await.appended - before;
        look();
        if delivered && taken >= 3001 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "on the full card: alarm delivered {delivered}, {taken} of 3001 readings taken; {:?}",
            stats().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let full = stats().await;
    assert!(
        full.dropped_disk_full > 0 && full.io_errors == 0,
        "{full:?}"
    );

    // InfluxDB back: the backlog drains, and readings sent now all arrive.
    uplink.set_up(true);
    let after_outage = sent;
    send_readings(&alarms, &mut sent, 500, 0).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while with_log(&log, |log| log.pending()).await > 0 {
        assert!(
            Instant::now() < deadline,
            "the backlog did not drain: {:?}",
            stats().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dropped = stats().await.dropped_disk_full;
    let arrived = count_readings(&influx_url, &database, 0, after_outage).await;
    assert!(
        arrived <= after_outage as u64 && arrived + dropped >= after_outage as u64,
        "{arrived} of {after_outage} readings of the outage arrived, {dropped} counted as dropped"
    );
    assert_eq!(
        count_readings(&influx_url, &database, after_outage, sent).await,
        (sent - after_outage) as u64,
        "every reading after the outage arrived"
    );
    // The delivered segments are gone (the log keeps only its active segment): the room is
    // back, and so is the reserve.
    let kept = with_log(&log, |log| log.total_bytes()).await;
    assert!(kept <= 1 << 20, "{kept} bytes left in the log");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let room = space(&data).expect("statvfs").available;
        if room >= lowest + (256 << 10) && data.join("reserve").exists() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "room {room} (lowest {lowest}), reserve present {}",
            data.join("reserve").exists()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "full card: {sent} readings sent, {dropped} dropped as disk_full (counted), {arrived} of the outage's {after_outage} arrived, alarm delivered"
    );
    alarms.shutdown(Duration::from_secs(4)).await;
    influxql(&influx_url, &database, &format!("DROP DATABASE {database}")).await;
}
