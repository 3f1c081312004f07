//! Store-and-forward throughput (run by `bench/forward.sh`, which starts VictoriaMetrics):
//!
//! A. encode + append: samples of a 20-field pump station encoded as line protocol and appended
//!    to the telemetry log (sync every second), as fast as possible;
//! B. drain: the backlog from A forwarded to InfluxDB's v2 write API (5 000-line gzip batches),
//!    as after an outage;
//! C. end to end: encoding, appending and forwarding at the same time for 10 s.
//!
//! Usage: forward_bench URL [SAMPLES]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use retrofit_gateway::buffer::{LogOptions, SegmentLog};
use retrofit_gateway::config::{ConfigDuration, InfluxApi, InfluxOutput};
use retrofit_gateway::line_protocol;
use retrofit_gateway::model::{Field, Sample, Value};
use retrofit_gateway::sinks::influx::forwarder::{
    with_log, Forwarder, ForwarderOptions, SharedLog,
};
use retrofit_gateway::sinks::influx::write::WriteEndpoint;
use tokio::sync::{watch, Notify};

const FIELDS: usize = 20;

fn sample(i: u64, run: u64) -> Sample {
    let fields = (0..FIELDS)
        .map(|f| Field {
            name: Arc::from(format!("field_{f:02}").as_str()),
            value: Value::Float(0.47 + (i % 1000) as f64 * 0.001 + f as f64),
        })
        .collect();
    Sample {
        measurement: Arc::from("pump_station"),
        device: Arc::from("bench"),
        tags: vec![
            ("device".to_string(), format!("pump-{:03}", i % 100)),
            ("gateway".to_string(), format!("bench-{run}")),
            ("site".to_string(), "幸福小区".to_string()),
        ]
        .into(),
        fields,
        time_ns: 1_764_150_000_000_000_000 + i as i64 * 1_000,
        receipt: retrofit_gateway::model::Receipt::none(),
    }
}

fn append(log: &mut SegmentLog, i: u64, run: u64, line: &mut String) -> usize {
    line.clear();
    line_protocol::encode(&sample(i, run), line);
    line.pop();
    log.append(0, line.as_bytes()).expect("append");
    let _ = log.sync_if_due();
    line.len()
}

async fn wait_drained(log: &SharedLog) {
    while with_log(log, |l| l.pending()).await > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let Some(url) = args.next() else {
        eprintln!("usage: forward_bench URL [SAMPLES]");
        std::process::exit(2);
    };
    let samples: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(200_000);
    let run = std::process::id() as u64;
    let dir = std::env::temp_dir().join(format!("rgw-forward-bench-{run}"));
    let (log, _) = SegmentLog::open(&dir, LogOptions::default()).expect("log");
    let log: SharedLog = Arc::new(Mutex::new(log));

    // A. encode + append
    let started = Instant::now();
    let bytes = {
        let mut log = log.lock().expect("lock");
        let mut line = String::new();
        (0..samples)
            .map(|i| append(&mut log, i, run, &mut line))
            .sum::<usize>()
    };
    let append_s = started.elapsed().as_secs_f64();
    println!(
        "A encode+append   {samples} samples × {FIELDS} fields: {:.0} samples/s, {:.0} fields/s, {:.0} bytes/line",
        samples as f64 / append_s,
        (samples * FIELDS as u64) as f64 / append_s,
        bytes as f64 / samples as f64
    );

    // B. drain the backlog
    let config = InfluxOutput {
        org: Some("bench".into()),
        bucket: Some("bench".into()),
        timeout: ConfigDuration::from_millis(30_000),
        flush_interval: ConfigDuration::from_millis(100),
        ..InfluxOutput::new(url, InfluxApi::V2)
    };
    let appended = Arc::new(Notify::new());
    let forwarder = Forwarder::new(
        WriteEndpoint::new(&config).expect("endpoint"),
        Arc::clone(&log),
        Arc::clone(&appended),
        ForwarderOptions {
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            ..ForwarderOptions::new(&config, dir.join("dead-letter.lp"))
        },
    );
    let status = Arc::clone(&forwarder.status);
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(forwarder.run(stopped));
    let started = Instant::now();
    wait_drained(&log).await;
    let drain_s = started.elapsed().as_secs_f64();
    let stats = status.snapshot();
    println!(
        "B backlog drain   {} lines in {:.2} s: {:.0} lines/s ({} requests, {} retries)",
        stats.sent_lines,
        drain_s,
        stats.sent_lines as f64 / drain_s,
        stats.requests_2xx,
        stats.retries
    );

    // C. end to end for 10 s
    let before = status.snapshot().sent_lines;
    let started = Instant::now();
    let producer_log = Arc::clone(&log);
    let notify = Arc::clone(&appended);
    let produced = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        let mut i = samples;
        while started.elapsed() < Duration::from_secs(10) {
            let mut log = producer_log.lock().expect("lock");
            for _ in 0..500 {
                append(&mut log, i, run, &mut line);
                i += 1;
            }
            drop(log);
            notify.notify_one();
        }
        i - samples
    })
    .await
    .expect("producer");
    wait_drained(&log).await;
    let total_s = started.elapsed().as_secs_f64();
    let sent = status.snapshot().sent_lines - before;
    println!(
        "C end to end      {produced} samples appended in 10 s ({:.0}/s), all {sent} delivered after {total_s:.2} s ({:.0} lines/s)",
        produced as f64 / 10.0,
        sent as f64 / total_s
    );
    let _ = stop.send(true);
    let _ = task.await;
    let _ = std::fs::remove_dir_all(&dir);
}
