//! Wiring of stages and shutdown. [`Gateway::start`] spawns one task per bus, and the MQTT
//! source when one is configured, feeding a bounded sample channel; [`Gateway::stop`] broadcasts shutdown, waits for every task up to a deadline,
//! then aborts what is left. Dropping the channel's last sender ends the consumer.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::buffer::reserve::Reserve;
use crate::config::LoadedConfig;
use crate::health::Health;
use crate::model::Sample;
use crate::sources::modbus::status::StatusBoard;
use crate::sources::mqtt::{IngestStats, MqttSource};

/// Samples in flight between the sources and the output. When full, sources wait (polls are
/// delayed and counted as skipped if a whole interval late); nothing is dropped here.
pub const SAMPLE_CHANNEL_CAPACITY: usize = 1024;

/// A running gateway: one task per bus and one for the MQTT source, each with its own stop
/// switch so that a reload restarts only what changed.
pub struct Gateway {
    sources: BTreeMap<String, Source>,
    samples: mpsc::Sender<Sample>,
    pub status: Arc<StatusBoard>,
    /// What the MQTT source received, when there is one (kept across reloads).
    pub mqtt: Option<Arc<IngestStats>>,
    /// The MQTT source's problems (broker out of reach).
    pub health: Arc<Health>,
}

/// A running source and what it was started from.
struct Source {
    task: JoinHandle<()>,
    stop: watch::Sender<bool>,
    /// The configuration it runs (its bus, devices and their profiles, or the MQTT source).
    fingerprint: String,
}

/// What a reload did, by source (`bus:<id>`, `mqtt`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reloaded {
    pub started: Vec<String>,
    pub restarted: Vec<String>,
    pub stopped: Vec<String>,
    pub unchanged: Vec<String>,
}

/// Each source of `config` with the text of everything it depends on.
fn fingerprints(config: &LoadedConfig) -> BTreeMap<String, String> {
    let mut sources = BTreeMap::new();
    for bus in &config.gateway.bus {
        let devices: Vec<_> = config
            .gateway
            .device
            .iter()
            .filter(|d| d.bus == bus.id)
            .map(|d| (d, config.profile_of(d)))
            .collect();
        let identity = (&config.gateway.gateway, bus, devices);
        sources.insert(format!("bus:{}", bus.id), format!("{identity:?}"));
    }
    if let Some(mqtt) = &config.gateway.mqtt_source {
        let identity = (&config.gateway.gateway, mqtt);
        sources.insert("mqtt".to_string(), format!("{identity:?}"));
    }
    sources
}

impl Gateway {
    /// Starts polling every bus of `config` and subscribing to its MQTT source into `samples`.
    /// Fails only when the MQTT password or TLS files cannot be read. Must run inside a tokio runtime.
    pub fn start(
        config: &LoadedConfig,
        samples: mpsc::Sender<Sample>,
    ) -> Result<Gateway, crate::mqtt::BrokerError> {
        let mut gateway = Gateway {
            sources: BTreeMap::new(),
            samples,
            status: Arc::new(StatusBoard::default()),
            mqtt: None,
            health: Arc::new(Health::default()),
        };
        for (name, fingerprint) in fingerprints(config) {
            gateway.launch(config, name, fingerprint)?;
        }
        Ok(gateway)
    }

    /// Starts the source `name` of `config`.
    fn launch(
        &mut self,
        config: &LoadedConfig,
        name: String,
        fingerprint: String,
    ) -> Result<(), crate::mqtt::BrokerError> {
        let (stop, stopped) = watch::channel(false);
        let task = match name.strip_prefix("bus:") {
            Some(bus_id) => {
                let Some(bus) = config.gateway.bus.iter().find(|b| b.id == bus_id) else {
                    return Ok(());
                };
                crate::sources::spawn_bus(
                    config,
                    bus,
                    self.samples.clone(),
                    Arc::clone(&self.status),
                    stopped,
                )
            }
            None => {
                let Some(source) = &config.gateway.mqtt_source else {
                    return Ok(());
                };
                let stats = Arc::clone(self.mqtt.get_or_insert_with(Default::default));
                let task = MqttSource::new(config, source, self.samples.clone(), stats)?
                    .reporting_to(Arc::clone(&self.health));
                tokio::spawn(task.run(stopped))
            }
        };
        self.sources.insert(
            name,
            Source {
                task,
                stop,
                fingerprint,
            },
        );
        Ok(())
    }

