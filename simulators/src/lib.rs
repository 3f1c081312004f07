//! retrofit-sim: the simulated community of DOMAIN.md §3 as real Modbus servers and MQTT
//! publishers, with realistic behaviour (diurnal demand with a night minimum, noise, pump
//! frequency following demand, a heating weather curve, transformer load and temperature) and
//! fault injection while running.
//!
//! # Layout
//!
//! - [`layout`]: which devices sit on which bus at which unit id.
//! - [`devices`]: each device kind's register map and physics.
//! - [`registers`]: encoding engineering values into register images, and the truth a correct
//!   reader must recover.
//! - [`world`]: the community state and its physics step.
//! - [`faults`]: fault kinds and scenario files.
//! - [`meters`]: DL/T 645 household meters, CJ/T 188 and M-Bus heat meters behind transparent
//!   serial servers.
//! - [`server`]: the Modbus TCP and RTU-over-TCP servers; [`Community::publish`] sends the
//!   publishing devices' messages to an MQTT broker.
//! - [`clock`], [`noise`]: simulated time and seeded measurement noise.

pub mod clock;
pub mod devices;
pub mod faults;
pub mod layout;
pub mod meters;
pub mod noise;
pub mod registers;
pub mod server;
pub mod world;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use clock::SimClock;
use faults::{Fault, ScenarioStep};
use layout::{Layout, SimTransport};
use server::{lock, BusService};
use world::{Message, World};

/// Where the publishing devices send, and how often.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    pub host: String,
    pub port: u16,
    /// Topics are `<prefix>/gas/<id>/telemetry`, `<prefix>/well/status/<id>`, `<prefix>/room/<id>`.
    pub prefix: String,
    /// Real time between two messages of one device (battery devices report every 5–15 min in
    /// the field; tests and the demo want seconds).
    pub interval: Duration,
}

/// Messages kept in the log of what was published (the oldest go first).
const SENT_LOG: usize = 10_000;

/// How the community runs.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Simulated seconds per real second.
    pub speed: f64,
    /// Simulated start time (Unix seconds); now when `None`.
    pub start_unix_s: Option<f64>,
    /// Noise seed; the same seed and start give the same run.
    pub seed: u64,
    /// How often the physics advances (real time).
    pub tick: Duration,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            speed: 1.0,
            start_unix_s: None,
            seed: 2021,
            tick: Duration::from_millis(200),
        }
    }
}

