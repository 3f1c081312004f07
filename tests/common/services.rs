//! Real InfluxDB 1.x and VictoriaMetrics for integration tests. `scripts/test.sh` starts them and
//! exports their addresses; run that way (RGW_TEST_SERVICES=1), a missing address fails the test.
//! Run with plain `cargo test`, such tests say loudly that they did not run.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use retrofit_gateway::sinks::influx::write::encode_query;
use tokio::time::Instant;

/// The address in `var`, or `None` (announced) outside `scripts/test.sh`.
pub fn service_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("RGW_TEST_SERVICES").is_ok() || std::env::var("CI").is_ok() => {
            panic!("{var} is not set: scripts/test.sh should have started the service")
        }
        _ => {
            eprintln!(
                "NOT RUN: {var} is not set; run scripts/test.sh to test against the real service"
            );
            None
        }
    }
}

pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client")
}

/// Runs an InfluxQL statement; returns the JSON answer.
pub async fn influxql(url: &str, db: &str, q: &str) -> serde_json::Value {
    http()
        .post(format!("{url}/query"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("db={}&q={}", encode_query(db), encode_query(q)))
        .send()
        .await
        .expect("InfluxDB answers")
        .text()
        .await
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .expect("a JSON answer")
}

/// `count(field)` of a device's series in InfluxDB 1.x.
pub async fn influx_count(
    url: &str,
    db: &str,
    measurement: &str,
    field: &str,
    gateway: &str,
    device: &str,
) -> u64 {
    let q = format!(
        "SELECT count(\"{field}\") FROM \"{measurement}\" WHERE \"gateway\"='{gateway}' AND \"device\"='{device}'"
    );
    let answer = influxql(url, db, &q).await;
    answer["results"][0]["series"][0]["values"][0][1]
        .as_u64()
        .unwrap_or(0)
}

/// (timestamp ms, value) of every raw sample of a series in VictoriaMetrics (/api/v1/export),
/// oldest first.
pub async fn victoria_values(
    url: &str,
    series: &str,
    gateway: &str,
    device: &str,
) -> Vec<(i64, f64)> {
    let client = http();
    let _ = client
        .get(format!("{url}/internal/force_flush"))
        .send()
        .await;
    let text = client
        .post(format!("{url}/api/v1/export"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!(
            "match[]={}",
            encode_query(&format!(
                "{{__name__=\"{series}\",gateway=\"{gateway}\",device=\"{device}\"}}"
            ))
        ))
        .send()
        .await
        .expect("VictoriaMetrics answers")
        .text()
        .await
        .expect("text");
    let mut samples: Vec<(i64, f64)> = Vec::new();
    for line in text.lines() {
        let Ok(json) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let stamps = json["timestamps"].as_array().cloned().unwrap_or_default();
        let values = json["values"].as_array().cloned().unwrap_or_default();
        for (t, v) in stamps.iter().zip(&values) {
            if let (Some(t), Some(v)) = (t.as_i64(), v.as_f64()) {
                samples.push((t, v));
            }
        }
    }
    samples.sort_by_key(|(t, _)| *t);
    samples
}

/// Timestamps (ms) of a series in VictoriaMetrics, oldest first.
pub async fn victoria_timestamps(url: &str, series: &str, gateway: &str, device: &str) -> Vec<i64> {
    victoria_values(url, series, gateway, device)
        .await
        .into_iter()
        .map(|(t, _)| t)
        .collect()
}

/// Polls `count` until it reaches `expected` or `bound` passes; returns the last count.
pub async fn eventually<F, Fut>(expected: u64, bound: Duration, mut count: F) -> u64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = u64>,
{
    let deadline = Instant::now() + bound;
    loop {
        let n = count().await;
        if n >= expected || Instant::now() >= deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A VictoriaMetrics of the test's own, which it may stop and restart (same port, same data).
pub struct OwnVictoria {
    binary: String,
    pub port: u16,
    data: tempfile::TempDir,
    child: Option<Child>,
}

impl OwnVictoria {
    pub async fn start(binary: String) -> OwnVictoria {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let mut vm = OwnVictoria {
            binary,
            port,
            data: tempfile::tempdir().expect("temp dir"),
            child: None,
        };
        vm.restart().await;
        vm
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops the server as an operator or systemd would (SIGTERM, then wait). A SIGKILL would
    /// lose the last second VictoriaMetrics had acknowledged but not yet flushed, which is the
    /// server's own crash semantics and not what this tests.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    pub async fn restart(&mut self) {
        self.stop();
        let data: PathBuf = self.data.path().join("vm");
        let child = Command::new(&self.binary)
            .arg(format!("-storageDataPath={}", data.display()))
            .arg(format!("-httpListenAddr=127.0.0.1:{}", self.port))
            .arg("-retentionPeriod=100y")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("VictoriaMetrics starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = http();
        loop {
            let healthy = client
                .get(format!("{}/health", self.url()))
                .send()
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            if healthy {
                return;
            }
            assert!(Instant::now() < deadline, "VictoriaMetrics did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for OwnVictoria {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Per device: its measurement and a field present in every sample (the first point polled at
/// the device's own interval).
pub fn always_present_fields(
    config: &retrofit_gateway::config::LoadedConfig,
) -> BTreeMap<String, (String, String)> {
    config
        .gateway
        .device
        .iter()
        .filter_map(|d| {
            let profile = config.profile_of(d)?;
            let point = profile.points.iter().find(|p| p.interval.is_none())?;
            Some((d.id.clone(), (profile.kind.clone(), point.name.clone())))
        })
        .collect()
}

/// The path of command `name`, or `None` (announced) outside `scripts/test.sh`, which installs
/// it; run that way, a missing command fails the test.
pub fn required_command(name: &str) -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    });
    match found {
        Some(path) => Some(path),
        None if std::env::var("RGW_TEST_SERVICES").is_ok() || std::env::var("CI").is_ok() => {
            panic!("{name} is not installed: scripts/test.sh should have installed it")
        }
        None => {
            eprintln!("NOT RUN: {name} is not installed; run scripts/test.sh");
            None
        }
    }
}
