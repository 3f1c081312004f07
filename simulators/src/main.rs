//! `retrofit-sim`: the simulated community as network servers on this machine.

use std::net::IpAddr;
use std::process::ExitCode;

use retrofit_sim::faults::parse_scenario;
use retrofit_sim::layout::Layout;
use retrofit_sim::{Community, SimOptions};
use tokio_serial::SerialPortBuilderExt;

const USAGE: &str =
    "usage: retrofit-sim [--bind ADDR] [--port-base N] [--speed X] [--seed N] [--scenario FILE]
                    [--mqtt HOST:PORT] [--mqtt-prefix P] [--mqtt-interval SECONDS]

Serves the example community of DOMAIN.md on ADDR (default 127.0.0.1):
  pump-room    RTU over TCP  port-base + 1   units 1 (booster set), 2 (break tank)
  prv-chamber  Modbus TCP    port-base + 2   units 11, 12 (PRV pressures), 13 (DMA flowmeter)
  substation   RTU over TCP  port-base + 3   units 20-22 (Acrel), 31-32 (DTSU666), 41-42 (TX temps)
  heating      Modbus TCP    port-base + 4   unit 1 (heating substation PLC)
  stairwell    meter line    port-base + 5   DL/T 645 household meters 000000110101-000000110601
  heat-meters  meter line    port-base + 6   CJ/T 188 heat meters 00000000200101-00000000201001,
                                             M-Bus primary heat meter at primary address 1
  water-meters meter line    port-base + 7   CJ/T 188 water meters 00000000100101-00000000100401
Default port base 15020 matches config/demo.toml. --speed 60 runs an hour a minute.
A scenario file has lines 'START_S DURATION_S FAULT [DEVICE]'.
--mqtt publishes the gas regulator RTUs, valve-well sensors and room thermometers to a broker,
under prefix P (default site/xingfu), every SECONDS (default 5).
--serial also serves a bus as Modbus RTU on a serial device (e.g. pump-room=/dev/ttyUSB0).
--fleet serves N booster controllers instead (pump-0001…, units 1-M on Modbus TCP buses
fleet-01… at port-base + 1, + 2 …), for load tests.";

struct Args {
    bind: IpAddr,
    port_base: u16,
    options: SimOptions,
    scenario: Option<String>,
    serial: Vec<(String, String)>,
    baud: u32,
    fleet: Option<(usize, usize)>,
    mqtt: Option<String>,
    mqtt_prefix: String,
    mqtt_interval: f64,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        bind: IpAddr::from([127, 0, 0, 1]),
        port_base: 15020,
        options: SimOptions::default(),
        scenario: None,
        serial: Vec::new(),
        baud: 9600,
        fleet: None,
        mqtt: None,
        mqtt_prefix: "site/xingfu".into(),
        mqtt_interval: 5.0,
    };
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--bind" => parsed.bind = value()?.parse().map_err(|e| format!("--bind: {e}"))?,
            "--port-base" => {
                parsed.port_base = value()?.parse().map_err(|e| format!("--port-base: {e}"))?
            }
            "--speed" => {
                parsed.options.speed = value()?.parse().map_err(|e| format!("--speed: {e}"))?
            }
            "--seed" => {
                parsed.options.seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?
            }
            "--scenario" => parsed.scenario = Some(value()?),
            "--serial" => {
                let text = value()?;
                let (bus, device) = text
                    .split_once('=')
                    .ok_or_else(|| format!("--serial {text:?}: expected BUS=DEVICE"))?;
                parsed.serial.push((bus.to_string(), device.to_string()));
            }
            "--baud" => parsed.baud = value()?.parse().map_err(|e| format!("--baud: {e}"))?,
            "--fleet" => {
                let count = value()?.parse().map_err(|e| format!("--fleet: {e}"))?;
                parsed.fleet = Some((count, parsed.fleet.map_or(10, |(_, per_bus)| per_bus)));
            }
            "--per-bus" => {
                let per_bus = value()?.parse().map_err(|e| format!("--per-bus: {e}"))?;
                parsed.fleet = Some((parsed.fleet.map_or(0, |(count, _)| count), per_bus));
            }
            "--mqtt" => parsed.mqtt = Some(value()?),
            "--mqtt-prefix" => parsed.mqtt_prefix = value()?,
            "--mqtt-interval" => {
                parsed.mqtt_interval = value()?
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s >= 0.01)
                    .ok_or_else(|| "--mqtt-interval: expected seconds ≥ 0.01".to_string())?
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(parsed)
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber_init();
    let args = match parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("retrofit-sim: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let steps = match &args.scenario {
        Some(path) => match std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|text| parse_scenario(&text))
        {
            Ok(steps) => steps,
            Err(e) => {
                eprintln!("retrofit-sim: {path}: {e}");
                return ExitCode::from(2);
            }
        },
        None => Vec::new(),
    };
    let layout = match args.fleet {
        Some((count, per_bus)) => Layout::pump_fleet(args.bind, args.port_base, count, per_bus),
        None => Layout::example_site(args.bind, args.port_base),
    };
    let mut community = match Community::start(&layout, args.options).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("retrofit-sim: {e}");
            return ExitCode::from(1);
        }
    };
    for (bus, address) in community.addresses() {
        println!("{bus:<12} {address}");
    }
    for (bus, device) in &args.serial {
        let port = tokio_serial::new(device, args.baud).open_native_async();
        match port {
            Ok(port) => {
                community.serve_serial(bus, port);
                println!("{bus:<12} {device} (RTU, {} baud)", args.baud);
            }
            Err(e) => {
                eprintln!("retrofit-sim: {device}: {e}");
                return ExitCode::from(1);
            }
        }
    }
    if let Some(broker) = &args.mqtt {
        let Some((host, port)) = broker
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
        else {
            eprintln!("retrofit-sim: --mqtt {broker:?}: expected HOST:PORT");
            return ExitCode::from(2);
        };
        community.publish(retrofit_sim::PublishOptions {
            host,
            port,
            prefix: args.mqtt_prefix.clone(),
            interval: std::time::Duration::from_secs_f64(args.mqtt_interval),
        });
        println!(
            "mqtt         {broker} (publishing under {})",
            args.mqtt_prefix
        );
    }
    let _scenario = community.play(steps);
    let _ = tokio::signal::ctrl_c().await;
    ExitCode::SUCCESS
}

/// Logs injected and cleared faults to standard error; `RUST_LOG` adjusts the level.
fn tracing_subscriber_init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