    /// Applies a new configuration: sources whose bus, devices, profiles or MQTT settings
    /// changed are stopped and started again, new ones started, removed ones stopped; the rest
    /// keep running untouched. Samples already passed on are never affected: the outputs and
    /// the telemetry log are not part of a reload.
    pub async fn reload(
        &mut self,
        config: &LoadedConfig,
        deadline: Duration,
    ) -> Result<Reloaded, crate::mqtt::BrokerError> {
        let wanted = fingerprints(config);
        let mut done = Reloaded::default();
        let names: Vec<String> = self.sources.keys().cloned().collect();
        for name in names {
            match wanted.get(&name) {
                Some(fingerprint) if *fingerprint == self.sources[&name].fingerprint => {
                    done.unchanged.push(name);
                }
                other => {
                    if let Some(source) = self.sources.remove(&name) {
                        stop_all(vec![source], deadline).await;
                    }
                    if other.is_some() {
                        done.restarted.push(name);
                    } else {
                        done.stopped.push(name);
                    }
                }
            }
        }
        let configured: Vec<&str> = config
            .gateway
            .device
            .iter()
            .map(|d| d.id.as_str())
            .collect();
        self.status.retain(&configured);
        for (name, fingerprint) in wanted {
            if self.sources.contains_key(&name) {
                continue;
            }
            if !done.restarted.contains(&name) {
                done.started.push(name.clone());
            }
            self.launch(config, name, fingerprint)?;
        }
        Ok(done)
    }

    /// Stops polling: signals every task and waits for them up to `deadline`.
    pub async fn stop(self, deadline: Duration) {
        stop_all(self.sources.into_values().collect(), deadline).await;
    }
}

/// Signals `sources` to stop and waits for them up to `deadline`, then aborts what is left.
async fn stop_all(sources: Vec<Source>, deadline: Duration) {
    let mut tasks = Vec::new();
    for source in sources {
        let _ = source.stop.send(true);
        tasks.push(source.task);
    }
    let aborts: Vec<_> = tasks.iter().map(JoinHandle::abort_handle).collect();
    if tokio::time::timeout(deadline, join_all(tasks))
        .await
        .is_err()
    {
        tracing::warn!(
            ?deadline,
            "Source tasks did not stop in time; aborting them"
        );
        for abort in aborts {
            abort.abort();
        }
    }
}

async fn join_all<T>(tasks: Vec<JoinHandle<T>>) {
    for task in tasks {
        let _ = task.await;
    }
}

/// Waits for SIGTERM or SIGINT.
pub async fn termination_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The output stages: the durable InfluxDB path and/or a line-protocol file, fed by one sample
/// channel (tee'd when both are configured).
pub struct Outputs {
    /// Where the sources send samples.
    pub samples: Option<mpsc::Sender<Sample>>,
    stages: Vec<JoinHandle<()>>,
    forwarder: Option<(JoinHandle<()>, watch::Sender<bool>)>,
    pub log: Option<crate::sinks::influx::forwarder::SharedLog>,
    /// The telemetry log's and InfluxDB's problems.
    pub health: Arc<Health>,
    /// The forwarder's counters, when forwarding.
    pub forwarder_status: Option<Arc<crate::sinks::influx::forwarder::ForwarderStatus>>,
}

