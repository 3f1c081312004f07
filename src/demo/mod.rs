//! `retrofit-gateway demo`: the simulated community and the gateway in one process, no external
//! services. The simulator's buses listen on free loopback ports; the demo config's bus addresses
//! are pointed at them. A built-in scenario injects faults while it runs, and a digest of the
//! latest readings and each device's communication state is printed every few seconds. When the
//! config has `[mqtt_source]`, the simulated publishing devices (gas regulator RTUs, valve wells,
//! room thermometers) send to an embedded broker ([`broker`]) and the gateway subscribes there.
//! When the config has `[outputs.influxdb]`, readings are also forwarded there through the
//! telemetry log.
//!
//! The demo wing lives here, behind the default cargo feature `demo`: this command, the embedded
//! broker, the community replay ([`replay`]) and `demo-month` ([`month`]). A field build
//! (`--no-default-features`) links neither the simulator nor the broker.

pub mod broker;
pub mod builtin;
pub mod month;
pub mod replay;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use retrofit_sim::faults::{Fault, FaultKind, ScenarioStep};
use retrofit_sim::layout::Layout;
use retrofit_sim::{Community, SimOptions};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::config::LoadedConfig;
use crate::daemon::termination_signal;
use crate::line_protocol;
use crate::model::{AlarmEvent, Sample};
use crate::pipeline::{Options, Pipeline, SAMPLE_CHANNEL_CAPACITY, SHUTDOWN_DEADLINE};
use crate::sources::modbus::status::StatusBoard;

/// What `demo` does.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The built-in demo config when `None`.
    pub config: Option<PathBuf>,
    /// Stop after this long; run until Ctrl-C when `None`.
    pub duration: Option<Duration>,
    /// Print every sample as line protocol instead of the digest.
    pub print_lines: bool,
    /// Play the built-in fault scenario.
    pub faults: bool,
}

/// Rule hold times are divided by this in the demo, so that a 5-minute or 1-hour hold shows
/// within a scenario that lasts minutes. Said on screen when the demo starts.
pub const DEMO_HOLD_DIVISOR: u32 = 120;

/// Divides every rule's hold, clear, stale and flapping times, and the incidents' settling
/// and update times, by `divisor`.
pub fn shorten_holds(config: &mut LoadedConfig, divisor: u32) {
    use crate::config::ConfigDuration;
    let shorten = |d: ConfigDuration| ConfigDuration(d.get() / divisor);
    for rule in &mut config.rules {
        // A step needs samples before and after it: never shorter than 10 s.
        rule.window = rule
            .window
            .map(|w| ConfigDuration(shorten(w).get().max(std::time::Duration::from_secs(10))));
        rule.hold = shorten(rule.hold);
        rule.clear_for = rule.clear_for.map(shorten);
        rule.after = rule.after.map(shorten);
        rule.flap_window = shorten(rule.flap_window);
    }
    let alarms = &mut config.gateway.alarms;
    alarms.incident_settle = shorten(alarms.incident_settle);
    alarms.incident_settle_crit = shorten(alarms.incident_settle_crit);
    alarms.incident_update_after = shorten(alarms.incident_update_after);
}

/// The built-in scenario: one fault of each physical kind and a silent device, spaced out.
pub fn demo_scenario() -> Vec<ScenarioStep> {
    let step = |start: u64, duration: u64, fault: Fault| ScenarioStep {
        start: Duration::from_secs(start),
        duration: Duration::from_secs(duration),
        fault,
    };
    vec![
        step(10, 20, Fault::on(FaultKind::Silent, "prv-outlet")),
        step(20, 20, Fault::plant(FaultKind::PumpTrip)),
        step(45, 15, Fault::plant(FaultKind::VoltageSag)),
        step(65, 20, Fault::plant(FaultKind::TransformerOvertemp)),
        step(90, 20, Fault::plant(FaultKind::Leak)),
        step(115, 40, Fault::plant(FaultKind::HeatingMakeupSurge)),
        step(30, 15, Fault::on(FaultKind::GasLeak, "GRB-01")),
        step(55, 20, Fault::on(FaultKind::CoverOpened, "well_08")),
        step(75, 90, Fault::on(FaultKind::ColdFlat, "room_11-2-0901")),
    ]
}

