//! The InfluxDB forwarder against a scripted local HTTP server: one test per row of DESIGN.md's
//! response table, plus the request shape of the v2 and v1 write APIs.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::http_script::{status, Answer, ScriptedServer};
use retrofit_gateway::buffer::{LogOptions, SegmentLog};
use retrofit_gateway::config::{ConfigDuration, InfluxApi, InfluxOutput};
use retrofit_gateway::sinks::influx::forwarder::{
    with_log, Forwarder, ForwarderOptions, ForwarderStatus, SharedLog,
};
use retrofit_gateway::sinks::influx::write::WriteEndpoint;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

fn line(i: usize) -> String {
    format!("pump_station,device=booster-1,site=幸福小区 counter={i}i 1764150000{i:09}")
}

fn influx(url: String, api: InfluxApi, dir: &Path) -> InfluxOutput {
    let token = dir.join("token");
    std::fs::write(&token, "s3cr3t-token\n").expect("token file");
    let password = dir.join("password");
    std::fs::write(&password, "open sesame\n").expect("password file");
    InfluxOutput {
        org: Some("water".into()),
        bucket: Some("community data".into()),
        token_file: Some(token),
        database: Some("retrofit".into()),
        retention_policy: Some("autogen".into()),
        username: Some("Aladdin".into()),
        password_file: Some(password),
        timeout: ConfigDuration::from_millis(300),
        flush_interval: ConfigDuration::from_millis(50),
        batch_lines: 5,
        ..InfluxOutput::new(url, api)
    }
}

struct Running {
    log: SharedLog,
    status: Arc<ForwarderStatus>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    dead_letter: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// A log holding `lines` and a forwarder draining it into `url`.
async fn forward(url: String, api: InfluxApi, lines: &[String], batch_lines: usize) -> Running {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut log, _) =
        SegmentLog::open(&dir.path().join("telemetry"), LogOptions::default()).expect("log opens");
    for l in lines {
        log.append(0, l.as_bytes()).expect("appends");
    }
    let log: SharedLog = Arc::new(Mutex::new(log));
    let mut config = influx(url, api, dir.path());
    config.batch_lines = batch_lines;
    let endpoint = WriteEndpoint::new(&config).expect("endpoint");
    let dead_letter = dir.path().join("dead-letter.lp");
    let forwarder = Forwarder::new(
        endpoint,
        Arc::clone(&log),
        Arc::new(Notify::new()),
        ForwarderOptions {
            min_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(200),
            ..ForwarderOptions::new(&config, dead_letter.clone())
        },
    );
    let status = Arc::clone(&forwarder.status);
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(forwarder.run(stopped));
    Running {
        log,
        status,
        stop,
        task,
        dead_letter,
        _dir: dir,
    }
}