impl Outputs {
    /// Opens the telemetry log (recovering it), starts the forwarder and the writers.
    pub fn start(config: &LoadedConfig) -> anyhow::Result<Outputs> {
        use crate::buffer::{LogOptions, SegmentLog};
        use crate::sinks::influx::forwarder::{Forwarder, ForwarderOptions};
        use crate::sinks::influx::write::WriteEndpoint;
        use anyhow::Context as _;

        let outputs = &config.gateway.outputs;
        let mut senders = Vec::new();
        let mut stages = Vec::new();
        let mut forwarder = None;
        let mut shared_log = None;
        let mut forwarder_status = None;
        let health = Arc::new(Health::default());
        if let Some(influx) = &outputs.influxdb {
            let data_dir = &config.gateway.gateway.data_dir;
            let buffer = &config.gateway.buffer;
            let options = LogOptions {
                segment_bytes: buffer.segment_size_mb << 20,
                max_bytes: buffer.max_size_mb << 20,
                sync_interval: buffer.sync_interval.get(),
                reserve: Some(Reserve::shared(data_dir)),
                ..LogOptions::default()
            };
            let dir = data_dir.join("telemetry");
            let (log, report) = SegmentLog::open(&dir, options)
                .with_context(|| format!("cannot open the telemetry log in {}", dir.display()))?;
            let damaged = report.corrupted + report.quarantined + report.lost > 0
                || report.torn_bytes > 0
                || report.cursor_reset;
            if damaged {
                tracing::warn!(?report, dir = %dir.display(), "Telemetry log recovered with damage");
            } else {
                tracing::info!(
                    pending = report.pending,
                    segments = report.segments,
                    "Telemetry log opened"
                );
            }
            let log = Arc::new(std::sync::Mutex::new(log));
            let endpoint = WriteEndpoint::new(influx).context("InfluxDB output")?;
            let appended = Arc::new(tokio::sync::Notify::new());
            let forwarder_task = Forwarder::new(
                endpoint,
                Arc::clone(&log),
                Arc::clone(&appended),
                ForwarderOptions::new(influx, data_dir.join("dead-letter.lp")),
            )
            .reporting_to(Arc::clone(&health));
            forwarder_status = Some(Arc::clone(&forwarder_task.status));
            let (stop, stopped) = watch::channel(false);
            forwarder = Some((tokio::spawn(forwarder_task.run(stopped)), stop));
            let (tx, rx) = mpsc::channel(SAMPLE_CHANNEL_CAPACITY);
            senders.push(tx);
            let sync_interval = buffer.sync_interval.get();
            let stage_log = Arc::clone(&log);
            let stage_health = Arc::clone(&health);
            stages.push(tokio::spawn(async move {
                let counts = crate::sinks::telemetry_log::append_samples(
                    rx,
                    stage_log,
                    appended,
                    sync_interval,
                    stage_health,
                )
                .await;
                tracing::info!(
                    lines = counts.lines,
                    refused = counts.refused,
                    "Telemetry log closed"
                );
            }));
            shared_log = Some(log);
        }
        if let Some(file) = &outputs.line_protocol {
            let path = file.path.clone();
            let max_bytes = file.max_size_mb << 20;
            let (tx, rx) = mpsc::channel(SAMPLE_CHANNEL_CAPACITY);
            senders.push(tx);
            stages.push(tokio::spawn(async move {
                let written = match crate::sinks::line_file::open(&path, max_bytes) {
                    Ok(out) => crate::sinks::line_file::write_lines(rx, out).await,
                    Err(e) => Err(e),
                };
                match written {
                    Ok(w) => tracing::info!(
                        lines = w.lines,
                        rotated_out = w.rotated_out,
                        "Line-protocol output closed"
                    ),
                    Err(e) => {
                        tracing::error!(error = %e, path = %path, "Line-protocol output failed")
                    }
                }
            }));
        }
        let samples = match senders.len() {
            0 => anyhow::bail!(
                "no output configured (expected [outputs.influxdb] or [outputs.line_protocol])"
            ),
            1 => senders.pop(),
            _ => {
                let (tx, mut rx) = mpsc::channel::<Sample>(SAMPLE_CHANNEL_CAPACITY);
                stages.push(tokio::spawn(async move {
                    // The telemetry log (the first output) gets the sample itself with its
                    // receipt; the others get copies.
                    while let Some(sample) = rx.recv().await {
                        for sender in &senders[1..] {
                            let _ = sender.send(sample.clone()).await;
                        }
                        let _ = senders[0].send(sample).await;
                    }
                }));
                Some(tx)
            }
        };
        Ok(Outputs {
            samples,
            stages,
            forwarder,
            log: shared_log,
            health,
            forwarder_status,
        })
    }

    /// After the sources have stopped (and dropped their senders): drains the writers, syncs the
    /// log, then stops the forwarder. Unsent readings stay in the log for the next start.
    pub async fn finish(mut self, deadline: Duration) {
        self.close_input(deadline).await;
        self.stop_forwarder().await;
    }

    /// Drops the sample channel and waits (up to `deadline`) for the writers to drain; the
    /// telemetry log is synced when its stage ends.
    pub async fn close_input(&mut self, deadline: Duration) {
        drop(self.samples.take());
        let stages = join_all(std::mem::take(&mut self.stages));
        if tokio::time::timeout(deadline, stages).await.is_err() {
            tracing::warn!("Output stages did not drain in time");
        }
    }

