//! The `retrofit-gateway` binary as an operator runs it: `run -c FILE` writes line protocol for
//! every device and stops cleanly within 5 s of SIGTERM; restarted while an alarm fires, it
//! neither raises the alarm again nor forgets to send its clear; `demo` runs with no services.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::example_site;
use common::http_script::{Answer, ScriptedServer};
use retrofit_sim::faults::{Fault, FaultKind};

const BINARY: &str = env!("CARGO_BIN_EXE_retrofit-gateway");

/// Waits for a child to exit, up to `bound`.
fn wait_for_exit(
    child: &mut std::process::Child,
    bound: Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Checks one line of line protocol and returns its device tag.
fn device_of_line(line: &str) -> String {
    let mut parts = line.splitn(3, ' ');
    let series = parts.next().unwrap_or_default();
    let fields = parts.next().unwrap_or_default();
    let timestamp: i64 = parts
        .next()
        .unwrap_or_default()
        .parse()
        .expect("a timestamp");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    assert!(
        (now - timestamp).abs() < 60_000_000_000,
        "timestamp off: {line}"
    );
    assert!(!fields.is_empty() && fields.contains('='), "{line}");
    assert!(series.contains(",site=幸福小区"), "{line}");
    assert!(series.contains(",gateway=shuocheng-xingfu-01"), "{line}");
    series
        .split(',')
        .find_map(|tag| tag.strip_prefix("device="))
        .expect("a device tag")
        .to_string()
}

/// Writes `config/demo.toml` pointed at the simulated `site`, with its data in `dir`, lines to
/// `output` and `extra` TOML appended; returns the config's path.
fn demo_config_for(
    site: &common::Site,
    dir: &Path,
    output: &Path,
    extra: &str,
) -> std::path::PathBuf {
    let profiles = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/profiles");
    let mut text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo.toml"))
            .expect("demo config");
    for (bus, address) in site.community.addresses() {
        let port = 15021
            + retrofit_sim::layout::EXAMPLE_SITE_BUSES
                .iter()
                .position(|(b, _)| b == bus)
                .expect("known bus") as u16;
        text = text.replace(&format!("127.0.0.1:{port}"), &address.to_string());
    }
    text = text.replace(
        "data_dir = \"/tmp/retrofit-gateway-demo\"",
        &format!("data_dir = {:?}\nprofile_dir = {:?}", dir, profiles),
    );
    text = text.replace("path = \"-\"", &format!("path = {output:?}"));
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/rules");
    text = text.replace("\"rules/", &format!("\"{}/", rules.display()));
    text.push_str(extra);
    let config = dir.join("gateway.toml");
    std::fs::write(&config, text).expect("config written");
    config
}

/// Sends SIGTERM and waits up to 5 s for a clean exit.
fn terminate(child: &mut std::process::Child, log: &Path) {
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(kill.success());
    let status = wait_for_exit(child, Duration::from_secs(5)).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("still running 5 s after SIGTERM")
    });
    assert!(
        status.success(),
        "exit status {status:?}\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// Lines of `device` in the line-protocol file.
fn lines_of(output: &Path, device: &str) -> usize {
    let tag = format!(",device={device},");
    std::fs::read_to_string(output)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&tag))
        .count()
}