impl Running {
    /// Waits until the log has nothing pending, or panics after `bound`.
    async fn drained(&self, bound: Duration) {
        let deadline = Instant::now() + bound;
        while with_log(&self.log, |log| log.pending()).await > 0 {
            assert!(
                Instant::now() < deadline,
                "not drained within {bound:?}: {:?}",
                self.status.snapshot()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn stop(self) -> (Vec<String>, retrofit_gateway::metrics::ForwarderStats) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        let dead = std::fs::read_to_string(&self.dead_letter).unwrap_or_default();
        let dead_lines = dead
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_string)
            .collect();
        (dead_lines, self.status.snapshot())
    }
}

fn lines(n: usize) -> Vec<String> {
    (0..n).map(line).collect()
}

/// Lines of every request the server answered with 2xx.
fn accepted(server: &ScriptedServer, ok: impl Fn(usize) -> bool) -> Vec<String> {
    server
        .recorded()
        .iter()
        .enumerate()
        .filter(|(n, _)| ok(*n))
        .flat_map(|(_, r)| {
            r.lines()
                .into_iter()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

const BOUND: Duration = Duration::from_secs(10);

#[tokio::test]
async fn delivers_in_order_with_the_v2_request_shape_and_acknowledges() {
    let server = ScriptedServer::start(|_, _| status(204)).await;
    let run = forward(server.url(), InfluxApi::V2, &lines(12), 5).await;
    run.drained(BOUND).await;
    let (dead, stats) = run.stop().await;
    let requests = server.recorded();
    assert_eq!(requests.len(), 3);
    assert_eq!(accepted(&server, |_| true), lines(12));
    let first = &requests[0];
    assert_eq!(
        first.target,
        "/api/v2/write?org=water&bucket=community%20data&precision=ns"
    );
    assert_eq!(first.header("Authorization"), Some("Token s3cr3t-token"));
    assert_eq!(first.header("Content-Encoding"), Some("gzip"));
    assert!(dead.is_empty());
    assert_eq!((stats.sent_lines, stats.requests_2xx), (12, 3));
}

#[tokio::test]
async fn the_v1_api_uses_database_retention_policy_and_basic_auth() {
    let server = ScriptedServer::start(|_, _| status(204)).await;
    let run = forward(server.url(), InfluxApi::V1, &lines(3), 5).await;
    run.drained(BOUND).await;
    run.stop().await;
    let request = &server.recorded()[0];
    assert_eq!(request.target, "/write?db=retrofit&precision=ns&rp=autogen");
    assert_eq!(
        request.header("Authorization"),
        Some("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")
    );
}

#[tokio::test]
async fn row_400_partial_write_dead_letters_only_the_named_lines_and_resends_the_rest() {
    let bad = line(3);
    let body = format!(
        r#"{{"error":"partial write: unable to parse '{bad}': invalid number dropped=0"}}"#
    );
    let server = ScriptedServer::start(move |n, _| match n {
        0 => Answer::Status(400, Vec::new(), body.clone()),
        _ => status(204),
    })
    .await;
    let run = forward(server.url(), InfluxApi::V2, &lines(5), 5).await;
    run.drained(BOUND).await;
    let (dead, stats) = run.stop().await;
    assert_eq!(dead, vec![line(3)]);
    let mut expected = lines(5);
    expected.remove(3);
    assert_eq!(accepted(&server, |n| n > 0), expected);
    assert_eq!(stats.dead_lettered, 1);
}

#[tokio::test]
async fn row_422_without_named_lines_is_bisected_down_to_the_bad_line() {
    let mut all = lines(9);
    all[6] = "pump_station,device=booster-1 counter=\"text\" 1764150000000000006".into();
    let server = ScriptedServer::start(|_, request| {
        if request.body.contains("\"text\"") {
            Answer::Status(
                422,
                Vec::new(),
                r#"{"code":"unprocessable entity","message":"field type conflict"}"#.into(),
            )
        } else {
            status(204)
        }
    })
    .await;
    let run = forward(server.url(), InfluxApi::V2, &all, 9).await;
    run.drained(BOUND).await;
    let (dead, _) = run.stop().await;
    assert_eq!(dead, vec![all[6].clone()]);
    let recorded = server.recorded();
    let delivered = accepted(&server, |n| !recorded[n].body.contains("\"text\""));
    let mut expected = all.clone();
    expected.remove(6);
    assert_eq!(
        delivered, expected,
        "every good line delivered once, in order"
    );
}

#[tokio::test]
async fn row_413_splits_the_batch_and_dead_letters_a_single_line_too_large() {
    let mut all = lines(8);
    all[2] = format!(
        "{} huge=\"{}\"",
        line(2).split(' ').next().unwrap_or(""),
        "x".repeat(2000)
    );
    let server = ScriptedServer::start(|_, request| {
        if request.lines().len() > 2 || request.body.len() > 1500 {
            status(413)
        } else {
            status(204)
        }
    })
    .await;
    let run = forward(server.url(), InfluxApi::V2, &all, 8).await;
    run.drained(BOUND).await;
    let (dead, _) = run.stop().await;
    assert_eq!(dead, vec![all[2].clone()]);
    let ok: Vec<usize> = server
        .recorded()
        .iter()
        .enumerate()
        .filter(|(_, r)| r.lines().len() <= 2 && r.body.len() <= 1500)
        .map(|(n, _)| n)
        .collect();
    let mut expected = all.clone();
    expected.remove(2);
    assert_eq!(accepted(&server, |n| ok.contains(&n)), expected);
}

#[tokio::test]
async fn rows_401_403_404_keep_the_data_raise_the_flag_and_retry() {
    let server = ScriptedServer::start(|n, _| match n {
        0 => status(401),
        1 => status(403),
        2 => status(404),
        _ => status(204),
    })
    .await;
    let run = forward(server.url(), InfluxApi::V2, &lines(4), 5).await;
    let deadline = Instant::now() + BOUND;
    while !run.status.snapshot().unauthorized {
        assert!(Instant::now() < deadline, "no self-alarm flag");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    run.drained(BOUND).await;
    let (dead, stats) = run.stop().await;
    assert!(dead.is_empty());
    assert!(!stats.unauthorized, "cleared after the next success");
    assert_eq!(accepted(&server, |n| n >= 3), lines(4));
    // Each refusal waited the longest backoff (200 ms here) before the next try.
    let at: Vec<Instant> = server.recorded().iter().map(|r| r.at).collect();
    for pair in at.windows(2).take(3) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(200),
            "{:?}",
            pair[1] - pair[0]
        );
    }
}

#[tokio::test]
async fn rows_429_503_wait_for_retry_after() {
    let server = ScriptedServer::start(|n, _| match n {
        0 => Answer::Status(429, vec![("Retry-After", "1".into())], String::new()),
        1 => Answer::Status(503, vec![("Retry-After", "1".into())], String::new()),
        _ => status(204),
    })
    .await;
    let run = forward(server.url(), InfluxApi::V2, &lines(2), 5).await;
    run.drained(BOUND).await;
    run.stop().await;
    let at: Vec<Instant> = server.recorded().iter().map(|r| r.at).collect();
    assert_eq!(at.len(), 3);
    assert!(
        at[1] - at[0] >= Duration::from_secs(1),
        "{:?}",
        at[1] - at[0]
    );
    assert!(
        at[2] - at[1] >= Duration::from_secs(1),
        "{:?}",
        at[2] - at[1]
    );
}

#[tokio::test]
async fn row_5xx_hangups_and_timeouts_are_retried_until_delivered() {
    let server = ScriptedServer::start(|n, _| match n {
        0 => status(500),
        1 => status(502),
        2 => Answer::Hangup,
        3 => Answer::Late(Duration::from_millis(600)),
        _ => status(204),
    })
    .await;
    let run = forward(server.url(), InfluxApi::V2, &lines(3), 5).await;
    run.drained(BOUND).await;
    let (dead, stats) = run.stop().await;
    assert!(dead.is_empty());
    assert_eq!(stats.requests_5xx, 2);
    assert!(stats.request_failures >= 2, "{stats:?}");
    assert!(stats.retries >= 4, "{stats:?}");
    assert_eq!(
        accepted(&server, |n| n == server.recorded().len() - 1),
        lines(3)
    );
}

#[tokio::test]
async fn nothing_is_acknowledged_while_the_server_is_unreachable() {
    // A port with nothing listening: bind one, note it, close it.
    let address = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
        listener.local_addr().expect("address")
    };
    let run = forward(format!("http://{address}"), InfluxApi::V2, &lines(3), 5).await;
    let deadline = Instant::now() + BOUND;
    while run.status.snapshot().request_failures < 3 {
        assert!(Instant::now() < deadline, "no retries");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(with_log(&run.log, |log| log.pending()).await, 3);
    let (dead, _) = run.stop().await;
    assert!(dead.is_empty());
}

/// How a fake uplink answers.
type Portal = Box<dyn Fn(usize, &common::http_script::Request) -> Answer + Send + Sync>;

/// A forwarder on `log` (already filled) writing to the real InfluxDB 1.x at `url`.
fn forwarder_to(url: &str, database: &str, log: &SharedLog, dir: &Path) -> Forwarder {
    let config = InfluxOutput {
        database: Some(database.into()),
        timeout: ConfigDuration::from_millis(2000),
        flush_interval: ConfigDuration::from_millis(50),
        ..InfluxOutput::new(url, InfluxApi::V1)
    };
    Forwarder::new(
        WriteEndpoint::new(&config).expect("endpoint"),
        Arc::clone(log),
        Arc::new(Notify::new()),
        ForwarderOptions {
            min_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(200),
            ..ForwarderOptions::new(&config, dir.join("dead-letter.lp"))
        },
    )
}

#[tokio::test]
async fn a_captive_portal_acknowledges_nothing_and_the_real_influxdb_gets_every_reading_afterwards()
{
    let Some(influx_url) = common::services::service_url("RGW_TEST_INFLUXDB1_URL") else {
        return;
    };
    const DATABASE: &str = "retrofit_portal";
    common::services::influxql(
        &influx_url,
        DATABASE,
        &format!("CREATE DATABASE {DATABASE}"),
    )
    .await;
    let page = "<html><body>欢迎使用4G上网，请先登录</body></html>".to_string();
    // A carrier's portal that redirects every request to its page, and a proxy that answers 200
    // with a page itself.
    let portals: [(&str, Portal); 2] = [
        ("redirect", {
            let page = page.clone();
            Box::new(move |_, request| {
                if request.target.starts_with("/portal") {
                    Answer::Status(
                        200,
                        vec![("Content-Type", "text/html".into())],
                        page.clone(),
                    )
                } else {
                    Answer::Status(302, vec![("Location", "/portal".into())], String::new())
                }
            })
        }),
        ("page", {
            let page = page.clone();
            Box::new(move |_, _| {
                Answer::Status(
                    200,
                    vec![("Content-Type", "text/html".into())],
                    page.clone(),
                )
            })
        }),
    ];
    for (name, portal) in portals {
        let run_id = format!("{name}-{}", std::process::id());
        let lines: Vec<String> = (0..20)
            .map(|i| format!("portal_probe,run={run_id} n={i}i 1764150000{i:09}"))
            .collect();
        let server = ScriptedServer::start(portal).await;
        let run = forward(server.url(), InfluxApi::V1, &lines, 5).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while server.recorded().len() < 3 {
            assert!(
                Instant::now() < deadline,
                "{name}: the forwarder never tried"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let Running {
            log,
            status,
            stop,
            task,
            ..
        } = run;
        let pending = with_log(&log, |log| log.pending()).await;
        assert_eq!(pending, 20, "{name}: nothing acknowledged");
        let stats = status.snapshot();
        assert_eq!(stats.sent_lines, 0, "{name}");
        assert!(
            stats.not_acknowledged || name == "redirect",
            "{name}: flagged"
        );
        assert!(
            server
                .recorded()
                .iter()
                .all(|r| !r.target.starts_with("/portal")),
            "{name}: a redirect was followed"
        );
        // The SIM is topped up: the same log, pointed at the real InfluxDB, delivers it all.
        let _ = stop.send(true);
        let _ = task.await;
        let dir = tempfile::tempdir().expect("temp dir");
        let forwarder = forwarder_to(&influx_url, DATABASE, &log, dir.path());
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(forwarder.run(stopped));
        let again = Running {
            log,
            status: Arc::new(ForwarderStatus::default()),
            stop,
            task,
            dead_letter: dir.path().join("dead-letter.lp"),
            _dir: dir,
        };
        again.drained(BOUND).await;
        let answer = common::services::influxql(
            &influx_url,
            DATABASE,
            &format!("SELECT count(n) FROM portal_probe WHERE run = '{run_id}'"),
        )
        .await;
        assert_eq!(
            answer["results"][0]["series"][0]["values"][0][1].as_u64(),
            Some(20),
            "{name}: every reading of the period arrived: {answer}"
        );
        again.stop().await;
    }
}