/// The topic prefix of the simulated publishing devices; `config/demo.toml`'s mappings use it.
pub const DEMO_MQTT_PREFIX: &str = "site/xingfu";

/// Points the config's MQTT source at an embedded broker and has the community's publishing
/// devices send there; says what it did.
fn attach_mqtt(config: &mut LoadedConfig, community: &mut Community) -> anyhow::Result<String> {
    let Some(source) = &mut config.gateway.mqtt_source else {
        return Ok("no [mqtt_source] in the config: no publishing devices".into());
    };
    let broker = broker::start()?;
    source.host = broker.ip().to_string();
    source.port = broker.port();
    source.clean_session = true;
    community.publish(retrofit_sim::PublishOptions {
        host: source.host.clone(),
        port: source.port,
        prefix: DEMO_MQTT_PREFIX.into(),
        interval: Duration::from_secs(2),
    });
    Ok(format!(
        "{} publishing devices sending every 2 s to the embedded MQTT broker at {broker}",
        community.published_devices()
    ))
}

/// Points the demo config's buses at a running community.
pub fn attach_to(config: &mut LoadedConfig, community: &Community) -> anyhow::Result<()> {
    for bus in &mut config.gateway.bus {
        let address = community
            .address(&bus.id)
            .with_context(|| format!("the simulated community has no bus {:?}", bus.id))?;
        bus.address = Some(address.to_string());
    }
    Ok(())
}

