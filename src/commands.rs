//! The command-line commands as library functions: `run`, `check-config`, `plan`, `report`.
//! (`demo` lives in the demo module.) Each returns what the process should print and its exit status, so tests
//! drive them without spawning processes.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;

use crate::config::{load_config, ConfigError, LoadedConfig};
use crate::daemon::termination_signal;
use crate::pipeline::{Options, Pipeline, SHUTDOWN_DEADLINE};
use crate::sources::modbus::plan::{DevicePlan, PlanLimits};
use crate::sources::modbus::timing::{exchange_time, inter_frame_gap, serial_baud, wire_time};

/// How often `run` writes the `gateway` measurement.
pub const SELF_MONITORING_EVERY: Duration = Duration::from_secs(60);

/// `check-config`: a one-line summary, or every problem.
pub fn check_config(path: &Path) -> Result<String, ConfigError> {
    let config = load_config(path)?;
    let points: usize = config
        .gateway
        .device
        .iter()
        .filter_map(|d| config.profile_of(d))
        .map(|p| p.field_names().count())
        .sum();
    let mut summary = format!(
        "{}: ok ({} buses, {} devices, {} points, {} profiles, {} rules)",
        path.display(),
        config.gateway.bus.len(),
        config.gateway.device.len(),
        points,
        config.profiles.len(),
        config.rules.len()
    );
    for warning in crate::config::warnings::warnings(&config) {
        summary.push_str(&format!("\n{}: {warning}", path.display()));
    }
    Ok(summary)
}

/// `report`: the month's KPI report from the config's data directory (with the running days
/// as last saved, when the month is the current one), to `output` or standard output.
pub fn report(config: &Path, month: &str, output: Option<&Path>) -> anyhow::Result<()> {
    let config = load_config(config)?;
    let gateway = &config.gateway.gateway;
    let store = crate::kpi::store::KpiStore::new(&gateway.data_dir);
    let now = crate::model::unix_nanos(std::time::SystemTime::now());
    let params = crate::kpi::ledger::KpiParams::of(&config.gateway);
    let open = match store.read_ledger() {
        Ok(ledger) => ledger.snapshot(now, &params),
        Err(problem) => {
            tracing::warn!(problem = %problem, "The running days are left out");
            Vec::new()
        }
    };
    let report =
        crate::report::MonthReport::build(&store, month, &open, (&gateway.site, &gateway.id))?;
    let generated = crate::calendar::local_time(now, (params.utc_offset_h * 3600.0) as i64);
    let notes = crate::report::notes::ReportNotes::of(&config);
    let page = crate::report::html::render(&report, &notes, &generated);
    match output {
        Some(path) => std::fs::write(path, page)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display())),
        None => {
            use std::io::Write as _;
            std::io::stdout().write_all(page.as_bytes())?;
            Ok(())
        }
    }
}

/// Cycles of a plan period listed by `plan` at most.
const PLAN_CYCLES_LISTED: u64 = 100_000;