/// A running simulated community. Dropping it stops its servers.
pub struct Community {
    world: Arc<Mutex<World>>,
    addresses: BTreeMap<String, SocketAddr>,
    /// The meters of each meter line.
    meter_lines: BTreeMap<String, Arc<[meters::SimMeter]>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Community {
    /// Binds every bus of `layout` and starts serving.
    pub async fn start(layout: &Layout, options: SimOptions) -> io::Result<Community> {
        let clock = match options.start_unix_s {
            Some(start) => SimClock::new(start, options.speed),
            None => {
                let now = SimClock::real_time().now_unix_s();
                SimClock::new(now, options.speed)
            }
        };
        let world = Arc::new(Mutex::new(World::new(layout, clock, options.seed)));
        let mut addresses = BTreeMap::new();
        let mut meter_lines = BTreeMap::new();
        let mut tasks = Vec::new();
        for bus in &layout.buses {
            let listener = TcpListener::bind(bus.listen).await.map_err(|e| {
                io::Error::new(e.kind(), format!("bus {} on {}: {e}", bus.id, bus.listen))
            })?;
            addresses.insert(bus.id.clone(), listener.local_addr()?);
            if bus.transport == SimTransport::MeterLine {
                let on_line: Arc<[meters::SimMeter]> = layout
                    .meters
                    .iter()
                    .filter(|(line, _)| *line == bus.id)
                    .map(|(_, meter)| meter.clone())
                    .collect();
                meter_lines.insert(bus.id.clone(), Arc::clone(&on_line));
                let world = Arc::clone(&world);
                tasks.push(tokio::spawn(meters::serve(listener, world, on_line)));
                continue;
            }
            let service = BusService {
                world: Arc::clone(&world),
                bus: Arc::from(bus.id.as_str()),
            };
            tasks.push(tokio::spawn(serve(listener, bus.transport, service)));
        }
        let ticking = Arc::clone(&world);
        let tick = options.tick;
        tasks.push(tokio::spawn(async move {
            let mut interval = tokio::time::interval(tick);
            loop {
                interval.tick().await;
                lock(&ticking).step();
            }
        }));
        Ok(Community {
            world,
            addresses,
            meter_lines,
            tasks,
        })
    }

    /// Also serves the devices of `bus` on a serial port (an RS-485 adapter, or one end of a
    /// pseudo-terminal pair in tests): as Modbus RTU, or a meter line's meters in their own
    /// protocols.
    pub fn serve_serial(&mut self, bus: &str, port: tokio_serial::SerialStream) {
        if let Some(meters) = self.meter_lines.get(bus) {
            let line = meters::line(port, Arc::clone(&self.world), Arc::clone(meters));
            self.tasks.push(tokio::spawn(line));
            return;
        }
        let service = BusService {
            world: Arc::clone(&self.world),
            bus: Arc::from(bus),
        };
        let bus = bus.to_string();
        self.tasks.push(tokio::spawn(async move {
            let server = tokio_modbus::server::rtu::Server::new(port);
            if let Err(e) = server.serve_forever(service).await {
                tracing::error!(error = %e, bus = %bus, "Simulated serial bus stopped");
            }
        }));
    }

    /// What `meter` reports for the DL/T 645 identifier `di` right now (`None`: no such data).
    pub fn meter_value(&self, meter: &meters::HouseholdMeter, di: u32) -> Option<f64> {
        meters::household::value(&lock(&self.world), meter, di)
    }

    /// The address a bus listens on.
    pub fn address(&self, bus: &str) -> Option<SocketAddr> {
        self.addresses.get(bus).copied()
    }

    pub fn addresses(&self) -> &BTreeMap<String, SocketAddr> {
        &self.addresses
    }

    pub fn inject(&self, fault: Fault) {
        tracing::info!(fault = %fault, "Injecting fault");
        lock(&self.world).inject(fault);
    }

    pub fn clear(&self, fault: &Fault) {
        tracing::info!(fault = %fault, "Clearing fault");
        lock(&self.world).clear(fault);
    }

    /// Makes `device` refuse reads that touch `registers` of `table` with exception 2, as a
    /// device whose register map has a hole there does.
    pub fn unmap(&self, device: &str, table: registers::Table, registers: std::ops::Range<u16>) {
        let mut world = lock(&self.world);
        if let Some(sim) = world.devices.iter_mut().find(|d| d.id == device) {
            sim.unmapped.push((table, registers));
        }
    }

    /// Stops (or restarts) the physics so that values hold still.
    pub fn set_frozen(&self, frozen: bool) {
        lock(&self.world).frozen = frozen;
    }

    /// The engineering values a correct reader decodes from a device's registers right now.
    pub fn truth(&self, device: &str) -> Option<BTreeMap<String, f64>> {
        lock(&self.world).truth(device)
    }

    /// Reads each device has answered so far.
    pub fn reads(&self) -> HashMap<String, u64> {
        lock(&self.world)
            .devices
            .iter()
            .map(|d| (d.id.clone(), d.reads))
            .collect()
    }

    /// How many devices publish over MQTT.
    pub fn published_devices(&self) -> usize {
        lock(&self.world).published.len()
    }

    /// Starts publishing: every `interval`, one QoS 1 message per publishing device. Returns
    /// the log of what was handed to the broker, newest last, for tests to compare with.
    pub fn publish(&mut self, options: PublishOptions) -> Arc<Mutex<Vec<Message>>> {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let mut mqtt = rumqttc::MqttOptions::new(
            format!("retrofit-sim-{}", std::process::id()),
            rumqttc::Broker::tcp(options.host.clone(), options.port),
        );
        mqtt.set_keep_alive(30);
        let (client, mut eventloop) = rumqttc::AsyncClient::builder(mqtt).capacity(256).build();
        self.tasks.push(tokio::spawn(async move {
            loop {
                if let Err(e) = eventloop.poll().await {
                    tracing::warn!(error = %e, "Simulated devices lost the broker; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }));
        let world = Arc::clone(&self.world);
        let log = Arc::clone(&sent);
        self.tasks.push(tokio::spawn(async move {
            let mut interval = tokio::time::interval(options.interval);
            loop {
                interval.tick().await;
                let messages = lock(&world).messages(&options.prefix);
                for message in messages {
                    let queued = client
                        .publish(
                            message.topic.clone(),
                            message.payload.clone(),
                            rumqttc::PublishOptions::at_least_once(),
                        )
                        .await;
                    if queued.is_err() {
                        return;
                    }
                    let mut log = lock(&log);
                    if log.len() >= SENT_LOG {
                        log.remove(0);
                    }
                    log.push(message);
                }
            }
        }));
        sent
    }

    /// Plays a scenario: each step's fault is injected at its start and cleared after its
    /// duration, measured from now.
    pub fn play(&self, steps: Vec<ScenarioStep>) -> JoinHandle<()> {
        let world = Arc::clone(&self.world);
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let mut events: Vec<(Duration, bool, Fault)> = steps
                .into_iter()
                .flat_map(|s| {
                    [
                        (s.start, true, s.fault.clone()),
                        (s.start + s.duration, false, s.fault),
                    ]
                })
                .collect();
            events.sort_by_key(|(at, on, _)| (*at, *on));
            for (at, on, fault) in events {
                tokio::time::sleep_until(started + at).await;
                if on {
                    tracing::info!(fault = %fault, "Scenario injects fault");
                    lock(&world).inject(fault);
                } else {
                    tracing::info!(fault = %fault, "Scenario clears fault");
                    lock(&world).clear(&fault);
                }
            }
        })
    }
}

impl Drop for Community {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn serve(listener: TcpListener, transport: SimTransport, service: BusService) {
    let on_process_error = |e: io::Error| tracing::debug!(error = %e, "Simulator connection ended");
    let result = match transport {
        SimTransport::Tcp => {
            let server = tokio_modbus::server::tcp::Server::new(listener);
            let on_connected = |stream, _addr| {
                let service = service.clone();
                async move { Ok(Some((service, stream))) }
            };
            server.serve(&on_connected, on_process_error).await
        }
        SimTransport::RtuOverTcp => {
            let server = tokio_modbus::server::rtu_over_tcp::Server::new(listener);
            let on_connected = |stream, _addr| {
                let service = service.clone();
                async move { Ok(Some((service, stream))) }
            };
            server.serve(&on_connected, on_process_error).await
        }
        // Served by `meters::serve`.
        SimTransport::MeterLine => Ok(()),
    };
    if let Err(e) = result {
        tracing::error!(error = %e, bus = %service.bus, "Simulated bus stopped");
    }
}