/// Runs the demo.
pub async fn run(options: DemoOptions) -> anyhow::Result<()> {
    let mut config = builtin::load(options.config.as_deref())?;
    shorten_holds(&mut config, DEMO_HOLD_DIVISOR);
    // Without InfluxDB nothing needs to outlive the run: alarm state starts fresh each time (a
    // state left by an earlier run would show its alarms, flapping from run to run).
    let scratch = config.gateway.outputs.influxdb.is_none().then(|| {
        let dir =
            std::env::temp_dir().join(format!("retrofit-gateway-demo-{}", std::process::id()));
        config.gateway.gateway.data_dir = dir.clone();
        dir
    });
    let layout = Layout::example_site(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
    let mut community = Community::start(&layout, SimOptions::default())
        .await
        .context("cannot start the simulated community")?;
    attach_to(&mut config, &community)?;
    let mqtt = attach_mqtt(&mut config, &mut community)?;
    if config.gateway.device.is_empty() {
        bail!("{} has no devices", config.path.display());
    }
    println!(
        "{} alarm rules; hold times shortened {DEMO_HOLD_DIVISOR}× for the demo (1 h → 30 s)",
        config.rules.len()
    );
    println!(
        "Simulated community {} ({} devices) on {}",
        config.gateway.gateway.site,
        config.gateway.device.len(),
        community
            .addresses()
            .iter()
            .map(|(bus, a)| format!("{bus}={a}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("{mqtt}");
    // Forward to InfluxDB only when the config names one (through the telemetry log in
    // data_dir, as `run` does); the demo prints instead of writing a line-protocol file.
    config.gateway.outputs.line_protocol = None;
    if let Some(influx) = &config.gateway.outputs.influxdb {
        println!("Forwarding to InfluxDB at {}", influx.url);
    }
    let (to_printer, receiver) = mpsc::channel(SAMPLE_CHANNEL_CAPACITY);
    let (alarms_tx, mut alarms) = mpsc::channel::<AlarmEvent>(256);
    let announcer = tokio::spawn(async move {
        while let Some(event) = alarms.recv().await {
            let what = if event.firing {
                "ALARM RAISED "
            } else {
                "alarm cleared"
            };
            println!(
                "{what} [{}] {} {}: {}",
                event.severity.name(),
                event.device,
                event.rule,
                event.message
            );
        }
    });
    let metrics = crate::metrics::install();
    let pipeline = Pipeline::start(
        &config,
        Options {
            tap: Some(to_printer),
            alarm_listener: Some(alarms_tx),
            self_monitoring: Some(Duration::from_secs(10)),
            metrics,
        },
    )?;
    let observed = pipeline.observed();
    if let Some(address) =
        crate::http::start_for(&config, pipeline.observed(), pipeline.stopping()).await
    {
        println!("Status page 状态页: http://{address}/");
    }
    let scenario = options.faults.then(|| community.play(demo_scenario()));
    let printer = tokio::spawn(print(
        receiver,
        Arc::clone(&observed.status),
        options.print_lines,
    ));
    match options.duration {
        Some(limit) => {
            tokio::select! {
                _ = tokio::time::sleep(limit) => {}
                _ = termination_signal() => {}
            }
        }
        None => termination_signal().await,
    }
    if let Some(scenario) = scenario {
        scenario.abort();
    }
    pipeline.shutdown(SHUTDOWN_DEADLINE).await;
    printer.await.context("printer failed")??;
    let _ = announcer.await;
    if let Some(dir) = scratch {
        let _ = std::fs::remove_dir_all(dir);
    }
    println!("\nDevice summary:");
    println!(
        "  {:<12} {:<9} {:>7} {:>9} {:>6} {:>8}",
        "device", "state", "samples", "requests", "exc.", "timeouts"
    );
    for (device, s) in observed.status.snapshot() {
        println!(
            "  {device:<12} {:<9} {:>7} {:>9} {:>6} {:>8}",
            s.state.to_string(),
            s.samples,
            s.transactions,
            s.exceptions,
            s.timeouts
        );
    }
    Ok(())
}

/// How often the digest is printed.
const DIGEST_EVERY: Duration = Duration::from_secs(5);
/// Fields shown per device in the digest.
const DIGEST_FIELDS: usize = 4;

async fn print(
    mut receiver: mpsc::Receiver<Sample>,
    status: Arc<StatusBoard>,
    lines: bool,
) -> std::io::Result<()> {
    let mut stdout = tokio::io::stdout();
    let mut latest: BTreeMap<Arc<str>, Sample> = BTreeMap::new();
    let mut count = 0u64;
    let mut digest = tokio::time::interval(DIGEST_EVERY);
    digest.tick().await;
    loop {
        tokio::select! {
            sample = receiver.recv() => {
                let Some(mut sample) = sample else { break };
                // Without InfluxDB the printer is the demo's only output: a printed reading
                // has arrived (else keeping the last one per device would drop a receipt
                // unsettled, and the MQTT source would reconnect to have it sent again).
                sample.receipt.settle(true);
                count += 1;
                if lines {
                    let mut line = String::new();
                    line_protocol::encode(&sample, &mut line);
                    stdout.write_all(line.as_bytes()).await?;
                }
                if &*sample.measurement != "alarm" {
                    latest.insert(Arc::clone(&sample.device), sample);
                }
            }
            _ = digest.tick(), if !lines => {
                let text = render_digest(&latest, &status, count);
                stdout.write_all(text.as_bytes()).await?;
            }
        }
    }
    stdout.flush().await
}

fn render_digest(latest: &BTreeMap<Arc<str>, Sample>, status: &StatusBoard, count: u64) -> String {
    use std::fmt::Write as _;
    let states = status.snapshot();
    let values = |sample: &Sample| {
        sample
            .fields
            .iter()
            .take(DIGEST_FIELDS)
            .map(|f| match f.value.as_f64() {
                Some(v) => format!("{}={}", f.name, (v * 1000.0).round() / 1000.0),
                None => format!("{}={:?}", f.name, f.value),
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut out = format!("\n{count} samples so far\n");
    for (device, s) in &states {
        let shown = latest.get(device.as_str()).map(values).unwrap_or_default();
        let _ = writeln!(out, "  {device:<14} {:<9} {shown}", s.state.to_string());
    }
    // Devices that publish have no poll state: their latest message is what there is.
    for (device, sample) in latest {
        if !states
            .iter()
            .any(|(polled, _)| polled.as_str() == &**device)
        {
            let _ = writeln!(out, "  {device:<14} {:<9} {}", "published", values(sample));
        }
    }
    out
}