/// Waits, up to `bound`, until `done` holds.
async fn until(bound: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + bound;
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {bound:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_writes_every_device_and_stops_on_sigterm_within_five_seconds() {
    let site = example_site().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let output = dir.path().join("lines.txt");
    let config = demo_config_for(&site, dir.path(), &output, "");

    let log = dir.path().join("gateway.log");
    let mut child = common::spawn_gateway(BINARY, &["run", "-c"], &config, &log);
    let expected = site.device_ids();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let lines = std::fs::read_to_string(&output).unwrap_or_default();
        let seen: Vec<String> = lines.lines().map(device_of_line).collect();
        if expected.iter().all(|d| seen.contains(d)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every device written: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let signalled = Instant::now();
    terminate(&mut child, &log);
    let lines = std::fs::read_to_string(&output).expect("output");
    assert!(lines.ends_with('\n'), "a torn last line");
    for line in lines.lines() {
        device_of_line(line);
    }
    eprintln!("stopped {:?} after SIGTERM", signalled.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_while_an_alarm_fires_neither_raises_it_again_nor_loses_its_clear() {
    let site = example_site().await;
    let robot = ScriptedServer::start(|_, _| Answer::Status(200, Vec::new(), "{}".into())).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let url_file = dir.path().join("robot.url");
    std::fs::write(&url_file, format!("{}/alarms", robot.url())).expect("url file");
    let output = dir.path().join("lines.txt");
    let hook = format!(
        "\n[[alarms.webhook]]\nname = \"recorder\"\nkind = \"generic\"\nurl_file = {url_file:?}\nmin_severity = \"info\"\n"
    );
    let config = demo_config_for(&site, dir.path(), &output, &hook);
    // (alarm id, firing) of every W13 message about booster-1 the robot received.
    let pump_trips = || -> Vec<(String, bool)> {
        robot
            .recorded()
            .iter()
            .filter_map(|r| serde_json::from_str::<serde_json::Value>(&r.body).ok())
            .filter(|b| b["alarm"]["rule"] == "W13" && b["alarm"]["device"] == "booster-1")
            .map(|b| {
                (
                    b["alarm"]["id"].as_str().unwrap_or_default().to_string(),
                    b["alarm"]["firing"].as_bool().unwrap_or_default(),
                )
            })
            .collect()
    };

    let first_log = dir.path().join("first.log");
    let mut first = common::spawn_gateway(BINARY, &["run", "-c"], &config, &first_log);
    until(Duration::from_secs(15), "booster-1 polled", || {
        lines_of(&output, "booster-1") > 0
    })
    .await;
    let trip = Fault::plant(FaultKind::PumpTrip);
    site.community.inject(trip.clone());
    // Told once its incident has settled (10 s for a crit).
    until(Duration::from_secs(30), "W13 raised", || {
        !pump_trips().is_empty()
    })
    .await;
    terminate(&mut first, &first_log);

    let second_log = dir.path().join("second.log");
    let mut second = common::spawn_gateway(BINARY, &["run", "-c"], &config, &second_log);
    // The restarted gateway sees the tripped pump on several polls before it is repaired.
    let before = lines_of(&output, "booster-1");
    until(
        Duration::from_secs(15),
        "booster-1 polled after the restart",
        || lines_of(&output, "booster-1") >= before + 3,
    )
    .await;
    site.community.clear(&trip);
    // The outbox delivers in order, so a second raise would arrive before the clear.
    until(Duration::from_secs(15), "W13 cleared", || {
        pump_trips().iter().any(|(_, firing)| !firing)
    })
    .await;
    terminate(&mut second, &second_log);
    let trips = pump_trips();
    assert_eq!(trips.len(), 2, "{trips:?}");
    assert!(trips[0].1 && !trips[1].1, "{trips:?}");
    assert_eq!(
        trips[0].0, trips[1].0,
        "the clear names the raised alarm: {trips:?}"
    );
}

#[test]
fn demo_runs_with_no_external_services() {
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let output = Command::new(BINARY)
        .args(["demo", "--duration", "9s", "--no-faults"])
        // Away from the repository: the demo's config, profiles and rules are built in.
        .current_dir(&elsewhere)
        .output()
        .expect("demo runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    // The publishing devices send every 2 s: their messages are acknowledged as they are
    // printed, so the MQTT source keeps its one connection.
    assert_eq!(
        stderr.matches("MQTT source connected").count(),
        1,
        "{stderr}"
    );
    assert!(!stderr.contains("not stored"), "{stderr}");
    let summary = stdout
        .split("Device summary:")
        .nth(1)
        .unwrap_or_else(|| panic!("no summary in {stdout}"));
    let online = summary.lines().filter(|l| l.contains(" online ")).count();
    // 13 Modbus devices and 21 meters.
    assert_eq!(online, 34, "{summary}");
}

/// Timestamps (ns) of `device`'s lines in the line-protocol file, in file order.
fn times_of(output: &Path, device: &str) -> Vec<i64> {
    let tag = format!(",device={device},");
    std::fs::read_to_string(output)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&tag))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect()
}

/// Median gap between consecutive timestamps, ms.
fn median_gap_ms(times: &[i64]) -> i64 {
    let mut gaps: Vec<i64> = times
        .windows(2)
        .map(|w| (w[1] - w[0]) / 1_000_000)
        .collect();
    gaps.sort_unstable();
    gaps.get(gaps.len() / 2).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_a_new_device_interval_without_a_restart_or_a_lost_sample() {
    let site = example_site().await;
    // InfluxDB down the whole time: every reading stays buffered in the telemetry log.
    let influx = ScriptedServer::start(|_, _| Answer::Status(503, Vec::new(), String::new())).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let output = dir.path().join("lines.txt");
    let extra = format!(
        "\n[outputs.influxdb]\nurl = \"{}\"\napi = \"v2\"\norg = \"water\"\nbucket = \"community\"\n\n[http]\nlisten = \"127.0.0.1:0\"\n",
        influx.url()
    );
    let config = demo_config_for(&site, dir.path(), &output, &extra);
    let log = dir.path().join("gateway.log");
    let mut child = common::spawn_gateway(BINARY, &["run", "-c"], &config, &log);
    until(
        Duration::from_secs(15),
        "six booster-1 polls at 1 s",
        || times_of(&output, "booster-1").len() >= 6,
    )
    .await;
    let before = times_of(&output, "booster-1");

    let text = std::fs::read_to_string(&config).expect("config");
    let faster = text.replacen(
        "profile = \"booster-pump-cdab\"\ninterval = \"1s\"",
        "profile = \"booster-pump-cdab\"\ninterval = \"500ms\"",
        1,
    );
    assert_ne!(text, faster, "the booster's interval was found");
    std::fs::write(&config, faster).expect("config rewritten");
    let hup = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(hup.success());
    let reloaded = before.len();
    until(
        Duration::from_secs(15),
        "twelve booster-1 polls after the reload",
        || times_of(&output, "booster-1").len() >= reloaded + 12,
    )
    .await;
    assert!(
        child.try_wait().expect("status").is_none(),
        "the gateway exited on SIGHUP:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let after = times_of(&output, "booster-1");
    let (gap_before, gap_after) = (
        median_gap_ms(&before),
        median_gap_ms(&after[reloaded + 1..]),
    );
    eprintln!("booster-1 median gap: {gap_before} ms before, {gap_after} ms after the reload");
    assert!((900..=1100).contains(&gap_before), "{gap_before} ms");
    assert!((400..=600).contains(&gap_after), "{gap_after} ms");
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(log_text.contains("Config reloaded"), "{log_text}");
    assert!(log_text.contains("bus:pump-room"), "{log_text}");
    terminate(&mut child, &log);

    // Every reading written to the file is in the telemetry log, still unsent: the reload
    // dropped nothing that had been accepted.
    let written = std::fs::read_to_string(&output)
        .expect("output")
        .lines()
        .count() as u64;
    let (mut telemetry, _) = retrofit_gateway::buffer::SegmentLog::open(
        &dir.path().join("telemetry"),
        retrofit_gateway::buffer::LogOptions::default(),
    )
    .expect("the log opens");
    assert_eq!(telemetry.pending(), written, "log and file disagree");
    let mut read = 0;
    loop {
        let batch = telemetry.read(5_000, 8 << 20).expect("readable");
        if batch.is_empty() {
            break;
        }
        read += batch.len() as u64;
        let last = batch.last().map(|r| r.seq).expect("a record");
        telemetry.ack(last + 1).expect("ack");
    }
    assert_eq!(read, written);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_hears_ready_then_watchdog_pings_then_stopping() {
    let site = example_site().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let output = dir.path().join("lines.txt");
    let config = demo_config_for(&site, dir.path(), &output, "\n[http]\nenabled = false\n");
    let socket_path = dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).expect("notify socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    let log = dir.path().join("gateway.log");
    let mut child = Command::new(BINARY)
        .args(["run", "-c"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "1000000")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("gateway starts");
    let mut heard: Vec<String> = Vec::new();
    let mut buffer = [0u8; 512];
    while heard.iter().filter(|m| *m == "WATCHDOG=1").count() < 3 {
        let n = socket.recv(&mut buffer).unwrap_or_else(|e| {
            let _ = child.kill();
            panic!("no notification ({e}); heard {heard:?}")
        });
        heard.push(String::from_utf8_lossy(&buffer[..n]).into_owned());
    }
    assert!(
        heard[0].starts_with("READY=1\nSTATUS=polling 34 devices on 7 buses"),
        "{heard:?}"
    );
    terminate(&mut child, &log);
    let mut last = String::new();
    while let Ok(n) = socket.recv(&mut buffer) {
        last = String::from_utf8_lossy(&buffer[..n]).into_owned();
        if last == "STOPPING=1" {
            break;
        }
    }
    assert_eq!(last, "STOPPING=1");
}

/// A free loopback port (bound and released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One GET over a fresh connection: the status code, or why there was none.
async fn get_status(port: u16, path: &str) -> Result<u16, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut head = [0u8; 12];
    stream
        .read_exact(&mut head)
        .await
        .map_err(|e| format!("no answer: {e}"))?;
    std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("not HTTP: {head:?}"))
}

/// The gateway runs with 256 file descriptors (its unit's limit is 4096; a small one shows the
/// point sooner) while 2 000 idle connections and a client sending its header a byte a second
/// sit on the status port: the endpoint holds at most 32 of them, so polling keeps its pace
/// (every device goes on writing, a 1 s device at its interval) and `/health` answers a newcomer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_and_a_slow_header_leave_polling_and_health_alone() {
    use tokio::io::AsyncWriteExt;
    let site = example_site().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let output = dir.path().join("lines.txt");
    let port = free_port();
    let config = demo_config_for(
        &site,
        dir.path(),
        &output,
        &format!("\n[http]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    let log = dir.path().join("gateway.log");
    let limit = ["--nofile=256:256", BINARY, "run", "-c"];
    let mut child = common::spawn_gateway("prlimit", &limit, &config, &log);
    let devices = site.device_ids();
    until(
        Duration::from_secs(20),
        "every device written and /health answering",
        || devices.iter().all(|d| lines_of(&output, d) > 0),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while get_status(port, "/health").await.is_err() {
        assert!(Instant::now() < deadline, "the endpoint answers");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The flood: idle sockets (most are closed by the gateway as others come), and one that
    // sends a byte of its header a second.
    let mut idle = Vec::new();
    for _ in 0..2000 {
        if let Ok(stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            idle.push(stream);
        }
    }
    let mut slow = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connects");
    let dripping = tokio::spawn(async move {
        for byte in b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            .iter()
            .cycle()
        {
            if slow.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let flooded = std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    let before: Vec<usize> = devices.iter().map(|d| lines_of(&output, d)).collect();

    // Polling goes on: every device writes again (the slowest are read every 30 s)…
    let deadline = Instant::now() + Duration::from_secs(75);
    loop {
        let behind: Vec<(&String, usize)> = devices
            .iter()
            .zip(&before)
            .filter(|(d, n)| lines_of(&output, d) <= **n)
            .map(|(d, n)| (d, *n))
            .collect();
        if behind.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not polled during the flood: {behind:?}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // … and /health answers a newcomer while the flood is held.
    let answered = get_status(port, "/health").await;
    assert!(
        matches!(answered, Ok(200 | 503)),
        "/health during the flood: {answered:?}"
    );
    // A 1 s device kept its pace: its gaps during the flood are its interval, not longer.
    let during: Vec<i64> = times_of(&output, "booster-1")
        .into_iter()
        .filter(|t| *t >= flooded)
        .collect();
    let gap = median_gap_ms(&during);
    assert!(
        (900..=1100).contains(&gap),
        "booster-1 polled every {gap} ms during the flood"
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !text.contains("Too many open files"),
        "the gateway ran out of file descriptors:\n{text}"
    );
    dripping.abort();
    drop(idle);
    terminate(&mut child, &log);
}

/// A config `run` cannot work with ends it with status 78 (the unit's
/// `RestartPreventExitStatus=`, so systemd does not restart it every 5 s for ever) and a first
/// line that says what to do: a config that does not validate, and a secret it cannot read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_it_cannot_run_with_exits_78_with_one_line_saying_what_to_do() {
    let site = example_site().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let output = dir.path().join("lines.txt");
    let invalid = demo_config_for(
        &site,
        dir.path(),
        &output,
        "\n[http]\nlisten = \"nowhere\"\n",
    );
    let secretless = dir.path().join("secretless.toml");
    std::fs::write(
        &secretless,
        std::fs::read_to_string(&invalid)
            .expect("config")
            .replace("listen = \"nowhere\"", "listen = \"127.0.0.1:0\"")
            + "\n[outputs.influxdb]\nurl = \"http://127.0.0.1:9\"\napi = \"v2\"\norg = \"o\"\nbucket = \"b\"\ntoken_file = \"secret_influx.token\"\n",
    )
    .expect("written");
    for config in [&invalid, &secretless] {
        let ran = Command::new(BINARY)
            .args(["run", "-c"])
            .arg(config)
            .env_remove("CREDENTIALS_DIRECTORY")
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&ran.stderr);
        assert_eq!(ran.status.code(), Some(78), "{stderr}");
        let said = stderr
            .lines()
            .find(|l| l.starts_with("retrofit-gateway: not starting"))
            .unwrap_or_else(|| panic!("no line saying what to do:\n{stderr}"));
        assert!(
            said.contains("check-config") && said.contains("systemctl restart"),
            "{said}"
        );
    }
}