/// `plan`: per bus, the requests of each distinct poll cycle and the estimated bus time.
pub fn plan_report(config: &LoadedConfig) -> String {
    let mut out = String::new();
    let (mut total_points, mut total_requests) = (0usize, 0usize);
    for bus in &config.gateway.bus {
        let baud = serial_baud(bus);
        let line = match baud {
            Some(baud) => format!(
                "{baud} baud, {}{}{}",
                bus.data_bits,
                match bus.parity {
                    crate::config::Parity::None => 'N',
                    crate::config::Parity::Even => 'E',
                    crate::config::Parity::Odd => 'O',
                },
                bus.stop_bits
            ),
            None => "no serial line".to_string(),
        };
        let endpoint = bus.endpoint();
        let _ = writeln!(
            out,
            "bus {} ({} {endpoint}, {line}, inter-frame gap {:.2} ms, timeout {})",
            bus.id,
            bus.transport.name(),
            inter_frame_gap(bus).as_secs_f64() * 1e3,
            bus.timeout
        );
        let mut busy_per_second = 0.0f64;
        // What the running gateway learned from refused reads (adaptive reads) applies here too.
        let kept = crate::sources::modbus::adapt::LessonFile::read(
            &crate::sources::modbus::adapt::lesson_path(&config.gateway.gateway.data_dir, &bus.id),
        );
        for device in config.gateway.device.iter().filter(|d| d.bus == bus.id) {
            let Some(profile) = config.profile_of(device) else {
                continue;
            };
            if let Some(address) = &device.meter_address {
                let exchanges = crate::sources::meters::exchange_bytes(profile);
                let poll_time: f64 = baud.map_or(0.0, |baud| {
                    let time = |bytes: &u32| exchange_time(bus, baud, *bytes).as_secs_f64();
                    exchanges.iter().map(time).sum()
                });
                let _ = writeln!(
                    out,
                    "  {} meter {address} ({}, {}), every {}, {} readings in {} transaction(s), bus time {:.1} ms",
                    device.id,
                    device.profile,
                    profile.protocol.name(),
                    device.interval,
                    profile.readings.len(),
                    exchanges.len(),
                    poll_time * 1e3
                );
                total_points += profile.readings.len();
                total_requests += exchanges.len();
                busy_per_second += poll_time / device.interval.get().as_secs_f64();
                continue;
            }
            let mut plan = DevicePlan::new(device, profile, PlanLimits::of(bus));
            plan.lessons = kept.lessons(&device.id, &plan.points);
            let shapes = plan.cycle_shapes(PLAN_CYCLES_LISTED);
            let period = plan.period.min(PLAN_CYCLES_LISTED);
            total_points += plan.points.len();
            total_requests += plan.requests(0).len();
            let _ = writeln!(
                out,
                "  {} unit {} ({}), every {}, {} points",
                device.id,
                device.unit.unwrap_or_default(),
                device.profile,
                device.interval,
                plan.points.len()
            );
            if let Some(adapted) = plan.lessons.summary(&plan.points) {
                let _ = writeln!(
                    out,
                    "    adapted to the device's refusals (exception 2), until re-probed: {adapted}"
                );
            }
            let mut device_busy = 0.0;
            for (count, requests) in &shapes {
                let _ = writeln!(out, "    in {count} of {period} cycles:");
                let mut cycle_time = 0.0;
                for request in requests.iter() {
                    let names: Vec<&str> = request
                        .points
                        .iter()
                        .map(|i| &*plan.points[*i].name)
                        .collect();
                    let _ = writeln!(
                        out,
                        "      FC{} start {} count {}: {}",
                        request.function.code(),
                        request.start,
                        request.count,
                        names.join(", ")
                    );
                    if let Some(baud) = baud {
                        cycle_time += wire_time(bus, baud, request).as_secs_f64();
                    }
                }
                if baud.is_some() {
                    let _ = writeln!(out, "      bus time {:.1} ms", cycle_time * 1e3);
                }
                device_busy += cycle_time * *count as f64 / period as f64;
            }
            busy_per_second += device_busy / device.interval.get().as_secs_f64();
        }
        if baud.is_some() {
            let _ = writeln!(
                out,
                "  estimated wire time {:.0} ms per second ({:.1} % of the line), device turnaround not included",
                busy_per_second * 1e3,
                busy_per_second * 100.0
            );
        } else {
            let _ = writeln!(
                out,
                "  bus time not estimated: Modbus TCP without a serial line behind it"
            );
        }
    }
    let _ = writeln!(
        out,
        "total: {total_points} points read with {total_requests} requests when every point is due"
    );
    out
}

/// `run`: polls until SIGTERM/SIGINT, forwarding to InfluxDB through the telemetry log and/or
/// writing line protocol where the config says; SIGHUP reloads the sources.
pub async fn run(mut config: LoadedConfig) -> anyhow::Result<()> {
    for warning in crate::config::warnings::warnings(&config) {
        tracing::warn!(key = %warning.path, "{}", warning.problem);
    }
    let notifier = std::sync::Arc::new(crate::systemd::Notifier::from_env());
    let metrics = crate::metrics::install();
    let options = Options {
        self_monitoring: Some(SELF_MONITORING_EVERY),
        metrics,
        ..Options::default()
    };
    let mut pipeline = Pipeline::start(&config, options)?;
    tracing::info!(
        gateway = %config.gateway.gateway.id,
        buses = config.gateway.bus.len(),
        devices = config.gateway.device.len(),
        "Gateway started"
    );
    let observed = pipeline.observed();
    crate::http::start_for(&config, pipeline.observed(), pipeline.stopping()).await;
    crate::daemon::hand_back_startup_pages();
    notifier.notify(&format!(
        "READY=1\nSTATUS=polling {} devices on {} buses",
        config.gateway.device.len(),
        config.gateway.bus.len()
    ));
    let watchdog = notifier.watchdog_interval().map(|every| {
        tokio::spawn(crate::daemon::watchdog(
            every,
            pipeline.observed(),
            std::sync::Arc::clone(&notifier),
        ))
    });
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot listen for SIGHUP")?;
    loop {
        tokio::select! {
            _ = termination_signal() => break,
            _ = hangup.recv() => crate::daemon::reload(&mut config, &mut pipeline, &notifier).await,
        }
    }
    tracing::info!("Stopping");
    notifier.notify("STOPPING=1");
    if let Some(watchdog) = watchdog {
        watchdog.abort();
    }
    pipeline.shutdown(SHUTDOWN_DEADLINE).await;
    for (device, s) in observed.status.snapshot() {
        tracing::info!(
            device = %device,
            state = %s.state,
            samples = s.samples,
            transactions = s.transactions,
            exceptions = s.exceptions,
            timeouts = s.timeouts,
            link_errors = s.link_errors,
            "Device summary"
        );
    }
    tracing::info!("Gateway stopped");
    Ok(())
}