    /// Stops the forwarder (within 1 s, aborting an in-flight request).
    pub async fn stop_forwarder(&mut self) {
        if let Some((task, stop)) = self.forwarder.take() {
            let _ = stop.send(true);
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(1), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

/// The rules stage and alarm delivery, in front of the outputs.
pub struct Alarms {
    /// Where the sources send samples: the rules stage.
    pub samples: mpsc::Sender<Sample>,
    /// Latest samples and active alarms, kept by the rules stage.
    pub view: Arc<crate::rules::stage::StageView>,
    stage: JoinHandle<()>,
    senders: Vec<JoinHandle<()>>,
    stop: watch::Sender<bool>,
}

impl Alarms {
    /// Starts the rules stage in front of `output` (with no rules it only keeps the latest
    /// samples for the status page), with an outbox and a delivery task per alarm destination.
    /// `listener` also gets every event (the demo prints them).
    pub fn start(
        config: &LoadedConfig,
        output: mpsc::Sender<Sample>,
        listener: Option<mpsc::Sender<crate::model::AlarmEvent>>,
    ) -> anyhow::Result<Alarms> {
        use anyhow::Context as _;
        let (stop, stopped) = watch::channel(false);
        let gateway = &config.gateway.gateway;
        let alarms_dir = gateway.data_dir.join("alarms");
        let mut outboxes = Vec::new();
        let mut senders = Vec::new();
        for hook in &config.gateway.alarms.webhook {
            let outbox = crate::buffer::outbox::Outbox::open(
                &alarms_dir,
                &format!("webhook-{}", hook.name),
                Some(Reserve::shared(&gateway.data_dir)),
            )
            .with_context(|| format!("cannot open the outbox of webhook {}", hook.name))?;
            let webhook = crate::sinks::webhook::Webhook::new(hook, &gateway.site, &gateway.id)
                .with_context(|| format!("webhook {}", hook.name))?;
            let appended = Arc::new(tokio::sync::Notify::new());
            senders.push(tokio::spawn(webhook.run(
                outbox.clone(),
                Arc::clone(&appended),
                stopped.clone(),
                Duration::from_secs(1),
            )));
            outboxes.push((outbox, appended));
        }
        if let Some(mqtt) = &config.gateway.alarms.mqtt {
            let outbox = crate::buffer::outbox::Outbox::open(
                &alarms_dir,
                "mqtt",
                Some(Reserve::shared(&gateway.data_dir)),
            )
            .context("cannot open the MQTT alarm outbox")?;
            let publisher = crate::sinks::mqtt::MqttAlarms::new(mqtt, &gateway.site, &gateway.id)
                .context("MQTT alarms")?;
            let appended = Arc::new(tokio::sync::Notify::new());
            senders.push(tokio::spawn(publisher.run(
                outbox.clone(),
                Arc::clone(&appended),
                stopped.clone(),
                Duration::from_secs(1),
            )));
            outboxes.push((outbox, appended));
        }
        let now = crate::model::unix_nanos(std::time::SystemTime::now());
        let engine =
            crate::rules::engine::RuleEngine::new(config, Some(alarms_dir.join("state.json")), now);
        let (tx, rx) = mpsc::channel(SAMPLE_CHANNEL_CAPACITY);
        let view = Arc::new(crate::rules::stage::StageView::default());
        let kpi = crate::kpi::book::KpiBook::open(
            config,
            Some(crate::kpi::store::KpiStore::new(&gateway.data_dir)),
        );
        let stage = tokio::spawn(crate::rules::stage::run(
            rx,
            output,
            (engine, kpi),
            crate::rules::stage::Delivery { outboxes, listener },
            Arc::clone(&view),
            (gateway.site.clone(), gateway.id.clone()),
        ));
        Ok(Alarms {
            samples: tx,
            view,
            stage,
            senders,
            stop,
        })
    }

    /// After the sources stopped: lets the rules stage drain, then stops the senders (what they
    /// have not delivered stays in their outboxes).
    pub async fn finish(self, deadline: Duration) {
        drop(self.samples);
        let abort = self.stage.abort_handle();
        if tokio::time::timeout(deadline, self.stage).await.is_err() {
            abort.abort();
        }
        let _ = self.stop.send(true);
        let aborts: Vec<_> = self.senders.iter().map(JoinHandle::abort_handle).collect();
        if tokio::time::timeout(Duration::from_secs(1), join_all(self.senders))
            .await
            .is_err()
        {
            for abort in aborts {
                abort.abort();
            }
        }
    }
}
